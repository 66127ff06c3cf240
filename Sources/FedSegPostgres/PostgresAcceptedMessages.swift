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
/// A batch is one serialisable transaction. Two processes that record answers of one client to
/// one round at once conflict on the rows they read, and the server aborts one of them
/// (`40001`), which runs again and then finds the other's record. Only a batch that carries a
/// charge takes the ledger's lock, so batches without one (all but the round's first) run side by
/// side in every process.
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
                kind smallint NOT NULL, accepted_at double precision NOT NULL, envelope bytea,
                PRIMARY KEY (client_id, round, kind))
            """,
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
        return try await database.transaction("recording accepted updates", locking: charge == nil ? nil : .ledger) { connection in
            var rejections: [UpdateIntake.Rejection?] = []
            rejections.reserveCapacity(messages.count)
            for message in messages {
                let round = Int64(bitPattern: message.round)
                let kind = Int16(message.kind)
                let answers = UpdateIntake.answerKinds.contains(message.kind) ? UpdateIntake.answerKinds.map(Int16.init) : [kind]
                let earlier = try await PostgresPrivacyLedger.first(
                    connection,
                    "SELECT kind FROM accepted_messages WHERE client_id = \(message.clientID) AND round = \(round) AND kind = ANY(\(answers)) LIMIT 1",
                    Int16.self, logger: logger
                )
                if let earlier {
                    rejections.append(
                        earlier == kind
                            ? .replay(client: message.clientID, round: message.round)
                            : .alreadyAnswered(client: message.clientID, round: message.round, earlier: UInt8(earlier))
                    )
                    continue
                }
                try await connection.query(
                    """
                    INSERT INTO accepted_messages (client_id, round, kind, accepted_at, envelope)
                    VALUES (\(message.clientID), \(round), \(kind), \(now.timeIntervalSince1970), \(ByteBuffer(bytes: message.envelope)))
                    """,
                    logger: logger
                )
                rejections.append(nil)
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
