import ArgumentParser
import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegProtocol
import Foundation

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the libraries, CPU kernel, model weights and state directory this machine would use."
    )

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    @Option(name: .long, help: "Directory holding the MiniLM files (default: $FEDSEG_CACHE/models/all-MiniLM-L6-v2).")
    var modelDir: String?

    @Option(name: .long, help: "A coordinator or client state directory whose permissions to check.")
    var stateDir: String?

    func run() throws {
        let model = modelDir.map { MiniLMModelFiles(directory: URL(fileURLWithPath: $0, isDirectory: true)) }
            ?? MiniLMModelFiles.defaultLocation()
        let report = DoctorReport(
            fedsegVersion: FedSegVersion.current,
            libsodiumVersion: Sodium.version,
            blas: BLASKernel.report(),
            kmeansKernel: NearestCentroidKernel.current,
            varintKernel: PackedVarintKernel.current,
            model: ModelCheck(files: model),
            stateDirectory: stateDir.map { StateDirectoryCheck(path: $0) }
        )
        if json {
            try JSONOutput.print(report, pretty: true)
        } else {
            print(report.table)
        }
        if !report.problems.isEmpty {
            throw ExitCode(1)
        }
    }
}

struct DoctorReport: Encodable {
    var fedsegVersion: String
    var libsodiumVersion: String
    var blas: BLASKernel.Report
    /// The K-means assignment pass this CPU runs (`NearestCentroidKernel`).
    var kmeansKernel: NearestCentroidKernel
    /// How the coordinator's intake reads an update's packed words (`PackedVarintKernel`).
    var varintKernel: PackedVarintKernel
    var model: ModelCheck
    var stateDirectory: StateDirectoryCheck?

    /// Anything that makes FedSeg wrong or unsafe, as opposed to slower.
    var problems: [String] {
        var result: [String] = []
        if !blas.selfCheckPassed {
            result.append("OpenBLAS \(blas.core) failed the SGEMM self-check (max relative error \(blas.selfCheckMaxRelativeError))")
        }
        if model.present && !model.verified {
            result.append("model.safetensors does not match the expected sha256: run scripts/setup again")
        }
        if let state = stateDirectory, state.exists, !state.ownerOnly {
            result.append("state directory \(state.path) is accessible by other users (mode \(state.mode ?? "?")): chmod 700")
        }
        return result
    }

    var warnings: [String] {
        var result: [String] = []
        if !model.present {
            result.append("MiniLM weights missing (\(model.missingFiles.joined(separator: ", "))): run scripts/setup; embedding falls back to the hashing embedder")
        }
        if let state = stateDirectory, !state.exists {
            result.append("state directory \(state.path) does not exist")
        }
        let variable = NearestCentroidKernel.environmentVariable
        if let requested = ProcessInfo.processInfo.environment[variable], requested.lowercased() != kmeansKernel.rawValue {
            result.append("\(variable)=\(requested) ignored: use blas, avx2 or avx512, one this CPU runs (it runs \(NearestCentroidKernel.allCases.filter(\.runsHere).map(\.rawValue).joined(separator: ", ")))")
        }
        return result
    }

    enum CodingKeys: String, CodingKey {
        case fedsegVersion, libsodiumVersion, blas, kmeansKernel, varintKernel, model, stateDirectory, problems, warnings
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(fedsegVersion, forKey: .fedsegVersion)
        try container.encode(libsodiumVersion, forKey: .libsodiumVersion)
        try container.encode(blas, forKey: .blas)
        try container.encode(kmeansKernel, forKey: .kmeansKernel)
        try container.encode(varintKernel.rawValue, forKey: .varintKernel)
        try container.encode(model, forKey: .model)
        try container.encodeIfPresent(stateDirectory, forKey: .stateDirectory)
        try container.encode(problems, forKey: .problems)
        try container.encode(warnings, forKey: .warnings)
    }

    var table: String {
        var lines: [(String, String)] = [
            ("fedseg", fedsegVersion),
            ("libsodium", libsodiumVersion),
            ("cpu features", blas.cpuFeatures.joined(separator: " ")),
            ("openblas core", blas.core + (blas.selectedByFedSeg ? " (selected by FedSeg; library picked \(blas.libraryDetectedCore))" : "")),
            ("openblas reason", blas.reason),
            ("openblas threads", "\(blas.threads) per call, \(blas.workers) parallel workers"),
            ("sgemm self-check", blas.selfCheckPassed ? "passed" : "FAILED"),
            ("k-means kernel", kmeansKernel == .blas ? "blas (SGEMM per chunk: no AVX2 here)" : "\(kmeansKernel.rawValue) (fused assignment pass)"),
            ("varint kernel", varintKernel == .sse41 ? "sse41 (byte shuffles, four words per load)" : "portable (no SSE4.1 here)"),
            ("model dir", model.directory),
            ("model weights", model.present ? (model.verified ? "present, sha256 verified" : "present, sha256 MISMATCH") : "missing"),
        ]
        if let sha = model.sha256 { lines.append(("model sha256", sha)) }
        if let state = stateDirectory {
            lines.append(("state dir", state.path))
            lines.append(("state dir mode", state.exists ? "\(state.mode ?? "?")\(state.ownerOnly ? " (owner only)" : " (OPEN TO OTHERS)")" : "missing"))
        }
        let width = lines.map(\.0.count).max() ?? 0
        var text = lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
        text += warnings.map { "warning: \($0)" }
        text += problems.map { "problem: \($0)" }
        return text.joined(separator: "\n")
    }
}

struct ModelCheck: Encodable {
    var directory: String
    var present: Bool
    var missingFiles: [String]
    var sha256: String?
    var expectedSHA256: String
    var verified: Bool

    init(files: MiniLMModelFiles) {
        directory = files.directory.path
        missingFiles = files.missingFiles
        present = missingFiles.isEmpty
        expectedSHA256 = MiniLMModelFiles.expectedWeightsSHA256
        sha256 = FileManager.default.fileExists(atPath: files.weights.path)
            ? (try? SHA256.hash(fileAt: files.weights))?.hex : nil
        verified = sha256 == expectedSHA256
    }
}

struct StateDirectoryCheck: Encodable {
    var path: String
    var exists: Bool
    var mode: String?
    var ownerOnly: Bool

    init(path: String) {
        self.path = path
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        exists = attributes != nil
        if let permissions = attributes?[.posixPermissions] as? Int {
            mode = String(permissions, radix: 8)
            ownerOnly = permissions & 0o077 == 0
        } else {
            ownerOnly = false
        }
    }
}
