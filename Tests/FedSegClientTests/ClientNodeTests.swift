import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegSecureAggregation
import Foundation
import GRDB
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

    func plan(
        round: UInt64, sumStd: Double = 2, countStd: Double = 2, forged: Bool = false, edit: (inout Fedseg_V1_RoundPlan) -> Void = { _ in }
    ) throws -> [UInt8] {
        let grid = FixedPointNoise.local(noise: SumCountNoise(clipNorm: 1, sumStd: sumStd, countStd: countStd), k: 2, dimension: 4)
        let plan = Fedseg_V1_RoundPlan.with {
            $0.sumScale = grid.sumScale
            $0.countScale = grid.countScale
            $0.integerSigma = grid.clientSigma
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
        var edited = plan
        edit(&edited)
        let payload: Data = try edited.serializedData()
        let signature = forged ? Signing.PrivateKey().signature(for: payload) : coordinator.signing.signature(for: payload)
        return try Fedseg_V1_SignedPublication.with {
            $0.kind = .roundPlan
            $0.payload = payload
            $0.signature = Data(signature)
        }.serializedBytes()
    }
}

/// A peer's enrolled identity, held by reference (the key itself is not copyable).
final class PeerIdentity: Sendable {
    let identity = NodeIdentity()
    var signingKey: Data { Data(identity.signing.publicKey.bytes) }
    func sign(_ statement: [UInt8]) -> Data { Data(identity.signing.signature(for: statement)) }
}

@Suite("Client node")
struct ClientNodeTests {
    @Test("every commit waits for the disk, on the node's first open (GRDB's WAL set-up leaves NORMAL) and after it reopens")
    func durableCommits() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-node-sync-\(UUID().uuidString)", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = ClientData(userIDs: [], points: Matrix(rows: 0, cols: 4), items: [])
        let node = try ClientNode(directory: directory, id: "n", embedderID: "e", data: data, epsilonBudget: 1, delta: 1e-6)
        #expect(try await node.ledger().database.synchronousLevel() == 2)
        try await node.suspend()
        #expect(try await node.ledger().database.synchronousLevel() == 2)
        let reopened = try ClientNode(directory: directory, id: "n", embedderID: "e", data: data, epsilonBudget: 1, delta: 1e-6)
        #expect(try await reopened.ledger().database.synchronousLevel() == 2)
    }

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
        #expect(update.words.count == 8 + 2 && update.round == 7)
        // The ledger charges the z the node computes from the plan's grid and σ: a discrete
        // Gaussian (no float noise), at the planned z to within the grid's rounding term.
        let record = try #require(try await node.ledger().records().first)
        #expect(record.mechanism == "discrete_gaussian")
        let planned = SumCountNoise(clipNorm: 1, sumStd: 2, countStd: 2).noiseMultiplier
        #expect(abs(record.noiseMultiplier - planned) < 1e-9 * planned)
        // The counts decode to the node's 30 users plus noise of the plan's size.
        let decoded = FixedPointNoise.local(noise: SumCountNoise(clipNorm: 1, sumStd: 2, countStd: 2), k: 2, dimension: 4).decode(integers: update.words)
        let total: Double = decoded.counts.reduce(0, +)
        let bound: Double = 6 * 2 * 2.0.squareRoot()
        #expect(abs(total - 30) < bound)

        // A restarted node (same directory) still answers with the stored bytes. Suspending left
        // the WAL unmerged (no checkpoint on close), and the reopened node reads the charge from it.
        try await node.suspend()
        let wal = node.directory.appendingPathComponent(ClientNode.databaseFile + "-wal").path
        let walBytes = (try? FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int) ?? 0
        #expect(walBytes > 0, "the WAL was checkpointed and removed at suspend")
        let restarted = try await fixture.node()
        let afterRestart = try await restarted.answer(publication)
        #expect(afterRestart.resent && afterRestart.envelope == first.envelope)
        #expect(try await restarted.ledger().records().count == 1)
        // Reopened without asking for WAL again, the database is still in WAL mode and waits for
        // the disk on every commit.
        let (journal, synchronous) = try await restarted.database.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(journal == "wal" && synchronous == 2)
        // A second round on the restarted node: sealed under its cached session key, opened by the
        // coordinator from the long-term keys alone.
        let next = try await restarted.answer(try fixture.plan(round: 8))
        let second = try Envelope.open(next.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: restarted.keys.identity.keyAgreement.publicKey)
        #expect(try Fedseg_V1_ClientUpdate(serializedBytes: second.plaintext).round == 8)
    }

    @Test("a recommendation round with a global row sends k + 1 rows and charges σ/√(2m); without it k rows and σ/√m")
    func recommendationGlobalRow() async throws {
        for globalRow in [true, false] {
            let fixture = try Fixture()
            let node = try await fixture.node()
            let m = 3
            let sumStd = 6.0
            let publication = try fixture.plan(round: 9) {
                $0.phase = .recommendation
                $0.sumScale = 0
                $0.countScale = 0
                $0.integerSigma = 0
                $0.sumStd = sumStd
                $0.countStd = sumStd
                $0.maxItemsPerUser = UInt32(m)
                $0.catalogItems = (0..<5).map { "item-\($0)" }
                $0.catalogSize = 5
                $0.globalRow = globalRow
            }
            let answer = try await node.answer(publication)
            #expect(answer.kind == .recommendationUpdate)
            let opened = try Envelope.open(answer.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: node.keys.identity.keyAgreement.publicKey)
            let update = try Fedseg_V1_RecommendationUpdate(serializedBytes: opened.plaintext)
            #expect(update.counts.count == (globalRow ? 3 : 2) * 5)
            let record = try #require(try await node.ledger().records().first)
            let sensitivity = Double(globalRow ? 2 * m : m).squareRoot()
            #expect(abs(record.noiseMultiplier - sumStd / sensitivity) < 1e-12)
            try? FileManager.default.removeItem(at: fixture.directory)
        }
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

    @Test("a node with no users declines before sampling or charging anything")
    func noUsers() async throws {
        let fixture = try Fixture()
        let data = ClientData(userIDs: [], points: Matrix(rows: 0, cols: 4), items: [])
        let node = try ClientNode(directory: fixture.directory, id: "client-1", embedderID: "hashing-v1-d4-s0", data: data, epsilonBudget: 8, delta: 1e-6)
        await node.pin(signing: fixture.coordinator.signing.publicKey, kx: fixture.coordinator.keyAgreement.publicKey)
        let answer = try await node.answer(try fixture.plan(round: 4))
        #expect(answer.kind == .decline && answer.declineReason == "no_users")
        #expect(try await node.ledger().records().isEmpty)
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

        // A coordinator down for longer than 8 attempts: the node keeps trying until the deadline.
        let down = ScriptedTransport(Array(repeating: .failure(.network("refused")), count: 20) + [.success(.accepted)])
        #expect(await node.send(answer, transport: down, backoff: (0.001, 0.004)) == .accepted)
        #expect(await down.received.count == 21)
        // And stops at the round's deadline, saying so.
        var soon = answer
        soon.deadline = Date().addingTimeInterval(0.3)
        let never = ScriptedTransport(Array(repeating: .failure(.network("refused")), count: 10_000))
        let started = Date()
        guard case .gaveUp(let why) = await node.send(soon, transport: never, backoff: (0.01, 0.05)) else {
            Issue.record("a send with no answer before the deadline gives up")
            return
        }
        #expect(why.contains("deadline") && Date().timeIntervalSince(started) < 2)
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
                $0.threshold = 2
                $0.minSurvivors = 3
                $0.assumedColluders = 1
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

    @Test("a node signs its keys, shares only with neighbours whose keys their identity signed, charges its masked input once, signs one survivor set, and reveals only when t neighbours signed the same")
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
        // The advertisement carries a signature by the node's enrolled key over its keys.
        let opened = try Envelope.open(advertise.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: node.keys.identity.keyAgreement.publicKey)
        let advertised = try Fedseg_V1_SecAggAdvertise(serializedBytes: opened.plaintext)
        let statement = SecAggSigning.advertisement(
            runID: plan.runID, round: 7, clientID: "client-1", encryptionKey: advertised.encryptionKey, maskingKey: advertised.maskingKey
        )
        #expect(node.keys.identity.signing.publicKey.isValidSignature([UInt8](advertised.signature), for: statement))

        // The neighbours, each with an enrolled identity that signs its per-round keys.
        let me = 1
        let graph = NeighborGraph(clients: cohort.count, degree: 2, seed: 9)
        let neighbours = graph.neighbors[me]
        let identities = Dictionary(uniqueKeysWithValues: neighbours.map { ($0, PeerIdentity()) })
        let peers = neighbours.map { _ in (KeyAgreement.PrivateKey().publicKey, KeyAgreement.PrivateKey().publicKey) }
        func entry(_ index: Int, _ keys: (KeyAgreement.PublicKey, KeyAgreement.PublicKey), signer: PeerIdentity? = nil) -> Fedseg_V1_SecAggStage.Advertisement {
            let identity = signer ?? identities[index] ?? PeerIdentity()
            let statement = SecAggSigning.advertisement(
                runID: plan.runID, round: plan.round, clientID: cohort[index], encryptionKey: Data(keys.0.bytes), maskingKey: Data(keys.1.bytes)
            )
            return .with {
                $0.index = UInt32(index)
                $0.encryptionKey = Data(keys.0.bytes)
                $0.maskingKey = Data(keys.1.bytes)
                $0.signingKey = (identities[index] ?? identity).signingKey
                $0.signature = identity.sign(statement)
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
        let impostor = PeerIdentity()
        // Keys the coordinator substituted (signed by someone else than the neighbour's identity).
        let substituted = view(plan, stage: .secaggStageShare) { v in
            v.directory = zip(neighbours, peers).map { entry($0, $1) }
            v.directory[0] = entry(neighbours[0], (KeyAgreement.PrivateKey().publicKey, KeyAgreement.PrivateKey().publicKey), signer: impostor)
        }
        await #expect(throws: ClientNode.NodeError.self, "keys not signed by the neighbour's identity are refused") {
            _ = try await node.secAggStep(try self.signed(substituted, kind: .secaggStage, by: fixture.coordinator))
        }

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
        // One assumed colluder of 3 minimum survivors: σ_total = 6000·√2, Δ = √(4096² + 4096²) + √10.
        let z = 6000 * 2.0.squareRoot() / ((2 * 4096.0 * 4096).squareRoot() + 10.0.squareRoot())
        #expect(abs(records[0].noiseMultiplier - z) < 1e-9)

        // Consistency: two survivors are fewer than the plan's minimum of three; then one set signed.
        let few = try signed(view(plan, stage: .secaggStageConsistency) { $0.survivors = [UInt32(me), UInt32(neighbours[0])] }, kind: .secaggStage, by: fixture.coordinator)
        await #expect(throws: ClientNode.NodeError.self) { _ = try await node.secAggStep(few) }
        // This node and both its neighbours: the minimum of three, and t = 2 neighbours can sign.
        let survivors = (neighbours + [me]).sorted().map(UInt32.init)
        let consistency = try #require(try await node.secAggStep(try signed(view(plan, stage: .secaggStageConsistency) { $0.survivors = survivors }, kind: .secaggStage, by: fixture.coordinator)))
        #expect(consistency.kind == .secaggConsistency)
        let signedSet = try Fedseg_V1_SecAggConsistency(serializedBytes: try Envelope.open(consistency.envelope, recipient: fixture.coordinator.keyAgreement, senderPublicKey: node.keys.identity.keyAgreement.publicKey).plaintext)
        let survivorStatement = SecAggSigning.survivors(runID: plan.runID, round: 7, survivors: survivors)
        #expect(node.keys.identity.signing.publicKey.isValidSignature([UInt8](signedSet.signature), for: survivorStatement))

        // Unmask. A coordinator that lies about who survived: another set than the one signed.
        func signatures(_ of: [Int], over set: [UInt32]) -> [Fedseg_V1_SecAggStage.SurvivorSignature] {
            of.map { v in
                .with {
                    $0.index = UInt32(v)
                    $0.signature = identities[v]!.sign(SecAggSigning.survivors(runID: plan.runID, round: 7, survivors: set))
                }
            }
        }
        let inSet = neighbours.filter { survivors.contains(UInt32($0)) }
        let otherSet: [UInt32] = [0, 1, 2, 3, 4]
        let lie = try signed(view(plan, stage: .secaggStageUnmask) { $0.survivors = otherSet; $0.survivorSignatures = signatures(inSet, over: otherSet) }, kind: .secaggStage, by: fixture.coordinator)
        await #expect(throws: ClientNode.NodeError.self, "a survivor set other than the signed one") { _ = try await node.secAggStep(lie) }
        // Fewer than t = 2 neighbours' signatures on the set (one, and one forged): no reveal.
        let forgedSignature = Fedseg_V1_SecAggStage.SurvivorSignature.with {
            $0.index = UInt32(inSet[1])
            $0.signature = impostor.sign(survivorStatement)
        }
        let short = try signed(view(plan, stage: .secaggStageUnmask) { $0.survivors = survivors; $0.survivorSignatures = signatures([inSet[0]], over: survivors) + [forgedSignature] }, kind: .secaggStage, by: fixture.coordinator)
        await #expect(throws: ClientNode.NodeError.self, "one valid neighbour signature is below t") { _ = try await node.secAggStep(short) }
        let enough = try signed(view(plan, stage: .secaggStageUnmask) { $0.survivors = survivors; $0.survivorSignatures = signatures(inSet, over: survivors) }, kind: .secaggStage, by: fixture.coordinator)
        let reveals = try #require(try await node.secAggStep(enough))
        #expect(reveals.kind == .secaggUnmask)

        // Next round, the coordinator hands a neighbour a different identity key: refused.
        await node.endSecAgg()
        let next = self.plan(round: 8, cohort: cohort)
        _ = try await node.secAggAdvertise(try signed(next, kind: .roundPlan, by: fixture.coordinator))
        let swapped = view(next, stage: .secaggStageShare) { v in
            v.directory = zip(neighbours, peers).map { index, keys in
                let statement = SecAggSigning.advertisement(runID: next.runID, round: 8, clientID: cohort[index], encryptionKey: Data(keys.0.bytes), maskingKey: Data(keys.1.bytes))
                return .with {
                    $0.index = UInt32(index)
                    $0.encryptionKey = Data(keys.0.bytes)
                    $0.maskingKey = Data(keys.1.bytes)
                    $0.signingKey = impostor.signingKey
                    $0.signature = impostor.sign(statement)
                }
            }
        }
        await #expect(throws: ClientNode.NodeError.self, "an identity key other than the one pinned") {
            _ = try await node.secAggStep(try self.signed(swapped, kind: .secaggStage, by: fixture.coordinator))
        }
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
        var lowThreshold = good
        lowThreshold.secagg.threshold = 1
        #expect(throws: ProtocolError.invalidField("secagg.threshold", "must exceed degree / 2")) { try lowThreshold.validate() }
        var allColluding = good
        allColluding.secagg.assumedColluders = 3
        #expect(throws: ProtocolError.self) { try allColluding.validate() }
        var missing = good
        missing.clearSecagg()
        #expect(throws: ProtocolError.self) { try missing.validate() }
    }
}
