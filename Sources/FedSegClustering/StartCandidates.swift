import FedSegMath

/// The public half of a run's weighted start: K-means centres of the embedded seed phrases
/// (more of them than segments), with how many phrases each holds and how spread they are.
/// The private half is one noised histogram of which candidate each user is nearest to (the
/// start round); `weightedStart` turns the two into the run's start centroids and their
/// uncertainty. Everything here is public data or post-processing of that one release.
public struct StartCandidates: Codable, Sendable, Equatable {
    public var dimension: Int
    /// count × dimension, row-major.
    public var centers: [Float]
    /// Seed phrases nearest each candidate.
    public var publicCounts: [Int]
    /// Their squared distances to it, summed.
    public var withinSquares: [Double]

    public var count: Int { publicCounts.count }
    public var matrix: Matrix { Matrix(rows: count, cols: dimension, storage: centers) }

    /// How many candidates a run with `k` segments gets from `phrases` seed phrases: 8 per
    /// segment (measured with `fedseg-bench utility`), never fewer than k nor more than the phrases.
    public static func count(k: Int, phrases: Int) -> Int { max(k, min(8 * k, phrases)) }

    public static func make(_ sample: Matrix, k: Int, seed: UInt64) -> StartCandidates {
        let fit = KMeans.fit(sample, .init(k: count(k: k, phrases: sample.rows), restarts: 2, seed: seed))
        var counts = [Int](repeating: 0, count: fit.centroids.rows)
        var squares = [Double](repeating: 0, count: fit.centroids.rows)
        for i in 0..<sample.rows {
            let c = Int(fit.labels[i])
            counts[c] += 1
            squares[c] += Self.squaredDistance(sample, i, fit.centroids, c)
        }
        return StartCandidates(dimension: sample.cols, centers: fit.centroids.storage, publicCounts: counts, withinSquares: squares)
    }

    /// Weighted K-means on the candidates with the released (noisy) counts as weights, the plain
    /// public start among its starts, so the result is never worse than it on the weighted
    /// objective. Each centroid's variance is that of a public estimate: the pooled spread of the
    /// seed phrases over the number nearest it (where the public sample is off, the first Lloyd
    /// round's disagreement test raises it).
    public func weightedStart(histogram: [Double], k: Int, seed: UInt64, publicStart: Matrix) -> (centroids: Matrix, variances: [Double]) {
        precondition(histogram.count == count, "one count per candidate")
        let candidates = matrix
        let centroids = WeightedKMeans.fit(candidates, weights: histogram, k: k, restarts: 20, seed: seed, starts: [publicStart])
        return (centroids, variances(of: centroids))
    }

    /// Each centroid's variance as a public estimate: the pooled spread of the seed phrases over
    /// the number nearest it.
    public func variances(of centroids: Matrix) -> [Double] {
        let candidates = matrix
        let k = centroids.rows
        let labels = KMeans.assign(candidates, to: centroids)
        var sizes = [Int](repeating: 0, count: k)
        var squares = 0.0
        for c in 0..<count {
            let j = Int(labels[c])
            sizes[j] += publicCounts[c]
            // The phrases of candidate c around centroid j: their spread around c plus c's offset.
            squares += withinSquares[c] + Double(publicCounts[c]) * Self.squaredDistance(candidates, c, centroids, j)
        }
        let phrases = publicCounts.reduce(0, +)
        let pooled = squares / Double(max(1, phrases - k))
        return sizes.map { pooled / Double(max(1, $0)) }
    }

    public static func squaredDistance(_ a: Matrix, _ i: Int, _ b: Matrix, _ j: Int) -> Double {
        var total = 0.0
        for t in 0..<a.cols {
            let diff = Double(a[i, t]) - Double(b[j, t])
            total += diff * diff
        }
        return total
    }
}
