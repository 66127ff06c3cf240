import FedSegClustering
import FedSegMath
import Foundation

/// The plan of a private clustering run: how many DP Lloyd rounds, the noise of each, and why.
public struct PrivateClusteringPlan: Sendable, Codable, Equatable {
    public var epsilon: Double
    public var delta: Double
    public var rounds: Int
    /// Noise multiplier of each round's (sums, counts) release.
    public var noiseMultiplier: Double
    public var clipNorm: Double
    /// Share of each round's squared-sensitivity budget that goes to the counts.
    public var countShare: Double
    /// Noise multiplier of the histogram release that weights public candidates (nil: none).
    public var histogramNoiseMultiplier: Double?
    public var reason: String

    /// 10% of the budget for the candidate histogram kept in-distribution cost ratios within 1.02
    /// (n = 10,000, ε = 1) and halved the excess cost when the public sample was out of
    /// distribution (measured on the earlier in-process path; see the README).
    public static let defaultHistogramShare = 0.1

    public var noise: SumCountNoise {
        SumCountNoise(noiseMultiplier: noiseMultiplier, clipNorm: clipNorm, countShare: countShare)
    }

    /// A round's noise for another clip norm (a centred round's): the same noise multiplier, so
    /// the same ε, with every standard deviation of the sums scaled by the bound.
    public func noise(clipNorm bound: Double) -> SumCountNoise {
        SumCountNoise(noiseMultiplier: noiseMultiplier, clipNorm: bound, countShare: countShare)
    }

    /// The planner. Gaussian releases on the same data compose like one release whose 1/z² is
    /// the sum of theirs, and the pipeline merges rounds by inverse variance, so extra rounds cost
    /// accuracy only where assignments move. With a public start the first round corrects the
    /// start and the second re-measures with settled assignments; without one, more rounds are
    /// needed to move the centroids at all.
    public static func make(
        epsilon: Double, delta: Double, k: Int, dimension: Int, clipNorm: Double = 1,
        hasPublicStart: Bool, rounds requested: Int? = nil, meanCentroidNormSquared: Double = 0.35,
        histogramShare: Double = defaultHistogramShare, budgetShare: Double = 1
    ) throws -> PrivateClusteringPlan {
        precondition(budgetShare > 0 && budgetShare <= 1, "budget share must lie in (0, 1]")
        let rounds = requested ?? (hasPublicStart ? 2 : 5)
        // Gaussian releases on the same users (q = 1) compose exactly like one release with
        // 1/z² = Σ 1/z_i², so the budget is one z_total shared out in units of 1/z².
        // `budgetShare` < 1 leaves the rest of the 1/z² budget to a later phase (recommendation).
        let total = try Calibration.noiseMultiplier(epsilon: epsilon, delta: delta, rounds: 1) / budgetShare.squareRoot()
        let histogram = hasPublicStart && histogramShare > 0 ? total / histogramShare.squareRoot() : nil
        let lloydShare = 1 - (histogram == nil ? 0 : histogramShare)
        let z = total * (Double(rounds) / lloydShare).squareRoot()
        // Minimise the centroid error d·σ_s² + ‖c‖²·σ_c² subject to the release's sensitivity:
        // counts get the share r/(1 + r) with r = ‖c‖ / (C √d).
        let ratio = meanCentroidNormSquared.squareRoot() / (clipNorm * Double(dimension).squareRoot())
        let share = min(0.5, max(0.01, ratio / (1 + ratio)))
        let reason = """
            \(budgetShare < 1 ? "\(Int((budgetShare * 100).rounded()))% of the budget for clustering; " : "")\(rounds) round(s) (\(requested == nil ? (hasPublicStart ? "public start: one round to correct it, one to refine" : "no public start: several rounds to move centroids") : "requested")), \
            z = \(String(format: "%.3f", z)) per round for ε = \(epsilon), δ = \(delta) by RDP; \
            counts take \(String(format: "%.1f", share * 100))% of each round's sensitivity budget (‖c‖/(C√d) = \(String(format: "%.3f", ratio))); \
            the same noise multipliers in local and distributed mode\(histogram.map { "; public candidates weighted by a DP histogram (z = \(String(format: "%.3f", $0)), \(Int(histogramShare * 100))% of the budget)" } ?? "")
            """
        return PrivateClusteringPlan(
            epsilon: epsilon, delta: delta, rounds: rounds, noiseMultiplier: z, clipNorm: clipNorm,
            countShare: share, histogramNoiseMultiplier: histogram, reason: reason
        )
    }
}

/// The post-processing of federated K-means under differential privacy: a start from public data
/// (free) and the inverse-variance merge of each DP Lloyd round's released (sums, counts) into
/// the current estimate (empirical Bayes: a prior that disagrees with the data by more than its
/// noise explains gets its variance raised by the disagreement). The rounds themselves are the
/// coordinator's (`FedSegCoordinator`): this type never sees a client's data.
public enum PrivateClustering {
    /// The public start: K-means (k-means++, 5 restarts) on the public points, with the variance
    /// of each centroid estimate (pooled within-cluster variance / cluster size, summed over
    /// coordinates).
    public static func publicStart(_ sample: Matrix, k: Int, seed: UInt64) -> (centroids: Matrix, variances: [Double]) {
        let fit = KMeans.fit(sample, .init(k: k, restarts: 5, seed: seed))
        let sizes = Metrics.clusterSizes(labels: fit.labels, k: k)
        let pooled = fit.inertia / Double(max(1, sample.rows - k))
        return (fit.centroids, sizes.map { pooled / Double(max(1, $0)) })
    }

    /// Merges one round's released (sums, counts) into the current centroids by inverse variance.
    /// Post-processing only: it sees the release and public estimates, never a client's data.
    /// `sumVariance` and `countVariance` are the total noise variance per coordinate of the
    /// aggregate (local mode: the sum over the clients that took part).
    /// `centered`: the sums are of offsets from the current centroids (a centred round), so the
    /// estimate is the centroid plus the mean offset, and the counts' noise scales the offset.
    public static func merge(
        centroids: inout Matrix, variances: inout [Double], sums: [Double], counts: [Double],
        sumVariance: Double, countVariance: Double, centered: Bool = false
    ) {
        let k = centroids.rows
        let d = centroids.cols
        for j in 0..<k {
            // Too few (noisy) members to say anything: keep the current estimate.
            guard counts[j] > 3 * countVariance.squareRoot(), counts[j] >= 1 else { continue }
            let n = counts[j]
            var estimate = [Double](repeating: 0, count: d)
            var normSquared = 0.0
            for t in 0..<d {
                let mean = sums[j * d + t] / n
                normSquared += mean * mean
                estimate[t] = centered ? Double(centroids[j, t]) + mean : mean
            }
            let dpVariance = (Double(d) * sumVariance + normSquared * countVariance) / (n * n)
            var disagreement = 0.0
            for t in 0..<d {
                let diff = estimate[t] - Double(centroids[j, t])
                disagreement += diff * diff
            }
            // Under agreement D has mean dp + prior and relative spread √(2/d); only a
            // disagreement beyond three spreads counts as the prior being off.
            let expected = (dpVariance + variances[j]) * (1 + 3 * (2 / Double(d)).squareRoot())
            let priorVariance = variances[j] + max(0, disagreement - expected)
            let weight = priorVariance.isFinite ? priorVariance / (priorVariance + dpVariance) : 1.0
            for t in 0..<d {
                centroids[j, t] = Float(weight * estimate[t] + (1 - weight) * Double(centroids[j, t]))
            }
            variances[j] = priorVariance.isFinite ? priorVariance * dpVariance / (priorVariance + dpVariance) : dpVariance
        }
    }

    /// Each segment's spread (mean squared distance of its users from their mean) from a plain
    /// round's raw release: users have norm at most C (norm C after clipping, for unit vectors),
    /// so the spread is C² − ‖μ_j‖², and ‖S_j‖²/n_j² − d·σ²/n_j² estimates ‖μ_j‖² without the
    /// noise's bias. The merged centroid is no substitute: it is shrunk towards the start.
    public static func spreads(sums: [Double], counts: [Double], sumVariance: Double, dimension d: Int, clipNorm: Double) -> [Double] {
        counts.indices.map { j in
            let n = counts[j]
            guard n >= 1 else { return clipNorm * clipNorm }
            var normSquared = 0.0
            for t in 0..<d { normSquared += sums[j * d + t] * sums[j * d + t] }
            let mean = max(0, (normSquared - Double(d) * sumVariance) / (n * n))
            return max(0, clipNorm * clipNorm - mean)
        }
    }

    /// The clip norm of a centred round, from released values only: the users of segment j lie
    /// at mean squared distance `spreads[j]` from their mean, and at that plus the estimate's
    /// error (`variances[j]`) from the estimate ĉ_j. The bound is `margin` times the root of the
    /// mean of these distances over segments. Nil when that is not below C: a centred round would
    /// not need less noise than a plain one.
    public static func centeredClipNorm(spreads: [Double], variances: [Double], clipNorm: Double, margin: Double = centeredClipMargin) -> Double? {
        guard !spreads.isEmpty, variances.count == spreads.count, variances.allSatisfy(\.isFinite), spreads.allSatisfy(\.isFinite) else { return nil }
        // Pooled over segments: one segment's estimate moves with its noisy count (a count 9% off
        // moves ‖μ‖² by 18%), the mean over k of them far less.
        var pooled = 0.0
        for j in spreads.indices { pooled += max(0, spreads[j]) + max(0, variances[j]) }
        let bound = margin * (pooled / Double(spreads.count)).squareRoot()
        return bound > 0 && bound < clipNorm ? bound : nil
    }

    /// How far past the segments' pooled root-mean-square distance a centred round clips.
    public static let centeredClipMargin = 1.0

    /// Drops the segments whose released count is not clearly above `minShare` of all released
    /// counts (negative noisy counts taken as 0): a segment is kept when its count less
    /// `countMargin` standard deviations of its noise (`countStd`) reaches the share. At 2σ, a
    /// segment whose true count is under the share survives with probability under 2.3%
    /// (ignoring the total's own noise, which is k times smaller relative). The margin is at
    /// most the share itself (a count of twice the share always stays): where the counts' noise
    /// is larger than that (10,000 local clients, each adding its own), 2σ would drop segments
    /// holding a tenth of the users, and the counts cannot tell small segments anyway. A dropped
    /// segment's model would be global popularity anyway, and its few users are better placed
    /// in the nearest segment that has data. (Dropping one at a time, each count joining its nearest
    /// kept neighbour's, left a segment under 2% of goodbooks' readers on 4 of 10 seeds against
    /// none: the absorbed users do not all join that neighbour.) Post-processing of the release.
    /// Returns the dropped indices (in the old numbering) and the kept segments' counts; at
    /// least one segment is always kept.
    public static func dropSmall(
        centroids: inout Matrix, variances: inout [Double], counts: [Double], minShare: Double, countStd: Double = 0,
        countMargin: Double = dropCountMargin
    ) -> (dropped: [Int], keptCounts: [Double]) {
        let clamped = counts.map { max(0, $0) }
        let total = clamped.reduce(0, +)
        guard minShare > 0, total > 0, centroids.rows > 1 else { return ([], counts) }
        let margin = min(countMargin * max(0, countStd), minShare * total)
        var kept = (0..<centroids.rows).filter { clamped[$0] - margin >= minShare * total }
        if kept.isEmpty { kept = [clamped.indices.max { clamped[$0] < clamped[$1] }!] }
        guard kept.count < centroids.rows else { return ([], counts) }
        let dropped = (0..<centroids.rows).filter { !kept.contains($0) }
        centroids = KMeans.gatherRows(centroids, kept)
        variances = kept.map { variances[$0] }
        return (dropped, kept.map { counts[$0] })
    }

    /// Standard deviations of a released count's noise that `dropSmall` requires above the share.
    public static let dropCountMargin = 2.0
}
