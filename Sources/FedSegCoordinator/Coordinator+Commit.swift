import CoreMetrics
import FedSegClustering
import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import Logging
import Prometheus
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
            (updated.centroids, updated.variances, updated.segmentation) = Self.startSegments(run: run, candidates: candidates, histogram: result.sums)
            updated.phase = .clustering
            try store.commit(
                .init(
                    runID: run.id, round: Int64(round.id), participants: round.participants, declined: round.declined,
                    shift: run.centroids.maxRowDistance(to: updated.centroids), centroids: updated.centroids, variances: updated.variances,
                    releasedCounts: result.sums, committedRounds: 0, phase: .clustering, segmentation: updated.segmentation
                ),
                charge: charge, beforeCommit: { crash(at: .commit) }
            )
            active = updated
            logger.info("start histogram committed", metadata: [
                "round": "\(round.id)", "participants": "\(round.participants)", "candidates": "\(candidates.count)", "k": "\(updated.k)",
            ])
            if let segmentation = updated.segmentation { logger.notice("segments chosen", metadata: ["run": "\(run.id)", "why": "\(segmentation.reason)"]) }
        case .clustering:
            var updated = run
            let previous = run.centroids
            if !round.plan.centered {
                updated.spreads = PrivateClustering.spreads(
                    sums: result.sums, counts: result.counts, sumVariance: result.sumVariance, dimension: run.centroids.cols, clipNorm: run.parameters.clipNorm
                )
            }
            PrivateClustering.merge(
                centroids: &updated.centroids, variances: &updated.variances, sums: result.sums, counts: result.counts,
                sumVariance: result.sumVariance, countVariance: result.countVariance, centered: round.plan.centered
            )
            let shift = previous.maxRowDistance(to: updated.centroids)
            var releasedCounts = result.counts
            if let chosen = Self.chooseSegmentCount(
                run, centroids: &updated.centroids, variances: &updated.variances, spreads: &updated.spreads, counts: result.counts, round: round.id
            ) {
                updated.segmentation = chosen.record
                releasedCounts = chosen.counts
                logger.notice("segments chosen", metadata: ["run": "\(run.id)", "k": "\(updated.k)", "why": "\(chosen.record.reason)"])
            }
            updated.committedRounds += 1
            updated.abandonedInARow = 0
            // Converged, or out of rounds: on to recommendation (or done), in the same transaction.
            let last = updated.committedRounds >= run.parameters.rounds || shift < run.parameters.convergenceTolerance
            if last { updated.phase = run.parameters.catalog.isEmpty ? .done : .recommendation }
            // Tiny segments are dropped once the Lloyd rounds are over: dropping them between
            // rounds cost goodbooks 8% of its private recall (a segment small after one round
            // can grow in the next).
            let (dropped, keptCounts) = last
                ? PrivateClustering.dropSmall(
                    centroids: &updated.centroids, variances: &updated.variances, counts: releasedCounts, minShare: run.parameters.minSegmentShare,
                    countStd: result.countVariance.squareRoot()
                )
                : ([], releasedCounts)
            if !dropped.isEmpty {
                updated.spreads = updated.spreads.map { spreads in spreads.indices.filter { !dropped.contains($0) }.map { spreads[$0] } }
                let total = releasedCounts.reduce(0) { $0 + max(0, $1) }
                var record = updated.segmentation ?? SegmentationRecord(
                    requestedK: run.parameters.k, selection: run.parameters.kSelection, clusterer: run.parameters.clusterer, chosenK: run.k,
                    currentK: run.k, reason: "k = \(run.parameters.k) as requested"
                )
                record.dropped += dropped.map { .init(round: round.id, segment: $0, share: max(0, releasedCounts[$0]) / total) }
                record.currentK = updated.k
                updated.segmentation = record
                logger.notice("segments dropped", metadata: [
                    "round": "\(round.id)", "dropped": "\(dropped)", "k": "\(updated.k)",
                    "why": "each released count, less twice its noise's standard deviation (\(String(format: "%.1f", result.countVariance.squareRoot())); at most the share itself), was under \(run.parameters.minSegmentShare * 100)% of the released counts",
                ])
            }
            try store.commit(
                .init(
                    runID: run.id, round: Int64(round.id), participants: round.participants, declined: round.declined, shift: shift,
                    centroids: updated.centroids, variances: updated.variances, releasedCounts: keptCounts,
                    committedRounds: updated.committedRounds, phase: updated.phase,
                    segmentation: updated.segmentation == run.segmentation ? nil : updated.segmentation,
                    spreads: updated.spreads == run.spreads ? nil : updated.spreads
                ),
                charge: charge, beforeCommit: { crash(at: .commit) }
            )
            active = updated
            logger.info("round committed", metadata: [
                "round": "\(round.id)", "participants": "\(round.participants)", "declined": "\(round.declined)",
                "centroid_shift": "\(String(format: "%.5f", shift))",
            ])
        case .recommendation, .done:
            var histogram = SegmentHistogram(segments: run.k, items: run.parameters.catalog.count, globalRow: round.plan.globalRow)
            histogram.counts = result.sums
            // With a global row, each segment's counts and the global list are estimated from both.
            let (combined, noiseFactor) = histogram.combined()
            let model = try publication(of: SegmentModel.build(
                from: combined, runID: run.id, version: try store.latestModelVersion(runID: run.id) + 1,
                noiseStd: result.sumVariance.squareRoot() * noiseFactor
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
        try recordEpsilon([Self.allUsers, "run:\(run.id)"])
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

extension Coordinator {
    /// The run's first centroids from the released start histogram: weighted K-means with the
    /// run's k, or k chosen by weighted silhouette (`auto`), or the dense regions (`density`),
    /// all on the DP-weighted public candidates, so the choice costs no privacy.
    static func startSegments(
        run: ActiveRun, candidates: StartCandidates, histogram: [Double]
    ) -> (centroids: Matrix, variances: [Double], segmentation: SegmentationRecord?) {
        let p = run.parameters
        switch p.clusterer {
        case .kmeans:
            // With k auto, k is chosen after the first Lloyd round, from its released centroids (`chooseSegmentCount`).
            let start = candidates.weightedStart(histogram: histogram, k: p.k, seed: p.seed, publicStart: run.centroids)
            return (start.centroids, start.variances, nil)
        case .density:
            let choice = CandidateSegmentation.density(candidates.matrix, weights: histogram, maxK: p.k, minShare: p.minSegmentShare)
            let chosen = choice ?? CandidateSegmentation.autoK(candidates.matrix, weights: histogram, maxK: p.k, minShare: p.minSegmentShare, seed: p.seed)
            let prefix = choice == nil ? "density: no ε found two dense regions, so K-means chose k instead; " : ""
            return (chosen.centroids, candidates.variances(of: chosen.centroids), SegmentationRecord(parameters: p, choice: chosen, reason: prefix + chosen.reason))
        }
    }
}

extension Coordinator {
    /// `k_selection` auto: the first Lloyd round runs with the most segments allowed; its
    /// released centroids and counts then choose k (weighted silhouette of the users behind the
    /// centroids, `CandidateSegmentation.spreadDistances`), and weighted K-means merges the
    /// centroids into k. Post-processing of that round's release: no extra ε.
    static func chooseSegmentCount(
        _ run: ActiveRun, centroids: inout Matrix, variances: inout [Double], spreads: inout [Double]?, counts: [Double], round: UInt64
    ) -> (record: SegmentationRecord, counts: [Double])? {
        let p = run.parameters
        guard p.kSelection == .auto, p.clusterer == .kmeans, run.segmentation == nil, centroids.rows > 2 else { return nil }
        // Segments that would be dropped anyway do not vote: a near-empty one would otherwise
        // stand as a cluster of its own and make every larger k ineligible.
        let total = counts.reduce(0) { $0 + max(0, $1) }
        var voters = counts.indices.filter { counts[$0] >= p.minSegmentShare * total && counts[$0] > 0 }
        if voters.count < 2 { voters = Array(counts.indices) }
        let points = KMeans.gatherRows(centroids, voters)
        let choice = CandidateSegmentation.autoK(
            points, weights: voters.map { counts[$0] }, maxK: p.k, minShare: p.minSegmentShare, seed: p.seed,
            distances: CandidateSegmentation.spreadDistances(points, clipNorm: p.clipNorm, variances: voters.map { variances[$0] })
        )
        let merged = CandidateSegmentation.merge(centroids, counts: counts, variances: variances, spreads: spreads, into: choice.centroids)
        variances = merged.variances
        spreads = merged.spreads
        centroids = choice.centroids
        let record = SegmentationRecord(
            parameters: p, choice: choice,
            reason: "round \(round), run with k = \(p.k): \(choice.reason) (silhouette of the users behind its released centroids, their spread derived from the centroid norms); merged by weighted K-means"
        )
        return (record, merged.counts)
    }
}

extension SegmentationRecord {
    /// The record of segments a run chose (`choice`), before any is dropped.
    init(parameters p: RunParameters, choice: CandidateSegmentation.Choice, reason: String) {
        self.init(
            requestedK: p.k, selection: p.kSelection, clusterer: p.clusterer, chosenK: choice.centroids.rows, currentK: choice.centroids.rows,
            reason: reason, scores: choice.scores.map { .init(k: $0.k, silhouette: $0.silhouette) }
        )
    }
}
