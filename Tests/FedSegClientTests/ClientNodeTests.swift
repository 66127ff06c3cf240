import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegSecureAggregation
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
            $0.deadlineUnixMs = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
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

/// The node's side of a distributed round, against a scripted coordinator that signs its views.
@Suite("Client node in distributed rounds")
struct ClientNodeSecAggTests {
    func signed(_ message: some SwiftProtobuf.Message, kind: Fedseg_V1_SignedPublication.Kind, by coordinator: borrowing NodeIdentity) throws -> [UInt8] {
        let payload: Data = try message.serializedData()
        return try Fedseg_V1_SignedPublication.with {
            $0.kind = kind
            $0.payload = payload
            $0.signature = Data(coordinator.signing.signature(for: payload))
        }.serializedBytes()
    }

    func plan(round: UInt64, cohort: [String]) -> Fedseg_V1_RoundPlan {
        .with {
            $0.protocolVersion = fedsegProtocolVersion
            $0.runID = "run-test"
            $0.round = round
            $0.phase = .clustering
            $0.k = 2
            $0.dimension = 4
            $0.centroids = [1, 0, 0, 0, 0, 1, 0, 0]
            $0.clipNorm = 1
            $0.noiseMultiplier = 1
            $0.sumStd = 1
            $0.countStd = 1
            $0.privacyMode = .distributed
            $0.samplingRate = 1
            $0.deadlineUnixMs = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
            $0.minParticipants = 3
            $0.embedderID = "hashing-v1-d4-s0"
            $0.delta = 1e-6
            $0.secagg = .with {
                $0.cohort = cohort
                $0.degree = 2
                $0.threshold = 1
                $0.minSurvivors = 3
                $0.graphSeed = 9
                $0.length = 10
                $0.sumScale = 4096
                $0.countScale = 4096
                $0.clientSigma = 6000
                $0.stageSeconds = 10
            }
        }
    }

    func view(_ plan: Fedseg_V1_RoundPlan, stage: Fedseg_V1_SecAggStageKind, _ edit: (inout Fedseg_V1_SecAggStage) -> Void = { _ in }) -> Fedseg_V1_SecAggStage {
        var view = Fedseg_V1_SecAggStage()
        view.runID = plan.runID
        view.round = plan.round
        view.stage = stage
        view.stageDeadlineUnixMs = plan.deadlineUnixMs
        edit(&view)
        return view
    }

    @Test("a node advertises, shares with its neighbours only, charges its masked input once, and refuses to reveal to too few survivors")
    func stages() async throws {
        let fixture = try Fixture()
        let node = try await fixture.node()
        let cohort = ["client-0", "client-1", "client-2", "client-3", "client-4"]
        let plan = plan(round: 7, cohort: cohort)
        try plan.validate()
        let publication = try signed(plan, kind: .roundPlan, by: fixture.coordinator)
        let advertise = try await node.secAggAdvertise(publication)
        #expect(advertise.kind == .secaggAdvertise)
        #expect(try await node.secAggAdvertise(publication).envelope == advertise.envelope, "asked again, the same bytes")
        #expect(try await node.ledger().records().isEmpty, "advertising keys releases nothing")

        // The neighbours' keys as the coordinator would route them.
        let me = 1
        let graph = NeighborGraph(clients: cohort.count, degree: 2, seed: 9)
        let neighbours = graph.neighbors[me]
        let peers = neighbours.map { _ in (KeyAgreement.PrivateKey().publicKey, KeyAgreement.PrivateKey().publicKey) }
        func entry(_ index: Int, _ keys: (KeyAgreement.PublicKey, KeyAgreement.PublicKey)) -> Fedseg_V1_SecAggStage.Advertisement {
            .with {
                $0.index = UInt32(index)
                $0.encryptionKey = Data(keys.0.bytes)
                $0.maskingKey = Data(keys.1.bytes)
            }
        }
        let outsider = try #require(Set(0..<cohort.count).subtracting(neighbours + [me]).first)
        let forgedDirectory = view(plan, stage: .secaggStageShare) { $0.directory = [entry(outsider, (KeyAgreement.PrivateKey().publicKey, KeyAgreement.PrivateKey().publicKey))] }
        await #expect(throws: ClientNode.NodeError.self, "a directory naming a non-neighbour is refused") {
            _ = try await node.secAggStep(try self.signed(forgedDirectory, kind: .secaggStage, by: fixture.coordinator))
        }
        let stranger = NodeIdentity()
        let unsigned = try signed(view(plan, stage: .secaggStageShare), kind: .secaggStage, by: stranger)
        await #expect(throws: ClientNode.NodeError.badSignature) { _ = try await node.secAggStep(unsigned) }

        let directory = view(plan, stage: .secaggStageShare) { v in v.directory = zip(neighbours, peers).map { entry($0, $1) } }
        let shares = try #require(try await node.secAggStep(try signed(directory, kind: .secaggStage, by: fixture.coordinator)))
        #expect(shares.kind == .secaggShares)

        // Mask: the node charges its ledger once, with the distributed mechanism.
        let mask = try signed(view(plan, stage: .secaggStageMask) { v in v.directory = zip(neighbours, peers).map { entry($0, $1) } }, kind: .secaggStage, by: fixture.coordinator)
        let masked = try #require(try await node.secAggStep(mask))
        #expect(masked.kind == .secaggMaskedInput)
        #expect(try await node.secAggStep(mask)?.envelope == masked.envelope)
        let records = try await node.ledger().records()
        #expect(records.count == 1 && records[0].mode == "distributed" && records[0].releaseID == "run-test/round-7")
        // σ_total = 6000·√3, Δ = √(4096² + 4096²) + √10.
        let z = 6000 * 3.0.squareRoot() / ((2 * 4096.0 * 4096).squareRoot() + 10.0.squareRoot())
        #expect(abs(records[0].noiseMultiplier - z) < 1e-9)

        // Unmask: two survivors are fewer than the plan's minimum of three.
        let few = try signed(view(plan, stage: .secaggStageUnmask) { $0.survivors = [UInt32(me), UInt32(neighbours[0])] }, kind: .secaggStage, by: fixture.coordinator)
        await #expect(throws: ClientNode.NodeError.self) { _ = try await node.secAggStep(few) }
        let enough = try signed(view(plan, stage: .secaggStageUnmask) { $0.survivors = [0, 1, 2, 3] }, kind: .secaggStage, by: fixture.coordinator)
        let reveals = try #require(try await node.secAggStep(enough))
        #expect(reveals.kind == .secaggUnmask)
    }

    @Test("a distributed plan that breaks the protocol's rules is refused")
    func invalidPlans() throws {
        let good = plan(round: 1, cohort: ["a", "b", "c", "d"])
        try good.validate()
        var lowNoise = good
        lowNoise.secagg.clientSigma = 2
        #expect(throws: ProtocolError.self) { try lowNoise.validate() }
        var fewSurvivors = good
        fewSurvivors.secagg.minSurvivors = 1
        #expect(throws: ProtocolError.self) { try fewSurvivors.validate() }
        var wrongLength = good
        wrongLength.secagg.length = 11
        #expect(throws: ProtocolError.self) { try wrongLength.validate() }
        var duplicate = good
        duplicate.secagg.cohort = ["a", "a", "c", "d"]
        #expect(throws: ProtocolError.self) { try duplicate.validate() }
        var missing = good
        missing.clearSecagg()
        #expect(throws: ProtocolError.self) { try missing.validate() }
    }
}
