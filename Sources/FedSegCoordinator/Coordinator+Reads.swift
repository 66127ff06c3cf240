import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegSecureAggregation
import Foundation
import SwiftProtobuf

/// What the coordinator shows: the signed stage view of a distributed round, run summaries and
/// segments. Reads only; nothing here changes a run.
extension Coordinator {
    /// The signed view of the open distributed round for one client (or the public progress).
    public func secAggView(round: UInt64, clientID: String?) throws -> [UInt8]? {
        // A local round has no secure-aggregation view, and a client outside the cohort none of
        // its own: both are 404 (docs/PROTOCOL.md).
        guard let current = open, current.id == round, let run = active, let secagg = current.aggregation as? SecAggRound else { return nil }
        var index: Int?
        if let clientID {
            guard let i = secagg.context.index[clientID] else { return nil }
            index = i
        }
        var view: Fedseg_V1_SecAggStage
        if secagg.finishedSum == nil {
            view = secagg.view(for: index, runID: run.id, round: round)
        } else {
            view = Fedseg_V1_SecAggStage()
            view.runID = run.id
            view.round = round
            view.stage = .secaggStageFinished
        }
        return try keys.publication(.secaggStage, payload: try view.serializedData())
    }

    public func summary(_ id: String? = nil) throws -> RunSummary {
        guard let runID = try (id ?? active?.id ?? store.runs().last?.id) else { throw CoordinatorError.noRun }
        guard let run = try store.run(runID) else { throw CoordinatorError.unknownRun(runID) }
        let rounds = try store.rounds(run: runID)
        let parameters = try run.decodedParameters()
        let spent = try store.ledger.budget(for: "run:\(runID)") == nil ? 0 : try store.ledger.spent(by: "run:\(runID)")
        let current = open.flatMap { $0.plan.runID == runID ? $0 : nil }
        var summary = RunSummary(
            id: runID, status: run.status, reason: run.reason, phase: run.phase, k: try Packing.unpackMatrix(run.centroids, cols: parameters.dimension, maxRows: parameters.k).rows, dimension: parameters.dimension,
            embedderID: parameters.embedderID, privacyMode: parameters.privacyMode, epsilon: parameters.epsilon, delta: parameters.delta,
            epsilonSpent: spent, plannedRounds: parameters.rounds, committedRounds: run.committedRounds,
            noiseMultiplier: try parameters.privacyPlan().clustering.noiseMultiplier,
            openRound: current.map { round in
                let secagg = round.aggregation as? SecAggRound
                return OpenRoundSummary(
                    id: round.id, phase: round.phase, participants: round.participants, declined: round.declined, expected: round.expected,
                    deadlineUnix: round.deadline, secAggStage: secagg.map { "\($0.stage)" },
                    secAggProgress: secagg.map { [
                        "advertised": $0.server.directory.count, "shared": $0.server.shared.count, "masked": $0.server.survivors.count,
                        "revealed": $0.revealed.count,
                    ] }
                )
            },
            rounds: rounds.map {
                // The stored plan (the row is checksummed when read) says how the round clipped.
                let plan = $0.phase == .clustering
                    ? (try? Fedseg_V1_SignedPublication(serializedBytes: $0.publication)).flatMap { try? Fedseg_V1_RoundPlan(serializedBytes: $0.payload) }
                    : nil
                return RoundSummary(
                    id: UInt64($0.id ?? 0), phase: $0.phase, status: $0.status, participants: $0.participants, declined: $0.declined,
                    expected: $0.expected, centroidShift: $0.centroidShift, clipNorm: plan?.clipNorm, centered: plan?.centered
                )
            }
        )
        if run.status == .running { summary.staleClients = try staleClientIDs() }
        summary.segmentation = try run.segmentation.map { try JSONDecoder().decode(SegmentationRecord.self, from: $0) }
        return summary
    }

    /// The current (or last) run's centroids, with the public seed phrases nearest each.
    public func segments() throws -> SegmentsReport {
        guard let runID = try (active?.id ?? store.runs().last?.id) else { throw CoordinatorError.noRun }
        return try store.segments(runID: runID, seedVectors: seedVectors?.runID == runID ? seedVectors?.vectors : nil)
    }

    /// Seed phrase vectors of the run, for `segments()` after a restart (embedding is done by
    /// the caller, outside the actor).
    public func setSeedVectors(runID: String, vectors: Matrix) {
        seedVectors = (runID, vectors)
    }

    public func needsSeedVectors() throws -> RunParameters? {
        guard let runID = try (active?.id ?? store.runs().last?.id), seedVectors?.runID != runID, let run = try store.run(runID) else { return nil }
        let parameters = try run.decodedParameters()
        return parameters.seedPhrases.isEmpty ? nil : parameters
    }
}
