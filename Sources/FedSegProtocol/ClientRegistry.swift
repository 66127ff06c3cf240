import FedSegCrypto
import FedSegMath
import Foundation
import GRDB
import Synchronization

/// Who may send updates: one-time, expiring enrollment tokens (stored only as SHA-256 hashes),
/// enrolled clients with their public keys and status, and the (client, round, kind) triples
/// already accepted, so a replay is refused. SQLite through GRDB; the coordinator's database.
public final class ClientRegistry: Sendable {
    public let database: any DatabaseWriter
    /// Enrolled clients as the intake reads them, by id: two SQLite reads per message had been
    /// a tenth of the intake. Every write that changes a client's keys or status goes through
    /// this registry and drops its entry after committing; `generation` stops a read that
    /// began before such a write from caching what it read.
    private let senders = Mutex<(generation: UInt64, clients: [String: Client])>((0, [:]))
    static let sendersCapacity = 1 << 20

    public struct Client: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "clients"
        public var id: String
        public var signingKey: Data
        public var kxKey: Data
        public var status: ClientStatus
        public var enrolledAt: Double
        /// Enrolment, a poll for the open round that names the client, or an accepted message.
        public var lastSeenAt: Double

        enum CodingKeys: String, CodingKey {
            case id, status
            case signingKey = "signing_key"
            case kxKey = "kx_key"
            case enrolledAt = "enrolled_at"
            case lastSeenAt = "last_seen_at"
        }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case badToken
        case tokenExpired
        case tokenUsed
        case clientExists(String)
        case unknownClient(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .badToken: "enrollment token is not valid"
            case .tokenExpired: "enrollment token has expired"
            case .tokenUsed: "enrollment token was already used"
            case .clientExists(let id): "client \(id) is already enrolled"
            case .unknownClient(let id): "no client \(id)"
            case .invalid(let why): why
            }
        }
    }

    /// On the coordinator's database (`CoordinatorStore`), or an in-memory queue in tests.
    public init(database: any DatabaseWriter) throws {
        self.database = database
        var migrator = DatabaseMigrator()
        migrator.registerMigration("client-registry-v1") { db in
            try db.create(table: "enrollment_tokens") { t in
                t.column("hash", .text).primaryKey()
                t.column("expires_at", .double).notNull()
                t.column("used_at", .double)
                t.column("used_by", .text)
            }
            try db.create(table: Client.databaseTableName) { t in
                t.column("id", .text).primaryKey()
                t.column("signing_key", .blob).notNull()
                t.column("kx_key", .blob).notNull()
                t.column("status", .text).notNull()
                t.column("enrolled_at", .double).notNull()
            }
            try db.create(table: "accepted_messages") { t in
                t.column("client_id", .text).notNull()
                t.column("round", .integer).notNull()
                t.column("kind", .integer).notNull()
                t.column("accepted_at", .double).notNull()
                t.primaryKey(["client_id", "round", "kind"])
            }
        }
        // The sealed envelope of an accepted message, kept until its round commits.
        migrator.registerMigration("client-registry-v2") { db in
            try db.alter(table: "accepted_messages") { t in t.add(column: "envelope", .blob) }
        }
        // Liveness: when each client was last seen, so rounds wait only for clients that are there.
        migrator.registerMigration("client-registry-v3-liveness") { db in
            try db.alter(table: Client.databaseTableName) { t in t.add(column: "last_seen_at", .double).notNull().defaults(to: 0) }
            try db.execute(sql: "UPDATE clients SET last_seen_at = enrolled_at")
        }
        // Where the coordinator keeps an accepted envelope outside the row: a byte range of its
        // round's envelope log.
        migrator.registerMigration("client-registry-v4-envelope-log") { db in
            try db.alter(table: "accepted_messages") { t in
                t.add(column: "envelope_offset", .integer)
                t.add(column: "envelope_length", .integer)
            }
        }
        try migrator.migrate(database)
    }

    /// A new one-time token, valid for `lifetime` seconds. Only its hash is stored.
    public func createToken(lifetime: TimeInterval = 3600, now: Date = Date()) throws -> String {
        try createTokens(count: 1, lifetime: lifetime, now: now)[0]
    }

    /// `count` new one-time tokens in one transaction (one wait for the disk, not one per token:
    /// 10,000 tokens had taken 10,000 fsyncs).
    public func createTokens(count: Int, lifetime: TimeInterval = 3600, now: Date = Date()) throws -> [String] {
        let tokens = (0..<count).map { _ in
            var bytes = [UInt8](repeating: 0, count: 32)
            bytes.withUnsafeMutableBytes { SecureRandom.fill($0) }
            return bytes.hexString
        }
        try database.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO enrollment_tokens (hash, expires_at) VALUES (?, ?)")
            for token in tokens { try insert.execute(arguments: [Self.hash(token), now.timeIntervalSince1970 + lifetime]) }
        }
        return tokens
    }

    /// Enrolls with a token (validated request); the token is spent in the same transaction. The
    /// same request again is a success that changes nothing (a retry after a lost answer).
    public func enroll(_ request: Fedseg_V1_EnrollRequest, now: Date = Date()) throws {
        try request.validate()
        defer { forget(request.clientID) }
        try database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT expires_at, used_at, used_by FROM enrollment_tokens WHERE hash = ?", arguments: [Self.hash(request.token)]) else {
                throw Failure.badToken
            }
            if (row["used_at"] as Double?) != nil {
                // The same enrolment again (its answer was lost to a crash or a network error):
                // the token was spent on this id with these keys, so it succeeds again, changing
                // nothing. Anything else with a spent token is refused.
                if (row["used_by"] as String?) == request.clientID, let client = try Client.fetchOne(db, key: request.clientID),
                    client.status == .active, client.signingKey == request.signingPublicKey, client.kxKey == request.kxPublicKey
                {
                    return
                }
                throw Failure.tokenUsed
            }
            guard (row["expires_at"] as Double) > now.timeIntervalSince1970 else { throw Failure.tokenExpired }
            guard try Client.fetchOne(db, key: request.clientID) == nil else { throw Failure.clientExists(request.clientID) }
            try Client(
                id: request.clientID, signingKey: request.signingPublicKey, kxKey: request.kxPublicKey, status: .active,
                enrolledAt: now.timeIntervalSince1970, lastSeenAt: now.timeIntervalSince1970
            ).insert(db)
            try db.execute(
                sql: "UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE hash = ?",
                arguments: [now.timeIntervalSince1970, request.clientID, Self.hash(request.token)]
            )
        }
    }

    /// The operator adds a client's public keys directly (no token).
    public func add(id: String, signingKey: Signing.PublicKey, kxKey: KeyAgreement.PublicKey, now: Date = Date()) throws {
        guard !id.isEmpty, id.utf8.count <= 64 else { throw Failure.invalid("client id must be 1 to 64 bytes") }
        defer { forget(id) }
        try database.write { db in
            guard try Client.fetchOne(db, key: id) == nil else { throw Failure.clientExists(id) }
            try Client(id: id, signingKey: Data(signingKey.bytes), kxKey: Data(kxKey.bytes), status: .active, enrolledAt: now.timeIntervalSince1970, lastSeenAt: now.timeIntervalSince1970).insert(db)
        }
    }

    /// Revocation applies to the next message: every intake looks the status up.
    public func revoke(id: String) throws {
        defer { forget(id) }
        try database.write { db in
            guard var client = try Client.fetchOne(db, key: id) else { throw Failure.unknownClient(id) }
            client.status = .revoked
            try client.update(db)
        }
    }

    /// Records when clients were seen (batched: a poll is not a write); a time never moves back.
    public func markSeen(_ seen: [String: Double]) throws {
        guard !seen.isEmpty else { return }
        try database.write { db in
            for (id, at) in seen {
                try db.execute(sql: "UPDATE clients SET last_seen_at = MAX(last_seen_at, ?) WHERE id = ?", arguments: [at, id])
            }
        }
    }

    /// Active clients seen at or after `since`, in id order.
    public func liveClientIDs(seenSince since: Double) throws -> [String] {
        try database.read { db in
            try String.fetchAll(
                db, sql: "SELECT id FROM clients WHERE status = ? AND last_seen_at >= ? ORDER BY id", arguments: [ClientStatus.active, since]
            )
        }
    }

    public func clients() throws -> [Client] {
        try database.read { db in try Client.order(Column("id")).fetchAll(db) }
    }

    /// Whether a (client, round, kind) message was accepted (it is then a replay, whatever the round's state).
    public func wasAccepted(clientID: String, round: UInt64, kind: UInt8) throws -> Bool {
        try database.read { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM accepted_messages WHERE client_id = ? AND round = ? AND kind = ?",
                arguments: [clientID, Int64(bitPattern: round), Int(kind)]
            ) ?? 0 > 0
        }
    }

    public func client(_ id: String) throws -> Client? {
        // A cached statement: the query interface compiles and authorises its SQL on every call,
        // most of a look-up's CPU (a client's first message of a process pays one).
        try database.read { db in try Client.fetchOne(db.cachedStatement(sql: "SELECT * FROM clients WHERE id = ?"), arguments: [id]) }
    }

    /// The client as the intake needs it (keys and status), from memory after the first read.
    /// Its `lastSeenAt` is as of that read: use `client(_:)` for anything that shows it.
    public func sender(_ id: String) throws -> Client? {
        let (cached, generation) = senders.withLock { ($0.clients[id], $0.generation) }
        if let cached { return cached }
        guard let client = try client(id) else { return nil }
        senders.withLock { state in
            guard state.generation == generation else { return }
            if state.clients.count >= Self.sendersCapacity { state.clients.removeAll(keepingCapacity: true) }
            state.clients[id] = client
        }
        return client
    }

    /// Drops a client's cached entry (after a write that changed it).
    func forget(_ id: String) {
        senders.withLock { state in
            state.generation &+= 1
            state.clients[id] = nil
        }
    }

    static func hash(_ token: String) -> String { SHA256.hash(Data(token.utf8)).hex }
}

