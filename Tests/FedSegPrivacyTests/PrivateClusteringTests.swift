import FedSegClustering
import FedSegMath
import FedSegPrivacy
import Testing

/// Blobs on the sphere: 4 well separated clusters in 24 dimensions.
private func data(n: Int, seed: UInt64) -> (points: Matrix, truth: [Int32]) {
    var rng = SeededRandom(seed: seed)
    var centres = rng.normalMatrix(rows: 4, cols: 24)
    centres.normalizeRows()
    var points = Matrix(rows: n, cols: 24)
    var truth = [Int32](repeating: 0, count: n)
    for i in 0..<n {
        let c = i % 4
        truth[i] = Int32(c)
        for t in 0..<24 { points[i, t] = centres[c, t] + Float(0.08 * rng.nextStandardNormal()) }
    }
    points.normalizeRows()
    return (points, truth)
}

@Suite("Private clustering pipeline")
struct PrivateClusteringTests {
    @Test("the plan's releases add up to exactly the target ε", arguments: [0.5, 1.0, 8.0])
    func accounting(epsilon: Double) throws {
        for rounds in [1, 2, 4] {
            for share in [0.0, 0.1] {
                let plan = try PrivateClusteringPlan.make(
                    epsilon: epsilon, delta: 1e-6, k: 4, dimension: 24, hasPublicStart: true, rounds: rounds,
                    histogramShare: share
                )
                var accountant = RDPAccountant()
                if let z = plan.histogramNoiseMultiplier { try accountant.compose(.gaussian(noiseMultiplier: z)) }
                try accountant.compose(.gaussian(noiseMultiplier: plan.noiseMultiplier), count: rounds)
                let spent = try accountant.epsilon(delta: 1e-6).epsilon
                #expect(spent <= epsilon * (1 + 1e-9))
                #expect(spent > epsilon * 0.999, "the plan leaves budget unused: \(spent) of \(epsilon)")
                #expect(abs(plan.noise.noiseMultiplier - plan.noiseMultiplier) < 1e-9)
            }
        }
    }

    @Test("merging exact statistics with vanishing noise is a Lloyd step from the same start", arguments: [1, 2, 5])
    func mergeIsLloyd(rounds: Int) throws {
        let (points, _) = data(n: 1200, seed: 9)
        var rng = SeededRandom(seed: 4)
        let start = KMeans.plusPlusInitialization(points, k: 4, using: &rng)
        var centroids = start
        var variances = [Double](repeating: 1, count: 4)
        for _ in 0..<rounds {
            // The coordinator's close of a round: released sums and counts, their noise variance.
            let statistics = LocalStatistics.compute(points: points, centroids: centroids, clipNorm: 1)
            PrivateClustering.merge(
                centroids: &centroids, variances: &variances, sums: statistics.sums, counts: statistics.counts.map(Double.init),
                sumVariance: 1e-18, countVariance: 1e-18
            )
        }
        let lloyd = KMeans.lloyd(points, from: start, .init(k: 4, maxIterations: rounds, tolerance: 0))
        var worst: Float = 0
        for i in 0..<lloyd.centroids.count { worst = max(worst, abs(lloyd.centroids.storage[i] - centroids.storage[i])) }
        #expect(worst < 1e-4, "max centroid difference \(worst)")
    }

    @Test("a centred round merged with vanishing noise is the same Lloyd step as a plain one")
    func centredMergeIsLloyd() throws {
        let (points, _) = data(n: 1200, seed: 9)
        var rng = SeededRandom(seed: 4)
        let start = KMeans.plusPlusInitialization(points, k: 4, using: &rng)
        var plain = start, centred = start
        var plainVariances = [Double](repeating: 1, count: 4), centredVariances = plainVariances
        let sums = LocalStatistics.compute(points: points, centroids: start, clipNorm: 1)
        PrivateClustering.merge(
            centroids: &plain, variances: &plainVariances, sums: sums.sums, counts: sums.counts.map(Double.init), sumVariance: 1e-18, countVariance: 1e-18
        )
        // Offsets from unit vectors to centroids inside the ball are at most 2 long: no clipping at 2.
        let offsets = LocalStatistics.compute(points: points, centroids: start, clipNorm: 2, centered: true)
        PrivateClustering.merge(
            centroids: &centred, variances: &centredVariances, sums: offsets.sums, counts: offsets.counts.map(Double.init),
            sumVariance: 1e-18, countVariance: 1e-18, centered: true
        )
        var worst: Float = 0
        for i in 0..<plain.count { worst = max(worst, abs(plain.storage[i] - centred.storage[i])) }
        #expect(worst < 1e-5, "max centroid difference \(worst)")
    }

    @Test("spreads from a noisy plain release estimate each segment's mean squared distance from its mean; the centred clip norm pools them")
    func spreadsAndCentredClipNorm() throws {
        let (points, truth) = data(n: 4000, seed: 12)
        let d = points.cols
        var sums = [Double](repeating: 0, count: 4 * d), counts = [Double](repeating: 0, count: 4)
        for i in 0..<points.rows {
            let j = Int(truth[i])
            counts[j] += 1
            for t in 0..<d { sums[j * d + t] += Double(points[i, t]) }
        }
        var trueSpreads = [Double](repeating: 0, count: 4)
        for i in 0..<points.rows {
            let j = Int(truth[i])
            trueSpreads[j] += (0..<d).reduce(0.0) { total, t in let diff = Double(points[i, t]) - sums[j * d + t] / counts[j]; return total + diff * diff } / counts[j]
        }
        // The release's noise: σ = 2 per coordinate of the sums (the estimate's error is then
        // dominated by 2μ·noise/n, about 0.004 here).
        var noise = SeededRandom(seed: 77)
        let noisy = sums.map { $0 + 2 * noise.nextStandardNormal() }
        let spreads = PrivateClustering.spreads(sums: noisy, counts: counts, sumVariance: 4, dimension: d, clipNorm: 1)
        for j in 0..<4 { #expect(abs(spreads[j] - trueSpreads[j]) < 0.015, "segment \(j): \(spreads[j]) against \(trueSpreads[j])") }
        let pooled = (0..<4).reduce(0.0) { $0 + spreads[$1] + 0.001 } / 4
        let bound = try #require(PrivateClustering.centeredClipNorm(spreads: spreads, variances: [Double](repeating: 0.001, count: 4), clipNorm: 1))
        #expect(abs(bound - pooled.squareRoot()) < 1e-12)
        #expect(bound < 0.5, "users this close to their means need far less than the vectors' norm")
        // A bound that would not be below the clip norm: plain rounds.
        #expect(PrivateClustering.centeredClipNorm(spreads: [0.9, 1.2], variances: [0.1, 0.1], clipNorm: 1) == nil)
        #expect(PrivateClustering.centeredClipNorm(spreads: [0.1], variances: [.infinity], clipNorm: 1) == nil)
        // An empty segment's spread is the whole ball's.
        #expect(PrivateClustering.spreads(sums: [0, 0], counts: [0], sumVariance: 1, dimension: 2, clipNorm: 1) == [1])
    }

    @Test("the weighted start follows the private cluster sizes when the public sample's are skewed")
    func weightedStart() throws {
        let (all, allTruth) = data(n: 6000, seed: 21)
        let points = all.rows(0..<4000)
        let truth = Array(allTruth[0..<4000])
        // A public sample from the same clusters that holds cluster 0 sixteen times as often as the others.
        let skewed = KMeans.gatherRows(all, (4000..<6000).filter { allTruth[$0] == 0 || $0 % 16 == 1 })
        let candidates = StartCandidates.make(skewed, k: 4, seed: 1)
        #expect(candidates.count == 32 && candidates.publicCounts.reduce(0, +) == skewed.rows)
        // The histogram a federation releases: each user counts once in its nearest candidate.
        var histogram = [Double](repeating: 0, count: candidates.count)
        for label in KMeans.assign(points, to: candidates.matrix) { histogram[Int(label)] += 1 }
        let plain = PrivateClustering.publicStart(skewed, k: 4, seed: 1)
        let weighted = candidates.weightedStart(histogram: histogram, k: 4, seed: 1, publicStart: plain.centroids)
        #expect(weighted.variances.count == 4 && weighted.variances.allSatisfy { $0.isFinite && $0 > 0 })
        let plainARI = Metrics.adjustedRandIndex(KMeans.assign(points, to: plain.centroids), truth)
        let weightedARI = Metrics.adjustedRandIndex(KMeans.assign(points, to: weighted.centroids), truth)
        #expect(weightedARI > plainARI + 0.1, "weighted \(weightedARI), plain \(plainARI)")
    }

    @Test("segments not clearly above the minimum share of the released counts are dropped, negative counts as 0, one always kept")
    func dropSmall() {
        var centroids = Matrix(rows: 4, cols: 2, storage: [0, 0, 1, 1, 2, 2, 3, 3])
        var variances = [0.1, 0.2, 0.3, 0.4]
        let (dropped, kept) = PrivateClustering.dropSmall(centroids: &centroids, variances: &variances, counts: [500, 9, -4, 480], minShare: 0.02)
        #expect(dropped == [1, 2])
        #expect(kept == [500, 480] && variances == [0.1, 0.4] && centroids.storage == [0, 0, 3, 3])
        var unchanged = Matrix(rows: 2, cols: 2, storage: [0, 0, 1, 1])
        var v = [1.0, 1]
        #expect(PrivateClustering.dropSmall(centroids: &unchanged, variances: &v, counts: [5, 0.05], minShare: 0).dropped.isEmpty, "0 keeps every segment")
        #expect(PrivateClustering.dropSmall(centroids: &unchanged, variances: &v, counts: [-1, -2], minShare: 0.02).dropped.isEmpty, "no signal: nothing to judge by")
        #expect(unchanged.rows == 2)
        // With the counts' noise: a segment at 3% of the counts whose noise σ is 1% of them is
        // not clearly above 2% (3% − 2σ = 1%) and goes; one at 5% stays.
        var three = Matrix(rows: 3, cols: 2, storage: [0, 0, 1, 1, 2, 2])
        var v3 = [1.0, 1, 1]
        let noisy = PrivateClustering.dropSmall(centroids: &three, variances: &v3, counts: [920, 30, 50], minShare: 0.02, countStd: 10)
        #expect(noisy.dropped == [1] && noisy.keptCounts == [920, 50])
        var same = Matrix(rows: 3, cols: 2, storage: [0, 0, 1, 1, 2, 2])
        #expect(PrivateClustering.dropSmall(centroids: &same, variances: &v3, counts: [920, 30, 50], minShare: 0.02).dropped.isEmpty, "without noise 3% is kept")
        // Noise far larger than the share (σ = 200 on 1,000 counts): the margin stops at the share
        // itself, so segments at 4% and above stay and one at 3% goes.
        var four = Matrix(rows: 4, cols: 2, storage: [0, 0, 1, 1, 2, 2, 3, 3])
        var v4 = [1.0, 1, 1, 1]
        let swamped = PrivateClustering.dropSmall(centroids: &four, variances: &v4, counts: [520, 400, 50, 30], minShare: 0.02, countStd: 200)
        #expect(swamped.dropped == [3] && swamped.keptCounts == [520, 400, 50])
    }
}
