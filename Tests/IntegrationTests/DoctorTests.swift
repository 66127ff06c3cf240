import FedSegMath
import FedSegTestSupport
import Foundation
import Testing

/// The environment variables that steer kernel selection, cleared so each test sets its own.
private let blasVariables = [
    "OPENBLAS_CORETYPE", "FEDSEG_BLAS_KERNEL", "FEDSEG_BLAS_SELECTED", "FEDSEG_BLAS_DETECTED", "FEDSEG_BLAS_FALLBACK",
    "FEDSEG_KMEANS_KERNEL",
]

private func doctor(_ environment: [String: String], arguments: [String] = []) throws -> [String: Any] {
    let result = try Executables.run("fedseg", ["doctor", "--json"] + arguments, environment: environment, removing: blasVariables)
    let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    return try #require(object, "doctor printed no JSON: \(result.stdout) \(result.stderr)")
}

@Suite("fedseg doctor and kernel selection in a real process")
struct DoctorTests {
    @Test("the process ends up on the best kernel this CPU supports")
    func automaticSelection() throws {
        let report = try doctor([:])
        let blas = try #require(report["blas"] as? [String: Any])
        let core = try #require(blas["core"] as? String)
        #expect(blas["self_check_passed"] as? Bool == true)
        if let best = BLASKernel.bestCore(for: .current()) {
            #expect(BLASKernel.rank(ofCore: core) >= best.rank, "ended on \(core), CPU supports \(best.core)")
        }
        #expect(report["libsodium_version"] as? String != nil)
        let cpu = CPUFeatures.current()
        let expected = cpu.avx512f ? "avx512" : cpu.avx2 && cpu.fma ? "avx2" : "blas"
        #expect(report["kmeans_kernel"] as? String == expected)
        // SSE4.1 where /proc/cpuinfo says the CPU has it (and SSSE3), not the CPUID the choice asks.
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(Self.field("flags", cpuinfo)?.split(separator: " ").map(String.init) ?? [])
        #expect(report["varint_kernel"] as? String == (flags.isSuperset(of: ["sse4_1", "ssse3"]) ? "sse41" : "portable"))
    }

    /// The value of the first `name : value` line of /proc/cpuinfo named `name`.
    static func field(_ name: String, _ cpuinfo: String) -> String? {
        cpuinfo.split(separator: "\n").first { $0.hasPrefix(name) }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) }
    }

    @Test("starting on Prescott, FedSeg re-executes onto the requested core after checking the CPU")
    func reexecFromPrescott() throws {
        let cpu = CPUFeatures.current()
        let report = try doctor(["OPENBLAS_CORETYPE": "Prescott", "FEDSEG_BLAS_KERNEL": "SkylakeX"])
        let blas = try #require(report["blas"] as? [String: Any])
        if BLASKernel.canRun(core: "SkylakeX", on: cpu) {
            #expect(blas["core"] as? String == "SkylakeX")
            #expect(blas["library_detected_core"] as? String == "Prescott")
            #expect(blas["selected_by_fed_seg"] as? Bool == true)
        } else {
            #expect(blas["core"] as? String == "Prescott")
        }
        #expect(blas["self_check_passed"] as? Bool == true)
    }

    @Test("FEDSEG_KMEANS_KERNEL picks the K-means kernel; one this CPU cannot run is ignored with a warning")
    func kmeansKernelOverride() throws {
        let chosen = try doctor(["FEDSEG_KMEANS_KERNEL": "blas"])
        #expect(chosen["kmeans_kernel"] as? String == "blas")
        #expect((chosen["warnings"] as? [String])?.contains { $0.contains("FEDSEG_KMEANS_KERNEL") } == false)
        let unknown = try doctor(["FEDSEG_KMEANS_KERNEL": "sse9"])
        let cpu = CPUFeatures.current()
        let best = cpu.avx512f ? "avx512" : cpu.avx2 && cpu.fma ? "avx2" : "blas"
        #expect(unknown["kmeans_kernel"] as? String == best)
        let warnings = try #require(unknown["warnings"] as? [String])
        #expect(warnings.contains { $0.contains("FEDSEG_KMEANS_KERNEL=sse9 ignored") }, "\(warnings)")
    }

    @Test("an explicit OPENBLAS_CORETYPE is left alone")
    func userWins() throws {
        let report = try doctor(["OPENBLAS_CORETYPE": "Prescott"])
        let blas = try #require(report["blas"] as? [String: Any])
        #expect(blas["core"] as? String == "Prescott")
        #expect(blas["selected_by_fed_seg"] as? Bool == false)
    }

    @Test("a state directory open to others is a problem, exit status 1")
    func stateDirectoryPermissions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-doctor-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let open = try Executables.run("fedseg", ["doctor", "--json", "--state-dir", dir.path], removing: blasVariables)
        #expect(open.status == 1)
        #expect(open.stdout.contains("accessible by other users"))
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir.path)
        let report = try doctor([:], arguments: ["--state-dir", dir.path])
        let state = try #require(report["state_directory"] as? [String: Any])
        #expect(state["owner_only"] as? Bool == true)
    }
}
