import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegSecureAggregation
import Foundation
import SwiftProtobuf
import Testing

@testable import FedSegCoordinator

/// Distributed rounds through the coordinator's state machine: clients are `SecAggClient`s
/// whose messages are sealed, accepted by the intake with the stage's kinds and checks, and added.
@Suite("Coordinator distributed rounds")
struct DistributedRoundTests {
    func distributedRun(minParticipants: Int) -> RunParameters {
        var p = smallRun(rounds: 1, minParticipants: minParticipants)
        p.privacyMode = .distributed
        p.maxUsers = 1000
        // These tests check exact sums of tiny counts, which the noise-aware drop of light
        // segments would judge as noise: keep every segment.
        p.minSegmentShare = 0
        return p
    }

    func view(_ coordinator: Coordinator, round: UInt64, client: String?) async throws -> Fedseg_V1_SecAggStage {
        let bytes = try #require(try await coordinator.secAggView(round: round, clientID: client))
        let publication = try Fedseg_V1_SignedPublication(serializedBytes: bytes)
        #expect(coordinator.keys.identity.signing.publicKey.isValidSignature([UInt8](publication.signature), for: publication.payload))
        return try Fedseg_V1_SecAggStage(serializedBytes: publication.payload)
    }

    @Test("a distributed round unmasks the survivors' exact sum, survives a restart between stages, and charges the distributed mechanism")
    func exactSumWithDropoutAndRestart() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        var coordinator = try makeCoordinator(directory, clock: clock)
        let n = 8
        let ids = (0..<n).map { "d\($0)" }
        var identities: [String: TestClient] = [:]
        for id in ids {
            let client = TestClient(id: id)
            identities[id] = client
            try coordinator.store.registry.add(id: id, signingKey: client.keys.signing.publicKey, kxKey: client.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        }
        var parameters = distributedRun(minParticipants: 5)
        parameters.roundDeadlineSeconds = 4
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: coordinator.settings))
        let snapshot = try #require(await coordinator.snapshot())
        let plan = snapshot.plan
        let a = plan.secagg
        #expect(a.cohort == ids.sorted() && a.minSurvivors == 5)
        let graph = NeighborGraph(clients: n, degree: Int(a.degree), seed: a.graphSeed)
        var secAggParameters = SecAgg.Parameters(clients: n, length: Int(a.length), round: plan.round, graphSeed: a.graphSeed, minimumSurvivors: 5)
        secAggParameters.degree = Int(a.degree)
        secAggParameters.threshold = Int(a.threshold)
        let clients = try (0..<n).map { try SecAggClient(index: $0, parameters: secAggParameters, graph: graph) }
        func sealAndSubmit(_ message: some SwiftProtobuf.Message, kind: Fedseg_V1_MessageKind, index: Int) async throws -> Coordinator.AcceptOutcome {
            try await submitAs(identities[a.cohort[index]]!, message, kind: kind, coordinator: coordinator)
        }

        // Stage 1: every client advertises; a share sent now is "not yet" (refused by kind).
        // An advertisement not signed by the sender's enrolled key is refused before it is recorded.
        let unsigned = Fedseg_V1_SecAggAdvertise.with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.encryptionKey = Data(KeyAgreement.PrivateKey().publicKey.bytes)
            $0.maskingKey = Data(KeyAgreement.PrivateKey().publicKey.bytes)
            $0.signature = Data(Signing.PrivateKey().signature(for: [1, 2, 3]))
        }
        await #expect(throws: UpdateIntake.Rejection.invalid(.invalidField("signature", "does not verify with the sender's enrolled signing key"))) {
            _ = try await sealAndSubmit(unsigned, kind: .secaggAdvertise, index: 0)
        }
        for (i, client) in clients.enumerated() {
            let keys = client.advertise()
            let message = identities[a.cohort[i]]!.advertisement(plan, encryptionKey: keys.encryptionKey, maskingKey: keys.maskingKey)
            let outcome = try await sealAndSubmit(message, kind: .secaggAdvertise, index: i)
            #expect(outcome == .added)
        }
        // Stage 2: each client's view lists exactly its neighbours; everyone shares.
        for (i, client) in clients.enumerated() {
            let stage = try await view(coordinator, round: plan.round, client: a.cohort[i])
            #expect(stage.stage == .secaggStageShare)
            #expect(Set(stage.directory.map { Int($0.index) }) == Set(graph.neighbors[i]))
            // Each entry carries the neighbour's enrolled key and its signature over its keys.
            for entry in stage.directory {
                let peer = a.cohort[Int(entry.index)]
                #expect(entry.signingKey == Data(identities[peer]!.keys.signing.publicKey.bytes))
                let statement = SecAggSigning.advertisement(runID: plan.runID, round: plan.round, clientID: peer, encryptionKey: entry.encryptionKey, maskingKey: entry.maskingKey)
                #expect(try Signing.PublicKey(bytes: [UInt8](entry.signingKey)).isValidSignature([UInt8](entry.signature), for: statement))
            }
            let directory = Dictionary(uniqueKeysWithValues: try stage.directory.map {
                (Int($0.index), SecAgg.Advertisement(client: Int($0.index), encryptionKey: try KeyAgreement.PublicKey(bytes: [UInt8]($0.encryptionKey)), maskingKey: try KeyAgreement.PublicKey(bytes: [UInt8]($0.maskingKey))))
            })
            let shares = try client.shareKeys(directory)
            _ = try await sealAndSubmit(Fedseg_V1_SecAggShares.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.shares = shares.map { s in Fedseg_V1_SealedShare.with { $0.from = UInt32(s.from); $0.to = UInt32(s.to); $0.envelope = Data(s.envelope) } }
            }, kind: .secaggShares, index: i)
        }
        // The coordinator restarts between stages: the round resumes at the mask stage.
        coordinator = try makeCoordinator(directory, clock: clock)
        try await coordinator.recover()
        #expect(try await view(coordinator, round: plan.round, client: nil).stage == .secaggStageMask)
        let open = try await coordinator.summary().openRound
        #expect(open?.secAggStage == "mask" && open?.secAggProgress?["shared"] == n && open?.secAggProgress?["masked"] == 0)

        // Stage 3: clients 0 and 5 drop out; the others send masked words (sums 0, counts known).
        let dropped: Set<Int> = [0, 5]
        var countSum = [UInt32](repeating: 0, count: 2)
        for (i, client) in clients.enumerated() {
            let stage = try await view(coordinator, round: plan.round, client: a.cohort[i])
            let directory = Dictionary(uniqueKeysWithValues: try stage.directory.map {
                (Int($0.index), SecAgg.Advertisement(client: Int($0.index), encryptionKey: try KeyAgreement.PublicKey(bytes: [UInt8]($0.encryptionKey)), maskingKey: try KeyAgreement.PublicKey(bytes: [UInt8]($0.maskingKey))))
            })
            guard !dropped.contains(i) else { continue }
            var words = [UInt32](repeating: 0, count: Int(a.length))
            words[8] = UInt32(100 * (i + 1))
            words[9] = UInt32(7 * i + 3)
            countSum[0] &+= words[8]
            countSum[1] &+= words[9]
            let inbox = stage.inbox.map { SecAgg.SealedShare(from: Int($0.from), to: Int($0.to), envelope: [UInt8]($0.envelope)) }
            let masked = try client.maskedInput(words, shares: inbox, directory: directory)
            #expect(masked != words)
            _ = try await sealAndSubmit(Fedseg_V1_SecAggMaskedInput.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.words = masked
            }, kind: .secaggMaskedInput, index: i)
        }
        // The mask stage closes at its deadline (two clients are missing).
        #expect(try await view(coordinator, round: plan.round, client: nil).stage == .secaggStageMask)
        clock.advance(by: plan.secagg.stageSeconds + 0.1)
        try await coordinator.tick()
        let consistencyView = try await view(coordinator, round: plan.round, client: a.cohort[1])
        #expect(consistencyView.stage == .secaggStageConsistency)
        #expect(Set(consistencyView.survivors.map(Int.init)) == Set(0..<n).subtracting(dropped))
        // Stage 4: every survivor signs the survivor set it was shown.
        for i in 0..<n where !dropped.contains(i) {
            let message = identities[a.cohort[i]]!.consistency(plan, survivors: consistencyView.survivors)
            #expect(try await sealAndSubmit(message, kind: .secaggConsistency, index: i) == .added)
        }
        let unmaskView = try await view(coordinator, round: plan.round, client: a.cohort[1])
        #expect(unmaskView.stage == .secaggStageUnmask)
        #expect(unmaskView.survivors == consistencyView.survivors)
        // The view forwards the neighbours' signatures, which verify over that set.
        let survivorStatement = SecAggSigning.survivors(runID: plan.runID, round: plan.round, survivors: unmaskView.survivors)
        #expect(Set(unmaskView.survivorSignatures.map(\.index)) == Set(graph.neighbors[1].filter { !dropped.contains($0) }.map(UInt32.init)))
        for entry in unmaskView.survivorSignatures {
            #expect(identities[a.cohort[Int(entry.index)]]!.keys.signing.publicKey.isValidSignature([UInt8](entry.signature), for: survivorStatement))
        }
        // A masked input now is late.
        let lateMask = UpdateIntake.Decoded(clientID: a.cohort[0], kind: UInt8(Fedseg_V1_MessageKind.secaggMaskedInput.rawValue), message: .secAggMaskedInput(.init()))
        #expect(try await coordinator.accept(lateMask, envelope: [], round: plan.round) == .late("round \(plan.round) no longer takes this message from \(a.cohort[0])"))
        #expect(try !coordinator.store.registry.wasAccepted(clientID: a.cohort[0], round: plan.round, kind: lateMask.kind), "a late message leaves no record")

        // Stage 5: survivors reveal; the round commits with the exact sum of the survivors' counts.
        for (i, client) in clients.enumerated() where !dropped.contains(i) {
            let reveals = try client.unmask(survivors: Set(unmaskView.survivors.map(Int.init)))
            _ = try await sealAndSubmit(Fedseg_V1_SecAggUnmask.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.reveals = reveals.map { r in
                    Fedseg_V1_Reveal.with {
                        $0.about = UInt32(r.about)
                        $0.kind = r.kind == .selfMaskSeed ? .selfMaskSeed : .maskingKeySeed
                        $0.x = UInt32(r.share.x)
                        $0.share = Data(r.share.bytes)
                    }
                }
            }, kind: .secaggUnmask, index: i)
        }
        let round = try #require(try coordinator.store.rounds(run: plan.runID).first)
        #expect(round.status == .committed && round.participants == n - dropped.count)
        let released = try #require(round.counts.map(Packing.unpackDoubles))
        #expect(released == countSum.map { Double(Int32(bitPattern: $0)) / a.countScale })
        let records = try coordinator.store.ledger.records()
        #expect(records.count == 2 && records.allSatisfy { $0.mode == "distributed" })
        let z = FixedPointNoise(
            clipNorm: plan.clipNorm, k: 2, dimension: 4, minimumSurvivors: 5, assumedColluders: Int(a.assumedColluders), sumScale: a.sumScale,
            countScale: a.countScale, clientSigma: a.clientSigma
        ).noiseMultiplier
        #expect(records.allSatisfy { abs($0.noiseMultiplier - z) < 1e-9 * z }, "the charge is the z the clients' shares add up to")
    }

    @Test("a stage that closes with fewer clients than the minimum aborts the round: nothing released, nothing charged")
    func tooFewSurvivorsAbort() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(directory, clock: clock)
        var identities: [String: TestClient] = [:]
        for id in (0..<4).map({ "e\($0)" }) {
            let client = TestClient(id: id)
            identities[id] = client
            try coordinator.store.registry.add(id: id, signingKey: client.keys.signing.publicKey, kxKey: client.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        }
        var parameters = distributedRun(minParticipants: 3)
        parameters.roundDeadlineSeconds = 0.4
        parameters.maxAbandonedRounds = 1
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: coordinator.settings))
        let plan = try #require(await coordinator.snapshot()).plan
        // Only two of four advertise; the stage closes at its deadline below the minimum of 3.
        for id in plan.secagg.cohort.prefix(2) {
            let message = identities[id]!.advertisement(plan, encryptionKey: KeyAgreement.PrivateKey().publicKey, maskingKey: KeyAgreement.PrivateKey().publicKey)
            _ = try await submitAs(identities[id]!, message, kind: .secaggAdvertise, coordinator: coordinator)
        }
        // A message from outside the cohort is refused before it is recorded.
        let outsider = TestClient(id: "outsider")
        try coordinator.store.registry.add(id: "outsider", signingKey: outsider.keys.signing.publicKey, kxKey: outsider.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        await #expect(throws: UpdateIntake.Rejection.self) {
            try await self.submitAs(
                outsider, outsider.advertisement(plan, encryptionKey: KeyAgreement.PrivateKey().publicKey, maskingKey: KeyAgreement.PrivateKey().publicKey),
                kind: .secaggAdvertise, coordinator: coordinator
            )
        }
        clock.advance(by: plan.secagg.stageSeconds + 0.1)
        try await coordinator.tick()
        let rounds = try coordinator.store.rounds(run: plan.runID)
        #expect(rounds.first?.status == .abandoned)
        #expect(try coordinator.store.ledger.records().isEmpty, "a distributed round shows the coordinator nothing until its sum: no charge when it aborts")
        #expect(try coordinator.store.run(plan.runID)?.status == .failed)
    }

    @Test("a distributed run needs at least max(2, min_participants) active clients")
    func cohortTooSmall() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory())
        let client = TestClient(id: "only")
        try coordinator.store.registry.add(id: "only", signingKey: client.keys.signing.publicKey, kxKey: client.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        await #expect(throws: CoordinatorError.self) {
            _ = try await coordinator.start(try RunStart.prepare(self.distributedRun(minParticipants: 2), settings: coordinator.settings))
        }
    }

    func submitAs(_ client: TestClient, _ message: some SwiftProtobuf.Message, kind: Fedseg_V1_MessageKind, coordinator: Coordinator) async throws -> Coordinator.AcceptOutcome {
        let snapshot = try #require(await coordinator.snapshot())
        let sealed = try client.seal(message, kind: kind, round: snapshot.round, to: coordinator.keys.identity.keyAgreement.publicKey)
        return try await offer(sealed, to: coordinator)
    }
}
