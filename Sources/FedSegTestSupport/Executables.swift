import Foundation

/// Running the package's own executables from tests, as a user would.
public enum Executables {
    public enum Failure: Error, CustomStringConvertible {
        case notBuilt(String, searched: String)

        public var description: String {
            switch self {
            case .notBuilt(let name, let searched):
                "executable \(name) not found in \(searched): build it first (swift build --build-tests)"
            }
        }
    }

    /// The build products directory: where the test bundle itself was built.
    public static var productsDirectory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if url.lastPathComponent.hasSuffix(".xctest") { continue }
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("fedseg").path) { return url }
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    public static func url(_ name: String) throws -> URL {
        let url = productsDirectory.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw Failure.notBuilt(name, searched: productsDirectory.path)
        }
        return url
    }

    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs an executable to completion with extra environment variables.
    public static func run(
        _ name: String, _ arguments: [String], environment: [String: String] = [:], removing: [String] = []
    ) throws -> Result {
        let process = Process()
        process.executableURL = try url(name)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in removing { env.removeValue(forKey: key) }
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }
}
