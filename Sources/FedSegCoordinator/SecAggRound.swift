import FedSegCrypto
import FedSegProtocol
import FedSegSecureAggregation
import Foundation
import SwiftProtobuf

/// The fixed facts of a distributed round that request handlers need outside the actor: who is
/// in the cohort, at which index, and who neighbours whom.
public final class SecAggContext: Sendable {
    public let cohort: [String]
    public let index: [String: Int]
    public let graph: NeighborGraph
    public let neighborSets: [Set<Int>]

    init(plan: Fedseg_V1_SecAggPlan) {
        cohort = plan.cohort
        index = Dictionary(uniqueKeysWithValues: plan.cohort.enumerated().map { ($0.element, $0.offset) })
        graph = NeighborGraph(clients: plan.cohort.count, degree: Int(plan.degree), seed: plan.graphSeed)
        neighborSets = graph.neighbors.map(Set.init)
    }

    /// The checks a stage message needs beyond its plan: a cohort member, sharing with and
    /// revealing about its own neighbours only.
    public func check(_ clientID: String, _ message: UpdateIntake.Message, plan: Fedseg_V1_RoundPlan) throws {
        guard let i = index[clientID] else { throw ProtocolError.invalidField("client", "\(clientID) is not in this round's cohort") }
        switch message {
        case .secAggShares(let shares): try shares.validate(against: plan, from: i, neighbors: neighborSets[i])
        case .secAggUnmask(let unmask): try unmask.validate(against: plan, neighbors: neighborSets[i])
        default: break
        }
    }
}

/// The coordinator's side of one distributed round: the five SecAgg+ stages (advertise, share,
/// mask, consistency, unmask), each open until
/// every client still in the protocol has answered or its deadline passes. The coordinator only
/// routes sealed shares and keeps the running sum of masked vectors (`SecAggServer`); the sum it
/// unmasks is already noised by the clients' shares.
struct SecAggRound {
    enum Stage: Int, Codable, Comparable {
        case advertise = 1, share, mask, consistency, unmask

        static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }

        var kinds: [Fedseg_V1_MessageKind] {
            switch self {
            case .advertise: [.secaggAdvertise, .decline]
            case .share: [.secaggShares]
            case .mask: [.secaggMaskedInput]
            case .consistency: [.secaggConsistency]
            case .unmask: [.secaggUnmask]
            }
        }

        static func of(kind: Fedseg_V1_MessageKind) -> Stage? {
            switch kind {
            case .secaggAdvertise, .decline: .advertise
            case .secaggShares: .share
            case .secaggMaskedInput: .mask
            case .secaggConsistency: .consistency
            case .secaggUnmask: .unmask
            default: nil
            }
        }

        var wire: Fedseg_V1_SecAggStageKind {
            switch self {
            case .advertise: .secaggStageAdvertise
            case .share: .secaggStageShare
            case .mask: .secaggStageMask
            case .consistency: .secaggStageConsistency
            case .unmask: .secaggStageUnmask
            }
        }
    }

    /// What is written at every stage change, so a restarted coordinator replays exactly the
    /// messages each closed stage had when it closed (a message added after its stage closed is
    /// refused as late, but may have been recorded).
    struct Persisted: Codable {
        var stage: Stage
        var stageDeadline: Double
        var advertised: [Int]
        var shared: [Int]
        var survivors: [Int]
        /// Survivors whose signature on the survivor set the consistency stage had.
        var signed: [Int]?
    }

    enum Outcome {
        case open
        case nextStage
        /// Σ of the survivors' quantised, noised inputs mod 2^32.
        case finished(sum: [UInt32], survivors: Int)
        case aborted(String)
    }

    let plan: Fedseg_V1_SecAggPlan
    /// The signed round plan this aggregation runs under.
    let roundPlan: Fedseg_V1_RoundPlan
    let context: SecAggContext
    var server: SecAggServer
    var stage: Stage = .advertise
    var stageDeadline: Double
    var declinedIndices: Set<Int> = []
    /// Σ of the survivors' inputs once unmasked; decoded only after the round is charged.
    var finishedSum: [UInt32]?
    /// After a restart: who each closed stage had when it closed.
    var closedStages: Persisted?
    var inbox: [Int: [SecAgg.SealedShare]] = [:]
    var reveals: [SecAgg.Reveal] = []
    var revealed: Set<Int> = []
    /// Stage advertise: each client's enrolled signing key and its signature over its keys,
    /// handed to its neighbours with the directory.
    var advertisementSignatures: [Int: (signingKey: Data, signature: Data)] = [:]
    /// Stage consistency: each survivor's signature over the survivor set, forwarded unread.
    var survivorSignatures: [Int: Data] = [:]

    init(round: Fedseg_V1_RoundPlan, openedAt: Double, context: SecAggContext? = nil) {
        plan = round.secagg
        roundPlan = round
        self.context = context ?? SecAggContext(plan: round.secagg)
        var parameters = SecAgg.Parameters(
            clients: plan.cohort.count, length: Int(plan.length), round: round.round, graphSeed: plan.graphSeed,
            minimumSurvivors: Int(plan.minSurvivors)
        )
        parameters.degree = Int(plan.degree)
        parameters.threshold = Int(plan.threshold)
        server = SecAggServer(parameters: parameters)
        stageDeadline = openedAt + plan.stageSeconds
    }

    var persisted: Persisted {
        Persisted(
            stage: stage, stageDeadline: stageDeadline, advertised: server.directory.keys.sorted(), shared: server.shared.sorted(),
            survivors: server.survivors.sorted(), signed: survivorSignatures.keys.sorted()
        )
    }

    /// Whether a message fits the open stage and its sender's part so far: a masked input only
    /// from a client that shared keys, reveals only from a survivor.
    func expects(_ message: UpdateIntake.Message, from index: Int) -> Bool {
        switch message {
        case .decline, .secAggAdvertise: stage == .advertise
        case .secAggShares: stage == .share && server.directory[index] != nil
        case .secAggMaskedInput: stage == .mask && server.shared.contains(index) && !server.survivors.contains(index)
        case .secAggConsistency: stage == .consistency && server.survivors.contains(index) && survivorSignatures[index] == nil
        case .secAggUnmask: stage == .unmask && server.survivors.contains(index)
        case .clientUpdate, .recommendationUpdate, .startHistogram: false
        }
    }

    /// Adds one accepted stage message from cohort member `index`.
    mutating func receive(_ message: UpdateIntake.Message, from index: Int) throws {
        switch message {
        case .decline:
            declinedIndices.insert(index)
        case .secAggAdvertise(let advertise, let signingKey):
            server.receive(SecAgg.Advertisement(
                client: index, encryptionKey: try KeyAgreement.PublicKey(bytes: [UInt8](advertise.encryptionKey)),
                maskingKey: try KeyAgreement.PublicKey(bytes: [UInt8](advertise.maskingKey))
            ))
            advertisementSignatures[index] = (signingKey, advertise.signature)
        case .secAggConsistency(let consistency):
            survivorSignatures[index] = consistency.signature
        case .secAggShares(let message):
            // A share to a neighbour that never advertised cannot be opened by anyone: dropped.
            let batch = message.shares.filter { server.directory[Int($0.to)] != nil }.map {
                SecAgg.SealedShare(from: index, to: Int($0.to), envelope: [UInt8]($0.envelope))
            }
            guard !batch.isEmpty else { return }
            for (to, shares) in server.route([batch]) { inbox[to, default: []] += shares }
        case .secAggMaskedInput(let masked):
            try server.receiveMasked(from: index, masked.words)
        case .secAggUnmask(let unmask):
            guard revealed.insert(index).inserted else { return }
            for reveal in unmask.reveals {
                reveals.append(SecAgg.Reveal(
                    about: Int(reveal.about), kind: reveal.kind == .selfMaskSeed ? .selfMaskSeed : .maskingKeySeed,
                    share: Shamir.Share(x: UInt8(reveal.x), bytes: [UInt8](reveal.share))
                ))
            }
        case .clientUpdate, .recommendationUpdate, .startHistogram:
            throw SecAgg.Failure.badMessage("a plain update in a distributed round")
        }
    }

    /// Every client still in the protocol has answered the open stage.
    var stageComplete: Bool {
        switch stage {
        case .advertise: server.directory.count + declinedIndices.count >= plan.cohort.count
        case .share: server.shared.count >= server.directory.count
        case .mask: server.survivors.count >= server.shared.count
        case .consistency: survivorSignatures.count >= server.survivors.count
        case .unmask: server.survivors.isSubset(of: revealed)
        }
    }

    /// Moves on when the stage is complete or its deadline has passed.
    mutating func advance(now: Double) -> Outcome {
        guard stageComplete || now >= stageDeadline else { return .open }
        let minimum = Int(plan.minSurvivors)
        switch stage {
        case .advertise:
            guard server.directory.count >= minimum else { return .aborted("\(server.directory.count) clients advertised keys, \(minimum) needed") }
            stage = .share
        case .share:
            guard server.shared.count >= minimum else { return .aborted("\(server.shared.count) clients shared keys, \(minimum) needed") }
            stage = .mask
        case .mask:
            guard server.survivors.count >= minimum else { return .aborted("\(server.survivors.count) masked inputs, \(minimum) needed") }
            stage = .consistency
        case .consistency:
            guard survivorSignatures.count >= minimum else {
                return .aborted("\(survivorSignatures.count) survivors signed the survivor set, \(minimum) needed")
            }
            stage = .unmask
        case .unmask:
            do {
                return .finished(sum: try server.unmask(reveals, graph: context.graph), survivors: server.survivors.count)
            } catch {
                return .aborted("\(error)")
            }
        }
        stageDeadline = now + plan.stageSeconds
        return .nextStage
    }

    /// What client `index` needs now (nil: the public progress only).
    func view(for index: Int?, runID: String, round: UInt64) -> Fedseg_V1_SecAggStage {
        var view = Fedseg_V1_SecAggStage()
        view.runID = runID
        view.round = round
        view.stage = stage.wire
        view.stageDeadlineUnixMs = Int64(stageDeadline * 1000)
        view.advertised = UInt32(server.directory.count)
        view.shared = UInt32(server.shared.count)
        view.masked = UInt32(server.survivors.count)
        view.revealed = UInt32(revealed.count)
        view.signed = UInt32(survivorSignatures.count)
        guard let index else { return view }
        if stage >= .share {
            view.directory = context.graph.neighbors[index].compactMap { v in
                server.directory[v].map { advertisement in
                    Fedseg_V1_SecAggStage.Advertisement.with {
                        $0.index = UInt32(v)
                        $0.encryptionKey = Data(advertisement.encryptionKey.bytes)
                        $0.maskingKey = Data(advertisement.maskingKey.bytes)
                        $0.signingKey = advertisementSignatures[v]?.signingKey ?? Data()
                        $0.signature = advertisementSignatures[v]?.signature ?? Data()
                    }
                }
            }
        }
        if stage >= .mask {
            view.inbox = (inbox[index] ?? []).map { share in
                Fedseg_V1_SealedShare.with {
                    $0.from = UInt32(share.from)
                    $0.to = UInt32(share.to)
                    $0.envelope = Data(share.envelope)
                }
            }
        }
        if stage >= .consistency { view.survivors = server.survivors.sorted().map(UInt32.init) }
        if stage >= .unmask {
            // The neighbours' signatures: what the client checks before revealing anything.
            view.survivorSignatures = context.graph.neighbors[index].compactMap { v in
                survivorSignatures[v].map { signature in
                    Fedseg_V1_SecAggStage.SurvivorSignature.with {
                        $0.index = UInt32(v)
                        $0.signature = signature
                    }
                }
            }
        }
        return view
    }
}
