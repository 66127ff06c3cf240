import CoreMetrics
import FedSegClustering
import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import Logging
import SwiftProtobuf

/// How a round ends: committed (its release charged, stored and acted on, in one transaction
/// per release kind), or abandoned; and how a run ends.
extension Coordinator {
    func close(_ round: OpenRound) throws {
        guard let run = active else { return }
        crash(at: .aggregate)
        let result = round.aggregation.result()
        let charge = try charge(for: round)
        switch round.phase {
        case .start:
            guard let candidates = run.startCandidates else { throw CoordinatorError.state("a start round without candidates") }
            var updated = run
            (updated.centroids, updated.variances) = candidates.weightedStart(
                histogram: result.sums, k: run.parameters.k, seed: run.parameters.seed, publicStart: run.centroids
            )
            updated.phase = .clustering
            try store.commit(
                .init(
                    runID: run.id, round: Int64(round.id), participants: round.participants, declined: round.declined,
                    shift: run.centroids.maxRowDistance(to: updated.centroids), centroids: updated.centroids, variances: updated.variances,
                    releasedCounts: result.sums, committedRounds: 0, phase: .clustering
                ),
                charge: charge, beforeCommit: { crash(at: .commit) }
            )
            active = updated
            logger.info("start histogram committed", metadata: [
                "round": "\(round.id)", "participants": "\(round.participants)", "candidates": "\(candidates.count)",
            ])
        case .clustering:
            var updated = run
            let previous = run.centroids
            PrivateClustering.merge(
                centroids: &updated.centroids, variances: &updated.variances, sums: result.sums, counts: result.counts,
                sumVariance: result.sumVariance, countVariance: result.countVariance
            )
            let shift = previous.maxRowDistance(to: updated.centroids)
            updated.committedRounds += 1
            updated.abandonedInARow = 0
            // Converged, or out of rounds: on to recommendation (or done), in the same transaction.
            if updated.committedRounds >= run.parameters.rounds || shift < run.parameters.convergenceTolerance {
                updated.phase = run.parameters.catalog.isEmpty ? .done : .recommendation
            }
            try store.commit(
                .init(
                    runID: run.id, round: Int64(round.id), participants: round.participants, declined: round.declined, shift: shift,
                    centroids: updated.centroids, variances: updated.variances, releasedCounts: result.counts,
                    committedRounds: updated.committedRounds, phase: updated.phase
                ),
                charge: charge, beforeCommit: { crash(at: .commit) }
            )
            active = updated
            logger.info("round committed", metadata: [
                "round": "\(round.id)", "participants": "\(round.participants)", "declined": "\(round.declined)",
                "centroid_shift": "\(String(format: "%.5f", shift))",
            ])
        case .recommendation, .done:
            var histogram = SegmentHistogram(segments: run.parameters.k, items: run.parameters.catalog.count)
            histogram.counts = result.sums
            let model = try publication(of: SegmentModel.build(
                from: histogram, runID: run.id, version: try store.latestModelVersion(runID: run.id) + 1, noiseStd: result.sumVariance.squareRoot()
            ), run: run)
            try store.commitRecommendation(
                runID: run.id, round: Int64(round.id), participants: round.participants, declined: round.declined, model: model,
                charge: charge, beforeCommit: { crash(at: .commit) }
            )
            active?.phase = .done
            logger.info("segment model published", metadata: ["run": "\(run.id)", "version": "\(model.version)", "participants": "\(round.participants)"])
        }
        // Recorded once the round is stored: a commit retried after a full disk is one round.
        metrics.roundSeconds.recordNanoseconds(Int64((now - round.openedAt) * 1e9))
        metrics.participants.record(Double(round.participants))
        metrics.roundsCommitted.increment()
        try recordEpsilon()
        try advance()
    }

    func abandon(_ round: OpenRound, reason: String) throws {
        guard var run = active else { return }
        run.abandonedInARow += 1
        try store.abandon(
            round: Int64(round.id), participants: round.participants, declined: round.declined, runID: run.id, abandonedInARow: run.abandonedInARow
        )
        active = run
        metrics.roundsAbandoned.increment()
        logger.warning("round abandoned", metadata: ["round": "\(round.id)", "why": "\(reason)", "charged": "\(round.charged)"])
        if run.abandonedInARow >= run.parameters.maxAbandonedRounds {
            try finish(.failed, reason: "\(run.abandonedInARow) rounds in a row abandoned (\(reason))")
        } else {
            try openRound()
        }
    }

    /// The signed publication of a model, with the run's centroids so nodes place users locally.
    func publication(of model: SegmentModel, run: ActiveRun) throws -> CoordinatorStore.PublishedModel {
        var model = model
        model.centroids = run.centroids.storage
        model.dimension = run.parameters.dimension
        model.embedderID = run.parameters.embedderID
        if model.catalogSize == run.parameters.catalog.count { model.catalogItems = run.parameters.catalog }
        let signed = try model.signed(with: keys.identity.signing)
        let bytes = try Fedseg_V1_SignedPublication.with {
            $0.kind = .segmentModel
            $0.payload = signed.payload
            $0.signature = Data(signed.signature)
        }.serializedData()
        return .init(runID: run.id, version: model.version, publication: bytes, createdAt: now)
    }

    /// After a commit: the next round, or the end of the run. A run without a catalogue ends by
    /// publishing its centroids alone (post-processing of committed rounds, no new charge).
    func advance() throws {
        guard let run = active else { return }
        guard run.phase == .done else { return try openRound() }
        if try store.latestModelVersion(runID: run.id) == 0 {
            let empty = SegmentModel(runID: run.id, version: 1, catalogSize: 0, segments: [], global: .init(id: -1, items: [], scores: []))
            try store.publish(try publication(of: empty, run: run))
        }
        try finish(.completed, reason: nil)
    }

    func finish(_ status: RunStatus, reason: String?) throws {
        guard let run = active else { return }
        let abandoned = open
        open = nil
        try store.finish(runID: run.id, status: status, reason: reason, openRound: abandoned.map { Int64($0.id) })
        active = nil
        logger.notice("run finished", metadata: ["run": "\(run.id)", "status": "\(status)", "reason": "\(reason ?? "")"])
    }
}
