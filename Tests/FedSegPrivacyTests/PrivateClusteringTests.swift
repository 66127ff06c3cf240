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
                    epsilon: epsilon, delta: 1e-6, k: 4, dimension: 24, mode: .central, hasPublicStart: true, rounds: rounds,
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

    @Test("what the pipeline released is what the accountant charges")
    func releasesMatchCharge() throws {
        let (points, _) = data(n: 2000, seed: 1)
        let publicSample = data(n: 200, seed: 2).points
        let plan = try PrivateClusteringPlan.make(epsilon: 1, delta: 1e-6, k: 4, dimension: 24, mode: .central, hasPublicStart: true, rounds: 3)
        var noise = GaussianSampler(generator: SeededRandom(seed: 3))
        let start = PrivateClustering.publicStart(publicSample, k: 4, seed: 1)
        let weighted = try #require(PrivateClustering.weightedStart(
            shards: [points], publicSample: publicSample, k: 4, candidates: 16, plan: plan, noise: &noise, seed: 1, publicStart: start.centroids
        ))
        let result = PrivateClustering.run(
            shards: [points.rows(0..<1000), points.rows(1000..<2000)], start: weighted.centroids, startVariances: weighted.variances,
            plan: plan, noise: &noise, priorReleases: [weighted.release]
        )
        #expect(result.releases.count == 4)
        #expect(result.releases.map(\.round) == [0, 1, 2, 3])
        // Each Lloyd release: sums with std σ_s for sensitivity C and counts with σ_c for 1.
        for release in result.releases.dropFirst() {
            let z = 1 / ((plan.clipNorm / release.sumStd) * (plan.clipNorm / release.sumStd) + 1 / (release.countStd * release.countStd)).squareRoot()
            #expect(abs(z - plan.noiseMultiplier) < 1e-9)
        }
        #expect(abs(try result.epsilonSpent() - 1) < 1e-3)
        #expect(try result.epsilonSpent() <= 1 + 1e-9)
    }

    @Test("with ε → ∞ the pipeline reproduces non-private Lloyd from the same start", arguments: [1, 2, 5])
    func infiniteEpsilon(rounds: Int) throws {
        let (points, _) = data(n: 1200, seed: 9)
        var rng = SeededRandom(seed: 4)
        let start = KMeans.plusPlusInitialization(points, k: 4, using: &rng)
        let plan = try PrivateClusteringPlan.make(
            epsilon: 1e7, delta: 1e-6, k: 4, dimension: 24, mode: .central, hasPublicStart: true, rounds: rounds, histogramShare: 0
        )
        var noise = GaussianSampler(generator: SeededRandom(seed: 5))
        let result = PrivateClustering.run(
            shards: [points], start: start, startVariances: [Double](repeating: 1, count: 4), plan: plan, noise: &noise
        )
        let lloyd = KMeans.lloyd(points, from: start, .init(k: 4, maxIterations: rounds, tolerance: 0))
        var worst: Float = 0
        for i in 0..<lloyd.centroids.count { worst = max(worst, abs(lloyd.centroids.storage[i] - result.centroids.storage[i])) }
        #expect(worst < 1e-4, "max centroid difference \(worst)")
    }

    @Test("private clustering recovers planted clusters at a moderate budget, in local mode too")
    func recovers() throws {
        let (points, truth) = data(n: 8000, seed: 11)
        let publicSample = data(n: 300, seed: 12).points
        for mode in [NoiseMode.central, .local(shards: 8)] {
            let plan = try PrivateClusteringPlan.make(epsilon: 4, delta: 1e-6, k: 4, dimension: 24, mode: mode, hasPublicStart: true)
            var noise = GaussianSampler(generator: SeededRandom(seed: 13))
            let shards = (0..<8).map { points.rows($0 * 1000..<($0 + 1) * 1000) }
            let start = PrivateClustering.publicStart(publicSample, k: 4, seed: 2)
            let result = PrivateClustering.run(shards: shards, start: start.centroids, startVariances: start.variances, plan: plan, noise: &noise)
            let labels = KMeans.assign(points, to: result.centroids)
            #expect(Metrics.adjustedRandIndex(labels, truth) > 0.99)
            let baseline = KMeans.fit(points, .init(k: 4, restarts: 3, seed: 1))
            #expect(Metrics.cost(points: points, centroids: result.centroids) / baseline.inertia < 1.05)
        }
    }
}
