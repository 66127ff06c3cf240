import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import GRDB

/// What `fedseg-node` keeps beside the client engine's own database (`client.sqlite`: ledger,
/// enrolment, outboxes): its settings, its users' profile vectors (never sent anywhere) and every
/// signed segment model it received, in `node.sqlite` in the state directory.
public final class NodeStore: Sendable {
    public static let file = "node.sqlite"
    let queue: DatabaseQueue

    /// The node's settings, fixed at `init` and `enroll`.
    public struct Settings: Sendable, Equatable, Codable {
        public var clientID: String?
        public var coordinatorURL: String?
        public var caCertificate: String?
        public var enrolledAt: Double?
        /// What the last `serve` used: the embedder choice and the data directory.
        public var embedder: String?
        public var dataDirectory: String?
        public var cacheDirectory: String?
        /// The re-ranking blend chosen from this node's own users for the latest model: the
        /// content weight, and the global list's weight beside the segment's.
        public var rerankBlend: Double?
        public var rerankGlobalWeight: Double?

        enum CodingKeys: String, CodingKey {
            case clientID = "client_id"
            case coordinatorURL = "coordinator_url"
            case caCertificate = "ca_certificate"
            case enrolledAt = "enrolled_at"
            case embedder
            case dataDirectory = "data_dir"
            case cacheDirectory = "cache_dir"
            case rerankBlend = "rerank_blend"
            case rerankGlobalWeight = "rerank_global_weight"
        }
    }

    /// One local user as the last `serve` loaded them.
    public struct User: Sendable, Equatable {
        public var id: String
        public var vector: [Float]
        public var items: [String]
    }

    /// A segment model as received: the coordinator's signed publication, verified on every read.
    public struct StoredModel: Sendable {
        public var runID: String
        public var version: Int
        public var publication: [UInt8]
        public var receivedAt: Double
    }

    public init(directory: URL) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.journalMode = .wal
        queue = try DatabaseQueue(path: directory.appendingPathComponent(Self.file).path, configuration: configuration)
        try queue.requireDurableCommits()
        var migrator = DatabaseMigrator()
        migrator.registerMigration("node-v1") { db in
            try db.create(table: "settings") { t in
                t.column("key", .text).primaryKey()
                t.column("value", .text).notNull()
            }
            try db.create(table: "users") { t in
                t.column("user", .text).primaryKey()
                t.column("vector", .blob).notNull()
                t.column("items", .text).notNull()
            }
            try db.create(table: "models") { t in
                t.column("run_id", .text).notNull()
                t.column("version", .integer).notNull()
                t.column("publication", .blob).notNull()
                t.column("received_at", .double).notNull()
                t.primaryKey(["run_id", "version"])
            }
        }
        try migrator.migrate(queue)
    }

    public func settings() throws -> Settings {
        let values = try queue.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT key, value FROM settings").map { ($0["key"] as String, $0["value"] as String) })
        }
        return Settings(
            clientID: values["client_id"], coordinatorURL: values["coordinator_url"], caCertificate: values["ca_certificate"],
            enrolledAt: values["enrolled_at"].flatMap(Double.init), embedder: values["embedder"], dataDirectory: values["data_dir"],
            cacheDirectory: values["cache_dir"], rerankBlend: values["rerank_blend"].flatMap(Double.init),
            rerankGlobalWeight: values["rerank_global_weight"].flatMap(Double.init)
        )
    }

    public func save(_ settings: Settings) throws {
        try queue.write { db in
            let pairs: [(String, String?)] = [
                ("client_id", settings.clientID), ("coordinator_url", settings.coordinatorURL), ("ca_certificate", settings.caCertificate),
                ("enrolled_at", settings.enrolledAt.map { "\($0)" }), ("embedder", settings.embedder), ("data_dir", settings.dataDirectory),
                ("cache_dir", settings.cacheDirectory), ("rerank_blend", settings.rerankBlend.map { "\($0)" }),
                ("rerank_global_weight", settings.rerankGlobalWeight.map { "\($0)" }),
            ]
            for (key, value) in pairs {
                if let value {
                    try db.execute(sql: "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", arguments: [key, value])
                } else {
                    try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [key])
                }
            }
        }
    }

    /// Replaces the stored users with this load (one transaction: a reader sees the old set or the new).
    public func replaceUsers(ids: [String], points: Matrix, items: [[String]]) throws {
        let encoder = JSONEncoder()
        try queue.write { db in
            try db.execute(sql: "DELETE FROM users")
            for (u, id) in ids.enumerated() {
                let vector = points.row(u).withUnsafeBytes { Data($0) }
                let list = String(decoding: try encoder.encode(items[u]), as: UTF8.self)
                try db.execute(sql: "INSERT INTO users (user, vector, items) VALUES (?, ?, ?)", arguments: [id, vector, list])
            }
        }
    }

    public func users() throws -> [User] {
        try queue.read { db in try Row.fetchAll(db, sql: "SELECT user, vector, items FROM users ORDER BY user").map(Self.user) }
    }

    public func user(_ id: String) throws -> User? {
        try queue.read { db in try Row.fetchOne(db, sql: "SELECT user, vector, items FROM users WHERE user = ?", arguments: [id]).map(Self.user) }
    }

    static func user(_ row: Row) throws -> User {
        let vector = (row["vector"] as Data).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return User(id: row["user"], vector: vector, items: try JSONDecoder().decode([String].self, from: Data((row["items"] as String).utf8)))
    }

    /// Keeps a received model (a model already kept is left as it is).
    public func keep(runID: String, version: Int, publication: [UInt8], at time: Double) throws {
        try queue.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO models (run_id, version, publication, received_at) VALUES (?, ?, ?, ?)",
                arguments: [runID, version, Data(publication), time]
            )
        }
    }

    /// Every kept model, latest received first.
    public func models() throws -> [StoredModel] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM models ORDER BY received_at DESC, version DESC").map { row in
                StoredModel(runID: row["run_id"], version: row["version"], publication: [UInt8](row["publication"] as Data), receivedAt: row["received_at"])
            }
        }
    }
}
