import FedSegClustering
import FedSegMath
import Testing

/// Gaussian blobs around `k` random centres, deterministic under the seed.
func blobs(n: Int, d: Int, k: Int, spread: Double = 0.3, seed: UInt64) -> (points: Matrix, truth: [Int32]) {
    var rng = SeededRandom(seed: seed)
    let centres = rng.normalMatrix(rows: k, cols: d)
    var points = Matrix(rows: n, cols: d)
    var truth = [Int32](repeating: 0, count: n)
    for i in 0..<n {
        let c = Int(rng.next(upperBound: UInt64(k)))
        truth[i] = Int32(c)
        for t in 0..<d { points[i, t] = centres[c, t] + Float(spread * rng.nextStandardNormal()) }
    }
    return (points, truth)
}

@Suite("Local statistics")
struct StatisticsTests {
    @Test(
        "statistics over a random split add up to those over the whole data",
        arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8]
    )
    func federatedEqualsCentralised(seed: UInt64) {
        var rng = SeededRandom(seed: seed, stream: 99)
        let n = 300 + Int(rng.next(upperBound: UInt64(3000)))
        let d = 1 + Int(rng.next(upperBound: UInt64(64)))
        let k = 1 + Int(rng.next(upperBound: UInt64(12)))
        let clip: Float? = rng.next(upperBound: UInt64(2)) == 0 ? nil : Float(0.5 + rng.nextUniform() * 3)
        let data = blobs(n: n, d: d, k: k, seed: seed).points
        let centroids = rng.normalMatrix(rows: k, cols: d)
        let whole = LocalStatistics.compute(points: data, centroids: centroids, clipNorm: clip)
        // Split into a random number of random-sized parts.
        let parts = 1 + Int(rng.next(upperBound: UInt64(7)))
        var cuts = (0..<(parts - 1)).map { _ in Int(rng.next(upperBound: UInt64(n))) }.sorted()
        cuts = [0] + cuts + [n]
        var merged = LocalStatistics(k: k, dimension: d)
        for p in 0..<parts where cuts[p] < cuts[p + 1] {
            merged.merge(LocalStatistics.compute(points: data.rows(cuts[p]..<cuts[p + 1]), centroids: centroids, clipNorm: clip))
        }
        #expect(merged.counts == whole.counts)
        #expect(merged.total == n)
        for i in whole.sums.indices {
            #expect(abs(merged.sums[i] - whole.sums[i]) <= 1e-9 * max(1, abs(whole.sums[i])))
        }
        #expect(abs(merged.inertia - whole.inertia) <= 1e-9 * whole.inertia)
    }

    @Test("centred statistics sum each vector's offset from its nearest centroid, clipped to the bound", arguments: [Float(0.3), 1, 100])
    func centredStatistics(clip: Float) {
        let data = blobs(n: 700, d: 12, k: 4, spread: 0.5, seed: 23).points
        var rng = SeededRandom(seed: 5)
        let centroids = rng.normalMatrix(rows: 4, cols: 12)
        let labels = KMeans.assign(data, to: centroids)
        let centred = LocalStatistics.compute(points: data, centroids: centroids, clipNorm: clip, centered: true)
        let plain = LocalStatistics.compute(points: data, centroids: centroids, clipNorm: clip)
        #expect(centred.counts == plain.counts)
        // The same sums computed one vector at a time, in Double, with the documented rule.
        var expected = [Double](repeating: 0, count: 4 * 12)
        var clipped = 0
        for i in 0..<data.rows {
            let j = Int(labels[i])
            let offset = (0..<12).map { Double(data[i, $0]) - Double(centroids[j, $0]) }
            let norm = offset.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let factor = norm > Double(clip) ? Double(clip) * (1 - 1e-6) / norm : 1
            if factor < 1 { clipped += 1 }
            for t in 0..<12 { expected[j * 12 + t] += factor * offset[t] }
            // One vector alone moves its cluster's sum by at most the bound.
            let single = LocalStatistics.compute(points: data.rows(i..<i + 1), centroids: centroids, clipNorm: clip, centered: true)
            #expect(single.sum(ofCluster: j).reduce(0) { $0 + $1 * $1 }.squareRoot() <= Double(clip))
        }
        for i in expected.indices { #expect(abs(centred.sums[i] - expected[i]) <= 1e-6 * max(1, abs(expected[i]))) }
        // Unclipped, the centred sums are the plain sums less n_j·c_j.
        if clip == 100 {
            #expect(clipped == 0)
            for j in 0..<4 {
                for t in 0..<12 {
                    let shifted = plain.sums[j * 12 + t] - Double(plain.counts[j]) * Double(centroids[j, t])
                    #expect(abs(centred.sums[j * 12 + t] - shifted) <= 1e-6 * max(1, abs(shifted)))
                }
            }
        } else {
            #expect(clipped > 0, "the test must exercise the clipping branch")
        }
    }

    @Test("clipping bounds every vector's contribution to the clip norm", arguments: [Float(0.1), 0.5, 1, 4])
    func clippingBoundsContributions(clip: Float) {
        let data = blobs(n: 500, d: 16, k: 3, spread: 2, seed: 17).points
        var rng = SeededRandom(seed: 3)
        let centroids = rng.normalMatrix(rows: 3, cols: 16)
        let labels = KMeans.assign(data, to: centroids)
        let norms = data.rowNorms()
        for i in 0..<data.rows {
            let single = LocalStatistics.compute(points: data.rows(i..<i + 1), centroids: centroids, clipNorm: clip)
            let j = Int(labels[i])
            let norm = single.sum(ofCluster: j).reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(norm <= Double(clip) * (1 + 1e-6))
            #expect(abs(norm - Double(min(norms[i], clip))) < 1e-4 * Double(max(1, clip)))
            #expect(single.counts[j] == 1 && single.total == 1)
        }
    }

    @Test("assignment picks the nearest centroid and breaks ties towards the lower index")
    func nearestAndTies() {
        let points = Matrix(rowVectors: [[0, 0], [1, 0], [0.5, 0], [10, 10]])
        let centroids = Matrix(rowVectors: [[0, 0], [1, 0], [10, 10]])
        let labels = KMeans.assign(points, to: centroids)
        #expect(labels == [0, 1, 0, 2])
        let duplicate = Matrix(rowVectors: [[1, 1], [1, 1]])
        #expect(KMeans.assign(points, to: duplicate) == [0, 0, 0, 0])
    }

    @Test("the inertia from the GEMM identity equals the direct double-precision cost")
    func inertiaAgrees() {
        let data = blobs(n: 4000, d: 48, k: 6, seed: 8).points
        var rng = SeededRandom(seed: 1)
        let centroids = rng.normalMatrix(rows: 6, cols: 48)
        let stats = LocalStatistics.compute(points: data, centroids: centroids)
        let direct = Metrics.cost(points: data, centroids: centroids)
        #expect(abs(stats.inertia - direct) / direct < 1e-4)
    }
}

@Suite("Clipped statistics")
struct ClippedStatisticsTests {
    @Test("property: one user's clipped contribution to the Double sums has norm ≤ C exactly (the norm is taken in Double)")
    func contributionWithinBound() {
        var rng = SeededRandom(seed: 77)
        let d = 384
        var above = 0
        for trial in 0..<500 {
            let clip: Float = [1, 0.8, 2.5][trial % 3]
            var row = (0..<d).map { _ in Float(rng.nextUniform() * 2 - 1) }
            let rowNorm = row.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            // Right at and just above the bound, where Float norms disagree with Double ones.
            let target = Double(clip) * (1 + rng.nextUniform() * 1e-4)
            row = row.map { Float(Double($0) * target / rowNorm) }
            let statistics = LocalStatistics.compute(
                points: Matrix(rows: 1, cols: d, storage: row), centroids: Matrix(rows: 1, cols: d), clipNorm: clip
            )
            let sumNorm = statistics.sums.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if sumNorm > Double(clip) { above += 1 }
        }
        #expect(above == 0, "\(above) of 500 contributions ended above C")
    }
}
