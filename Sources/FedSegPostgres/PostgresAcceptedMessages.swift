import FedSegPrivacy
import FedSegProtocol
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The intake's durable step on PostgreSQL, for coordinator processes that all accept updates:
/// each accepted message's replay record and its sealed envelope (kept in the row until its round
/// ends, where the SQLite store keeps it in a local `EnvelopeLog` file that other processes could
/// not read), with the round's charge when a batch reveals the round's data. The replay rules are
/// `UpdateIntake`'s: the same message twice is a `replay`, a second answer to a round is
/// `alreadyAnswered`, within a batch and across processes.
///
/// The rules are unique constraints, not reads: the primary key refuses the same message twice,
/// and a partial unique index on (client, round) over answer kinds refuses a second answer. A
/// batch is one multi-row `INSERT … ON CONFLICT DO NOTHING` (READ COMMITTED): when two processes
/// insert the same key at once the second waits for the first to commit and then skips the row,
/// so processes never abort each other; what was skipped is then read back to say why. A batch
/// that carries the round's charge runs serialisable under the ledger's lock instead, with the
/// charge in the same transaction.
public final class PostgresAcceptedMessages: Sendable {
    public let database: PostgresStore

    /// One message to record.
    public struct Message: Sendable {
        public var clientID: String
        public var round: UInt64
        public var kind: UInt8
        public var envelope: [UInt8]
        /// Whether recording it reveals the round's data to the aggregate (so the round's charge
        /// is made with it).
        public var reveals: Bool

        public init(clientID: String, round: UInt64, kind: UInt8, envelope: [UInt8], reveals: Bool) {
            self.clientID = clientID
            self.round = round
            self.kind = kind
            self.envelope = envelope
            self.reveals = reveals
        }
    }

    /// The charge a round owes once it reveals data: made once, whichever process gets there first.
    public struct Charge: Sendable {
        public var releaseID: String
        public var round: Int64
        public var mechanism: PrivacyLedger.Mechanism
        public var populations: [String]

        public init(releaseID: String, round: Int64, mechanism: PrivacyLedger.Mechanism, populations: [String]) {
            self.releaseID = releaseID
            self.round = round
            self.mechanism = mechanism
            self.populations = populations
        }
    }

    static let migrations: [PostgresStore.Migration] = [
        .init("accepted-messages-v1", [
            // `position` keeps acceptance order, which the round's recovery replays.
            """
            CREATE TABLE accepted_messages (
                position bigint GENERATED ALWAYS AS IDENTITY, client_id text NOT NULL, round bigint NOT NULL,
                kind smallint NOT NULL, answer boolean NOT NULL, accepted_at double precision NOT NULL, envelope bytea,
                PRIMARY KEY (client_id, round, kind))
            """,
            // Sealed envelopes do not compress: stored out of line without pglz's attempt.
            "ALTER TABLE accepted_messages ALTER COLUMN envelope SET STORAGE EXTERNAL",
            "CREATE UNIQUE INDEX accepted_messages_one_answer ON accepted_messages (client_id, round) WHERE answer",
            "CREATE INDEX accepted_messages_round ON accepted_messages (round, position)",
        ])
    ]

    /// Opens the store in `database` (its tables and the ledger's are created if missing).
    public init(database: PostgresStore) async throws {
        self.database = database
        try await database.migrate(PostgresPrivacyLedger.migrations + Self.migrations)
    }

    /// Records `messages` in order, all in one transaction with `charge` when given and when a
    /// recorded message reveals its round (a charge already in the ledger is not made again).
    /// Returns a rejection for each message the replay rules refuse (nothing written for it),
    /// nil for each recorded, and whether this call made the charge.
    public func accept(_ messages: [Message], charge: Charge?, now: Date = Date()) async throws -> (rejections: [UpdateIntake.Rejection?], charged: Bool) {
        let logger = database.logger
        // Within the batch, the first message of a key wins, as if the batch were recorded in order.
        var rejections = [UpdateIntake.Rejection?](repeating: nil, count: messages.count)
        var firstKind: [String: UInt8] = [:]
        var firstAnswer: [String: UInt8] = [:]
        for (index, message) in messages.enumerated() {
            let pair = "\(message.round) \(message.clientID)"
            let isAnswer = UpdateIntake.answerKinds.contains(message.kind)
            if firstKind["\(pair) \(message.kind)"] != nil {
                rejections[index] = .replay(client: message.clientID, round: message.round)
            } else if isAnswer, let earlier = firstAnswer[pair] {
                rejections[index] = .alreadyAnswered(client: message.clientID, round: message.round, earlier: earlier)
            } else {
                firstKind["\(pair) \(message.kind)"] = message.kind
                if isAnswer { firstAnswer[pair] = message.kind }
            }
        }
        let candidates = messages.indices.filter { rejections[$0] == nil }
        let inBatch = rejections
        let isolation: PostgresStore.Isolation = charge == nil ? .readCommitted : .serializable
        return try await database.transaction("recording accepted updates", isolation: isolation, locking: charge == nil ? nil : .ledger) { connection in
            var rejections = inBatch
            let clients = candidates.map { messages[$0].clientID }
            let rounds = candidates.map { Int64(bitPattern: messages[$0].round) }
            let kinds = candidates.map { Int16(messages[$0].kind) }
            let answers = candidates.map { UpdateIntake.answerKinds.contains(messages[$0].kind) }
            let times = [Double](repeating: now.timeIntervalSince1970, count: candidates.count)
            let envelopes = candidates.map { ByteBuffer(bytes: messages[$0].envelope) }
            let inserted = try await connection.query(
                """
                INSERT INTO accepted_messages (client_id, round, kind, answer, accepted_at, envelope)
                SELECT * FROM unnest(\(clients)::text[], \(rounds)::bigint[], \(kinds)::smallint[], \(answers)::boolean[],
                                     \(times)::double precision[], \(envelopes)::bytea[])
                ON CONFLICT DO NOTHING
                RETURNING client_id, round, kind
                """,
                logger: logger
            )
            var recorded: Set<String> = []
            for try await (client, round, kind) in inserted.decode((String, Int64, Int16).self) { recorded.insert("\(round) \(client) \(kind)") }
            let skipped = candidates.filter { !recorded.contains("\(Int64(bitPattern: messages[$0].round)) \(messages[$0].clientID) \(messages[$0].kind)") }
            if !skipped.isEmpty {
                // Recorded before (by this process or another): say which rule refused each.
                let rows = try await connection.query(
                    """
                    SELECT client_id, round, kind, answer FROM accepted_messages
                    WHERE (client_id, round) IN (SELECT * FROM unnest(\(skipped.map { messages[$0].clientID })::text[],
                                                                      \(skipped.map { Int64(bitPattern: messages[$0].round) })::bigint[]))
                    """,
                    logger: logger
                )
                var kinds: [String: Set<Int16>] = [:]
                var answers: [String: Int16] = [:]
                for try await (client, round, kind, answer) in rows.decode((String, Int64, Int16, Bool).self) {
                    kinds["\(round) \(client)", default: []].insert(kind)
                    if answer { answers["\(round) \(client)"] = kind }
                }
                for index in skipped {
                    let message = messages[index]
                    let pair = "\(Int64(bitPattern: message.round)) \(message.clientID)"
                    if kinds[pair]?.contains(Int16(message.kind)) == true {
                        rejections[index] = .replay(client: message.clientID, round: message.round)
                    } else if let earlier = answers[pair] {
                        rejections[index] = .alreadyAnswered(client: message.clientID, round: message.round, earlier: UInt8(earlier))
                    } else {
                        throw PostgresStoreError.failed("recording accepted updates", why: "a message was neither recorded nor refused by a rule")
                    }
                }
            }
            guard let charge, zip(messages, rejections).contains(where: { $0.reveals && $1 == nil }) else { return (rejections, false) }
            let already = try await PostgresPrivacyLedger.first(
                connection, "SELECT EXISTS (SELECT 1 FROM privacy_ledger WHERE release_id = \(charge.releaseID))", Bool.self, logger: logger
            )
            guard already != true else { return (rejections, false) }
            try await PostgresPrivacyLedger.charge(
                connection, releaseID: charge.releaseID, round: charge.round, mechanism: charge.mechanism, populations: charge.populations,
                now: now, logger: logger
            )
            return (rejections, true)
        }
    }

    /// The envelopes `round` has accepted, in the order they were accepted (for a leader that
    /// resumes or closes the round, whichever process accepted them).
    public func envelopes(round: UInt64) async throws -> [[UInt8]] {
        try await database.read("reading a round's envelopes") { connection in
            let rows = try await connection.query(
                "SELECT envelope FROM accepted_messages WHERE round = \(Int64(bitPattern: round)) AND envelope IS NOT NULL ORDER BY position",
                logger: database.logger
            )
            var envelopes: [[UInt8]] = []
            for try await buffer in rows.decode(ByteBuffer.self) { envelopes.append(Array(buffer.readableBytesView)) }
            return envelopes
        }
    }

    /// Drops a finished round's envelopes; its replay records stay, so nothing is accepted twice.
    public func dropEnvelopes(round: UInt64) async throws {
        try await database.transaction("dropping a round's envelopes") { connection in
            _ = try await connection.query(
                "UPDATE accepted_messages SET envelope = NULL WHERE round = \(Int64(bitPattern: round))", logger: database.logger
            )
        }
    }
}
