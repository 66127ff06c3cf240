import FedSegMath

/// The coordinator's step: new centroids from aggregated (possibly noisy) sums and counts.
///
/// c_j = sum_j / max(count_j, countFloor). A cluster whose count is below `minimumCount` keeps its
/// previous centroid: with noisy statistics a small count is mostly noise, and dividing by it
/// would throw the centroid anywhere.
public struct GlobalUpdate: Sendable {
    public var countFloor: Double
    public var minimumCount: Double
    /// Project centroids back onto the unit sphere (for normalised embeddings).
    public var spherical: Bool

    public init(countFloor: Double = 1, minimumCount: Double = 1, spherical: Bool = false) {
        precondition(countFloor > 0, "count floor must be positive")
        self.countFloor = countFloor
        self.minimumCount = minimumCount
        self.spherical = spherical
    }

    public struct Outcome: Sendable {
        public var centroids: Matrix
        /// Euclidean distance each centroid moved.
        public var shifts: [Double]
        /// Clusters that kept their previous centroid.
        public var kept: [Int]

        public var maxShift: Double { shifts.max() ?? 0 }
    }

    /// `sums` is row-major k x d; `counts` has k entries. Non-finite inputs keep the old centroid.
    public func apply(previous: Matrix, sums: [Double], counts: [Double]) -> Outcome {
        let k = previous.rows
        let d = previous.cols
        precondition(sums.count == k * d && counts.count == k, "statistics do not match \(k) centroids of dimension \(d)")
        var next = previous
        var kept: [Int] = []
        var shifts = [Double](repeating: 0, count: k)
        for j in 0..<k {
            let row = sums[j * d..<(j + 1) * d]
            guard counts[j].isFinite, counts[j] >= minimumCount, row.allSatisfy(\.isFinite) else {
                kept.append(j)
                continue
            }
            let divisor = max(counts[j], countFloor)
            var candidate = row.map { $0 / divisor }
            if spherical {
                let norm = candidate.reduce(0) { $0 + $1 * $1 }.squareRoot()
                guard norm > 0 else {
                    kept.append(j)
                    continue
                }
                candidate = candidate.map { $0 / norm }
            }
            var shift = 0.0
            for t in 0..<d {
                let diff = candidate[t] - Double(previous[j, t])
                shift += diff * diff
                next[j, t] = Float(candidate[t])
            }
            shifts[j] = shift.squareRoot()
        }
        return Outcome(centroids: next, shifts: shifts, kept: kept)
    }

    /// Convenience for exact (noise-free) statistics.
    public func apply(previous: Matrix, statistics: LocalStatistics) -> Outcome {
        apply(previous: previous, sums: statistics.sums, counts: statistics.counts.map(Double.init))
    }
}
