import FedSegPostgres
import FedSegPrivacy
import FedSegProtocol
import FedSegTestSupport
import Foundation
import Testing

private let update = UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue)
private let decline = UInt8(Fedseg_V1_MessageKind.decline.rawValue)
private let shares = UInt8(Fedseg_V1_MessageKind.secaggShares.rawValue)

private func message(_ client: String, round: UInt64 = 7, kind: UInt8 = update, bytes: [UInt8]? = nil) -> PostgresAcceptedMessages.Message {
    .init(clientID: client, round: round, kind: kind, envelope: bytes ?? Array("\(client)-\(round)-\(kind)".utf8), reveals: kind == update)
}

@Suite("Accepted messages on PostgreSQL")
struct AcceptedMessagesTests {
    @Test("the intake's replay rules, within a batch and across batches; envelopes read back in acceptance order and are dropped with their round")
    func replayRules() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let database = try await PostgresStore.open(PostgresLocation(url: server.url))
        defer { database.close() }
        let store = try await PostgresAcceptedMessages(database: database)

        let first = try await store.accept([message("a"), message("b"), message("a"), message("c", kind: shares)], charge: nil)
        #expect(first.rejections == [nil, nil, .replay(client: "a", round: 7), nil])
        #expect(!first.charged)
        let second = try await store.accept(
            [message("a", kind: decline), message("c", kind: shares), message("c", kind: decline), message("a", round: 8)], charge: nil
        )
        #expect(second.rejections == [
            .alreadyAnswered(client: "a", round: 7, earlier: update), .replay(client: "c", round: 7), nil, nil,
        ])
        #expect(try await store.envelopes(round: 7) == ["a-7-\(update)", "b-7-\(update)", "c-7-\(shares)", "c-7-\(decline)"].map { Array($0.utf8) })
        try await store.dropEnvelopes(round: 7)
        #expect(try await store.envelopes(round: 7).isEmpty)
        #expect(try await store.envelopes(round: 8).count == 1)
        // The replay records outlive the envelopes.
        #expect(try await store.accept([message("b")], charge: nil).rejections == [.replay(client: "b", round: 7)])
    }

    @Test("two processes accepting the same clients' updates at once: each update recorded once, the round charged once")
    func twoProcesses() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let one = try await PostgresStore.open(PostgresLocation(url: server.url))
        let two = try await PostgresStore.open(PostgresLocation(url: server.url))
        defer { one.close(); two.close() }
        let stores = [try await PostgresAcceptedMessages(database: one), try await PostgresAcceptedMessages(database: two)]
        let ledger = try await PostgresPrivacyLedger(database: one)
        try await ledger.setBudget(.init(population: "users", epsilon: 8, delta: 1e-6))
        let charge = PostgresAcceptedMessages.Charge(
            releaseID: "round-7", round: 7, mechanism: .init(kind: .gaussian, noiseMultiplier: 3), populations: ["users"]
        )

        // Every client's update reaches both processes (a retry after a lost answer), in batches of 4:
        // first with the round's charge (batches then queue on the ledger's lock), then in a round
        // already charged, where batches run side by side and insert the same keys at once.
        let clients = (0..<32).map { "client-\($0)" }
        for (round, charge) in [(UInt64(7), Optional(charge)), (8, nil)] {
            let outcomes = try await withThrowingTaskGroup(of: (rejections: [UpdateIntake.Rejection?], charged: Bool).self) { group in
                for store in stores {
                    for batch in stride(from: 0, to: clients.count, by: 4) {
                        let messages = clients[batch..<batch + 4].map { message($0, round: round) }
                        group.addTask { try await store.accept(messages, charge: charge) }
                    }
                }
                var outcomes: [(rejections: [UpdateIntake.Rejection?], charged: Bool)] = []
                for try await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let all = outcomes.flatMap(\.rejections)
            #expect(all.filter { $0 == nil }.count == clients.count)
            #expect(all.compactMap { $0 }.allSatisfy { if case .replay = $0 { true } else { false } })
            #expect(outcomes.filter(\.charged).count == (charge == nil ? 0 : 1))
            #expect(try await stores[1].envelopes(round: round).count == clients.count)
        }
        #expect(try await ledger.records().map(\.releaseID) == ["round-7"])
        #expect(try await ledger.audit().verified)
    }
}
