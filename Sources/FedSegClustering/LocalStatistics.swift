import FedSegMath

/// Per-cluster sums and counts of a set of vectors under the current centroids: exactly what a
/// client sends before noise, and what one Lloyd step needs.
///
/// Sums are kept in `Double` so that statistics from many clients add up to those of the whole
/// data to within rounding, whatever the order of aggregation.
public struct LocalStatistics: Sendable, Equatable {
    public let k: Int
    public let dimension: Int
    /// Row-major `k x dimension`: row j is the sum of the (clipped) vectors assigned to cluster j.
    public var sums: [Double]
    public var counts: [Int]
    /// Sum of squared distances of every vector to its nearest centroid (unclipped vectors).
    public var inertia: Double

    public init(k: Int, dimension: Int) {
        self.k = k
        self.dimension = dimension
        self.sums = [Double](repeating: 0, count: k * dimension)
        self.counts = [Int](repeating: 0, count: k)
        self.inertia = 0
    }

    public var total: Int { counts.reduce(0, +) }

    /// The sum vector of one cluster.
    public func sum(ofCluster cluster: Int) -> ArraySlice<Double> {
        sums[cluster * dimension..<(cluster + 1) * dimension]
    }

    /// Adds another client's statistics (same k and dimension).
    public mutating func merge(_ other: LocalStatistics) {
        precondition(other.k == k && other.dimension == dimension, "merging statistics of different shapes")
        for i in sums.indices { sums[i] += other.sums[i] }
        for j in counts.indices { counts[j] += other.counts[j] }
        inertia += other.inertia
    }

    /// Assigns every row of `points` to its nearest centroid and accumulates per-cluster sums
    /// and counts. With `clipNorm`, each vector is scaled to L2 norm ≤ clipNorm before it is summed
    /// (its assignment uses the original vector), so one vector moves one cluster's sum by at most
    /// clipNorm and its count by one.
    ///
    /// `centered`: each vector's offset from its nearest centroid, x − c, is clipped and summed
    /// instead of x itself. Users lie much closer to their centroid than to the origin, so the
    /// same noise multiplier needs far less noise for the same bound on one user's influence.
    ///
    /// `kernel`: the instruction set of the assignment pass; the widest this CPU runs by default.
    public static func compute(
        points: Matrix, centroids: Matrix, clipNorm: Float? = nil, centered: Bool = false,
        kernel: NearestCentroidKernel = .current
    ) -> LocalStatistics {
        NearestCentroidAssignment.run(
            points: points, centroids: centroids, clipNorm: clipNorm, centered: centered, labels: nil, kernel: kernel
        )
    }
}
