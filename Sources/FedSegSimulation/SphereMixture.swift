import FedSegMath

/// Clusters on the unit sphere shaped like sentence embeddings: the utility benchmark's data.
///
/// Cluster means μ_j = √(1−b)·e_j + √b·u with orthonormal random e_1…e_k, u (so ‖μ_j‖ = 1 and
/// μ_i·μ_j = b); a point is normalize(μ_j + g), g ~ N(0, s²I). For large d the cosine of two points
/// of one cluster is about 1/(1 + d s²) and of two clusters about b/(1 + d s²); the defaults give
/// ≈ 0.35 and ≈ 0.10. The out-of-distribution variant draws a public sample around means turned
/// by an angle θ (cos θ = 0.8) towards fresh random directions, with skewed cluster weights.
public struct SphereMixture: Sendable {
    public let k: Int
    public let dimension: Int
    public let noiseVariance: Double
    public let means: Matrix

    public init(k: Int = 16, dimension: Int = 384, withinCosine: Double = 0.35, betweenCosine: Double = 0.10, seed: UInt64) {
        precondition(k + 1 <= dimension, "need k + 1 ≤ d for orthonormal directions")
        self.k = k
        self.dimension = dimension
        noiseVariance = (1 / withinCosine - 1) / Double(dimension)
        let b = betweenCosine / withinCosine
        var rng = SeededRandom(seed: seed, stream: 0xC1)
        let basis = Self.orthonormalRows(k + 1, dimension, &rng)
        var means = Matrix(rows: k, cols: dimension)
        for j in 0..<k {
            for t in 0..<dimension {
                means[j, t] = Float((1 - b).squareRoot() * Double(basis[j, t]) + b.squareRoot() * Double(basis[k, t]))
            }
        }
        self.means = means
    }

    /// n points with their cluster labels (uniform cluster weights unless given).
    public func sample(_ n: Int, seed: UInt64, weights: [Double]? = nil, means override: Matrix? = nil) -> (points: Matrix, labels: [Int32]) {
        let centres = override ?? means
        var rng = SeededRandom(seed: seed, stream: 0x5A)
        let cumulative: [Double] = {
            let w = weights ?? [Double](repeating: 1, count: k)
            let total = w.reduce(0, +)
            var running = 0.0
            return w.map { running += $0 / total; return running }
        }()
        var points = Matrix(rows: n, cols: dimension)
        var labels = [Int32](repeating: 0, count: n)
        let s = noiseVariance.squareRoot()
        for i in 0..<n {
            let u = rng.nextUniform()
            let j = cumulative.firstIndex { u < $0 } ?? (k - 1)
            labels[i] = Int32(j)
            for t in 0..<dimension { points[i, t] = centres[j, t] + Float(s * rng.nextStandardNormal()) }
        }
        points.normalizeRows()
        return (points, labels)
    }

    /// A public sample from a shifted distribution: each mean turned towards a random direction
    /// (cos θ = 0.8) and cluster weights drawn unevenly.
    public func outOfDistributionSample(_ n: Int, seed: UInt64) -> (points: Matrix, labels: [Int32]) {
        var rng = SeededRandom(seed: seed, stream: 0x0D)
        let directions = Self.orthonormalRows(k, dimension, &rng)
        var shifted = Matrix(rows: k, cols: dimension)
        for j in 0..<k {
            for t in 0..<dimension { shifted[j, t] = 0.8 * means[j, t] + 0.6 * directions[j, t] }
        }
        let weights = (0..<k).map { _ in pow(rng.nextUniform() + 0.05, 2) }
        return sample(n, seed: seed, weights: weights, means: shifted)
    }

    /// Gram–Schmidt on Gaussian rows.
    static func orthonormalRows(_ rows: Int, _ cols: Int, _ rng: inout SeededRandom) -> Matrix {
        var m = rng.normalMatrix(rows: rows, cols: cols)
        for i in 0..<rows {
            for j in 0..<i {
                var dot = 0.0
                for t in 0..<cols { dot += Double(m[i, t]) * Double(m[j, t]) }
                for t in 0..<cols { m[i, t] -= Float(dot) * m[j, t] }
            }
            var norm = 0.0
            for t in 0..<cols { norm += Double(m[i, t]) * Double(m[i, t]) }
            for t in 0..<cols { m[i, t] /= Float(norm.squareRoot()) }
        }
        return m
    }
}

#if canImport(Glibc)
import Glibc
#endif
