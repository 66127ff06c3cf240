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

    /// Points `process` at a package executable with its arguments, through `launcher` if any.
    public static func configure(_ process: Process, _ name: String, _ arguments: [String], launcher: [String]) throws {
        let executable = try url(name)
        if let first = launcher.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(launcher.dropFirst()) + [executable.path] + arguments
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
    }

    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs an executable to completion with extra environment variables.
    /// `launcher`: a command that runs the executable (`ip netns exec NS`), or none.
    public static func run(
        _ name: String, _ arguments: [String], environment: [String: String] = [:], removing: [String] = [], launcher: [String] = []
    ) throws -> Result {
        let process = Process()
        try configure(process, name, arguments, launcher: launcher)
        return try finish(process, environment: environment, removing: removing)
    }

    /// Runs any program (not a package executable), by path, to completion.
    public static func runCommand(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        return try finish(process, environment: environment, removing: [])
    }

    static func finish(_ process: Process, environment: [String: String], removing: [String]) throws -> Result {
        var env = ProcessInfo.processInfo.environment
        for key in removing { env.removeValue(forKey: key) }
        env.merge(environment) { $1 }
        process.environment = env
        // Output goes to files, not pipes: no deadlock on a full pipe, no EINTR from reads
        // interrupted by the child's exit signal.
        let directory = FileManager.default.temporaryDirectory
        let outURL = directory.appendingPathComponent("fedseg-run-\(UUID().uuidString).out")
        let errURL = directory.appendingPathComponent("fedseg-run-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let outHandle = try FileHandle(forWritingTo: outURL)
        let errHandle = try FileHandle(forWritingTo: errURL)
        process.standardOutput = outHandle
        process.standardError = errHandle
        try process.run()
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        let outData = try Data(contentsOf: outURL)
        let errData = try Data(contentsOf: errURL)
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }

    /// A process started in the background, its output in a file.
    public final class Background: @unchecked Sendable {
        public let process: Process
        public let output: URL

        init(process: Process, output: URL) {
            self.process = process
            self.output = output
        }

        /// Waits for the exit and returns the status and the combined output.
        public func wait() -> Result {
            process.waitUntilExit()
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: output)
            return Result(status: process.terminationStatus, stdout: text, stderr: "")
        }
    }

    public static func start(_ name: String, _ arguments: [String], environment: [String: String] = [:], launcher: [String] = []) throws -> Background {
        let process = Process()
        try configure(process, name, arguments, launcher: launcher)
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-bg-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return Background(process: process, output: output)
    }
}
