import Foundation

/// Reference outputs from other implementations (sentence-transformers, dp_accounting,
/// scikit-learn), copied unchanged into `Tests/Fixtures` (see its README).
public enum Fixtures {
    public enum Failure: Error, CustomStringConvertible {
        case missing(String)

        public var description: String {
            switch self {
            case .missing(let name): "fixture \(name) is not in Tests/Fixtures"
            }
        }
    }

    /// `Tests/Fixtures` in the repository.
    public static var directory: URL {
        repositoryRoot.appendingPathComponent("Tests/Fixtures", isDirectory: true)
    }

    public static func url(_ name: String) throws -> URL {
        let url = directory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw Failure.missing(name) }
        return url
    }

    public static func data(_ name: String) throws -> Data {
        try Data(contentsOf: url(name))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from name: String) throws -> T {
        try JSONDecoder().decode(type, from: data(name))
    }

    /// The repository root, for tests that check files committed beside the sources.
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // FedSegTestSupport
            .deletingLastPathComponent()  // Sources
            .deletingLastPathComponent()
    }
}
