import FedSegPostgres
import FedSegPrivacy
import FedSegTestSupport
import Foundation
import PostgresNIO
import Testing

/// A ledger in a PostgreSQL server of its own (Debian's, started for the test; see `TemporaryPostgres`).
private func withLedger(_ body: (PostgresPrivacyLedger, TemporaryPostgres) async throws -> Void) async throws {
    let server = try await TemporaryPostgres.start()
    defer { server.stop() }
    let database = try await PostgresStore.open(PostgresLocation(url: server.url))
    defer { database.close() }
    try await body(try await PostgresPrivacyLedger(database: database), server)
}

private let gaussian = PrivacyLedger.Mechanism(kind: .gaussian, noiseMultiplier: 3)
private let fixedTime = Date(timeIntervalSince1970: 1_796_186_754)

@Suite("Privacy ledger on PostgreSQL")
struct PostgresLedgerTests {
    @Test("the same operations write the same records, hash for hash, as the SQLite ledger; refusals write nothing in either")
    func sameRecordsAsSQLite() async throws {
        try await withLedger { postgres, _ in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let sqlite = try PrivacyLedger(path: directory.appendingPathComponent(PrivacyLedger.fileName).path)

            let budgets = [PrivacyLedger.Budget(population: "users", epsilon: 4, delta: 1e-6), .init(population: "shard-1", epsilon: 8, delta: 1e-6)]
            for budget in budgets {
                try sqlite.setBudget(budget, reason: "test")
                try await postgres.setBudget(budget, reason: "test")
            }
            var refusals: [String] = []
            for round in 1...12 {
                let mechanism = round == 12 ? PrivacyLedger.Mechanism(kind: .discreteGaussian, noiseMultiplier: 5, mode: .distributed) : gaussian
                let sqliteOutcome = Result { try sqlite.charge(releaseID: "round-\(round)", round: Int64(round), mechanism: mechanism, populations: ["shard-1", "users"], now: fixedTime) }
                let postgresOutcome: Result<[PrivacyLedger.Record], any Error>
                do {
                    postgresOutcome = .success(try await postgres.charge(
                        releaseID: "round-\(round)", round: Int64(round), mechanism: mechanism, populations: ["shard-1", "users"], now: fixedTime
                    ))
                } catch { postgresOutcome = .failure(error) }
                switch (sqliteOutcome, postgresOutcome) {
                case (.success(let a), .success(let b)): #expect(a == b)
                case (.failure(let a as PrivacyLedger.Failure), .failure(let b as PrivacyLedger.Failure)):
                    #expect(a == b)
                    refusals.append("\(b)")
                default: Issue.record("round \(round): SQLite \(sqliteOutcome), PostgreSQL \(postgresOutcome)")
                }
            }
            // users' ε = 4 runs out before the 12 rounds: the refused ones name it and write nothing.
            #expect(!refusals.isEmpty && refusals.allSatisfy { $0.contains("population users") })
            await #expect(throws: PrivacyLedger.Failure.duplicateRelease("round-1")) {
                try await postgres.charge(releaseID: "round-1", round: 1, mechanism: gaussian, populations: ["shard-1"], now: fixedTime)
            }
            await #expect(throws: PrivacyLedger.Failure.noBudget(population: "nobody")) {
                try await postgres.charge(releaseID: "round-x", round: 13, mechanism: gaussian, populations: ["nobody"], now: fixedTime)
            }

            let expected = try sqlite.records()
            #expect(expected.count == 2 * (12 - refusals.count))
            #expect(try await postgres.records() == expected)
            #expect(try await postgres.budgets() == sqlite.budgets())
            #expect(try await postgres.head().map { "\($0.sequence) \($0.hash)" } == sqlite.head().map { "\($0.sequence) \($0.hash)" })
            #expect(try await postgres.spent(by: "users") == sqlite.spent(by: "users"))
            let history = try await postgres.budgetHistory().map { [String($0.sequence), $0.population, "\($0.epsilon)", "\($0.delta)", $0.reason] }
            #expect(try history == sqlite.budgetHistory().map { [String($0.sequence), $0.population, "\($0.epsilon)", "\($0.delta)", $0.reason] })
            let audit = try await postgres.audit()
            #expect(audit.verified, "\(audit.problems)")
            #expect(audit.populations.map(\.epsilonSpent) == (try LedgerAudit.run(sqlite)).populations.map(\.epsilonSpent))
        }
    }

    @Test("writers in two connection pools (as two coordinator processes) charging at once: exactly what the budget affords, one unbroken chain")
    func concurrentWriters() async throws {
        try await withLedger { ledger, server in
            // A budget that affords exactly `affordable` rounds of the mechanism.
            let affordable = 7
            let exact = try PrivacyLedger.epsilon(of: Array(repeating: gaussian, count: affordable), delta: 1e-6)
            let oneMore = try PrivacyLedger.epsilon(of: Array(repeating: gaussian, count: affordable + 1), delta: 1e-6)
            try await ledger.setBudget(.init(population: "users", epsilon: (exact + oneMore) / 2, delta: 1e-6))
            for shard in 0..<3 { try await ledger.setBudget(.init(population: "shard-\(shard)", epsilon: 100, delta: 1e-6)) }
            let second = try await PostgresStore.open(PostgresLocation(url: server.url))
            defer { second.close() }
            let other = try await PostgresPrivacyLedger(database: second)

            let attempts = 24
            let outcomes = await withTaskGroup(of: String.self) { group in
                for index in 0..<attempts {
                    let writer = index.isMultiple(of: 2) ? ledger : other
                    group.addTask {
                        do {
                            try await writer.charge(releaseID: "release-\(index)", round: Int64(index), mechanism: gaussian, populations: ["users", "shard-\(index % 3)"])
                            return "charged"
                        } catch PrivacyLedger.Failure.budgetExceeded {
                            return "refused"
                        } catch {
                            return "error: \(error)"
                        }
                    }
                    // Budgets set while the charges run chain in the same ledger.
                    if index < 3 {
                        group.addTask {
                            do {
                                try await writer.setBudget(.init(population: "audience-\(index)", epsilon: 100, delta: 1e-6))
                                return "budget"
                            } catch { return "error: \(error)" }
                        }
                    }
                }
                var outcomes: [String] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            #expect(!outcomes.contains { $0.hasPrefix("error") }, "\(outcomes.filter { $0.hasPrefix("error") })")
            let charged = outcomes.filter { $0 == "charged" }.count
            #expect(outcomes.filter { $0 == "budget" }.count == 3)
            #expect(charged == affordable)
            #expect(outcomes.filter { $0 == "refused" }.count == attempts - affordable)

            let records = try await other.records()
            #expect(records.count == 2 * affordable)
            #expect(records.map(\.sequence) == (1...Int64(2 * affordable)).map { $0 })
            let audit = try await ledger.audit()
            #expect(audit.verified, "\(audit.problems)")
            #expect(try await ledger.spent(by: "users") <= (exact + oneMore) / 2)
            #expect(audit.budgetChanges.count == 7)
        }
    }

    @Test("committed charges survive the server's crash (pg_ctl stop -m immediate) and read back the same")
    func survivesCrash() async throws {
        try await withLedger { ledger, server in
            try await ledger.setBudget(.init(population: "users", epsilon: 8, delta: 1e-6))
            for round in 1...3 {
                try await ledger.charge(releaseID: "round-\(round)", round: Int64(round), mechanism: gaussian, populations: ["users"])
            }
            let before = try await ledger.records()
            try server.crashAndRestart()
            let reopened = try await PostgresStore.open(PostgresLocation(url: server.url))
            defer { reopened.close() }
            let after = try await PostgresPrivacyLedger(database: reopened)
            #expect(try await after.records() == before)
            #expect(try await after.audit().verified)
            try await after.charge(releaseID: "round-4", round: 4, mechanism: gaussian, populations: ["users"])
            #expect(try await after.records().map(\.sequence) == [1, 2, 3, 4])
        }
    }

    @Test("the audit finds an altered record and a deleted tail in the PostgreSQL tables")
    func auditFindsTampering() async throws {
        try await withLedger { ledger, _ in
            try await ledger.setBudget(.init(population: "users", epsilon: 8, delta: 1e-6))
            for round in 1...4 {
                try await ledger.charge(releaseID: "round-\(round)", round: Int64(round), mechanism: gaussian, populations: ["users"])
            }
            try await ledger.database.client.query("UPDATE privacy_ledger SET noise_multiplier = 30 WHERE sequence = 2")
            let altered = try await ledger.audit()
            #expect(!altered.verified)
            #expect(altered.problems.contains { $0.sequence == 2 && $0.reason.contains("tampered") })
            try await ledger.database.client.query("UPDATE privacy_ledger SET noise_multiplier = 3 WHERE sequence = 2")
            #expect(try await ledger.audit().verified)
            try await ledger.database.client.query("DELETE FROM privacy_ledger WHERE sequence = 4")
            let truncated = try await ledger.audit()
            #expect(truncated.problems.contains { $0.reason.contains("deleted from the end") })
            // A database error names what was being done and the server's reason, not the driver's internals.
            try await ledger.database.client.query("DROP TABLE privacy_ledger")
            do {
                try await ledger.charge(releaseID: "round-5", round: 5, mechanism: gaussian, populations: ["users"])
                Issue.record("charged into a dropped table")
            } catch let error as PostgresStoreError {
                #expect("\(error)" == #"charging release round-5 failed in PostgreSQL: 42P01: relation "privacy_ledger" does not exist"#)
            }
        }
    }

    // Alone the refusal takes milliseconds; under the whole suite on two cores it took 124 s. The
    // limit turns a connect that waits forever (as the pool's did) into a failure.
    @Test(
        "database URLs: TCP and socket forms parse; wrong ones and a stopped server give errors that say what to fix",
        .timeLimit(.minutes(10))
    )
    func locations() async throws {
        #expect(try PostgresLocation(url: "postgres://fedseg:secret@db.internal:6432/segments")
            == PostgresLocation(endpoint: .tcp(host: "db.internal", port: 6432), user: "fedseg", password: "secret", database: "segments"))
        #expect(try PostgresLocation(url: "postgresql://fedseg@localhost/fedseg?host=/run/postgresql")
            == PostgresLocation(endpoint: .socket(directory: "/run/postgresql", port: 5432), user: "fedseg", database: "fedseg"))
        #expect(try PostgresLocation(url: "postgres://fedseg:secret@db:5432/x").description == "postgres://fedseg@db:5432/x")
        for bad in ["mysql://a@b/c", "postgres://db/x", "postgres://a@db/", "not a url"] {
            #expect(throws: PostgresStoreError.self) { try PostgresLocation(url: bad) }
        }
        let nowhere = FileManager.default.temporaryDirectory.appendingPathComponent("no-server-\(UUID().uuidString)").path
        do {
            _ = try await PostgresStore.open(PostgresLocation(url: "postgres://fedseg@localhost/fedseg?host=\(nowhere)"))
            Issue.record("opened a database where no server runs")
        } catch let error as PostgresStoreError {
            #expect("\(error)".hasPrefix("cannot reach PostgreSQL at postgres://fedseg@localhost:5432/fedseg?host=\(nowhere)"))
            #expect("\(error)".contains("check that the server runs"))
            #expect(!"\(error)".contains("PSQLError"), "\(error)")
        }
    }
}
