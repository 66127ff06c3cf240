import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Which coordinator process leads: closes rounds and runs secure-aggregation stages, while every
/// process accepts updates. One leader at a time, through a PostgreSQL session advisory lock held
/// on a connection of its own; when the leader's process dies (kill -9, a crash, its machine
/// lost), the server ends that session and the lock is free for the next process to take.
///
/// Each taking of the lease is a term with a new epoch, recorded in `coordinator_leader`. A
/// leader's writes check its epoch inside their own transaction (`requireLeadership`), so a
/// process that lost the lease without noticing (its lease connection cut, the process paused)
/// cannot commit over the new leader's work: the fencing token of Kleppmann's "How to do
/// distributed locking", with the database as the resource that checks it.
public final class PostgresLeaderLease: Sendable {
    /// One holding of the lease.
    public struct Term: Sendable, Equatable, CustomStringConvertible {
        public var epoch: Int64
        public var holder: String

        public init(epoch: Int64, holder: String) {
            self.epoch = epoch
            self.holder = holder
        }

        public var description: String { "term \(epoch) of \(holder)" }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The caller's term is over: another process leads now.
        case notLeader(mine: Int64, current: Int64, holder: String)

        public var description: String {
            switch self {
            case .notLeader(let mine, let current, let holder):
                "this process's leadership (term \(mine)) has ended: term \(current) belongs to \(holder); it must not close rounds or run secure-aggregation stages"
            }
        }
    }

    public let holder: String
    let database: PostgresStore
    let connection: PostgresConnection
    /// The server process of the lease's session, which `pg_locks` names as the lock's holder.
    let backendPID: Int32
    let logger: Logger
    let term = Mutex<Term?>(nil)

    static let migrations: [PostgresStore.Migration] = [
        .init("coordinator-leader-v1", [
            """
            CREATE TABLE coordinator_leader (
                id integer PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL, holder text NOT NULL, acquired_at timestamptz NOT NULL)
            """,
            "INSERT INTO coordinator_leader (id, epoch, holder, acquired_at) VALUES (1, 0, '', now())",
        ])
    ]

    /// Opens the lease's own connection for process `holder` (a name operators recognise, such as
    /// host and pid); takes nothing yet.
    public static func open(_ database: PostgresStore, holder: String, logger: Logger = Logger(label: "fedseg.leader")) async throws -> PostgresLeaderLease {
        try await database.migrate(migrations)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: database.location.connectionConfiguration, id: 1, logger: logger)
        } catch {
            throw PostgresStoreError.unreachable(database.location.description, why: PostgresStoreError.describe(error))
        }
        if case .tcp = database.location.endpoint {
            // A leader whose machine is lost sends no FIN: keepalives end its session, and free
            // the lease, within about 10 + 3 × 5 = 25 s instead of the kernel's two hours.
            for setting in ["SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3"] {
                try await connection.query(PostgresQuery(unsafeSQL: setting), logger: logger)
            }
        }
        var backendPID: Int32 = 0
        for try await pid in try await connection.query("SELECT pg_backend_pid()", logger: logger).decode(Int32.self) { backendPID = pid }
        return PostgresLeaderLease(holder: holder, database: database, connection: connection, backendPID: backendPID, logger: logger)
    }

    /// A lease dropped without `close()` (an early return, a thrown error) still closes its
    /// connection; the callback holds the connection until the close completes.
    deinit {
        let connection = connection
        guard !connection.isClosed else { return }
        let closing: EventLoopFuture<Void> = connection.close()
        closing.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    init(holder: String, database: PostgresStore, connection: PostgresConnection, backendPID: Int32, logger: Logger) {
        self.holder = holder
        self.database = database
        self.connection = connection
        self.backendPID = backendPID
        self.logger = logger
    }

    /// Takes the lease if no other process holds it: the new term, or nil. Taking it again while
    /// holding it returns the same term.
    public func tryAcquire() async throws -> Term? {
        if let held = term.withLock({ $0 }) { return held }
        // A connection the server ended does not answer: a lease that lost it is replaced, not reused.
        guard !connection.isClosed else {
            throw PostgresStoreError.failed("taking the leader lease", why: "the lease's connection was lost: open a new lease")
        }
        do {
            let rows = try await connection.query("SELECT pg_try_advisory_lock(\(PostgresStore.Lock.leader.rawValue))", logger: logger)
            var taken = false
            for try await value in rows.decode(Bool.self) { taken = value }
            guard taken else { return nil }
            do {
                try await connection.query("BEGIN", logger: logger)
                let bumped = try await connection.query(
                    "UPDATE coordinator_leader SET epoch = epoch + 1, holder = \(holder), acquired_at = now() WHERE id = 1 RETURNING epoch",
                    logger: logger
                )
                var epoch: Int64?
                for try await value in bumped.decode(Int64.self) { epoch = value }
                try await connection.query("COMMIT", logger: logger)
                guard let epoch else { throw PostgresStoreError.failed("taking the leader lease", why: "the coordinator_leader row is missing") }
                let new = Term(epoch: epoch, holder: holder)
                term.withLock { $0 = new }
                logger.info("leader lease taken", metadata: ["term": "\(epoch)", "holder": "\(holder)"])
                return new
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(PostgresStore.Lock.leader.rawValue))", logger: logger)
                throw error
            }
        } catch let error as PSQLError {
            throw PostgresStoreError.failed("taking the leader lease", why: PostgresStoreError.describe(error))
        }
    }

    /// Gives the lease up (a graceful stop); the next process to ask takes it at once.
    public func release() async throws {
        guard term.withLock({ $0 }) != nil else { return }
        term.withLock { $0 = nil }
        do {
            try await connection.query("SELECT pg_advisory_unlock(\(PostgresStore.Lock.leader.rawValue))", logger: logger)
        } catch {
            throw PostgresStoreError.failed("releasing the leader lease", why: PostgresStoreError.describe(error))
        }
    }

    /// Closes the lease's connection: the server frees the lease with the session. Every lease
    /// must be closed before it goes away.
    public func close() async {
        term.withLock { $0 = nil }
        try? await connection.close()
    }

    /// Whether this process still leads: the lease's session still holds the lock and the
    /// recorded term is its own. Asked through the pool, not the lease's connection, which may be
    /// the thing that was lost; a lost lease ends the local term too (open a new lease to ask again).
    public func stillLeads() async -> Bool {
        guard let mine = currentTerm else { return false }
        let key = PostgresStore.Lock.leader.rawValue
        let pid = backendPID
        do {
            let leads = try await database.read("checking the leader lease") { [logger] connection in
                let rows = try await connection.query(
                    """
                    SELECT EXISTS (SELECT 1 FROM coordinator_leader WHERE id = 1 AND epoch = \(mine.epoch))
                       AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = \(pid)
                                   AND ((classid::bigint << 32) | objid::bigint) = \(key))
                    """,
                    logger: logger
                )
                var leads = false
                for try await value in rows.decode(Bool.self) { leads = value }
                return leads
            }
            if leads { return true }
        } catch {
            logger.warning("could not check the leader lease", metadata: ["term": "\(mine.epoch)", "error": "\(error)"])
        }
        logger.warning("leader lease lost", metadata: ["term": "\(mine.epoch)"])
        term.withLock { $0 = nil }
        return false
    }

    /// The term this process holds, as it last knew it.
    public var currentTerm: Term? { term.withLock { $0 } }

    /// The term recorded in the database: who leads now.
    public static func recordedTerm(_ database: PostgresStore) async throws -> Term {
        try await database.read("reading the leader lease") { connection in
            let rows = try await connection.query("SELECT epoch, holder FROM coordinator_leader WHERE id = 1", logger: database.logger)
            for try await (epoch, holder) in rows.decode((Int64, String).self) { return Term(epoch: epoch, holder: holder) }
            throw PostgresStoreError.failed("reading the leader lease", why: "the coordinator_leader row is missing")
        }
    }

    /// Inside a leader's write transaction: throws `notLeader` unless `term` is still the recorded
    /// one. The row is read `FOR SHARE`, so a new leader's taking of the lease waits for this
    /// transaction to end and every write it fences is ordered before the new term.
    public static func requireLeadership(_ connection: PostgresConnection, term: Term, logger: Logger) async throws {
        let rows = try await connection.query("SELECT epoch, holder FROM coordinator_leader WHERE id = 1 FOR SHARE", logger: logger)
        var recorded: (Int64, String)?
        for try await row in rows.decode((Int64, String).self) { recorded = row }
        guard let recorded, recorded.0 == term.epoch else {
            throw Failure.notLeader(mine: term.epoch, current: recorded?.0 ?? 0, holder: recorded?.1 ?? "nobody")
        }
    }
}
