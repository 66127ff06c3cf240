import Foundation
import TOMLKit

/// The TOML types the configuration's keys take.
enum ValueKind: CustomStringConvertible {
    case string, integer, number, boolean, table

    func accepts(_ value: any TOMLValueConvertible) -> Bool {
        switch self {
        case .string: value.string != nil
        case .integer: value.int != nil
        case .number: value.double != nil || value.int != nil
        case .boolean: value.bool != nil
        case .table: value.table != nil
        }
    }

    var description: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .number: "a number"
        case .boolean: "true or false"
        case .table: "a table"
        }
    }
}

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
/// # Serving beyond loopback needs TLS (or insecure_http = true, said at start).
/// insecure_http = false
/// [tls]
/// cert = "/etc/fedseg/coordinator.pem"   # PEM chain, leaf first
/// key = "/etc/fedseg/coordinator.key"    # PEM private key
/// [limits]
/// max_message_bytes = 16777216
/// max_connections = 1024
/// header_timeout_seconds = 30      # also the keep-alive idle limit
/// body_timeout_seconds = 120
/// stale_after_seconds = 120        # rounds wait only for clients seen this recently
/// [log]
/// level = "info"
/// format = "text"                  # or "json": one JSON object per line, for log shippers
/// responses = "responses.jsonl"    # optional: every answer, one JSON line each (debugging a client)
/// ```
public struct CoordinatorConfiguration: Sendable, Equatable {
    public var stateDirectory = "coordinator-state"
    public var host = "127.0.0.1"
    public var port = 7700
    /// nil: the budget recorded in the state directory's ledger (16, 1e-5 at a first start).
    public var totalEpsilon: Double?
    public var totalDelta: Double?
    public var maxMessageBytes = 16 << 20
    public var connections = ConnectionLimits()
    public var staleAfterSeconds = 120.0
    /// TLS certificate chain and key; nil serves plain HTTP (loopback only, unless `insecureHTTP`).
    public var tls: TLSFiles?
    /// Serve plain HTTP on a non-loopback address (updates are end-to-end encrypted, but the
    /// admin token and plans are not).
    public var insecureHTTP = false
    public var logLevel = "info"
    /// `text` or `json` (`--log-format`).
    public var logFormat = "text"
    /// Where to record every answer (`--response-log`, `ResponseLog`); nil records nothing.
    public var responseLog: String?
    /// Where to write the bound port once listening (for scripts that ask for port 0).
    public var portFile: String?
    /// Where seed-phrase embeddings are cached (default: `embeddings/` in the state directory).
    public var embeddingCache: String?

    public init() {}

    struct File: Decodable {
        struct Listen: Decodable {
            var host: String?
            var port: Int?
            var insecure_http: Bool?
        }

        struct TLS: Decodable {
            var cert: String?
            var key: String?
        }


        struct Limits: Decodable {
            var max_message_bytes: Int?
            var max_connections: Int?
        }

        struct Log: Decodable {
            var level: String?
            var format: String?
            var responses: String?
        }

        var state_dir: String?
        var listen: Listen?
        var limits: Limits?
        var log: Log?
        var tls: TLS?
    }

    /// Reads a TOML file over the defaults; unknown keys are an error, so a typo is not ignored.
    public static func load(path: String) throws -> CoordinatorConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CoordinatorError.configuration("cannot read config \(path): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch {
            throw CoordinatorError.configuration("config \(path): \(error)")
        }
        // Every key with the type it takes: an unknown key (a typo) or a value of the wrong type
        // is named here, before decoding, as the decoder would not say which.
        let known: [String: [String: ValueKind]] = [
            "": ["state_dir": .string, "listen": .table, "privacy": .table, "limits": .table, "log": .table, "tls": .table],
            "listen": ["host": .string, "port": .integer, "insecure_http": .boolean],
            "privacy": ["total_epsilon": .number, "total_delta": .number],
            "limits": [
                "max_message_bytes": .integer, "max_connections": .integer, "header_timeout_seconds": .number,
                "body_timeout_seconds": .number, "stale_after_seconds": .number,
            ],
            "log": ["level": .string, "format": .string, "responses": .string], "tls": ["cert": .string, "key": .string],
        ]
        // Sorted: the top level first, so a section that is not a table is reported as such.
        for (section, keys) in known.sorted(by: { $0.key < $1.key }) {
            guard let sub = section.isEmpty ? table : table[section]?.table else { continue }
            for key in sub.keys.sorted() {
                let name = section.isEmpty ? key : "\(section).\(key)"
                guard let kind = keys[key] else { throw CoordinatorError.configuration("config \(path): unknown key \(name)") }
                guard let value = sub[key], kind.accepts(value) else {
                    throw CoordinatorError.configuration("config \(path): \(name) must be \(kind.description)")
                }
            }
        }
        let file: File
        do {
            file = try TOMLDecoder().decode(File.self, from: table)
        } catch {
            // Every key's type was checked above; this is a value the checks do not cover.
            throw CoordinatorError.configuration("config \(path): a value does not decode")
        }
        var c = CoordinatorConfiguration()
        if let v = file.state_dir { c.stateDirectory = v }
        if let v = file.listen?.host { c.host = v }
        if let v = file.listen?.port { c.port = v }
        // Numbers are read from the table: TOML writes 16 and 16.0 differently, and both are meant.
        func number(_ section: String, _ key: String) -> Double? {
            guard let value = table[section]?.table?[key] else { return nil }
            return value.double ?? value.int.map(Double.init)
        }
        if let v = number("privacy", "total_epsilon") { c.totalEpsilon = v }
        if let v = number("privacy", "total_delta") { c.totalDelta = v }
        if let v = file.limits?.max_message_bytes { c.maxMessageBytes = v }
        if let v = file.limits?.max_connections { c.connections.maximumConnections = v }
        if let v = number("limits", "header_timeout_seconds") { c.connections.headerTimeoutSeconds = v }
        if let v = number("limits", "body_timeout_seconds") { c.connections.bodyTimeoutSeconds = v }
        if let v = number("limits", "stale_after_seconds") { c.staleAfterSeconds = v }
        if let v = file.listen?.insecure_http { c.insecureHTTP = v }
        switch (file.tls?.cert, file.tls?.key) {
        case (let cert?, let key?): c.tls = TLSFiles(certificateChain: cert, privateKey: key)
        case (nil, nil): break
        default: throw CoordinatorError.configuration("config \(path): tls.cert and tls.key go together")
        }
        if let v = file.log?.level { c.logLevel = v }
        if let v = file.log?.format { c.logFormat = v }
        if let v = file.log?.responses { c.responseLog = v }
        try c.validate()
        return c
    }

    public func validate() throws {
        guard (0...65535).contains(port) else { throw CoordinatorError.configuration("listen.port must be in 0...65535") }
        if let totalEpsilon, !(totalEpsilon > 0 && totalEpsilon.isFinite) {
            throw CoordinatorError.configuration("privacy.total_epsilon must be positive")
        }
        if let totalDelta, !(totalDelta > 0 && totalDelta < 1) { throw CoordinatorError.configuration("privacy.total_delta must be in (0, 1)") }
        guard (1024...(256 << 20)).contains(maxMessageBytes) else {
            throw CoordinatorError.configuration("limits.max_message_bytes must be in 1 KiB...256 MiB")
        }
        try connections.validate()
        guard staleAfterSeconds > 0, staleAfterSeconds <= 30 * 86_400 else {
            throw CoordinatorError.configuration("limits.stale_after_seconds must be in (0, 2592000]")
        }
        guard tls != nil || insecureHTTP || CoordinatorServer.isLoopback(host) else {
            throw CoordinatorError.configuration("""
                listen.host \(host) is not a loopback address, and plain HTTP would carry the admin token and round plans in the clear: \
                give --tls-cert and --tls-key (tls.cert, tls.key), or --insecure-http (listen.insecure_http = true) behind a TLS-terminating proxy
                """)
        }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw CoordinatorError.configuration("log.level must be a swift-log level")
        }
        guard ["text", "json"].contains(logFormat) else {
            throw CoordinatorError.configuration("log.format must be text or json (got \(logFormat))")
        }
    }
}
