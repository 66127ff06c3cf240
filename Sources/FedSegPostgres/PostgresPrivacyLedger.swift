import FedSegPrivacy
import Foundation
import Logging
import PostgresNIO

/// The privacy ledger in PostgreSQL, for coordinator processes that share one database: the same
/// records, budgets, hash chains and checks as `PrivacyLedger` (SQLite), from the same functions
/// (`PrivacyLedger.chargeRecord`, `budgetChange`, `validateCharge`), audited by the same
/// `LedgerAudit`.
///
/// Under concurrent writers each charge and budget change runs serialisable, under the ledger's
/// advisory lock: the budget check reads every record of the population that committed before it,
/// the chain's next record follows the newest committed one, and the primary key on `sequence`
/// refuses a second record at the same place should anything else write the table.
public final class PostgresPrivacyLedger: Sendable {
    public let database: PostgresStore
    typealias Record = PrivacyLedger.Record
    typealias Budget = PrivacyLedger.Budget
    typealias BudgetChange = PrivacyLedger.BudgetChange
    typealias Mechanism = PrivacyLedger.Mechanism

    static let migrations: [PostgresStore.Migration] = [
        .init("privacy-ledger-v1", [
            """
            CREATE TABLE privacy_budget (
                population text PRIMARY KEY, epsilon double precision NOT NULL, delta double precision NOT NULL)
            """,
            """
            CREATE TABLE privacy_ledger (
                sequence bigint PRIMARY KEY, release_id text NOT NULL, round bigint NOT NULL, population text NOT NULL,
                mechanism text NOT NULL, noise_multiplier double precision NOT NULL, sampling_rate double precision NOT NULL,
                count bigint NOT NULL, mode text NOT NULL, delta double precision NOT NULL, epsilon_after double precision NOT NULL,
                created_at text NOT NULL, previous_hash text NOT NULL, hash text NOT NULL,
                UNIQUE (release_id, population))
            """,
            "CREATE INDEX privacy_ledger_population ON privacy_ledger (population, sequence)",
            "CREATE TABLE privacy_ledger_head (id integer PRIMARY KEY, sequence bigint NOT NULL, hash text NOT NULL)",
            """
            CREATE TABLE privacy_budget_history (
                sequence bigint PRIMARY KEY, population text NOT NULL, epsilon double precision NOT NULL,
                delta double precision NOT NULL, reason text NOT NULL, created_at text NOT NULL,
                previous_hash text NOT NULL, hash text NOT NULL)
            """,
        ])
    ]

    /// Opens the ledger in `database`, creating its tables if they are not there.
    public init(database: PostgresStore) async throws {
        self.database = database
        try await database.migrate(Self.migrations)
    }

    /// Opens a ledger that must already be there, creating nothing (an audit of a database that
    /// holds none says so instead of making empty tables in it).
    public init(existingIn database: PostgresStore) async throws {
        self.database = database
        let present = try await database.read("looking for the privacy ledger") { connection in
            let rows = try await connection.query(
                "SELECT to_regclass('privacy_ledger') IS NOT NULL AND to_regclass('privacy_budget_history') IS NOT NULL", logger: database.logger
            )
            var present = false
            for try await value in rows.decode(Bool.self) { present = value }
            return present
        }
        guard present else {
            throw PostgresStoreError.failed("opening the privacy ledger", why: "\(database.location) holds no FedSeg privacy ledger (no privacy_ledger table)")
        }
    }

    // MARK: Writes

    /// Sets a population's budget and records the change, as `PrivacyLedger.setBudget`.
    public func setBudget(_ budget: PrivacyLedger.Budget, reason: String = "set", now: Date = Date()) async throws {
        try PrivacyLedger.validate(budget)
        try await database.transaction("setting the budget of \(budget.population)", locking: .ledger) { connection in
            try await Self.setBudget(connection, budget, reason: reason, now: now, logger: database.logger)
        }
    }

    /// The same inside a serialisable transaction the caller owns, holding the ledger lock.
    public static func setBudget(_ connection: PostgresConnection, _ budget: PrivacyLedger.Budget, reason: String, now: Date, logger: Logger) async throws {
        try PrivacyLedger.validate(budget)
        let current = try await fetchBudget(connection, budget.population, logger: logger)
        var charged = false
        if let current, current.delta != budget.delta {
            charged = try await !records(connection, population: budget.population, logger: logger).isEmpty
        }
        guard try PrivacyLedger.mustRecord(budget, replacing: current, charged: { charged }) else { return }
        try await connection.query(
            """
            INSERT INTO privacy_budget (population, epsilon, delta) VALUES (\(budget.population), \(budget.epsilon), \(budget.delta))
            ON CONFLICT (population) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta
            """,
            logger: logger
        )
        let previous = try await budgetChanges(connection, newestOnly: true, logger: logger).first
        let change = PrivacyLedger.budgetChange(after: previous, budget: budget, reason: reason, timestamp: PrivacyLedger.timestamp(now))
        try await connection.query(
            """
            INSERT INTO privacy_budget_history (sequence, population, epsilon, delta, reason, created_at, previous_hash, hash)
            VALUES (\(change.sequence), \(change.population), \(change.epsilon), \(change.delta), \(change.reason),
                    \(change.createdAt), \(change.previousHash), \(change.hash))
            """,
            logger: logger
        )
    }

    /// Charges a release to each population, all or none, before it happens; throws
    /// `PrivacyLedger.Failure.budgetExceeded` (and writes nothing) if any would go over its budget.
    @discardableResult
    public func charge(
        releaseID: String, round: Int64, mechanism: PrivacyLedger.Mechanism, populations: [String], now: Date = Date()
    ) async throws -> [PrivacyLedger.Record] {
        try PrivacyLedger.validateCharge(mechanism, populations: populations)
        return try await database.transaction("charging release \(releaseID)", locking: .ledger) { connection in
            try await Self.charge(
                connection, releaseID: releaseID, round: round, mechanism: mechanism, populations: populations, now: now, logger: database.logger
            )
        }
    }

    /// The same charge inside a serialisable transaction the caller owns, holding the ledger lock,
    /// so that a release's result and its charge commit together or not at all.
    @discardableResult
    public static func charge(
        _ connection: PostgresConnection, releaseID: String, round: Int64, mechanism: PrivacyLedger.Mechanism, populations: [String],
        now: Date, logger: Logger
    ) async throws -> [PrivacyLedger.Record] {
        try PrivacyLedger.validateCharge(mechanism, populations: populations)
        let timestamp = PrivacyLedger.timestamp(now)
        var previous = try await fetchRecords(connection, "ORDER BY sequence DESC LIMIT 1", logger: logger).first
        var written: [Record] = []
        for population in populations {
            guard let budget = try await fetchBudget(connection, population, logger: logger) else {
                throw PrivacyLedger.Failure.noBudget(population: population)
            }
            let duplicate = try await first(
                connection, "SELECT EXISTS (SELECT 1 FROM privacy_ledger WHERE release_id = \(releaseID) AND population = \(population))",
                Bool.self, logger: logger
            )
            if duplicate == true { throw PrivacyLedger.Failure.duplicateRelease(releaseID) }
            let history = try await records(connection, population: population, logger: logger).compactMap(\.mechanismValue)
            let record = try PrivacyLedger.chargeRecord(
                after: previous, releaseID: releaseID, round: round, population: population, mechanism: mechanism,
                budget: budget, history: history, timestamp: timestamp
            )
            try await connection.query(
                """
                INSERT INTO privacy_ledger (sequence, release_id, round, population, mechanism, noise_multiplier, sampling_rate,
                    count, mode, delta, epsilon_after, created_at, previous_hash, hash)
                VALUES (\(record.sequence), \(record.releaseID), \(record.round), \(record.population), \(record.mechanism),
                    \(record.noiseMultiplier), \(record.samplingRate), \(Int64(record.count)), \(record.mode), \(record.delta),
                    \(record.epsilonAfter), \(record.createdAt), \(record.previousHash), \(record.hash))
                """,
                logger: logger
            )
            try await connection.query(
                """
                INSERT INTO privacy_ledger_head (id, sequence, hash) VALUES (1, \(record.sequence), \(record.hash))
                ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash
                """,
                logger: logger
            )
            written.append(record)
            previous = record
        }
        return written
    }

    // MARK: Reads

    public func budget(for population: String) async throws -> PrivacyLedger.Budget? {
        try await database.read("reading the ledger") { connection in try await Self.fetchBudget(connection, population, logger: database.logger) }
    }

    public func budgets() async throws -> [PrivacyLedger.Budget] {
        try await database.read("reading the ledger") { connection in try await Self.fetchBudgets(connection, logger: database.logger) }
    }

    /// Every budget setting, oldest first.
    public func budgetHistory() async throws -> [PrivacyLedger.BudgetChange] {
        try await database.read("reading the ledger") { connection in try await Self.budgetChanges(connection, newestOnly: false, logger: database.logger) }
    }

    public func records() async throws -> [PrivacyLedger.Record] {
        try await database.read("reading the ledger") { connection in try await Self.fetchRecords(connection, "ORDER BY sequence", logger: database.logger) }
    }

    public func head() async throws -> (sequence: Int64, hash: String)? {
        try await database.read("reading the ledger") { connection in try await Self.fetchHead(connection, logger: database.logger) }
    }

    /// ε spent by a population, recomputed from its recorded mechanisms.
    public func spent(by population: String) async throws -> Double {
        try await database.read("reading the ledger") { connection in
            guard let budget = try await Self.fetchBudget(connection, population, logger: database.logger) else {
                throw PrivacyLedger.Failure.noBudget(population: population)
            }
            let history = try await Self.records(connection, population: population, logger: database.logger).compactMap(\.mechanismValue)
            return try PrivacyLedger.epsilon(of: history, delta: budget.delta)
        }
    }

    /// The audit `fedseg privacy audit` prints, over this ledger, read in one snapshot.
    public func audit() async throws -> LedgerAudit {
        let logger = database.logger
        let (records, budgets, changes, head) = try await database.read("reading the ledger") { connection in
            (
                try await Self.fetchRecords(connection, "ORDER BY sequence", logger: logger),
                try await Self.fetchBudgets(connection, logger: logger),
                try await Self.budgetChanges(connection, newestOnly: false, logger: logger),
                try await Self.fetchHead(connection, logger: logger)
            )
        }
        return try LedgerAudit.run(records: records, budgets: budgets, budgetHistory: changes, head: head)
    }

    // MARK: Rows

    /// The first row of a query, decoded, or nil.
    static func first<each Column: PostgresDecodable & Sendable>(
        _ connection: PostgresConnection, _ query: PostgresQuery, _ columns: (repeat each Column).Type, logger: Logger
    ) async throws -> (repeat each Column)? {
        let rows = try await connection.query(query, logger: logger)
        for try await row in rows.decode(columns) { return row }
        return nil
    }

    static func fetchBudget(_ connection: PostgresConnection, _ population: String, logger: Logger) async throws -> Budget? {
        try await first(connection, "SELECT epsilon, delta FROM privacy_budget WHERE population = \(population)", (Double, Double).self, logger: logger)
            .map { Budget(population: population, epsilon: $0.0, delta: $0.1) }
    }

    static func fetchBudgets(_ connection: PostgresConnection, logger: Logger) async throws -> [Budget] {
        var budgets: [Budget] = []
        let rows = try await connection.query("SELECT population, epsilon, delta FROM privacy_budget ORDER BY population", logger: logger)
        for try await (population, epsilon, delta) in rows.decode((String, Double, Double).self) {
            budgets.append(Budget(population: population, epsilon: epsilon, delta: delta))
        }
        return budgets
    }

    /// (sequence, hash) of the newest record as the head row has it.
    static func fetchHead(_ connection: PostgresConnection, logger: Logger) async throws -> (sequence: Int64, hash: String)? {
        try await first(connection, "SELECT sequence, hash FROM privacy_ledger_head WHERE id = 1", (Int64, String).self, logger: logger)
            .map { (sequence: $0.0, hash: $0.1) }
    }

    static func records(_ connection: PostgresConnection, population: String, logger: Logger) async throws -> [Record] {
        try await fetchRecords(connection, "WHERE population = $1 ORDER BY sequence", binding: population, logger: logger)
    }

    /// Records in the column order of `Record`; `tail` is fixed SQL (a filter and an order), its
    /// one parameter bound.
    static func fetchRecords(_ connection: PostgresConnection, _ tail: String, binding value: String? = nil, logger: Logger) async throws -> [Record] {
        var bindings = PostgresBindings()
        if let value { bindings.append(value) }
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT sequence, release_id, round, population, mechanism, noise_multiplier, sampling_rate, count, mode, delta,
                    epsilon_after, created_at, previous_hash, hash FROM privacy_ledger \(tail)
                """,
            binds: bindings
        )
        var records: [Record] = []
        let rows = try await connection.query(query, logger: logger)
        for try await (sequence, releaseID, round, population, mechanism, noise, sampling, count, mode, delta, epsilonAfter, createdAt, previousHash, hash)
            in rows.decode((Int64, String, Int64, String, String, Double, Double, Int64, String, Double, Double, String, String, String).self)
        {
            records.append(Record(
                sequence: sequence, releaseID: releaseID, round: round, population: population, mechanism: mechanism,
                noiseMultiplier: noise, samplingRate: sampling, count: Int(count), mode: mode, delta: delta,
                epsilonAfter: epsilonAfter, createdAt: createdAt, previousHash: previousHash, hash: hash
            ))
        }
        return records
    }

    static func budgetChanges(_ connection: PostgresConnection, newestOnly: Bool, logger: Logger) async throws -> [BudgetChange] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT sequence, population, epsilon, delta, reason, created_at, previous_hash, hash FROM privacy_budget_history
                ORDER BY sequence \(newestOnly ? "DESC LIMIT 1" : "")
                """
        )
        var changes: [BudgetChange] = []
        let rows = try await connection.query(query, logger: logger)
        for try await (sequence, population, epsilon, delta, reason, createdAt, previousHash, hash) in rows.decode(
            (Int64, String, Double, Double, String, String, String, String).self
        ) {
            changes.append(BudgetChange(
                sequence: sequence, population: population, epsilon: epsilon, delta: delta, reason: reason,
                createdAt: createdAt, previousHash: previousHash, hash: hash
            ))
        }
        return changes
    }
}
