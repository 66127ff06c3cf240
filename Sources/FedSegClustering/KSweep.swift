import FedSegMath

/// Which k the data supports: inertia (for an elbow) and silhouette for each k in a range, on
/// the centralised non-private baseline.
public enum KSweep {
    public struct Row: Sendable, Codable, Equatable {
        public var k: Int
        public var inertia: Double
        public var silhouette: Double
    }

    public static func run(
        _ points: Matrix, ks: ClosedRange<Int>, spherical: Bool = false, seed: UInt64 = 0,
        silhouetteSample: Int = 2000
    ) -> [Row] {
        ks.map { k in
            let result = KMeans.fit(points, .init(k: k, spherical: spherical, restarts: 3, seed: seed))
            let silhouette = Metrics.silhouette(
                points: points, labels: result.labels, sampleSize: silhouetteSample, seed: seed
            )
            return Row(k: k, inertia: result.inertia, silhouette: silhouette)
        }
    }

    /// The k with the highest silhouette.
    public static func bestBySilhouette(_ rows: [Row]) -> Int? {
        rows.max { $0.silhouette < $1.silhouette }?.k
    }
}
