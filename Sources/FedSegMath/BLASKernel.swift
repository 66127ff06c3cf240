#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
internal import COpenBLAS

/// Choosing the OpenBLAS kernel for this CPU.
///
/// Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise some current CPUs and falls back to
/// its `Prescott` (SSE3) kernel, whose SGEMM is about 6x slower than the AVX-512 `SkylakeX` kernel
/// the same CPU runs correctly. The library reads `OPENBLAS_CORETYPE` once, in its ELF constructor,
/// before `main` runs, so setting the variable from inside the process is too late.
///
/// FedSeg executables therefore call `BLASKernel.selectForThisProcess()` first thing in `main`: when
/// the library picked a weaker kernel than the CPU supports, it sets `OPENBLAS_CORETYPE` and
/// re-executes the same binary (`execv` of `/proc/self/exe`: same pid, arguments, descriptors). The
/// re-executed process checks SGEMM against a double-precision reference; should that fail, it
/// re-executes once more without the override, so a wrong kernel is never used. An explicit
/// `OPENBLAS_CORETYPE` from the user always wins over automatic selection; `FEDSEG_BLAS_KERNEL=off`
/// disables selection and `FEDSEG_BLAS_KERNEL=<core>` asks for a core after checking the CPU can run it.
///
/// Re-exec was chosen over `dlopen`-after-`setenv` because it keeps OpenBLAS an ordinary
/// pkg-config-linked system library with its typed `cblas.h` interface, costs a few milliseconds
/// once, and lets the fallback load a fresh library rather than unloading one in place.
public enum BLASKernel {
    /// What the selection decided, given the CPU, the library's own pick and the environment.
    public enum Decision: Sendable, Equatable {
        /// Use the kernel the library loaded with.
        case keep(reason: String)
        /// Restart with `OPENBLAS_CORETYPE` set to this core.
        case select(core: String, reason: String)
    }

    /// Environment variables FedSeg reads or writes.
    public enum Variable {
        public static let coreType = "OPENBLAS_CORETYPE"
        /// `off` disables automatic selection.
        public static let mode = "FEDSEG_BLAS_KERNEL"
        /// Set by FedSeg on re-exec: the core the library had picked by itself.
        public static let detected = "FEDSEG_BLAS_DETECTED"
        /// Set by FedSeg on re-exec: FedSeg (not the user) set OPENBLAS_CORETYPE.
        public static let selectedBy = "FEDSEG_BLAS_SELECTED"
        /// Set by FedSeg when the selected kernel failed its self-check.
        public static let fallback = "FEDSEG_BLAS_FALLBACK"
    }

    /// How capable an OpenBLAS core name is, by the widest vector unit its kernels use.
    /// Unknown names rank 0, so they are treated as the generic fallback they usually are.
    public static func rank(ofCore core: String) -> Int {
        switch core.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen", "zen2", "zen3", "zen4", "excavator": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller": return 1
        default: return 0
        }
    }

    /// The best core this CPU can run, with its rank, or nil when it supports none better than SSE.
    public static func bestCore(for cpu: CPUFeatures) -> (core: String, rank: Int)? {
        if canRun(core: "SkylakeX", on: cpu) { return ("SkylakeX", 3) }
        if canRun(core: "Haswell", on: cpu) { return ("Haswell", 2) }
        return nil
    }

    /// The cores FedSeg knows how to validate: what each needs from the CPU.
    public static func canRun(core: String, on cpu: CPUFeatures) -> Bool {
        switch core.lowercased() {
        case "skylakex":
            return cpu.avx512f && cpu.avx512dq && cpu.avx512bw && cpu.avx512vl && cpu.avx2 && cpu.fma
        case "haswell":
            return cpu.avx2 && cpu.fma
        case "prescott":
            return cpu.sse2
        default:
            return false
        }
    }

    /// The pure decision. `libraryCore` is what `openblas_get_corename()` reports in this process.
    ///
    /// Precedence: `FEDSEG_BLAS_KERNEL=off`; a failed self-check; an already re-executed process;
    /// `FEDSEG_BLAS_KERNEL=<core>` (an explicit choice FedSeg validates against CPUID);
    /// the user's own `OPENBLAS_CORETYPE`; then automatic selection.
    public static func decide(cpu: CPUFeatures, libraryCore: String, environment: [String: String]) -> Decision {
        let mode = environment[Variable.mode] ?? ""
        if mode.lowercased() == "off" {
            return .keep(reason: "\(Variable.mode)=off: automatic selection disabled")
        }
        if let fallback = environment[Variable.fallback] {
            return .keep(reason: "selected kernel failed its self-check (\(fallback)); using the library's own pick")
        }
        if environment[Variable.selectedBy] != nil, let core = environment[Variable.coreType] {
            return .keep(reason: "\(core) selected by FedSeg")
        }
        if !mode.isEmpty && mode.lowercased() != "auto" {
            guard canRun(core: mode, on: cpu) else {
                return .keep(reason: "\(Variable.mode)=\(mode) refused: not a core FedSeg can verify this CPU runs (SkylakeX, Haswell, Prescott)")
            }
            if libraryCore.lowercased() == mode.lowercased() {
                return .keep(reason: "\(Variable.mode)=\(mode) already in use")
            }
            return .select(core: mode, reason: "\(Variable.mode)=\(mode) requested; the CPU supports it")
        }
        if let requested = environment[Variable.coreType], !requested.isEmpty {
            // An explicit choice stands, but a weaker kernel than the CPU runs costs a lot (on an
            // AVX-512 machine whose environment pinned Haswell: SGEMM 113 against 219 GFLOP/s per core).
            if let best = bestCore(for: cpu), rank(ofCore: requested) < best.rank {
                return .keep(
                    reason: "\(Variable.coreType)=\(requested) set by the user; this CPU runs \(best.core), whose SGEMM is faster: "
                        + "unset \(Variable.coreType) to let FedSeg choose"
                )
            }
            return .keep(reason: "\(Variable.coreType)=\(requested) set by the user")
        }
        guard let best = bestCore(for: cpu) else {
            return .keep(reason: "CPU has no AVX2+FMA; the library's pick \(libraryCore) stands")
        }
        if rank(ofCore: libraryCore) >= best.rank {
            return .keep(reason: "library picked \(libraryCore), as good as this CPU supports")
        }
        return .select(
            core: best.core,
            reason: "library picked \(libraryCore) but the CPU supports \(best.core)"
        )
    }

    /// The core OpenBLAS runs in this process.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// OpenBLAS's build configuration string.
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "unknown" }
        return String(cString: config)
    }

    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// The state of kernel selection in this process, for `fedseg doctor` and benchmarks.
    public struct Report: Sendable, Codable, Equatable {
        public var core: String
        public var libraryDetectedCore: String
        public var selectedByFedSeg: Bool
        public var reason: String
        /// OpenBLAS threads per call (1 in FedSeg executables: see `configureThreading`).
        public var threads: Int
        /// Workers FedSeg splits row-parallel BLAS work across.
        public var workers: Int
        public var selfCheckPassed: Bool
        public var selfCheckMaxRelativeError: Double
        public var cpuFeatures: [String]
    }

    public static func report() -> Report {
        let env = ProcessEnvironment.current
        let core = coreName
        let check = selfCheck()
        let reason: String
        if let selected = env[Variable.selectedBy], env[Variable.fallback] == nil {
            reason = selected
        } else {
            switch decide(cpu: .current(), libraryCore: core, environment: env) {
            case .keep(let why): reason = why
            case .select(let target, let why): reason = "\(why); \(target) not applied (process did not call selectForThisProcess)"
            }
        }
        return Report(
            core: core,
            libraryDetectedCore: env[Variable.detected] ?? core,
            selectedByFedSeg: env[Variable.selectedBy] != nil && env[Variable.fallback] == nil,
            reason: reason,
            threads: threadCount,
            workers: Parallel.workerCount,
            selfCheckPassed: check.passed,
            selfCheckMaxRelativeError: check.maxRelativeError,
            cpuFeatures: CPUFeatures.current().names
        )
    }

    /// Runs selection for this process. Call it first in `main`, before any BLAS work and before
    /// spawning threads: it may replace the process image. Returns when the current kernel stays,
    /// with OpenBLAS set to single-threaded calls (see `configureThreading`).
    public static func selectForThisProcess() {
        defer { configureThreading(environment: ProcessEnvironment.current) }
        let env = ProcessEnvironment.current
        if env[Variable.selectedBy] != nil, env[Variable.fallback] == nil {
            // We are the re-executed process: make sure the chosen kernel computes correctly.
            let check = selfCheck()
            if !check.passed {
                unsetenv(Variable.coreType)
                setenv(Variable.fallback, "\(coreName): max relative error \(check.maxRelativeError)", 1)
                reexec()
            }
            return
        }
        switch decide(cpu: .current(), libraryCore: coreName, environment: env) {
        case .keep:
            return
        case .select(let core, let reason):
            setenv(Variable.detected, coreName, 1)
            setenv(Variable.selectedBy, reason, 1)
            setenv(Variable.coreType, core, 1)
            reexec()
        }
    }

    /// FedSeg parallelises across rows, chunks and tasks itself. OpenBLAS's own threads, on top of
    /// that, contend with those workers: concurrent callers share one thread pool, and its threads
    /// spin between calls (measured on the K-means step: 38 ms with OpenBLAS threads vs 26 ms with
    /// single-threaded calls on two workers). So each call runs on its caller's thread, unless the
    /// user set OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS.
    public static func configureThreading(environment: [String: String]) {
        let userSet = ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"].contains { environment[$0] != nil }
        if !userSet { openblas_set_num_threads(1) }
    }

    /// A small SGEMM compared against a double-precision product.
    public static func selfCheck() -> (passed: Bool, maxRelativeError: Double) {
        let (m, n, k) = (67, 45, 53)
        var rng = SeededRandom(seed: 0x5EED_B1A5)
        var a = Matrix(rows: m, cols: k)
        var b = Matrix(rows: k, cols: n)
        for i in 0..<a.count { a.storage[i] = Float(rng.nextUniform() * 2 - 1) }
        for i in 0..<b.count { b.storage[i] = Float(rng.nextUniform() * 2 - 1) }
        let c = BLAS.multiply(a, b)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0
                var magnitude = 0.0
                for p in 0..<k {
                    let term = Double(a[i, p]) * Double(b[p, j])
                    exact += term
                    magnitude += abs(term)
                }
                worst = max(worst, abs(Double(c[i, j]) - exact) / max(magnitude, 1e-30))
            }
        }
        // Float accumulation over k=53 terms stays far below 1e-5 of the absolute-sum scale.
        return (worst.isFinite && worst < 1e-5, worst)
    }

    private static func reexec() {
        let path = "/proc/self/exe"
        guard access(path, X_OK) == 0 else { return }
        // execv only returns on failure; then we carry on with the library's kernel.
        _ = execv(path, CommandLine.unsafeArgv)
    }
}

/// A snapshot of the process environment as a dictionary.
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
