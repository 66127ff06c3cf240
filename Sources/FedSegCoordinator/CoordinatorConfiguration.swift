import Foundation
import TOMLKit

/// The daemon's settings: a TOML file (`coordinator serve --config FILE`), every key also a flag.
/// The defaults serve on loopback from `./coordinator-state`.
///
/// ```toml
/// state_dir = "/var/lib/fedseg"
/// [listen]
/// host = "127.0.0.1"
/// port = 7700            # 0: any free port (written to --port-file)
/// [privacy]
/// # Every user's lifetime budget across all runs. It lives in the ledger, recorded by
/// # `coordinator init` (or the first start); a value here must agree with the recorded one, and
/// # changes only through `fedseg privacy budget set`. Leave both out to use the recorded budget.
/// total_epsilon = 16.0
/// total_delta = 1e-5
/// [limits]
/// max_message_bytes = 16777216
/// [log]
/// level = "info"
/// ```
public struct CoordinatorConfiguration: Sendable, Equatable {
    public var stateDirectory = "coordinator-state"
    public var host = "127.0.0.1"
    public var port = 7700
    /// nil: the budget recorded in the state directory's ledger (16, 1e-5 at a first start).
    public var totalEpsilon: Double?
    public var totalDelta: Double?
    public var maxMessageBytes = 16 << 20
    public var logLevel = "info"
    /// Where to write the bound port once listening (for scripts that ask for port 0).
    public var portFile: String?
    /// Where seed-phrase embeddings are cached (default: `embeddings/` in the state directory).
    public var embeddingCache: String?

    public init() {}

    struct File: Decodable {
        struct Listen: Decodable {
            var host: String?
            var port: Int?
        }

        struct Privacy: Decodable {
            var total_epsilon: Double?
            var total_delta: Double?
        }

        struct Limits: Decodable {
            var max_message_bytes: Int?
        }

        struct Log: Decodable {
            var level: String?
        }

        var state_dir: String?
        var listen: Listen?
        var privacy: Privacy?
        var limits: Limits?
        var log: Log?
    }

    /// Reads a TOML file over the defaults; unknown keys are an error, so a typo is not ignored.
    public static func load(path: String) throws -> CoordinatorConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CoordinatorError.invalidParameters("cannot read config \(path): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch {
            throw CoordinatorError.invalidParameters("config \(path): \(error)")
        }
        let known: [String: Set<String>] = [
            "": ["state_dir", "listen", "privacy", "limits", "log"], "listen": ["host", "port"],
            "privacy": ["total_epsilon", "total_delta"], "limits": ["max_message_bytes"], "log": ["level"],
        ]
        for key in table.keys where !(known[""]!.contains(key)) {
            throw CoordinatorError.invalidParameters("config \(path): unknown key \(key)")
        }
        for (section, keys) in known where !section.isEmpty {
            if let sub = table[section]?.table {
                for key in sub.keys where !keys.contains(key) {
                    throw CoordinatorError.invalidParameters("config \(path): unknown key \(section).\(key)")
                }
            }
        }
        let file: File
        do {
            file = try TOMLDecoder().decode(File.self, from: table)
        } catch {
            throw CoordinatorError.invalidParameters("config \(path): \(error)")
        }
        var c = CoordinatorConfiguration()
        if let v = file.state_dir { c.stateDirectory = v }
        if let v = file.listen?.host { c.host = v }
        if let v = file.listen?.port { c.port = v }
        if let v = file.privacy?.total_epsilon { c.totalEpsilon = v }
        if let v = file.privacy?.total_delta { c.totalDelta = v }
        if let v = file.limits?.max_message_bytes { c.maxMessageBytes = v }
        if let v = file.log?.level { c.logLevel = v }
        try c.validate()
        return c
    }

    public func validate() throws {
        guard (0...65535).contains(port) else { throw CoordinatorError.invalidParameters("listen.port must be in 0...65535") }
        if let totalEpsilon, !(totalEpsilon > 0 && totalEpsilon.isFinite) {
            throw CoordinatorError.invalidParameters("privacy.total_epsilon must be positive")
        }
        if let totalDelta, !(totalDelta > 0 && totalDelta < 1) { throw CoordinatorError.invalidParameters("privacy.total_delta must be in (0, 1)") }
        guard (1024...(256 << 20)).contains(maxMessageBytes) else {
            throw CoordinatorError.invalidParameters("limits.max_message_bytes must be in 1 KiB...256 MiB")
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw CoordinatorError.invalidParameters("log.level must be a swift-log level")
        }
    }
}
