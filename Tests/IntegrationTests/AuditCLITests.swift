import FedSegPostgres
import FedSegPrivacy
import FedSegTestSupport
import Foundation
import GRDB
import PostgresNIO
import Testing

@Suite("fedseg privacy audit")
struct AuditCLITests {
    private func stateDirectory() throws -> (URL, PrivacyLedger) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let ledger = try PrivacyLedger(path: dir.appendingPathComponent(PrivacyLedger.fileName).path)
        try ledger.setBudget(.init(population: "users", epsilon: 4, delta: 1e-6))
        for round in 1...3 {
            try ledger.charge(releaseID: "round-\(round)", round: Int64(round), mechanism: .init(kind: .gaussian, noiseMultiplier: 4), populations: ["users"])
        }
        return (dir, ledger)
    }

    @Test("reports spent and left per population, as JSON and as an SVG chart")
    func report() throws {
        let (dir, ledger) = try stateDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let svg = dir.appendingPathComponent("eps.svg")
        let result = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", dir.path, "--json", "--svg", svg.path])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["verified"] as? Bool == true)
        let populations = try #require(object["populations"] as? [[String: Any]])
        let spent = try #require(populations.first?["epsilon_spent"] as? Double)
        #expect(abs(spent - (try ledger.spent(by: "users"))) < 1e-12)
        #expect(abs((populations.first?["epsilon_left"] as? Double ?? -1) - (4 - spent)) < 1e-12)
        #expect(try String(contentsOf: svg, encoding: .utf8).contains("<svg"))
        let table = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", dir.path])
        #expect(table.stdout.contains("chain verified") && table.stdout.contains("round-3"))
    }

    @Test("a tampered ledger fails the audit with exit status 1")
    func tampered() throws {
        let (dir, ledger) = try stateDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ledger.database.write { db in try db.execute(sql: "UPDATE privacy_ledger SET noise_multiplier = 40 WHERE sequence = 2") }
        let result = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", dir.path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("record 2"))
    }

    @Test("audits a ledger in PostgreSQL (--database): verified, then failed after tampering; a database without one is named")
    func postgres() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let database = try await PostgresStore.open(PostgresLocation(url: server.url))
        defer { database.close() }
        let ledger = try await PostgresPrivacyLedger(database: database)
        try await ledger.setBudget(.init(population: "users", epsilon: 4, delta: 1e-6))
        for round in 1...3 {
            try await ledger.charge(releaseID: "round-\(round)", round: Int64(round), mechanism: .init(kind: .gaussian, noiseMultiplier: 4), populations: ["users"])
        }
        let result = try Executables.run("fedseg", ["privacy", "audit", "--database", server.url, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["verified"] as? Bool == true)
        #expect(object["records"] as? Int == 3)
        let spent = try #require((object["populations"] as? [[String: Any]])?.first?["epsilon_spent"] as? Double)
        #expect(spent == (try await ledger.spent(by: "users")))

        try await database.client.query("UPDATE privacy_ledger SET noise_multiplier = 40 WHERE sequence = 2")
        let tampered = try Executables.run("fedseg", ["privacy", "audit", "--database", server.url])
        #expect(tampered.status == 1)
        #expect(tampered.stdout.contains("record 2"))

        try await database.client.query("CREATE DATABASE empty")
        let empty = try Executables.run("fedseg", ["privacy", "audit", "--database", server.url.replacingOccurrences(of: "/fedseg?", with: "/empty?")])
        #expect(empty.status != 0)
        #expect(empty.stderr.contains("holds no FedSeg privacy ledger"), "\(empty.stderr)")
        let unreachable = try Executables.run("fedseg", ["privacy", "audit", "--database", "postgres://fedseg@localhost/fedseg?host=/nonexistent"])
        #expect(unreachable.status != 0)
        #expect(unreachable.stderr.contains("cannot reach PostgreSQL") && !unreachable.stderr.contains("PSQLError"), "\(unreachable.stderr)")
    }
}
