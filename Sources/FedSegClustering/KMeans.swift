import FedSegMath

/// Centralised K-means: the non-private baseline, and the engine for a tenant shard.
public enum KMeans {
    public enum Initialization: Sendable, Equatable {
        /// Greedy k-means++ (as scikit-learn: 2 + ⌊ln k⌋ candidates per step), seeded.
        case kMeansPlusPlus
        /// Start from these centroids.
        case centroids(Matrix)
    }

    public struct Configuration: Sendable {
        public var k: Int
        public var maxIterations: Int
        /// Stop when the total squared centroid shift is at most `tolerance` × the mean
        /// per-dimension variance of the data (scikit-learn's convention). 0: stop only when the
        /// labels no longer change.
        public var tolerance: Double
        /// Cosine K-means for normalised embeddings: points and centroids kept on the unit sphere.
        public var spherical: Bool
        public var initialization: Initialization
        /// Independent k-means++ starts; the lowest inertia wins.
        public var restarts: Int
        public var seed: UInt64

        public init(
            k: Int, maxIterations: Int = 300, tolerance: Double = 1e-4, spherical: Bool = false,
            initialization: Initialization = .kMeansPlusPlus, restarts: Int = 1, seed: UInt64 = 0
        ) {
            self.k = k
            self.maxIterations = maxIterations
            self.tolerance = tolerance
            self.spherical = spherical
            self.initialization = initialization
            self.restarts = restarts
            self.seed = seed
        }
    }

    public struct Result: Sendable {
        public var centroids: Matrix
        public var labels: [Int32]
        /// Sum of squared distances to the nearest centroid, computed exactly in double precision.
        public var inertia: Double
        public var iterations: Int
        public var converged: Bool
        /// Clusters that went empty during the run and were reseeded.
        public var reseeded: Int
    }

    public static func fit(_ points: Matrix, _ configuration: Configuration) -> Result {
        precondition(configuration.k >= 1 && configuration.k <= points.rows, "k must be in 1...\(points.rows)")
        var data = points
        if configuration.spherical { data.normalizeRows() }
        var best: Result?
        for restart in 0..<max(1, configuration.restarts) {
            var rng = SeededRandom(seed: configuration.seed, stream: UInt64(restart))
            let start: Matrix
            switch configuration.initialization {
            case .kMeansPlusPlus: start = plusPlusInitialization(data, k: configuration.k, using: &rng)
            case .centroids(let given):
                precondition(given.rows == configuration.k && given.cols == data.cols, "initial centroids have the wrong shape")
                start = given
            }
            let result = lloyd(data, from: start, configuration)
            if best == nil || result.inertia < best!.inertia { best = result }
            if case .centroids = configuration.initialization { break }
        }
        return best!
    }

    /// Lloyd iterations from the given centroids.
    public static func lloyd(_ points: Matrix, from initial: Matrix, _ configuration: Configuration) -> Result {
        let n = points.rows
        let d = points.cols
        let k = initial.rows
        var centroids = initial
        if configuration.spherical { centroids.normalizeRows() }
        var labels = [Int32](repeating: -1, count: n)
        var previous = [Int32](repeating: -1, count: n)
        let threshold = configuration.tolerance * meanVariance(points)
        var iterations = 0
        var converged = false
        var reseeded = 0
        var labelsFitCentroids = false
        while iterations < configuration.maxIterations {
            iterations += 1
            let statistics = labels.withUnsafeMutableBufferPointer {
                NearestCentroidAssignment.run(points: points, centroids: centroids, clipNorm: nil, labels: $0)
            }
            if labels == previous {
                converged = true
                labelsFitCentroids = true
                break
            }
            var next = Matrix(rows: k, cols: d)
            var empty: [Int] = []
            for j in 0..<k {
                guard statistics.counts[j] > 0 else {
                    empty.append(j)
                    next.setRow(j, to: centroids.row(j))
                    continue
                }
                let count = Double(statistics.counts[j])
                for t in 0..<d { next[j, t] = Float(statistics.sums[j * d + t] / count) }
            }
            if !empty.isEmpty {
                reseeded += empty.count
                reseedFromFarthest(points: points, labels: labels, centroids: &next, empty: empty)
            }
            if configuration.spherical { next.normalizeRows() }
            let shift = totalSquaredShift(centroids, next)
            centroids = next
            swap(&labels, &previous)
            if threshold > 0 && shift <= threshold {
                converged = true
                break
            }
        }
        // After a tolerance stop or the iteration limit the centroids have moved since the last
        // assignment; only then is another pass needed.
        let finalLabels = labelsFitCentroids ? labels : assign(points, to: centroids)
        return Result(
            centroids: centroids, labels: finalLabels,
            inertia: Metrics.inertia(points: points, centroids: centroids, labels: finalLabels),
            iterations: iterations, converged: converged, reseeded: reseeded
        )
    }

    /// Nearest-centroid labels, ties to the lowest index.
    public static func assign(_ points: Matrix, to centroids: Matrix, kernel: NearestCentroidKernel = .current) -> [Int32] {
        var labels = [Int32](repeating: 0, count: points.rows)
        _ = labels.withUnsafeMutableBufferPointer {
            NearestCentroidAssignment.run(points: points, centroids: centroids, clipNorm: nil, labels: $0, kernel: kernel)
        }
        return labels
    }

    /// Greedy k-means++ seeding.
    public static func plusPlusInitialization(
        _ points: Matrix, k: Int, using rng: inout some RandomNumberGenerator
    ) -> Matrix {
        let n = points.rows
        let d = points.cols
        precondition(k >= 1 && k <= n, "k must be in 1...\(n)")
        let trials = 2 + Int(log(Double(k)))
        var centers = Matrix(rows: k, cols: d)
        let first = Int(rng.next(upperBound: UInt64(n)))
        centers.setRow(0, to: points.row(first))
        var closest = squaredDistances(points, to: points.rows(first..<first + 1)).map { $0[0] }
        var potential = closest.reduce(0, +)
        for c in 1..<k {
            var candidates: [Int] = []
            for _ in 0..<trials {
                let target = rng.nextUniform() * potential
                candidates.append(searchCumulative(closest, target))
            }
            var candidateRows = Matrix(rows: trials, cols: d)
            for (t, index) in candidates.enumerated() { candidateRows.setRow(t, to: points.row(index)) }
            let distances = squaredDistances(points, to: candidateRows)
            var bestTrial = 0
            var bestPotential = Double.infinity
            var bestClosest = closest
            for t in 0..<trials {
                var updated = closest
                var total = 0.0
                for i in 0..<n {
                    updated[i] = min(closest[i], distances[i][t])
                    total += updated[i]
                }
                if total < bestPotential {
                    bestPotential = total
                    bestTrial = t
                    bestClosest = updated
                }
            }
            centers.setRow(c, to: points.row(candidates[bestTrial]))
            closest = bestClosest
            potential = bestPotential
        }
        return centers
    }

    /// Mini-batch K-means (Sculley 2010, with per-centre learning rates 1/count), for large N.
    public static func miniBatch(
        _ points: Matrix, _ configuration: Configuration, batchSize: Int = 1024
    ) -> Result {
        var data = points
        if configuration.spherical { data.normalizeRows() }
        var rng = SeededRandom(seed: configuration.seed)
        var centroids: Matrix
        switch configuration.initialization {
        case .kMeansPlusPlus:
            let sampleSize = min(data.rows, max(3 * batchSize, 10 * configuration.k))
            let sample = gatherRows(data, (0..<sampleSize).map { _ in Int(rng.next(upperBound: UInt64(data.rows))) })
            centroids = plusPlusInitialization(sample, k: configuration.k, using: &rng)
        case .centroids(let given): centroids = given
        }
        let d = data.cols
        var seen = [Double](repeating: 0, count: configuration.k)
        let steps = configuration.maxIterations * max(1, data.rows / batchSize)
        for _ in 0..<steps {
            let batch = gatherRows(data, (0..<min(batchSize, data.rows)).map { _ in Int(rng.next(upperBound: UInt64(data.rows))) })
            let labels = assign(batch, to: centroids)
            for (i, label) in labels.enumerated() {
                let j = Int(label)
                seen[j] += 1
                let rate = Float(1 / seen[j])
                for t in 0..<d { centroids[j, t] += rate * (batch[i, t] - centroids[j, t]) }
            }
            if configuration.spherical { centroids.normalizeRows() }
        }
        let labels = assign(data, to: centroids)
        return Result(
            centroids: centroids, labels: labels,
            inertia: Metrics.inertia(points: data, centroids: centroids, labels: labels),
            iterations: steps, converged: false, reseeded: 0
        )
    }

    // MARK: helpers

    /// ‖x_i − y_j‖² for all rows, via one SGEMM; clamped at 0 against rounding.
    public static func squaredDistances(_ x: Matrix, to y: Matrix) -> [[Double]] {
        let products = BLAS.multiply(x, y, transB: .transpose)
        let xNorms = x.squaredRowNorms()
        let yNorms = y.squaredRowNorms()
        return (0..<x.rows).map { i in
            (0..<y.rows).map { j in max(0, Double(xNorms[i]) + Double(yNorms[j]) - 2 * Double(products[i, j])) }
        }
    }

    public static func gatherRows(_ x: Matrix, _ indices: [Int]) -> Matrix {
        var out = Matrix(rows: indices.count, cols: x.cols)
        for (r, i) in indices.enumerated() { out.setRow(r, to: x.row(i)) }
        return out
    }

    private static func searchCumulative(_ weights: [Double], _ target: Double) -> Int {
        var running = 0.0
        for (i, w) in weights.enumerated() {
            running += w
            if running > target { return i }
        }
        return weights.lastIndex { $0 > 0 } ?? (weights.count - 1)
    }

    /// Mean over dimensions of the per-dimension variance.
    static func meanVariance(_ points: Matrix) -> Double {
        guard points.rows > 0, points.cols > 0 else { return 0 }
        var mean = [Double](repeating: 0, count: points.cols)
        var meanSquare = [Double](repeating: 0, count: points.cols)
        for i in 0..<points.rows {
            for t in 0..<points.cols {
                let v = Double(points[i, t])
                mean[t] += v
                meanSquare[t] += v * v
            }
        }
        let n = Double(points.rows)
        var total = 0.0
        for t in 0..<points.cols { total += meanSquare[t] / n - (mean[t] / n) * (mean[t] / n) }
        return total / Double(points.cols)
    }

    static func totalSquaredShift(_ a: Matrix, _ b: Matrix) -> Double {
        var total = 0.0
        for i in 0..<a.count {
            let diff = Double(a.storage[i]) - Double(b.storage[i])
            total += diff * diff
        }
        return total
    }

    /// Empty clusters take the points farthest from their current centroid (distinct points, the
    /// farthest first), which lowers the cost most and is deterministic.
    static func reseedFromFarthest(points: Matrix, labels: [Int32], centroids: inout Matrix, empty: [Int]) {
        var distances: [(Double, Int)] = []
        distances.reserveCapacity(points.rows)
        for i in 0..<points.rows where labels[i] >= 0 {
            let c = Int(labels[i])
            var total = 0.0
            for t in 0..<points.cols {
                let diff = Double(points[i, t]) - Double(centroids[c, t])
                total += diff * diff
            }
            distances.append((total, i))
        }
        distances.sort { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }
        for (slot, cluster) in empty.enumerated() where slot < distances.count {
            centroids.setRow(cluster, to: points.row(distances[slot].1))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
