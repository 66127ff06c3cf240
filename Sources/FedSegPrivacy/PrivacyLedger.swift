import FedSegCrypto
import Foundation
import GRDB

/// The append-only, hash-chained record of every privacy charge, in SQLite (WAL) through GRDB.
///
/// Each record names the release, its round, its mechanism and parameters, the population it
/// is charged to, and ε for that population after the charge at the population's δ; it carries
/// the SHA-256 of the previous record and its own hash over every field. A charge is checked
/// against the population's budget and written in one transaction, before the release happens;
/// a refused charge writes nothing. Used by the coordinator and by every client.
public final class PrivacyLedger: Sendable {
    public let database: any DatabaseWriter

    /// One mechanism application as recorded: enough to recompute its privacy cost.
    public struct Mechanism: Sendable, Equatable, Codable {
        public enum Kind: String, Sendable, Codable {
            case gaussian
            case poissonSampledGaussian = "poisson_sampled_gaussian"
            case discreteGaussian = "discrete_gaussian"
        }

        /// How the noise was added: by every client to its own statistics, once on the aggregate
        /// (earlier in-process simulations), or in shares through secure aggregation.
        public enum Mode: String, Sendable, Codable, CaseIterable {
            case local, central, distributed
        }

        public var kind: Kind
        public var noiseMultiplier: Double
        public var samplingRate: Double
        /// How many identical applications (rounds) this record charges.
        public var count: Int
        public var mode: Mode

        public init(kind: Kind, noiseMultiplier: Double, samplingRate: Double = 1, count: Int = 1, mode: Mode = .local) {
            self.kind = kind
            self.noiseMultiplier = noiseMultiplier
            self.samplingRate = samplingRate
            self.count = count
            self.mode = mode
        }

        var event: RDPAccountant.Event {
            samplingRate < 1
                ? .poissonSampledGaussian(samplingRate: samplingRate, noiseMultiplier: noiseMultiplier)
                : .gaussian(noiseMultiplier: noiseMultiplier)
        }
    }

    public struct Record: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "privacy_ledger"
        public var sequence: Int64
        public var releaseID: String
        public var round: Int64
        public var population: String
        public var mechanism: String
        public var noiseMultiplier: Double
        public var samplingRate: Double
        public var count: Int
        public var mode: String
        public var delta: Double
        public var epsilonAfter: Double
        public var createdAt: String
        public var previousHash: String
        public var hash: String

        enum CodingKeys: String, CodingKey {
            case sequence, round, population, mechanism, count, mode, delta, hash
            case releaseID = "release_id"
            case noiseMultiplier = "noise_multiplier"
            case samplingRate = "sampling_rate"
            case epsilonAfter = "epsilon_after"
            case createdAt = "created_at"
            case previousHash = "previous_hash"
        }

        public init(
            sequence: Int64, releaseID: String, round: Int64, population: String, mechanism: String, noiseMultiplier: Double,
            samplingRate: Double, count: Int, mode: String, delta: Double, epsilonAfter: Double, createdAt: String,
            previousHash: String, hash: String
        ) {
            self.sequence = sequence
            self.releaseID = releaseID
            self.round = round
            self.population = population
            self.mechanism = mechanism
            self.noiseMultiplier = noiseMultiplier
            self.samplingRate = samplingRate
            self.count = count
            self.mode = mode
            self.delta = delta
            self.epsilonAfter = epsilonAfter
            self.createdAt = createdAt
            self.previousHash = previousHash
            self.hash = hash
        }

        public var mechanismValue: Mechanism? {
            // The mode does not change the cost: a record's ε never depends on reading it.
            guard let kind = Mechanism.Kind(rawValue: mechanism) else { return nil }
            return Mechanism(kind: kind, noiseMultiplier: noiseMultiplier, samplingRate: samplingRate, count: count, mode: Mechanism.Mode(rawValue: mode) ?? .local)
        }

        /// SHA-256 over every field but the hash, in a fixed, unambiguous layout.
        public func computeHash() -> String {
            var text = "fedseg-ledger-v1"
            for field in [
                String(sequence), releaseID, String(round), population, mechanism, noiseMultiplier.bitPattern.description,
                samplingRate.bitPattern.description, String(count), mode, delta.bitPattern.description,
                epsilonAfter.bitPattern.description, createdAt, previousHash,
            ] {
                text += "\u{1F}\(field.utf8.count):\(field)"
            }
            return SHA256.hash(Data(text.utf8)).hex
        }
    }

    public struct Budget: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "privacy_budget"
        public var population: String
        public var epsilon: Double
        public var delta: Double

        public init(population: String, epsilon: Double, delta: Double) {
            self.population = population
            self.epsilon = epsilon
            self.delta = delta
        }
    }

    /// One setting of a population's lifetime budget: the budget lives in the ledger, hash-chained
    /// like the charges (its own chain), so a change is a record the audit shows, not a file edit.
    public struct BudgetChange: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "privacy_budget_history"
        public var sequence: Int64
        public var population: String
        public var epsilon: Double
        public var delta: Double
        /// Who or what set it: `coordinator init`, `first start`, `admin: <reason>`, `client node`.
        public var reason: String
        public var createdAt: String
        public var previousHash: String
        public var hash: String

        enum CodingKeys: String, CodingKey {
            case sequence, population, epsilon, delta, reason, hash
            case createdAt = "created_at"
            case previousHash = "previous_hash"
        }

        public init(
            sequence: Int64, population: String, epsilon: Double, delta: Double, reason: String, createdAt: String,
            previousHash: String, hash: String
        ) {
            self.sequence = sequence
            self.population = population
            self.epsilon = epsilon
            self.delta = delta
            self.reason = reason
            self.createdAt = createdAt
            self.previousHash = previousHash
            self.hash = hash
        }

        public func computeHash() -> String {
            var text = "fedseg-budget-v1"
            for field in [
                String(sequence), population, epsilon.bitPattern.description, delta.bitPattern.description, reason, createdAt, previousHash,
            ] {
                text += "\u{1F}\(field.utf8.count):\(field)"
            }
            return SHA256.hash(Data(text.utf8)).hex
        }
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noBudget(population: String)
        case budgetExceeded(population: String, budget: Double, spent: Double, requested: Double, wouldBe: Double)
        case duplicateRelease(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .noBudget(let population):
                "no privacy budget is set for population \(population)"
            case .budgetExceeded(let population, let budget, let spent, let requested, let wouldBe):
                "refused: population \(population) has spent ε=\(spent) of its ε=\(budget) (left \(max(0, budget - spent))); this release would bring it to ε=\(wouldBe) (asked \(requested))"
            case .duplicateRelease(let id): "release \(id) is already in the ledger"
            case .invalid(let why): why
            }
        }
    }

    public static let genesisHash = String(repeating: "0", count: 64)

    /// Opens (creating if needed) a ledger in an SQLite file, WAL mode.
    public convenience init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let pool = try DatabasePool(path: path, configuration: configuration)
        try pool.requireDurableCommits()
        try self.init(database: pool)
    }

    /// Uses an existing database (the coordinator's own, or an in-memory queue for tests).
    public init(database: any DatabaseWriter) throws {
        self.database = database
        var migrator = DatabaseMigrator()
        migrator.registerMigration("privacy-ledger-v1") { db in
            try db.create(table: Budget.databaseTableName) { t in
                t.column("population", .text).primaryKey()
                t.column("epsilon", .double).notNull()
                t.column("delta", .double).notNull()
            }
            try db.create(table: Record.databaseTableName) { t in
                t.column("sequence", .integer).primaryKey()
                t.column("release_id", .text).notNull()
                t.column("round", .integer).notNull()
                t.column("population", .text).notNull()
                t.column("mechanism", .text).notNull()
                t.column("noise_multiplier", .double).notNull()
                t.column("sampling_rate", .double).notNull()
                t.column("count", .integer).notNull()
                t.column("mode", .text).notNull()
                t.column("delta", .double).notNull()
                t.column("epsilon_after", .double).notNull()
                t.column("created_at", .text).notNull()
                t.column("previous_hash", .text).notNull()
                t.column("hash", .text).notNull()
                t.uniqueKey(["release_id", "population"])
            }
            try db.create(index: "privacy_ledger_population", on: Record.databaseTableName, columns: ["population"])
            // The newest record's sequence and hash, written with it: a deleted tail no longer
            // matches the head.
            try db.create(table: "privacy_ledger_head") { t in
                t.column("id", .integer).primaryKey()
                t.column("sequence", .integer).notNull()
                t.column("hash", .text).notNull()
            }
        }
        // Budgets are ledger records: every setting is chained, and budgets set before this
        // version are recorded as found.
        migrator.registerMigration("privacy-ledger-v2-budget-history") { db in
            try db.create(table: BudgetChange.databaseTableName) { t in
                t.column("sequence", .integer).primaryKey()
                t.column("population", .text).notNull()
                t.column("epsilon", .double).notNull()
                t.column("delta", .double).notNull()
                t.column("reason", .text).notNull()
                t.column("created_at", .text).notNull()
                t.column("previous_hash", .text).notNull()
                t.column("hash", .text).notNull()
            }
            for budget in try Budget.fetchAll(db) {
                try Self.recordBudget(db, budget, reason: "recorded as found by ledger v2", now: Date())
            }
        }
        try migrator.migrate(database)
    }

    /// Sets a population's budget, recording the change in the ledger in the same transaction.
    /// Lowering it below what is spent is allowed (further charges are then refused); δ is fixed
    /// once the population has been charged, since every recorded ε is at that δ. Setting the
    /// budget it already has records nothing.
    public func setBudget(_ budget: Budget, reason: String = "set") throws {
        try Self.validate(budget)
        try database.write { db in try Self.setBudget(db, budget, reason: reason) }
    }

    /// The same inside a transaction the caller owns (a run and its budget are created together).
    public static func setBudget(_ db: Database, _ budget: Budget, reason: String) throws {
        try validate(budget)
        let current = try Budget.fetchOne(db, key: budget.population)
        guard try mustRecord(budget, replacing: current, charged: { try !records(db, population: budget.population).isEmpty }) else { return }
        try budget.save(db)
        try recordBudget(db, budget, reason: reason, now: Date())
    }

    static func recordBudget(_ db: Database, _ budget: Budget, reason: String, now: Date) throws {
        let previous = try BudgetChange.order(Column("sequence").desc).fetchOne(db)
        try budgetChange(after: previous, budget: budget, reason: reason, timestamp: timestamp(now)).insert(db)
    }

    // The rules every backend applies (SQLite here, PostgreSQL in FedSegPostgres): what a store
    // reads and writes differs, what it accepts and the records it chains do not.

    /// Refuses a budget no charge could be checked against.
    public static func validate(_ budget: Budget) throws {
        guard budget.epsilon > 0, budget.epsilon.isFinite, budget.delta > 0, budget.delta < 1 else {
            throw Failure.invalid("a budget needs ε > 0 and δ in (0, 1)")
        }
    }

    /// Whether setting `budget` over `current` is a change to record; throws when it would move
    /// δ of a population already charged (every recorded ε is at that δ). `charged` is asked only
    /// when δ changes.
    public static func mustRecord(_ budget: Budget, replacing current: Budget?, charged: () throws -> Bool) throws -> Bool {
        guard current != budget else { return false }
        if let current, current.delta != budget.delta, try charged() {
            throw Failure.invalid("δ of \(budget.population) is fixed at \(current.delta) once releases are charged at it")
        }
        return true
    }

    /// The budget-history record that follows `previous`, hashed.
    public static func budgetChange(after previous: BudgetChange?, budget: Budget, reason: String, timestamp: String) -> BudgetChange {
        var change = BudgetChange(
            sequence: (previous?.sequence ?? 0) + 1, population: budget.population, epsilon: budget.epsilon, delta: budget.delta,
            reason: reason, createdAt: timestamp, previousHash: previous?.hash ?? genesisHash, hash: ""
        )
        change.hash = change.computeHash()
        return change
    }

    /// Refuses a charge whose mechanism or populations make no sense, before anything is read.
    public static func validateCharge(_ mechanism: Mechanism, populations: [String]) throws {
        guard mechanism.noiseMultiplier > 0, mechanism.noiseMultiplier.isFinite else {
            throw Failure.invalid("noise multiplier must be positive and finite")
        }
        guard mechanism.samplingRate > 0, mechanism.samplingRate <= 1, mechanism.count >= 1 else {
            throw Failure.invalid("sampling rate must be in (0, 1] and count at least 1")
        }
        guard !populations.isEmpty else { throw Failure.invalid("a charge needs at least one population") }
    }

    /// The charge record that follows `previous` for one population, hashed; throws
    /// `budgetExceeded` when the population's recorded history plus `mechanism` would pass its budget.
    public static func chargeRecord(
        after previous: Record?, releaseID: String, round: Int64, population: String, mechanism: Mechanism,
        budget: Budget, history: [Mechanism], timestamp: String
    ) throws -> Record {
        let before = try epsilon(of: history, delta: budget.delta)
        let after = try epsilon(of: history + [mechanism], delta: budget.delta)
        let alone = try epsilon(of: [mechanism], delta: budget.delta)
        guard after <= budget.epsilon else {
            throw Failure.budgetExceeded(population: population, budget: budget.epsilon, spent: before, requested: alone, wouldBe: after)
        }
        var record = Record(
            sequence: (previous?.sequence ?? 0) + 1, releaseID: releaseID, round: round, population: population,
            mechanism: mechanism.kind.rawValue, noiseMultiplier: mechanism.noiseMultiplier,
            samplingRate: mechanism.samplingRate, count: mechanism.count, mode: mechanism.mode.rawValue,
            delta: budget.delta, epsilonAfter: after, createdAt: timestamp,
            previousHash: previous?.hash ?? genesisHash, hash: ""
        )
        record.hash = record.computeHash()
        return record
    }

    /// Every budget setting, oldest first.
    public func budgetHistory() throws -> [BudgetChange] {
        try database.read { db in try BudgetChange.order(Column("sequence")).fetchAll(db) }
    }

    public func budget(for population: String) throws -> Budget? {
        try database.read { db in try Budget.fetchOne(db, key: population) }
    }

    /// ε spent by a population, recomputed from its recorded mechanisms.
    public func spent(by population: String) throws -> Double {
        try database.read { db in
            guard let budget = try Budget.fetchOne(db, key: population) else { throw Failure.noBudget(population: population) }
            return try Self.epsilon(of: Self.records(db, population: population).compactMap(\.mechanismValue), delta: budget.delta)
        }
    }

    /// Whether `population` could take one more release of `mechanism` within its budget.
    public func canAfford(_ mechanism: Mechanism, population: String) throws -> Bool {
        try database.read { db in
            guard let budget = try Budget.fetchOne(db, key: population) else { throw Failure.noBudget(population: population) }
            let history = try Self.records(db, population: population).compactMap(\.mechanismValue)
            return try Self.epsilon(of: history + [mechanism], delta: budget.delta) <= budget.epsilon
        }
    }

    /// Charges a release to each population, all or none, before it happens. Throws
    /// `budgetExceeded` (and writes nothing) if any population would go over its budget.
    @discardableResult
    public func charge(
        releaseID: String, round: Int64, mechanism: Mechanism, populations: [String], now: Date = Date()
    ) throws -> [Record] {
        try database.write { db in
            try Self.charge(db, releaseID: releaseID, round: round, mechanism: mechanism, populations: populations, now: now)
        }
    }

    /// The same charge inside a transaction the caller owns, so that a release's result and its
    /// charge commit together (the coordinator's round commit) or not at all.
    @discardableResult
    public static func charge(
        _ db: Database, releaseID: String, round: Int64, mechanism: Mechanism, populations: [String], now: Date = Date()
    ) throws -> [Record] {
        try validateCharge(mechanism, populations: populations)
        let timestamp = Self.timestamp(now)
        var written: [Record] = []
        // Cached statements throughout: a node charges once per release and the coordinator once
        // per round, and building and authorising each query anew had been a quarter of a charge.
        let ledger = Record.databaseTableName
        var previous = try Record.fetchOne(db.cachedStatement(sql: "SELECT * FROM \(ledger) ORDER BY sequence DESC LIMIT 1"))
        for population in populations {
            guard let budget = try Budget.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM \(Budget.databaseTableName) WHERE population = ?"), arguments: [population]
            ) else { throw Failure.noBudget(population: population) }
            let duplicates = try Int.fetchOne(
                db.cachedStatement(sql: "SELECT COUNT(*) FROM \(ledger) WHERE release_id = ? AND population = ?"), arguments: [releaseID, population]
            ) ?? 0
            if duplicates > 0 { throw Failure.duplicateRelease(releaseID) }
            let history = try Self.records(db, population: population).compactMap(\.mechanismValue)
            let record = try chargeRecord(
                after: previous, releaseID: releaseID, round: round, population: population, mechanism: mechanism,
                budget: budget, history: history, timestamp: timestamp
            )
            try record.insert(db)
            try db.cachedStatement(
                sql: "INSERT INTO privacy_ledger_head (id, sequence, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash"
            ).execute(arguments: [record.sequence, record.hash])
            written.append(record)
            previous = record
        }
        return written
    }

    /// A record's time, as ISO 8601 in UTC to the second ("2026-12-02T04:45:54Z"), the form
    /// `ISO8601DateFormatter` writes; a format style rather than a new formatter per charge
    /// (65 µs each, 3% of a simulation's CPU).
    public static func timestamp(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }

    /// The state directory's ledger file.
    public static let fileName = "fedseg.sqlite"

    /// (sequence, hash) of the newest record as the head table has it.
    public func head() throws -> (sequence: Int64, hash: String)? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT sequence, hash FROM privacy_ledger_head WHERE id = 1").map { ($0["sequence"], $0["hash"]) }
        }
    }

    public func records() throws -> [Record] {
        try database.read { db in try Record.order(Column("sequence")).fetchAll(db) }
    }

    public func budgets() throws -> [Budget] {
        try database.read { db in try Budget.order(Column("population")).fetchAll(db) }
    }

    static func records(_ db: Database, population: String) throws -> [Record] {
        try Record.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM \(Record.databaseTableName) WHERE population = ? ORDER BY sequence"), arguments: [population]
        )
    }

    /// ε of a sequence of mechanisms at δ, by the RDP accountant.
    public static func epsilon(of mechanisms: [Mechanism], delta: Double) throws -> Double {
        var accountant = RDPAccountant()
        for mechanism in mechanisms { try accountant.compose(mechanism.event, count: mechanism.count) }
        return try accountant.epsilon(delta: delta).epsilon
    }
}
