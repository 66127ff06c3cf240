import Foundation
import Logging
import PostgresNIO

/// Where a PostgreSQL database is, from a `postgres://` URL as libpq writes them:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or a Unix socket directory as the `host`
/// query parameter (`postgres://fedseg@localhost/fedseg?host=/run/postgresql`).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The server's socket directory; the socket is `.s.PGSQL.<port>` in it.
        case socket(directory: String, port: Int)
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String

    public init(endpoint: Endpoint, user: String, password: String? = nil, database: String) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
    }

    /// Parses a URL; the error names what is wrong and the form expected.
    public init(url text: String) throws {
        let expected = "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or ?host=/socket/directory for a Unix socket"
        guard let components = URLComponents(string: text), let scheme = components.scheme,
              scheme == "postgres" || scheme == "postgresql"
        else { throw PostgresStoreError.invalidURL(text, why: expected) }
        guard let user = components.user, !user.isEmpty else { throw PostgresStoreError.invalidURL(text, why: "no user: \(expected)") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw PostgresStoreError.invalidURL(text, why: "no database name: \(expected)")
        }
        let port = components.port ?? 5432
        if let socket = components.queryItems?.first(where: { $0.name == "host" })?.value, socket.hasPrefix("/") {
            endpoint = .socket(directory: socket, port: port)
        } else if let host = components.host, !host.isEmpty {
            endpoint = .tcp(host: host, port: port)
        } else {
            throw PostgresStoreError.invalidURL(text, why: "no host: \(expected)")
        }
        self.user = user
        self.password = components.password
        self.database = database
    }

    /// The URL without its password, for logs and errors.
    public var description: String {
        switch endpoint {
        case .tcp(let host, let port): "postgres://\(user)@\(host):\(port)/\(database)"
        case .socket(let directory, let port): "postgres://\(user)@localhost:\(port)/\(database)?host=\(directory)"
        }
    }

    var connectionConfiguration: PostgresConnection.Configuration {
        switch endpoint {
        case .tcp(let host, let port):
            PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: .disable)
        case .socket(let directory, let port):
            PostgresConnection.Configuration(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
    }

    var clientConfiguration: PostgresClient.Configuration {
        switch endpoint {
        case .tcp(let host, let port):
            // Loopback and private networks; TLS to the database is not configured by FedSeg yet.
            PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: .disable)
        case .socket(let directory, let port):
            PostgresClient.Configuration(
                unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: password, database: database
            )
        }
    }
}

public enum PostgresStoreError: Error, CustomStringConvertible, Equatable {
    case invalidURL(String, why: String)
    case unreachable(String, why: String)
    case failed(String, why: String)

    public var description: String {
        switch self {
        case .invalidURL(let url, let why): "invalid database URL \(url): \(why)"
        case .unreachable(let location, let why):
            "cannot reach PostgreSQL at \(location) (\(why)): check that the server runs and that the URL's host, port, user and database are right"
        case .failed(let what, let why): "\(what) failed in PostgreSQL: \(why)"
        }
    }

    /// What a person can act on from a postgres-nio error: the server's SQLSTATE and message,
    /// never the library's internals.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let info = error.serverInfo {
                return "\(info[.sqlState] ?? "?"): \(info[.message] ?? "no message")"
            }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        if let error = error as? PostgresTransactionError {
            return describe(error.closureError ?? error.commitError ?? error.beginError ?? error.rollbackError ?? error)
        }
        return String(describing: error)
    }
}

/// A pool of connections to one PostgreSQL database, serialisable transactions that are retried
/// when the server aborts one to keep them serialisable, and the schema's migrations.
///
/// Several coordinator processes may share the database: every write that must see the latest
/// state of a chain (the privacy ledger) runs serialisable under an advisory lock named by that
/// chain, so writers queue instead of aborting each other, and an abort that still happens
/// (`40001`, `40P01`) runs the transaction again from its start.
public final class PostgresStore: Sendable {
    public let location: PostgresLocation
    public let client: PostgresClient
    let logger: Logger
    let runner: Task<Void, Never>

    /// Advisory locks FedSeg takes, one number each (`pg_advisory_lock(bigint)`), the same in every process.
    public enum Lock: Int64, Sendable {
        case migrations = 0x6665_6473_6567_0001
        case ledger = 0x6665_6473_6567_0002
        case leader = 0x6665_6473_6567_0003
    }

    /// Connects (the first connection is made here, so a wrong URL or a stopped server is an
    /// error now, not at the first charge).
    public static func open(
        _ location: PostgresLocation, maximumConnections: Int = 20, logger: Logger = Logger(label: "fedseg.postgres")
    ) async throws -> PostgresStore {
        var configuration = location.clientConfiguration
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        // One direct connection first: the pool retries a failed connect in the background and
        // would leave the caller waiting, where this fails at once with the server's reason.
        do {
            let probe = try await PostgresConnection.connect(configuration: location.connectionConfiguration, id: 0, logger: logger)
            try await probe.close()
        } catch {
            throw PostgresStoreError.unreachable(location.description, why: PostgresStoreError.describe(error))
        }
        return PostgresStore(location: location, client: PostgresClient(configuration: configuration), logger: logger)
    }

    init(location: PostgresLocation, client: PostgresClient, logger: Logger) {
        self.location = location
        self.client = client
        self.logger = logger
        runner = Task { await client.run() }
    }

    /// Closes every connection.
    public func close() { runner.cancel() }

    deinit { runner.cancel() }

    /// Runs `body` in one serialisable transaction, again from the start when the server aborts
    /// it for serialisation (at most `attempts` times); a database error names `purpose`. With
    /// `lock`, the transaction runs while this connection holds that advisory lock, taken before
    /// `BEGIN` so that the transaction's snapshot already sees the previous holder's commit.
    public func transaction<Result: Sendable>(
        _ purpose: String, isolation: Isolation = .serializable, locking lock: Lock? = nil, attempts: Int = 20,
        _ body: @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        var attempt = 1
        while true {
            do {
                return try await client.withConnection { connection in
                    try await Self.run(connection, isolation: isolation, locking: lock, logger: logger, body)
                }
            } catch let error as PSQLError where Self.isSerializationFailure(error) && attempt < attempts {
                attempt += 1
                // Back off a little, with jitter, so two writers that collided do not collide again.
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
            } catch let error as PSQLError {
                throw PostgresStoreError.failed(purpose, why: PostgresStoreError.describe(error))
            }
        }
    }

    /// How a transaction sees others. `readCommitted` suits writes whose every rule is a unique
    /// constraint (a concurrent insert of the same key waits, then conflicts); rules that read
    /// before they write (a budget check) need `serializable`.
    public enum Isolation: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case serializable = "SERIALIZABLE"
    }

    static func run<Result: Sendable>(
        _ connection: PostgresConnection, isolation: Isolation, locking lock: Lock?, logger: Logger,
        _ body: @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        if let lock { try await connection.query("SELECT pg_advisory_lock(\(lock.rawValue))", logger: logger) }
        do {
            try await connection.query(PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL \(isolation.rawValue)"), logger: logger)
            let result: Result
            do {
                result = try await body(connection)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
            try await connection.query("COMMIT", logger: logger)
            if let lock { try await connection.query("SELECT pg_advisory_unlock(\(lock.rawValue))", logger: logger) }
            return result
        } catch {
            if let lock { _ = try? await connection.query("SELECT pg_advisory_unlock(\(lock.rawValue))", logger: logger) }
            throw error
        }
    }

    static func isSerializationFailure(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }

    /// One read-only statement sequence in a transaction of its own (a consistent snapshot).
    public func read<Result: Sendable>(_ purpose: String, _ body: @Sendable (PostgresConnection) async throws -> Result) async throws -> Result {
        do {
            return try await client.withConnection { connection in
                try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    let result = try await body(connection)
                    try await connection.query("COMMIT", logger: logger)
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch let error as PSQLError {
            throw PostgresStoreError.failed(purpose, why: PostgresStoreError.describe(error))
        }
    }

    /// A named schema step: its statements run once in one transaction, under the migrations
    /// lock, so processes that start together against a new database do not race.
    public struct Migration: Sendable {
        public var name: String
        public var statements: [String]

        public init(_ name: String, _ statements: [String]) {
            self.name = name
            self.statements = statements
        }
    }

    public func migrate(_ migrations: [Migration]) async throws {
        do {
            try await client.withConnection { connection in
                try await connection.query("BEGIN", logger: logger)
                do {
                    try await connection.query("SELECT pg_advisory_xact_lock(\(Lock.migrations.rawValue))", logger: logger)
                    try await connection.query(
                        "CREATE TABLE IF NOT EXISTS fedseg_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                        logger: logger
                    )
                    var applied: Set<String> = []
                    for try await name in try await connection.query("SELECT name FROM fedseg_migrations", logger: logger).decode(String.self) {
                        applied.insert(name)
                    }
                    for migration in migrations where !applied.contains(migration.name) {
                        for statement in migration.statements {
                            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        try await connection.query("INSERT INTO fedseg_migrations (name) VALUES (\(migration.name))", logger: logger)
                    }
                    try await connection.query("COMMIT", logger: logger)
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch {
            throw PostgresStoreError.failed("creating or updating FedSeg's tables", why: PostgresStoreError.describe(error))
        }
    }
}
