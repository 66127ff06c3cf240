import FedSegClustering
import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegSecureAggregation
import Foundation
import GRDB
import SwiftProtobuf

/// A node's part in one distributed round: its SecAgg+ secrets and what it has sent so far.
/// The secrets exist only in memory; a node that loses them (a restart mid-round) drops out of
/// that round, which the protocol tolerates.
struct SecAggParticipation {
    var plan: Fedseg_V1_RoundPlan
    var client: SecAggClient
    var directory: [Int: SecAgg.Advertisement] = [:]
    /// The neighbours' enrolled signing keys, as verified at the share stage.
    var peerKeys: [Int: Signing.PublicKey] = [:]
    /// The survivor set this node signed at the consistency stage.
    var signedSurvivors: [UInt32]?
    var sent: [Fedseg_V1_MessageKind: ClientNode.Answer] = [:]
}

extension ClientNode {
    /// Stage 1 of a distributed round: a decline (not sampled, wrong embedder, no budget left),
    /// or fresh per-round keys advertised to the cohort through the coordinator.
    public func secAggAdvertise(_ publicationBytes: [UInt8]) throws -> Answer {
        let plan = try verifyPlan(publicationBytes)
        lastPlan = plan
        let deadline = Date(timeIntervalSince1970: Double(plan.deadlineUnixMs) / 1000)
        guard plan.privacyMode == .distributed else { throw NodeError.secureAggregation("round \(plan.round) is not distributed") }
        if let participation, participation.plan.round == plan.round, let sent = participation.sent[.secaggAdvertise] {
            return resent(sent)
        }
        if let stored = try storedAnswer(round: plan.round, deadline: deadline) { return stored }
        // Advertising fresh keys after losing the first ones would mask with keys the neighbours
        // never saw: the sum would be wrong, not merely short of one client.
        if participation?.plan.round != plan.round, !(try storedStageAnswers(round: plan.round).isEmpty) {
            throw NodeError.lostRoundState(plan.round)
        }
        guard let index = plan.secagg.cohort.firstIndex(of: id) else {
            throw NodeError.secureAggregation("\(id) is not in the cohort of round \(plan.round)")
        }
        if let reason = reasonToDecline(plan) { return try decline(plan, reason: reason, deadline: deadline) }
        guard try ledger().canAfford(try Self.secAggMechanism(plan), population: population) else {
            return try decline(plan, reason: "budget", deadline: deadline)
        }
        var parameters = SecAgg.Parameters(
            clients: plan.secagg.cohort.count, length: Int(plan.secagg.length), round: plan.round, graphSeed: plan.secagg.graphSeed,
            minimumSurvivors: Int(plan.secagg.minSurvivors)
        )
        parameters.degree = Int(plan.secagg.degree)
        parameters.threshold = Int(plan.secagg.threshold)
        let graph = NeighborGraph(clients: parameters.clients, degree: parameters.degree, seed: parameters.graphSeed)
        let client = try SecAggClient(index: index, parameters: parameters, graph: graph)
        let keys = client.advertise()
        let encryptionKey = Data(keys.encryptionKey.bytes)
        let maskingKey = Data(keys.maskingKey.bytes)
        // Signed with the enrolled identity key: neighbours refuse keys the coordinator made up.
        let statement = SecAggSigning.advertisement(runID: plan.runID, round: plan.round, clientID: id, encryptionKey: encryptionKey, maskingKey: maskingKey)
        let message = Fedseg_V1_SecAggAdvertise.with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.encryptionKey = encryptionKey
            $0.maskingKey = maskingKey
            $0.signature = Data(self.keys.identity.signing.signature(for: statement))
        }
        participation = SecAggParticipation(plan: plan, client: client)
        return try stage(message, kind: .secaggAdvertise, plan: plan, deadline: deadline)
    }

    /// The later stages: verifies the coordinator's signed view of the open stage and answers it
    /// (shares, masked input, reveals), or returns nil when there is nothing to send. The masked
    /// input is charged to the ledger in the transaction that stores it, before it is sent.
    public func secAggStep(_ viewBytes: [UInt8]) throws -> Answer? {
        guard let key = coordinatorSigningKey else { throw NodeError.notEnrolled }
        guard let publication = try? Fedseg_V1_SignedPublication(serializedBytes: viewBytes), publication.kind == .secaggStage,
            key.isValidSignature([UInt8](publication.signature), for: publication.payload),
            let view = try? Fedseg_V1_SecAggStage(serializedBytes: publication.payload)
        else { throw NodeError.badSignature }
        guard var current = participation, current.plan.round == view.round, current.plan.runID == view.runID else {
            throw NodeError.secureAggregation("no keys for round \(view.round): this node did not advertise in it, or lost its state")
        }
        let plan = current.plan
        let deadline = Date(timeIntervalSince1970: Double(view.stageDeadlineUnixMs) / 1000)
        let client = current.client
        switch view.stage {
        case .secaggStageShare:
            if let sent = current.sent[.secaggShares] { return resent(sent) }
            var directory: [Int: SecAgg.Advertisement] = [:]
            var peerKeys: [Int: Signing.PublicKey] = [:]
            for entry in view.directory {
                let v = Int(entry.index)
                guard client.neighbors.contains(v), directory[v] == nil else {
                    throw NodeError.secureAggregation("the directory names \(v), not a neighbour of \(client.index)")
                }
                let peer = plan.secagg.cohort[v]
                let signingKey = try pinnedPeerKey(peer, offered: entry.signingKey)
                let statement = SecAggSigning.advertisement(
                    runID: plan.runID, round: plan.round, clientID: peer, encryptionKey: entry.encryptionKey, maskingKey: entry.maskingKey
                )
                guard signingKey.isValidSignature([UInt8](entry.signature), for: statement) else {
                    throw NodeError.secureAggregation("the keys advertised for \(peer) are not signed by its identity key: not sharing")
                }
                directory[v] = SecAgg.Advertisement(
                    client: v, encryptionKey: try KeyAgreement.PublicKey(bytes: [UInt8](entry.encryptionKey)),
                    maskingKey: try KeyAgreement.PublicKey(bytes: [UInt8](entry.maskingKey))
                )
                peerKeys[v] = signingKey
            }
            guard !directory.isEmpty else { throw NodeError.secureAggregation("no neighbour advertised keys") }
            let shares = try client.shareKeys(directory)
            current.directory = directory
            current.peerKeys = peerKeys
            participation = current
            let message = Fedseg_V1_SecAggShares.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.shares = shares.map { share in
                    Fedseg_V1_SealedShare.with {
                        $0.from = UInt32(share.from)
                        $0.to = UInt32(share.to)
                        $0.envelope = Data(share.envelope)
                    }
                }
            }
            return try stage(message, kind: .secaggShares, plan: plan, deadline: deadline)
        case .secaggStageMask:
            if let sent = current.sent[.secaggMaskedInput] { return resent(sent) }
            guard current.sent[.secaggShares] != nil else { return nil }
            let inbox = view.inbox.map { SecAgg.SealedShare(from: Int($0.from), to: Int($0.to), envelope: [UInt8]($0.envelope)) }
            let masked = try client.maskedInput(try secAggInput(plan), shares: inbox, directory: current.directory)
            let message = Fedseg_V1_SecAggMaskedInput.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.words = masked
            }
            let mechanism = try Self.secAggMechanism(plan)
            do {
                return try stage(message, kind: .secaggMaskedInput, plan: plan, deadline: deadline, charge: mechanism)
            } catch let failure as PrivacyLedger.Failure {
                // Out of budget since advertising: dropping out is safe, SecAgg recovers without it.
                if case .budgetExceeded = failure { return nil }
                throw failure
            }
        case .secaggStageConsistency:
            if let sent = current.sent[.secaggConsistency] { return resent(sent) }
            guard current.sent[.secaggMaskedInput] != nil else { return nil }
            try checkSurvivors(view.survivors, plan: plan, index: client.index)
            // One signature per round, on the one set shown: what neighbours check before revealing.
            let survivors = Array(Set(view.survivors)).sorted()
            let statement = SecAggSigning.survivors(runID: plan.runID, round: plan.round, survivors: survivors)
            current.signedSurvivors = survivors
            participation = current
            let message = Fedseg_V1_SecAggConsistency.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.signature = Data(self.keys.identity.signing.signature(for: statement))
            }
            return try stage(message, kind: .secaggConsistency, plan: plan, deadline: deadline)
        case .secaggStageUnmask:
            if let sent = current.sent[.secaggUnmask] { return resent(sent) }
            guard current.sent[.secaggConsistency] != nil, let signed = current.signedSurvivors else { return nil }
            // The survivor set must be the one this node signed (which met `checkSurvivors`), and at least t of its neighbours
            // must have signed the same: with t > degree/2 no other set can gather t neighbours'
            // signatures, so no two of them reveal different secrets of one client.
            guard Array(Set(view.survivors)).sorted() == signed else {
                throw NodeError.secureAggregation("the survivor set differs from the one this node signed: not revealing")
            }
            let statement = SecAggSigning.survivors(runID: plan.runID, round: plan.round, survivors: signed)
            var agreeing = Set<Int>()
            for entry in view.survivorSignatures {
                let v = Int(entry.index)
                guard signed.contains(entry.index), let key = current.peerKeys[v], key.isValidSignature([UInt8](entry.signature), for: statement) else { continue }
                agreeing.insert(v)
            }
            guard agreeing.count >= Int(plan.secagg.threshold) else {
                throw NodeError.secureAggregation("\(agreeing.count) neighbours signed the survivor set, the threshold is \(plan.secagg.threshold): not revealing")
            }
            let reveals = try client.unmask(survivors: Set(view.survivors.map(Int.init)))
            let message = Fedseg_V1_SecAggUnmask.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.reveals = reveals.map { reveal in
                    Fedseg_V1_Reveal.with {
                        $0.about = UInt32(reveal.about)
                        $0.kind = reveal.kind == .selfMaskSeed ? .selfMaskSeed : .maskingKeySeed
                        $0.x = UInt32(reveal.share.x)
                        $0.share = Data(reveal.share.bytes)
                    }
                }
            }
            return try stage(message, kind: .secaggUnmask, plan: plan, deadline: deadline)
        default:
            return nil
        }
    }

    /// What any survivor set must meet before this node signs or reveals: at least the plan's
    /// minimum (a smaller sum would carry less noise than planned) and this node among them.
    func checkSurvivors(_ survivors: [UInt32], plan: Fedseg_V1_RoundPlan, index: Int) throws {
        guard Set(survivors).count >= Int(plan.secagg.minSurvivors) else {
            throw NodeError.secureAggregation("\(Set(survivors).count) survivors, the plan requires \(plan.secagg.minSurvivors): not revealing")
        }
        guard survivors.contains(UInt32(index)) else {
            throw NodeError.secureAggregation("this node's masked input is not among the survivors: not revealing")
        }
        guard survivors.allSatisfy({ Int($0) < plan.secagg.cohort.count }) else {
            throw NodeError.secureAggregation("the survivor set names clients outside the cohort")
        }
    }

    /// A peer's enrolled signing key: the one pinned at first sight, which the coordinator
    /// cannot change afterwards.
    func pinnedPeerKey(_ peer: String, offered: Data) throws -> Signing.PublicKey {
        guard offered.count == 32, let key = try? Signing.PublicKey(bytes: [UInt8](offered)) else {
            throw NodeError.secureAggregation("no valid identity key for \(peer) in the directory")
        }
        try database.write { db in
            if let pinned = try Data.fetchOne(db, sql: "SELECT signing_key FROM peer_keys WHERE client_id = ?", arguments: [peer]) {
                guard pinned == offered else {
                    throw NodeError.secureAggregation("the coordinator gave \(peer) a different identity key than before: not sharing")
                }
            } else {
                try db.execute(sql: "INSERT INTO peer_keys (client_id, signing_key, first_seen) VALUES (?, ?, ?)", arguments: [peer, offered, Date().timeIntervalSince1970])
            }
        }
        return key
    }

    /// Forgets the round's secrets (after the round, or to simulate a device that lost them).
    public func endSecAgg() { participation = nil }

    /// Fetches this node's view of the open stage and answers it.
    /// Network errors (a coordinator restarting mid-stage) are retried with backoff and jitter
    /// until the round's deadline, so a restart does not drop the node from the round.
    public func secAggStep(round: UInt64, transport: any CoordinatorTransport, backoff: (first: Double, longest: Double) = (0.2, 5)) async throws -> Answer? {
        let deadline = participation.map { Date(timeIntervalSince1970: Double($0.plan.deadlineUnixMs) / 1000) } ?? Date().addingTimeInterval(60)
        var delay = backoff.first
        while true {
            do {
                guard let view = try await transport.secAggStage(round: round, client: id) else { return nil }
                return try secAggStep(view)
            } catch let error as TransportError where error.isRetryable {
                let wait = Double.random(in: delay / 2...delay)
                guard Date().addingTimeInterval(wait) < deadline else { throw error }
                try await Task.sleep(for: .seconds(wait))
                delay = min(delay * 2, backoff.longest)
            }
        }
    }

    /// What the node charges for its masked input, computed from the plan's own numbers: the
    /// total σ its share and the minimum survivors' add up to, over the sensitivity it implies.
    static func secAggMechanism(_ plan: Fedseg_V1_RoundPlan) throws -> PrivacyLedger.Mechanism {
        switch plan.phase {
        case .clustering: return plan.distributedNoise.mechanism
        case .recommendation: return plan.distributedHistogramNoise(baseSensitivity: plan.histogramSensitivity).mechanism
        case .start: return plan.distributedHistogramNoise(baseSensitivity: 1).mechanism
        default: throw NodeError.invalidPlan("unknown phase")
        }
    }

    /// The node's quantised statistics plus its discrete Gaussian noise share, as words mod 2^32.
    func secAggInput(_ plan: Fedseg_V1_RoundPlan) throws -> [UInt32] {
        var sampler = try DiscreteGaussianSampler(sigma: plan.secagg.clientSigma, generator: BufferedSecureRandom())
        switch plan.phase {
        case .clustering:
            var rounding = BufferedSecureRandom()
            return plan.distributedNoise.encode(clusteringStatistics(plan), rounding: &rounding, noise: &sampler)
        case .recommendation:
            let noise = plan.distributedHistogramNoise(baseSensitivity: plan.histogramSensitivity)
            return noise.encode(recommendationHistogram(plan).counts, noise: &sampler)
        case .start:
            return plan.distributedHistogramNoise(baseSensitivity: 1).encode(candidateCounts(plan), noise: &sampler)
        default:
            throw NodeError.invalidPlan("unknown phase")
        }
    }

    /// Seals a stage message and stores it (with its charge, for the masked input) in one
    /// transaction; a retry resends these bytes.
    func stage(
        _ message: some SwiftProtobuf.Message, kind: Fedseg_V1_MessageKind, plan: Fedseg_V1_RoundPlan, deadline: Date,
        charge mechanism: PrivacyLedger.Mechanism? = nil
    ) throws -> Answer {
        let envelope = try seal(try message.serializedBytes(), kind: kind, round: plan.round)
        try database.write { [population] db in
            if let mechanism {
                try PrivacyLedger.charge(db, releaseID: "\(plan.runID)/round-\(plan.round)", round: Int64(plan.round), mechanism: mechanism, populations: [population])
            }
            try db.execute(
                sql: "INSERT INTO stage_outbox (round, kind, envelope, created_at) VALUES (?, ?, ?, ?)",
                arguments: [Int64(plan.round), kind.rawValue, Data(envelope), Date().timeIntervalSince1970]
            )
        }
        let answer = Answer(round: plan.round, kind: kind, envelope: envelope, declineReason: nil, resent: false, deadline: deadline)
        participation?.sent[kind] = answer
        return answer
    }

    /// The stage messages stored for a round, by kind: after a restart the node resends the one
    /// for the open stage (its masked input, say) instead of losing it.
    public func storedStageAnswers(round: UInt64, deadline: Date = .distantPast) throws -> [Fedseg_V1_MessageKind: Answer] {
        let rows = try database.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, envelope FROM stage_outbox WHERE round = ?", arguments: [Int64(round)])
        }
        var answers: [Fedseg_V1_MessageKind: Answer] = [:]
        for row in rows {
            guard let kind = Fedseg_V1_MessageKind(rawValue: row["kind"]) else { continue }
            answers[kind] = Answer(round: round, kind: kind, envelope: [UInt8](row["envelope"] as Data), declineReason: nil, resent: true, deadline: deadline)
        }
        return answers
    }

    func resent(_ answer: Answer) -> Answer {
        var again = answer
        again.resent = true
        return again
    }
}
