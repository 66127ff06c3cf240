import FedSegMath

/// Clustering quality: cost, agreement between labelings, separation.
public enum Metrics {
    /// Sum of squared Euclidean distances of each point to its labelled centroid, in double.
    public static func inertia(points: Matrix, centroids: Matrix, labels: [Int32]) -> Double {
        precondition(labels.count == points.rows, "one label per point")
        var total = 0.0
        points.storage.withUnsafeBufferPointer { x in
            centroids.storage.withUnsafeBufferPointer { c in
                let d = points.cols
                for i in 0..<points.rows {
                    let row = x.baseAddress! + i * d
                    let center = c.baseAddress! + Int(labels[i]) * d
                    var s = 0.0
                    for t in 0..<d {
                        let diff = Double(row[t]) - Double(center[t])
                        s += diff * diff
                    }
                    total += s
                }
            }
        }
        return total
    }

    /// K-means cost of `centroids` on `points` (each point to its nearest centroid).
    public static func cost(points: Matrix, centroids: Matrix) -> Double {
        inertia(points: points, centroids: centroids, labels: KMeans.assign(points, to: centroids))
    }

    /// Number of points per cluster, for clusters 0..<k.
    public static func clusterSizes(labels: [Int32], k: Int) -> [Int] {
        var sizes = [Int](repeating: 0, count: k)
        for label in labels where label >= 0 && Int(label) < k { sizes[Int(label)] += 1 }
        return sizes
    }

    /// Contingency table of two labelings over arbitrary integer label values.
    private static func contingency(_ a: [Int32], _ b: [Int32]) -> (table: [[Double]], rows: [Double], cols: [Double]) {
        precondition(a.count == b.count, "labelings have different lengths")
        let aValues = Array(Set(a)).sorted()
        let bValues = Array(Set(b)).sorted()
        let aIndex = Dictionary(uniqueKeysWithValues: aValues.enumerated().map { ($1, $0) })
        let bIndex = Dictionary(uniqueKeysWithValues: bValues.enumerated().map { ($1, $0) })
        var table = [[Double]](repeating: [Double](repeating: 0, count: bValues.count), count: aValues.count)
        for i in a.indices { table[aIndex[a[i]]!][bIndex[b[i]]!] += 1 }
        let rows = table.map { $0.reduce(0, +) }
        let cols = (0..<bValues.count).map { j in table.reduce(0) { $0 + $1[j] } }
        return (table, rows, cols)
    }

    /// Adjusted Rand index (Hubert & Arabie), as scikit-learn computes it.
    public static func adjustedRandIndex(_ a: [Int32], _ b: [Int32]) -> Double {
        let n = Double(a.count)
        let (table, rows, cols) = contingency(a, b)
        if rows.count == cols.count && (rows.count <= 1 || Double(rows.count) == n) { return 1 }
        func pairs(_ x: Double) -> Double { x * (x - 1) / 2 }
        let index = table.reduce(0) { $0 + $1.reduce(0) { $0 + pairs($1) } }
        let rowPairs = rows.reduce(0) { $0 + pairs($1) }
        let colPairs = cols.reduce(0) { $0 + pairs($1) }
        let expected = rowPairs * colPairs / pairs(n)
        let maximum = (rowPairs + colPairs) / 2
        guard maximum != expected else { return 1 }
        return (index - expected) / (maximum - expected)
    }

    /// Normalised mutual information with arithmetic-mean normalisation (scikit-learn's default).
    public static func normalizedMutualInformation(_ a: [Int32], _ b: [Int32]) -> Double {
        let n = Double(a.count)
        let (table, rows, cols) = contingency(a, b)
        if rows.count == cols.count && rows.count <= 1 { return 1 }
        var mutual = 0.0
        for (i, row) in table.enumerated() {
            for (j, count) in row.enumerated() where count > 0 {
                mutual += count / n * log(count * n / (rows[i] * cols[j]))
            }
        }
        func entropy(_ counts: [Double]) -> Double {
            -counts.reduce(0) { $1 > 0 ? $0 + $1 / n * log($1 / n) : $0 }
        }
        let normaliser = (entropy(rows) + entropy(cols)) / 2
        guard normaliser > 0 else { return 1 }
        return max(0, mutual) / normaliser
    }

    /// Mean silhouette coefficient (Euclidean). Exact over all points when `sampleSize` is nil or
    /// at least n; otherwise over a seeded sample of points (each compared with all points).
    public static func silhouette(points: Matrix, labels: [Int32], sampleSize: Int? = nil, seed: UInt64 = 0) -> Double {
        let n = points.rows
        precondition(labels.count == n, "one label per point")
        let k = Int(labels.max() ?? 0) + 1
        let sizes = clusterSizes(labels: labels, k: k)
        guard sizes.filter({ $0 > 0 }).count >= 2 else { return 0 }
        var sample = Array(0..<n)
        if let sampleSize, sampleSize < n {
            var rng = SeededRandom(seed: seed)
            sample.shuffle(using: &rng)
            sample = Array(sample.prefix(sampleSize))
        }
        let exact = sample.count == n && n <= 20_000
        var total = 0.0
        // Blocks of sample rows against all points keep memory at block x n.
        let block = 256
        var start = 0
        while start < sample.count {
            let indices = Array(sample[start..<min(sample.count, start + block)])
            let distances: [[Double]]
            if exact {
                distances = indices.map { i in (0..<n).map { j in euclidean(points, i, j) } }
            } else {
                let rows = KMeans.gatherRows(points, indices)
                distances = KMeans.squaredDistances(rows, to: points).map { $0.map { $0.squareRoot() } }
            }
            for (r, i) in indices.enumerated() {
                var perCluster = [Double](repeating: 0, count: k)
                for j in 0..<n where j != i { perCluster[Int(labels[j])] += distances[r][j] }
                let own = Int(labels[i])
                guard sizes[own] > 1 else { continue }  // silhouette of a singleton is 0
                let a = perCluster[own] / Double(sizes[own] - 1)
                var b = Double.infinity
                for c in 0..<k where c != own && sizes[c] > 0 { b = min(b, perCluster[c] / Double(sizes[c])) }
                total += (b - a) / max(a, b)
            }
            start += block
        }
        return total / Double(sample.count)
    }

    private static func euclidean(_ points: Matrix, _ i: Int, _ j: Int) -> Double {
        var s = 0.0
        for t in 0..<points.cols {
            let diff = Double(points[i, t]) - Double(points[j, t])
            s += diff * diff
        }
        return s.squareRoot()
    }
}

#if canImport(Glibc)
import Glibc
#endif
