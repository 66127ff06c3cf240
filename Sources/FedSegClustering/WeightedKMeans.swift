import FedSegMath

/// K-means on weighted points (few of them: candidate centres with noisy counts), for private
/// initialisation. Weighted k-means++ seeding (D²·w) with restarts, then weighted Lloyd.
public enum WeightedKMeans {
    /// `starts` are tried besides the k-means++ restarts; the lowest weighted cost wins.
    public static func fit(
        _ points: Matrix, weights: [Double], k: Int, restarts: Int = 5, iterations: Int = 50, seed: UInt64,
        starts: [Matrix] = []
    ) -> Matrix {
        precondition(points.rows == weights.count && k >= 1, "one weight per point")
        let w = weights.map { max(0, $0) }
        var best: (cost: Double, centroids: Matrix)?
        for restart in 0..<(max(1, restarts) + starts.count) {
            var rng = SeededRandom(seed: seed, stream: 0xA0 + UInt64(restart))
            var centroids = restart < starts.count ? starts[restart] : seeding(points, weights: w, k: k, rng: &rng)
            var cost = Double.infinity
            for _ in 0..<iterations {
                let labels = KMeans.assign(points, to: centroids)
                var sums = [Double](repeating: 0, count: k * points.cols)
                var mass = [Double](repeating: 0, count: k)
                cost = 0
                for i in 0..<points.rows {
                    let j = Int(labels[i])
                    mass[j] += w[i]
                    for t in 0..<points.cols {
                        sums[j * points.cols + t] += w[i] * Double(points[i, t])
                        let diff = Double(points[i, t]) - Double(centroids[j, t])
                        cost += w[i] * diff * diff
                    }
                }
                var moved = false
                for j in 0..<k where mass[j] > 0 {
                    for t in 0..<points.cols {
                        let value = Float(sums[j * points.cols + t] / mass[j])
                        if value != centroids[j, t] { moved = true }
                        centroids[j, t] = value
                    }
                }
                if !moved { break }
            }
            if best == nil || cost < best!.cost { best = (cost, centroids) }
        }
        return best!.centroids
    }

    static func seeding(_ points: Matrix, weights: [Double], k: Int, rng: inout SeededRandom) -> Matrix {
        var centroids = Matrix(rows: k, cols: points.cols)
        let total = weights.reduce(0, +)
        func draw(_ mass: [Double]) -> Int {
            let sum = mass.reduce(0, +)
            guard sum > 0 else { return Int(rng.next(upperBound: UInt64(points.rows))) }
            var target = rng.nextUniform() * sum
            for (i, m) in mass.enumerated() {
                target -= m
                if target < 0 { return i }
            }
            return mass.lastIndex { $0 > 0 } ?? 0
        }
        centroids.setRow(0, to: points.row(draw(total > 0 ? weights : [Double](repeating: 1, count: points.rows))))
        var closest = [Double](repeating: .infinity, count: points.rows)
        for c in 1..<max(1, k) {
            let last = centroids.rows(c - 1..<c)
            let distances = KMeans.squaredDistances(points, to: last)
            for i in 0..<points.rows { closest[i] = min(closest[i], distances[i][0]) }
            centroids.setRow(c, to: points.row(draw(zip(closest, weights).map { $0 * $1 })))
        }
        return centroids
    }
}
