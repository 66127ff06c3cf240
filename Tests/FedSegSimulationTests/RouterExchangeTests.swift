import FedSegClient
import FedSegEmbedding
import FedSegNode
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
        let report = try await federation(PlantedSegments(users: 160, segments: 4, seed: 3).generate(), clients: 12) { $0.openNodes = 3 }
        #expect(report.participantsPerRound.count >= 3, "the start histogram, a Lloyd round and the recommendation release")
        #expect(report.participantsPerRound.allSatisfy { $0 == 12 }, "every node answered every release: \(report.participantsPerRound)")
        #expect(report.ledgersVerified && report.ledgersAgree)
    }

    @Test("candidate items: the histogram is released over the catalogue's first items only, every private list stays among them, and the baselines still rank every item")
    func candidateItems() async throws {
        let dataset = PlantedSegments(users: 120, segments: 4, itemsPerSegment: 30, seed: 5).generate()
        let candidates = 50
        let report = try await federation(dataset, clients: 6) { $0.candidateItems = candidates }
        #expect(report.releasedCatalogSize == candidates, "the run's catalogue is the first \(candidates) of \(dataset.items.count) items")
        let rows = Dictionary(uniqueKeysWithValues: report.recommendation.map { ($0.model, $0) })
        #expect(rows.count == 6, "the private model is evaluated against the full catalogue's baselines: \(rows.keys.sorted())")
        let reachable = Double(candidates) / Double(dataset.items.count)
        for name in ["segment_private", "private_reranked"] {
            let coverage = try #require(rows[name]).coverage
            #expect(coverage > 0 && coverage <= reachable + 1e-12, "\(name) recommends only candidates: coverage \(coverage), at most \(reachable)")
        }
        #expect(try #require(rows["popularity_reranked"]).coverage > reachable, "the baselines rank items outside the candidates too")
        #expect(report.ledgersVerified && report.ledgersAgree)
    }

    /// A federation of `clients` nodes (hashing embedder, k = 4, one Lloyd round) over the
    /// in-memory transport to a coordinator in a fresh state directory.
    private func federation(
        _ dataset: Dataset, clients: Int, configure: (inout NetworkedSimulation.Configuration) -> Void
    ) async throws -> NetworkedSimulation.Report {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-federation-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: state) }
        var configuration = NetworkedSimulation.Configuration(coordinatorURL: "", adminToken: "", clients: clients, workDirectory: state)
        configuration.embedder = .hashing
        configuration.k = 4
        configuration.rounds = 1
        configure(&configuration)
        let base = configuration
        return try await InProcessCoordinator.with(
            stateDirectory: state.appendingPathComponent("coordinator", isDirectory: true), totalEpsilon: 8, totalDelta: 1e-5, embeddingCache: nil
        ) { coordinator in
            var configuration = base
            configuration.coordinatorURL = coordinator.url
            configuration.adminToken = coordinator.adminToken
            configuration.exchange = coordinator.exchange
            return try await NetworkedSimulation(configuration: configuration).run(dataset: dataset)
        }
    }
}
