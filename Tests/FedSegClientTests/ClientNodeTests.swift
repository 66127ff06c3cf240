import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation
import SwiftProtobuf
import Testing

@testable import FedSegClient

/// A coordinator stand-in: counts what it is sent and answers as scripted.
actor ScriptedTransport: CoordinatorTransport {
    var answers: [Result<SubmitResult, TransportError>]
    var received: [[UInt8]] = []

    init(_ answers: [Result<SubmitResult, TransportError>]) { self.answers = answers }

    func enroll(_ request: Fedseg_V1_EnrollRequest) async throws -> Fedseg_V1_EnrollResponse { throw TransportError.network("unused") }
    func currentPlan() async throws -> [UInt8]? { nil }
    func latestModel() async throws -> [UInt8]? { nil }
    func submit(round: UInt64, envelope: [UInt8]) async throws -> SubmitResult {
        received.append(envelope)
        let next = answers.isEmpty ? .success(.accepted) : answers.removeFirst()
        return try next.get()
    }
}

final class Fixture: Sendable {
    let coordinator = NodeIdentity()
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-client-test-\(UUID().uuidString)", isDirectory: true)
    }

    func node(epsilon: Double = 8, embedderID: String = "hashing-v1-d4-s0") async throws -> ClientNode {
        var rng = SeededRandom(seed: 4)
        var points = rng.normalMatrix(rows: 30, cols: 4)
        points.normalizeRows()
        let data = ClientData(userIDs: (0..<30).map { "u\($0)" }, points: points, items: (0..<30).map { ["item-\($0 % 5)"] })
        let node = try ClientNode(directory: directory, id: "client-1", embedderID: embedderID, data: data, epsilonBudget: epsilon, delta: 1e-6)
        await node.pin(signing: coordinator.signing.publicKey, kx: coordinator.keyAgreement.publicKey)
        return node
    }

    func plan(round: UInt64, sumStd: Double = 2, countStd: Double = 2, forged: Bool = false) throws -> [UInt8] {
        let plan = Fedseg_V1_RoundPlan.with {
            $0.protocolVersion = fedsegProtocolVersion
            $0.runID = "run-test"
            $0.round = round
            $0.phase = .clustering
            $0.k = 2
            $0.dimension = 4
            $0.centroids = [1, 0, 0, 0, 0, 1, 0, 0]
            $0.clipNorm = 1
            $0.noiseMultiplier = 1
            $0.sumStd = sumStd
            $0.countStd = countStd
            $0.privacyMode = .local
            $0.samplingRate = 1
            $0.deadlineUnixMs = Int64((Date().timeIntervalSince1970 + 60) * 1000)
            $0.minParticipants = 1
            $0.embedderID = "hashing-v1-d4-s0"
            $0.delta = 1e-6
        }
        let payload: Data = try plan.serializedData()
        let signature = forged ? Signing.PrivateKey().signature(for: payload) : coordinator.signing.signature(for: payload)
        return try Fedseg_V1_SignedPublication.with {
            $0.kind = .roundPlan
            $0.payload = payload
            $0.signature = Data(signature)
        }.serializedBytes()
    }
}

@Suite("Client node")
struct ClientNodeTests {
    @Test("a round is charged once and answered with the same bytes however often it is asked, across restarts")
    func chargedOnce() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node()
        let publication = try fixture.plan(round: 7)
        let first = try await node.answer(publication)
        #expect(first.kind == .clientUpdate && !first.resent)
        let again = try await node.answer(publication)
        #expect(again.resent && again.envelope == first.envelope)
        #expect(try await node.ledger().records().count == 1)
        // The coordinator can open it, and the statistics carry the plan's shape.
        let opened = try Envelope.open(first.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: node.keys.identity.keyAgreement.publicKey)
        let update = try Fedseg_V1_ClientUpdate(serializedBytes: opened.plaintext)
        #expect(update.sums.count == 8 && update.counts.count == 2 && update.round == 7)
        // The ledger charges the z the node computes from the plan's own numbers.
        let record = try #require(try await node.ledger().records().first)
        #expect(abs(record.noiseMultiplier - SumCountNoise(clipNorm: 1, sumStd: 2, countStd: 2).noiseMultiplier) < 1e-12)

        // A restarted node (same directory) still answers with the stored bytes.
        try await node.suspend()
        let restarted = try await fixture.node()
        let afterRestart = try await restarted.answer(publication)
        #expect(afterRestart.resent && afterRestart.envelope == first.envelope)
        #expect(try await restarted.ledger().records().count == 1)
    }

    @Test("a plan signed by anyone but the pinned coordinator is refused")
    func forgedPlan() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node()
        let forged = try fixture.plan(round: 3, forged: true)
        await #expect(throws: ClientNode.NodeError.badSignature) { try await node.answer(forged) }
        #expect(try await node.ledger().records().isEmpty)
    }

    @Test("a round that would exceed the node's budget is declined, and nothing is charged")
    func budgetDecline() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node(epsilon: 0.5)
        let answer = try await node.answer(try fixture.plan(round: 1, sumStd: 0.5, countStd: 0.5))
        #expect(answer.kind == .decline && answer.declineReason == "budget")
        #expect(try await node.ledger().records().isEmpty)
        let opened = try Envelope.open(answer.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: node.keys.identity.keyAgreement.publicKey)
        #expect(try Fedseg_V1_Decline(serializedBytes: opened.plaintext).reason == "budget")
    }

    @Test("a plan for another embedder is declined")
    func embedderMismatch() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node(embedderID: "all-MiniLM-L6-v2")
        let answer = try await node.answer(try fixture.plan(round: 2))
        #expect(answer.kind == .decline)
        #expect(try await node.ledger().records().isEmpty)
    }

    @Test("network errors are retried with the same bytes; a replay answer counts as delivered; a refusal is final")
    func retries() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node()
        let answer = try await node.answer(try fixture.plan(round: 5))
        let flaky = ScriptedTransport([.failure(.network("reset")), .failure(.network("refused")), .success(.accepted)])
        #expect(await node.send(answer, transport: flaky) == .accepted)
        let sent = await flaky.received
        #expect(sent.count == 3 && Set(sent).count == 1 && sent[0] == answer.envelope)

        let replayed = ScriptedTransport([.failure(.network("timeout")), .success(.rejected(.replay, "already"))])
        #expect(await node.send(answer, transport: replayed) == .alreadyAccepted)

        let refusing = ScriptedTransport([.success(.rejected(.late, "closed")), .success(.accepted)])
        #expect(await node.send(answer, transport: refusing) == .rejected(.late, "closed"))
        #expect(await refusing.received.count == 1)
    }
}
