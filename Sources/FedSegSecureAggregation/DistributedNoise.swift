import FedSegClustering
import FedSegMath
import FedSegPrivacy
import Foundation

/// The distributed discrete Gaussian for one (sums, counts) release under secure aggregation
/// (after Kairouz, Liu & Steinke 2021): each client scales its clipped statistics to integers
/// (sums by `sumScale`, counts by `countScale`, stochastic rounding), adds discrete Gaussian noise
/// of variance σ²/m, where m is the fewest clients whose vectors the round will ever sum, and
/// sends the result mod 2^32. The sum of m or more clients carries noise of variance at least σ²:
/// central-DP accuracy, with no party ever adding or seeing the full noise.
///
/// Accounting: conditioned on the rounding's uniform draws (independent of the data), the
/// integer release has L2 sensitivity at most Δ = √((sumScale·C)² + countScale²) + √(k·d + k)
/// (one user's clipped vector and count, plus at most 1 per coordinate from rounding). σ = z·Δ,
/// so the release is charged as a Gaussian mechanism with noise multiplier z. Each client's
/// share has σ/√m ≥ 4, where a sum of discrete Gaussians is within τ < 10⁻⁶⁰ of one (their
/// Theorem 1), which the charge ignores.
public struct DistributedNoise: Sendable, Equatable {
    public var noiseMultiplier: Double
    public var clipNorm: Double
    public var k: Int
    public var dimension: Int
    public var minimumSurvivors: Int
    public var sumScale: Double
    public var countScale: Double
    /// Total noise standard deviation in the integer domain.
    public var sigma: Double
    public var clientSigma: Double

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case wouldWrap(String)
        case tooLittleNoisePerClient(Double)

        public var description: String {
            switch self {
            case .wouldWrap(let why): "the sum could wrap mod 2^32: \(why)"
            case .tooLittleNoisePerClient(let sigma): "each client's noise share (σ = \(sigma)) is below 4"
            }
        }
    }

    public var length: Int { k * dimension + k }
    /// L2 sensitivity of the integer release to one user.
    public var sensitivity: Double {
        ((sumScale * clipNorm) * (sumScale * clipNorm) + countScale * countScale).squareRoot() + Double(length).squareRoot()
    }

    /// Standard deviations of the decoded float sums and counts (for the inverse-variance merge),
    /// when `survivors` clients were summed.
    public func decodedStd(survivors: Int) -> (sums: Double, counts: Double) {
        let total = clientSigma * Double(survivors).squareRoot()
        return (total / sumScale, total / countScale)
    }

    /// A client's view, rebuilt from a signed plan: the total σ is what `minimumSurvivors` shares
    /// add up to, and the noise multiplier it charges follows from the plan's own numbers.
    public init(clipNorm: Double, k: Int, dimension: Int, minimumSurvivors: Int, sumScale: Double, countScale: Double, clientSigma: Double) {
        self.clipNorm = clipNorm
        self.k = k
        self.dimension = dimension
        self.minimumSurvivors = minimumSurvivors
        self.sumScale = sumScale
        self.countScale = countScale
        self.clientSigma = clientSigma
        sigma = clientSigma * Double(max(1, minimumSurvivors)).squareRoot()
        noiseMultiplier = 0
        noiseMultiplier = sigma / sensitivity
    }

    /// Scales chosen so that `maxUsers` users' statistics plus 12 standard deviations of the
    /// noise of all `clients` shares stay below 2^30.
    public static func make(
        noise: SumCountNoise, k: Int, dimension: Int, minimumSurvivors: Int, maxUsers: Int, clients: Int? = nil
    ) throws -> DistributedNoise {
        let spread = Double(max(clients ?? minimumSurvivors, minimumSurvivors)) / Double(max(1, minimumSurvivors))
        let z = noise.noiseMultiplier
        let ratio = noise.sumStd / noise.countStd  // counts get σ/countScale = σ_c: countScale = sumScale·σ_s/σ_c
        var sumScale = 65_536.0
        while sumScale >= 16 {
            let countScale = sumScale * ratio
            let length = Double(k * dimension + k)
            let delta = ((sumScale * noise.clipNorm) * (sumScale * noise.clipNorm) + countScale * countScale).squareRoot() + length.squareRoot()
            let sigma = z * delta
            let bound = Double(maxUsers) * max(sumScale * noise.clipNorm, countScale) + Double(maxUsers) + 12 * sigma * spread.squareRoot()
            if bound < Double(1 << 30) {
                let clientSigma = sigma / Double(max(1, minimumSurvivors)).squareRoot()
                guard clientSigma >= 4 else { throw Failure.tooLittleNoisePerClient(clientSigma) }
                return DistributedNoise(
                    clipNorm: noise.clipNorm, k: k, dimension: dimension, minimumSurvivors: minimumSurvivors, sumScale: sumScale,
                    countScale: countScale, clientSigma: clientSigma
                )
            }
            sumScale /= 2
        }
        throw Failure.wouldWrap("\(maxUsers) users at clip norm \(noise.clipNorm) need a scale below 16")
    }

    /// A client's statistics as the words it feeds secure aggregation: scaled, stochastically
    /// rounded, plus its discrete Gaussian share, mod 2^32.
    public func encode<G: RandomNumberGenerator>(_ statistics: LocalStatistics, rounding: inout G, noise: inout DiscreteGaussianSampler<G>) -> [UInt32] {
        var words = [UInt32](repeating: 0, count: length)
        func word(_ value: Double) -> UInt32 {
            let scaled = value
            let low = scaled.rounded(.down)
            let rounded = Int64(low) + (Double.random(in: 0..<1, using: &rounding) < scaled - low ? 1 : 0)
            return UInt32(truncatingIfNeeded: rounded &+ noise.next())
        }
        for i in 0..<(k * dimension) { words[i] = word(statistics.sums[i] * sumScale) }
        for j in 0..<k { words[k * dimension + j] = word(Double(statistics.counts[j]) * countScale) }
        return words
    }

    /// The aggregate back in float: sums (k × d) and counts (k).
    public func decode(_ sum: [UInt32]) -> (sums: [Double], counts: [Double]) {
        let values = sum.map { Double(Int32(bitPattern: $0)) }
        return (values[0..<(k * dimension)].map { $0 / sumScale }, values[(k * dimension)...].map { $0 / countScale })
    }

    /// The ledger's record of the release: Gaussian, this z, distributed mode.
    public var mechanism: PrivacyLedger.Mechanism {
        .init(kind: .gaussian, noiseMultiplier: sigma / sensitivity, mode: .distributed)
    }
}

/// The distributed discrete Gaussian for an integer release (a segment × item histogram): counts
/// are scaled by an integer `scale` (chosen so that each client's share has σ ≥ 4), each client
/// adds a discrete Gaussian share of variance σ²/m, and the sum of m or more shares carries σ.
/// Integers need no rounding, so the sensitivity is scale × the histogram's own.
public struct DistributedIntegerNoise: Sendable, Equatable {
    public var length: Int
    /// L2 sensitivity of the unscaled counts to one user.
    public var baseSensitivity: Double
    public var scale: Int
    public var minimumSurvivors: Int
    public var clientSigma: Double

    public init(length: Int, baseSensitivity: Double, scale: Int, minimumSurvivors: Int, clientSigma: Double) {
        self.length = length
        self.baseSensitivity = baseSensitivity
        self.scale = scale
        self.minimumSurvivors = minimumSurvivors
        self.clientSigma = clientSigma
    }

    public var sigma: Double { clientSigma * Double(max(1, minimumSurvivors)).squareRoot() }
    public var sensitivity: Double { Double(scale) * baseSensitivity }
    public var noiseMultiplier: Double { sigma / sensitivity }

    /// The smallest scale giving every share σ ≥ 4, checked against wrapping: `maxTotal` (the
    /// largest true sum of one coordinate) plus 12 standard deviations of all shares below 2^30.
    public static func make(
        noiseMultiplier z: Double, baseSensitivity: Double, length: Int, minimumSurvivors m: Int, clients: Int, maxTotal: Int
    ) throws -> DistributedIntegerNoise {
        let perShare = z * baseSensitivity / Double(max(1, m)).squareRoot()
        let scale = max(1, Int((4 / perShare).rounded(.up)))
        let noise = DistributedIntegerNoise(length: length, baseSensitivity: baseSensitivity, scale: scale, minimumSurvivors: m, clientSigma: perShare * Double(scale))
        let bound = Double(maxTotal) * Double(scale) + 12 * noise.clientSigma * Double(max(clients, m)).squareRoot()
        guard bound < Double(1 << 30) else { throw DistributedNoise.Failure.wouldWrap("a true count up to \(maxTotal) at scale \(scale)") }
        return noise
    }

    public func encode<G: RandomNumberGenerator>(_ counts: [Double], noise: inout DiscreteGaussianSampler<G>) -> [UInt32] {
        precondition(counts.count == length, "one count per word")
        return counts.map { UInt32(truncatingIfNeeded: Int64($0) * Int64(scale) &+ noise.next()) }
    }

    public func decode(_ sum: [UInt32]) -> [Double] {
        sum.map { Double(Int32(bitPattern: $0)) / Double(scale) }
    }

    /// Standard deviation of the decoded counts when `survivors` shares were summed.
    public func decodedStd(survivors: Int) -> Double { clientSigma * Double(survivors).squareRoot() / Double(scale) }

    public var mechanism: PrivacyLedger.Mechanism {
        .init(kind: .discreteGaussian, noiseMultiplier: noiseMultiplier, mode: .distributed)
    }
}
