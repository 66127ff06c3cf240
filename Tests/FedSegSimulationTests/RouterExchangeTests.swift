import FedSegClient
import FedSegEmbedding
import FedSegProtocol
import FedSegSimulation
import Foundation
import NIOHTTP1
import SwiftProtobuf
import Testing

/// The in-memory transport reaches the coordinator's own route handlers and reads their answers
/// as the HTTP transport does: the simulator's `--transport memory` runs the product's checks.
@Suite("In-process transport to the coordinator's router")
struct RouterExchangeTests {
    @Test("plans, enrolment, updates and limits answer as over HTTP")
    func answersAsOverHTTP() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-exchange-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: state) }
        try await InProcessCoordinator.with(stateDirectory: state, totalEpsilon: 4, totalDelta: 1e-5, embeddingCache: nil) { coordinator in
            let raw = try await coordinator.exchange.exchange(.GET, "/healthz", body: nil)
            #expect(raw.status == 200 && raw.body == Array("ok\n".utf8))
            #expect(try await coordinator.exchange.exchange(.GET, "/no/such/route", body: nil).status == 404)

            let transport = HTTPCoordinatorTransport(exchange: coordinator.exchange)
            #expect(try await transport.currentPlan() == nil)
            #expect(try await transport.latestModel() == nil)

            // A made-up token is refused by the registry, with the protocol's code.
            let enroll = Fedseg_V1_EnrollRequest.with {
                $0.protocolVersion = fedsegProtocolVersion
                $0.token = "not-a-token"
                $0.clientID = "c1"
                $0.signingPublicKey = Data(repeating: 1, count: 32)
                $0.kxPublicKey = Data(repeating: 2, count: 32)
            }
            do {
                _ = try await transport.enroll(enroll)
                Issue.record("a made-up token was accepted")
            } catch let TransportError.refused(status, code, _) {
                #expect(status == 403 && code == .badToken)
            }

            // Bytes that are no envelope, and a body over the coordinator's limit.
            let garbage = try await transport.submit(round: 1, envelope: Array("hello".utf8))
            guard case .rejected(.tampered, let why) = garbage, why.contains("truncated") else {
                Issue.record("bytes that are no envelope gave \(garbage)")
                return
            }
            let oversized = try await transport.submit(round: 1, envelope: [UInt8](repeating: 0, count: 17 << 20))
            guard case .rejected(.oversized, _) = oversized else {
                Issue.record("an oversized body gave \(oversized)")
                return
            }
        }
    }

    @Test("a federation in memory where most nodes close their database between uses: every release accepted, every ledger verified and agreeing")
    func suspendedNodes() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-suspended-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: state) }
        let dataset = PlantedSegments(users: 160, segments: 4, seed: 3).generate()
        let report = try await InProcessCoordinator.with(
            stateDirectory: state.appendingPathComponent("coordinator", isDirectory: true), totalEpsilon: 8, totalDelta: 1e-5, embeddingCache: nil
        ) { coordinator in
            var configuration = NetworkedSimulation.Configuration(
                coordinatorURL: coordinator.url, adminToken: coordinator.adminToken, clients: 12, workDirectory: state
            )
            configuration.exchange = coordinator.exchange
            configuration.embedder = .hashing
            configuration.k = 4
            configuration.rounds = 1
            configuration.openNodes = 3
            return try await NetworkedSimulation(configuration: configuration).run(dataset: dataset)
        }
        #expect(report.participantsPerRound.count >= 3, "the start histogram, a Lloyd round and the recommendation release")
        #expect(report.participantsPerRound.allSatisfy { $0 == 12 }, "every node answered every release: \(report.participantsPerRound)")
        #expect(report.ledgersVerified && report.ledgersAgree)
    }
}
