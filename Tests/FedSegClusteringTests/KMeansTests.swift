import FedSegClustering
import FedSegMath
import Testing

@Suite("Centralised K-means")
struct KMeansTests {
    @Test("k-means++ with restarts recovers well separated blobs")
    func recoversBlobs() {
        let (points, truth) = blobs(n: 3000, d: 20, k: 6, spread: 0.15, seed: 21)
        let result = KMeans.fit(points, .init(k: 6, restarts: 3, seed: 5))
        #expect(result.converged)
        #expect(Metrics.adjustedRandIndex(result.labels, truth) > 0.99)
    }

    @Test("the same seed gives the same result")
    func deterministic() {
        let points = blobs(n: 1000, d: 8, k: 4, seed: 2).points
        let a = KMeans.fit(points, .init(k: 4, seed: 9))
        let b = KMeans.fit(points, .init(k: 4, seed: 9))
        #expect(a.labels == b.labels && a.centroids == b.centroids)
    }

    @Test("Lloyd never increases the cost")
    func monotone() {
        let points = blobs(n: 2000, d: 10, k: 5, spread: 1, seed: 4).points
        var rng = SeededRandom(seed: 6)
        var centroids = KMeans.plusPlusInitialization(points, k: 5, using: &rng)
        var last = Double.infinity
        for _ in 0..<10 {
            let step = KMeans.lloyd(points, from: centroids, .init(k: 5, maxIterations: 1, tolerance: 0))
            #expect(step.inertia <= last * (1 + 1e-6))
            last = step.inertia
            centroids = step.centroids
        }
    }

    @Test("an empty cluster is reseeded from the farthest point, never divided by zero")
    func emptyClusterReseeded() {
        let points = Matrix(rowVectors: [[0, 0], [0.1, 0], [5, 5], [5.1, 5], [20, 20]])
        // The third centroid is far from everything and starts empty.
        let start = Matrix(rowVectors: [[0, 0], [5, 5], [1000, -1000]])
        let result = KMeans.fit(points, .init(k: 3, tolerance: 0, initialization: .centroids(start)))
        #expect(result.reseeded >= 1)
        #expect(result.centroids.storage.allSatisfy { $0.isFinite })
        #expect(Set(result.labels).count == 3)
        #expect(result.centroids.row(2) == [20, 20])
    }

    @Test("spherical K-means keeps unit-norm centroids")
    func spherical() {
        var points = blobs(n: 1500, d: 32, k: 4, spread: 0.2, seed: 12).points
        points.normalizeRows()
        let result = KMeans.fit(points, .init(k: 4, spherical: true, seed: 1))
        for norm in result.centroids.rowNorms() { #expect(abs(norm - 1) < 1e-5) }
    }

    @Test("mini-batch K-means gets within a few percent of Lloyd's cost")
    func miniBatch() {
        let (points, _) = blobs(n: 20000, d: 16, k: 8, spread: 0.3, seed: 30)
        let full = KMeans.fit(points, .init(k: 8, restarts: 3, seed: 2))
        let mini = KMeans.miniBatch(points, .init(k: 8, maxIterations: 5, seed: 2), batchSize: 1024)
        #expect(mini.inertia < full.inertia * 1.05)
    }

    @Test("the k sweep prefers the planted k by silhouette")
    func sweep() {
        let (points, _) = blobs(n: 1500, d: 12, k: 5, spread: 0.1, seed: 40)
        let rows = KSweep.run(points, ks: 2...8, seed: 1, silhouetteSample: 800)
        #expect(rows.count == 7)
        #expect(KSweep.bestBySilhouette(rows) == 5)
        // The elbow: inertia drops sharply up to k = 5 and little after.
        let byK = Dictionary(uniqueKeysWithValues: rows.map { ($0.k, $0.inertia) })
        #expect(byK[4]! / byK[5]! > 2 * (byK[5]! / byK[6]!))
    }
}

@Suite("Global update from aggregated statistics")
struct GlobalUpdateTests {
    @Test("exact statistics reproduce one Lloyd step")
    func matchesLloyd() {
        let points = blobs(n: 800, d: 6, k: 3, seed: 5).points
        var rng = SeededRandom(seed: 2)
        let start = KMeans.plusPlusInitialization(points, k: 3, using: &rng)
        let outcome = GlobalUpdate().apply(previous: start, statistics: LocalStatistics.compute(points: points, centroids: start))
        let lloyd = KMeans.lloyd(points, from: start, .init(k: 3, maxIterations: 1, tolerance: 0))
        for i in 0..<outcome.centroids.count {
            #expect(abs(outcome.centroids.storage[i] - lloyd.centroids.storage[i]) < 1e-5)
        }
        #expect(outcome.kept.isEmpty)
        #expect(outcome.maxShift > 0)
    }

    @Test("small, negative or non-finite noisy counts keep the previous centroid")
    func keepsOnNoise() {
        let previous = Matrix(rowVectors: [[1, 0], [0, 1], [1, 1], [2, 2]])
        let sums: [Double] = [10, 0, 3, 3, .nan, 1, 4, 4]
        let counts: [Double] = [10, -2, 50, 0.5]
        let outcome = GlobalUpdate(countFloor: 1, minimumCount: 1).apply(previous: previous, sums: sums, counts: counts)
        #expect(outcome.kept == [1, 2, 3])
        #expect(outcome.centroids.row(0) == [1, 0])
        #expect(outcome.centroids.row(1) == [0, 1])
        #expect(outcome.centroids.row(2) == [1, 1])
        #expect(outcome.shifts == [0, 0, 0, 0])
    }

    @Test("the count floor bounds the division")
    func floor() {
        let previous = Matrix(rowVectors: [[0, 0]])
        let outcome = GlobalUpdate(countFloor: 10, minimumCount: 0.1).apply(previous: previous, sums: [5, 0], counts: [2])
        #expect(outcome.centroids.row(0) == [0.5, 0])
        #expect(abs(outcome.shifts[0] - 0.5) < 1e-12)
    }
}
