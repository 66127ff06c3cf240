import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real `coordinator serve` process on a loopback port, for tests: started, waited for,
/// killed (SIGKILL, to test crashes) or stopped (SIGTERM), and restarted on the same port.
public final class RunningCoordinator: @unchecked Sendable {
    public let stateDirectory: URL
    public let port: Int
    public var url: String { "http://127.0.0.1:\(port)" }
    public var adminTokenFile: String { stateDirectory.appendingPathComponent("admin.token").path }
    public var logFile: URL { stateDirectory.appendingPathComponent("coordinator-\(starts).log") }
    /// Every start records its answers here (`--response-log`), for `contractProblems()`.
    public var responseLogFile: URL { stateDirectory.appendingPathComponent("responses-\(starts).jsonl") }
    private(set) var process: Process?
    private(set) var starts = 0

    public enum Failure: Error, CustomStringConvertible {
        case didNotStart(String)
        public var description: String {
            switch self {
            case .didNotStart(let log): "coordinator did not start listening: \(log)"
            }
        }
    }

    /// Initialises a fresh state directory (unless it is already initialised) and picks a free port.
    /// `totalEpsilon`: the lifetime budget `coordinator init` records (default: its own).
    public init(stateDirectory: URL? = nil, port: Int? = nil, totalEpsilon: Double? = nil) throws {
        let directory = stateDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-coordinator-\(UUID().uuidString)", isDirectory: true)
        self.stateDirectory = directory
        self.port = try port ?? Self.freePort()
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("coordinator.key").path) {
            let budget = totalEpsilon.map { ["--total-epsilon", "\($0)"] } ?? []
            let result = try Executables.run("coordinator", ["init", "--state-dir", directory.path] + budget)
            guard result.status == 0 else { throw Failure.didNotStart(result.stderr) }
        }
    }

    /// A port that was free a moment ago (bound and released).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Starts the daemon and waits until it answers /healthz (over TLS, which this plain client
    /// does not speak, until it logs that it listens).
    /// `launcher` runs the daemon through another command (`ip netns exec NS`, which execs it:
    /// the pid, and so kill and stop, are the daemon's).
    public func start(environment: [String: String] = [:], arguments: [String] = [], tls: Bool = false, launcher: [String] = []) throws {
        starts += 1
        let process = Process()
        try Executables.configure(
            process, "coordinator",
            ["serve", "--state-dir", stateDirectory.path, "--port", "\(port)", "--log-level", "info", "--response-log", responseLogFile.path] + arguments,
            launcher: launcher
        )
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logFile)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !process.isRunning { throw Failure.didNotStart(log()) }
            if tls ? log().contains("https://") : (try? Self.get(url + "/healthz")) == "ok\n" { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw Failure.didNotStart(log())
    }

    /// Every answer of every start so far, as the daemon recorded them.
    public func recordedResponses() throws -> RecordedResponses {
        let logs = (1...max(starts, 1)).map { stateDirectory.appendingPathComponent("responses-\($0).jsonl").path }
        return RecordedResponses(entries: try logs.flatMap { try RecordedResponses(path: $0).entries })
    }

    /// The answers of every start that break docs/openapi.json (`OpenAPIContract`), and how many
    /// answers there were: every answer a test's real clients and tools were given is checked.
    public func contractProblems() throws -> (problems: [String], answers: Int, distinct: Set<String>) {
        let recorded = try recordedResponses()
        return (recorded.problems(against: try OpenAPIContract()), recorded.entries.count, recorded.distinct)
    }

    public func log() -> String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// SIGKILL: no shutdown code runs.
    public func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the process to end by itself (a crash hook), up to `seconds`.
    @discardableResult
    public func waitForExit(seconds: Double) -> Int32? {
        guard let process else { return nil }
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// SIGTERM and wait: the graceful path. Returns the exit status.
    @discardableResult
    public func stop() -> Int32? {
        guard let process else { return nil }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit {
        if let process, process.isRunning { process.terminate() }
    }

    /// A plain HTTP GET on loopback (tests only), with an optional bearer token.
    public static func get(_ url: String, token: String? = nil) throws -> String {
        try request(url, token: token).body
    }

    public static func request(_ url: String, method: String = "GET", token: String? = nil, body: Data? = nil) throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let box = ResultBox()
        let semaphore = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            box.value = error.map { .failure($0) } ?? .success(((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data ?? Data(), as: UTF8.self)))
            semaphore.signal()
        }.resume()
        semaphore.wait()
        return try box.value!.get()
    }

    final class ResultBox: @unchecked Sendable {
        var value: Result<(Int, String), any Error>?
    }
}
