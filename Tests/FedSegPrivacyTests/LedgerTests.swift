@testable import FedSegPrivacy
import Foundation
import GRDB
import Testing

private func temporaryLedger() throws -> (PrivacyLedger, URL) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return (try PrivacyLedger(path: dir.appendingPathComponent(PrivacyLedger.fileName).path), dir)
}

private func populated() throws -> (PrivacyLedger, URL) {
    let (ledger, dir) = try temporaryLedger()
    try ledger.setBudget(.init(population: "users", epsilon: 8, delta: 1e-6))
    try ledger.setBudget(.init(population: "shard-1", epsilon: 8, delta: 1e-6))
    for round in 1...5 {
        try ledger.charge(
            releaseID: "round-\(round)", round: Int64(round),
            mechanism: .init(kind: .gaussian, noiseMultiplier: 3), populations: ["users", "shard-1"]
        )
    }
    try ledger.charge(
        releaseID: "recommend", round: 6, mechanism: .init(kind: .discreteGaussian, noiseMultiplier: 5), populations: ["users"]
    )
    return (ledger, dir)
}

@Suite("Privacy ledger")
struct LedgerTests {
    @Test("record times are written as ISO8601DateFormatter wrote them, so old and new records read alike")
    func timestampFormat() {
        for seconds in [0.0, 1_796_186_754.123, 951_782_400.999, 4_102_444_799.5] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(PrivacyLedger.timestamp(date) == ISO8601DateFormatter().string(from: date))
        }
    }

    @Test("charges chain, ε matches the accountant, and the audit verifies")
    func chain() throws {
        let (ledger, dir) = try populated()
        defer { try? FileManager.default.removeItem(at: dir) }
        let records = try ledger.records()
        #expect(records.count == 11)
        #expect(records.map(\.sequence) == Array(1...11))
        let audit = try LedgerAudit.run(ledger)
        #expect(audit.verified, "\(audit.problems)")
        let users = try #require(audit.populations.first { $0.population == "users" })
        var accountant = RDPAccountant()
        try accountant.compose(.gaussian(noiseMultiplier: 3), count: 5)
        try accountant.compose(.gaussian(noiseMultiplier: 5))
        #expect(abs(users.epsilonSpent - (try accountant.epsilon(delta: 1e-6).epsilon)) < 1e-12)
        #expect(users.releases == 6)
        #expect(abs(users.epsilonLeft! - (8 - users.epsilonSpent)) < 1e-12)
        #expect(try ledger.spent(by: "users") == users.epsilonSpent)
        #expect(users.series.map(\.epsilon) == users.series.map(\.epsilon).sorted())
        #expect(audit.svg().contains("<polyline"))
    }

    @Test("the ε chart: one x axis of release order for every population, ticks on both axes, labelled budgets, a legend inside the image")
    func chart() throws {
        let (ledger, dir) = try populated()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A third population whose name is long and needs escaping, to make the legend wrap.
        try ledger.setBudget(.init(population: "run:<a long run identifier & more>", epsilon: 4, delta: 1e-5))
        try ledger.charge(releaseID: "late-release", round: 7, mechanism: .init(kind: .gaussian, noiseMultiplier: 4), populations: ["run:<a long run identifier & more>", "users"])
        let audit = try LedgerAudit.run(ledger)
        #expect(audit.releaseOrder == ["round-1", "round-2", "round-3", "round-4", "round-5", "recommend", "late-release"])
        let width = 520
        let svg = audit.svg(width: width)
        // Each release is one tick and, here, one label; "late-release" starts the third line late on the shared axis.
        for release in audit.releaseOrder { #expect(svg.contains(">\(release)</text>"), "\(release)") }
        #expect(svg.components(separatedBy: "stroke=\"black\"/>").count - 1 >= 7 + 6 + 2, "7 x ticks, 6 y ticks and the two axes")
        #expect(svg.contains(">budget users: ε = 8</text>") && svg.contains(">budget shard-1: ε = 8</text>"))
        #expect(svg.contains("&lt;a long run identifier &amp; more&gt;") && !svg.contains("<a long"))
        #expect(svg.contains(">0</text>") && svg.contains(">10</text>"), "y ticks from 0 to a round top")
        // Every legend entry starts inside the image, on as many rows as it needs.
        let height = try #require(Int(svg.split(separator: "height=\"")[1].prefix { $0.isNumber }))
        for population in audit.populations {
            let marker = "\(population.population) (δ = ".replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            let line = try #require(svg.split(separator: "\n").first { $0.contains(">" + marker) }, "legend entry for \(population.population)")
            let x = try #require(Double(line.split(separator: "x=\"")[1].prefix { $0 != "\"" }))
            let y = try #require(Double(line.split(separator: "y=\"")[1].prefix { $0 != "\"" }))
            #expect(x + 6.6 * Double(population.population.count + 12) <= Double(width) + 1, "\(population.population) runs off the right edge")
            #expect(y < Double(height), "\(population.population) runs off the bottom")
        }
        #expect(LedgerAudit.niceCeiling(7.3) == 10 && LedgerAudit.niceCeiling(0.21) == 0.25 && LedgerAudit.niceCeiling(16) == 20)
    }

    @Test("a charge over budget is refused with who, how much is left and what was asked, and writes nothing")
    func refusal() throws {
        let (ledger, dir) = try temporaryLedger()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ledger.setBudget(.init(population: "users", epsilon: 1, delta: 1e-6))
        try ledger.setBudget(.init(population: "rich", epsilon: 100, delta: 1e-6))
        try ledger.charge(releaseID: "r1", round: 1, mechanism: .init(kind: .gaussian, noiseMultiplier: 10), populations: ["users"])
        let before = try ledger.records()
        do {
            // "rich" could pay, "users" cannot: all or nothing.
            try ledger.charge(releaseID: "r2", round: 2, mechanism: .init(kind: .gaussian, noiseMultiplier: 1), populations: ["rich", "users"])
            Issue.record("the charge should have been refused")
        } catch let failure as PrivacyLedger.Failure {
            guard case .budgetExceeded(let population, let budget, let spent, let requested, let wouldBe) = failure else {
                Issue.record("wrong failure \(failure)")
                return
            }
            #expect(population == "users" && budget == 1)
            #expect(spent > 0 && spent < 1 && requested > 1 && wouldBe > 1)
            #expect(failure.description.contains("left"))
        }
        #expect(try ledger.records() == before)
        #expect(try LedgerAudit.run(ledger).verified)
        #expect(throws: PrivacyLedger.Failure.noBudget(population: "nobody")) {
            try ledger.charge(releaseID: "r3", round: 3, mechanism: .init(kind: .gaussian, noiseMultiplier: 1), populations: ["nobody"])
        }
        #expect(throws: PrivacyLedger.Failure.duplicateRelease("r1")) {
            try ledger.charge(releaseID: "r1", round: 1, mechanism: .init(kind: .gaussian, noiseMultiplier: 10), populations: ["users"])
        }
    }

    /// Every column an attacker could edit, with a value different from any the fixture has.
    static let tamperings: [(String, String)] = [
        ("release_id", "'forged'"), ("round", "round + 100"), ("population", "'other'"), ("mechanism", "'poisson_sampled_gaussian'"),
        ("noise_multiplier", "noise_multiplier * 2"), ("sampling_rate", "0.5"), ("count", "count + 1"),
        ("mode", "'central'"), ("delta", "delta * 10"), ("epsilon_after", "epsilon_after / 2"),
        ("created_at", "'2000-01-01T00:00:00Z'"), ("previous_hash", "'" + String(repeating: "a", count: 64) + "'"),
        ("hash", "'" + String(repeating: "b", count: 64) + "'"),
    ]

    @Test("tampering with any field of any record is detected", arguments: tamperings)
    func tampering(column: String, value: String) throws {
        for target in [1, 6, 11] {
            let (ledger, dir) = try populated()
            defer { try? FileManager.default.removeItem(at: dir) }
            try ledger.database.write { db in
                try db.execute(sql: "UPDATE privacy_ledger SET \(column) = \(value) WHERE sequence = \(target)")
            }
            let audit = try LedgerAudit.run(ledger)
            #expect(!audit.verified, "\(column) on record \(target) went unnoticed")
        }
    }

    @Test("deleting a record (first, middle or last) or reordering two is detected")
    func deletionAndReordering() throws {
        for target in [1, 6, 11] {
            let (ledger, dir) = try populated()
            defer { try? FileManager.default.removeItem(at: dir) }
            try ledger.database.write { db in try db.execute(sql: "DELETE FROM privacy_ledger WHERE sequence = \(target)") }
            #expect(!(try LedgerAudit.run(ledger).verified), "deleting record \(target) went unnoticed")
        }
        let (ledger, dir) = try populated()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ledger.database.write { db in
            try db.execute(sql: "UPDATE privacy_ledger SET sequence = -1 WHERE sequence = 3")
            try db.execute(sql: "UPDATE privacy_ledger SET sequence = 3 WHERE sequence = 4")
            try db.execute(sql: "UPDATE privacy_ledger SET sequence = 4 WHERE sequence = -1")
        }
        #expect(!(try LedgerAudit.run(ledger).verified))
    }

    @Test("concurrent charges from many tasks never overspend", arguments: [UInt64(1), 2, 3])
    func concurrentCharges(seed: UInt64) async throws {
        let (ledger, dir) = try temporaryLedger()
        defer { try? FileManager.default.removeItem(at: dir) }
        let budget = 2.0 + Double(seed)
        try ledger.setBudget(.init(population: "users", epsilon: budget, delta: 1e-6))
        let mechanism = PrivacyLedger.Mechanism(kind: .gaussian, noiseMultiplier: 4 + Double(seed) / 2)
        // How many sequential charges fit.
        var fit = 0
        while try PrivacyLedger.epsilon(of: Array(repeating: mechanism, count: fit + 1), delta: 1e-6) <= budget { fit += 1 }
        let accepted = await withTaskGroup(of: Bool.self) { group in
            for task in 0..<(fit + 25) {
                group.addTask {
                    (try? ledger.charge(releaseID: "r\(task)", round: Int64(task), mechanism: mechanism, populations: ["users"])) != nil
                }
            }
            var count = 0
            for await ok in group where ok { count += 1 }
            return count
        }
        #expect(accepted == fit)
        #expect(try ledger.spent(by: "users") <= budget)
        #expect(try LedgerAudit.run(ledger).verified)
    }

    @Test("a budget is a ledger record: changes are chained and listed, an edit outside the ledger fails the audit, δ is fixed once charged")
    func budgetRecords() throws {
        let (ledger, dir) = try populated()
        defer { try? FileManager.default.removeItem(at: dir) }
        var history = try ledger.budgetHistory()
        #expect(history.map(\.population) == ["users", "shard-1"] && history.map(\.sequence) == [1, 2])
        try ledger.setBudget(.init(population: "users", epsilon: 8, delta: 1e-6), reason: "same again")
        #expect(try ledger.budgetHistory().count == 2, "setting the budget it has records nothing")
        try ledger.setBudget(.init(population: "users", epsilon: 12, delta: 1e-6), reason: "admin: more runs approved")
        history = try ledger.budgetHistory()
        #expect(history.count == 3 && history[2].epsilon == 12 && history[2].reason == "admin: more runs approved")
        #expect(history[2].previousHash == history[1].hash)
        var audit = try LedgerAudit.run(ledger)
        #expect(audit.verified && audit.budgetChanges.count == 3, "\(audit.problems)")
        #expect(throws: PrivacyLedger.Failure.self, "δ cannot change under recorded charges") {
            try ledger.setBudget(.init(population: "users", epsilon: 12, delta: 1e-5))
        }
        // Raising a budget behind the ledger's back (a direct write) is caught.
        try ledger.database.write { db in try db.execute(sql: "UPDATE privacy_budget SET epsilon = 100 WHERE population = 'users'") }
        audit = try LedgerAudit.run(ledger)
        #expect(!audit.verified && audit.problems.contains { $0.reason.contains("changed outside the ledger") })
    }
}
