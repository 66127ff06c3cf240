import FedSegClustering
import FedSegMath
import FedSegPrivacy
import Foundation

/// The discrete Gaussian on a fixed-point grid for one (sums, counts) release, in both noise
/// modes (after Kairouz, Liu & Steinke 2021): a client scales its clipped statistics to integers
/// (sums by `sumScale`, counts by `countScale`, stochastic rounding) and adds integer noise from
/// the exact discrete Gaussian sampler. No private value is ever noised in floating point.
///
/// - Local mode: one share (`shares` = 1, no colluders): the client adds the whole σ and sends
///   the integers (`ClientUpdate.words`).
/// - Distributed mode: each client adds a share of variance σ²/(m − c), where m is the fewest
///   clients whose inputs the round will ever sum and c the clients assumed to collude with the
///   coordinator (who can subtract their own shares); the words go mod 2^32 into secure
///   aggregation. Any m − c honest shares carry σ: central-DP accuracy, and no party adds or
///   sees the full noise.
///
/// Accounting: conditioned on the rounding's uniform draws (independent of the data), the
/// integer release has L2 sensitivity at most Δ = √((sumScale·C)² + countScale²) + √(k·d + k)
/// (one user's clipped vector and count, plus at most 1 per coordinate from rounding). σ = z·Δ,
/// so the release is charged with noise multiplier z (a discrete Gaussian is at least as private
/// as the continuous one of the same σ: Canonne, Kamath & Steinke 2020). In distributed mode each
/// share has σ ≥ 4, where a sum of discrete Gaussians is within τ < 10⁻⁶⁰ of one (Kairouz et al.,
/// Theorem 1), which the charge ignores.
public struct FixedPointNoise: Sendable, Equatable {
    public var clipNorm: Double
    public var k: Int
    public var dimension: Int
    /// Shares the planned σ is split into: the minimum survivors (1 in local mode).
    public var minimumSurvivors: Int
    /// Of those, how many may collude with the coordinator (0 in local mode).
    public var assumedColluders: Int
    public var sumScale: Double
    public var countScale: Double
    /// Each share's standard deviation in the integer domain (local mode: the whole noise).
    public var clientSigma: Double

    /// The local grid: 2^-16 resolution on the sums, far below any noise a plan adds.
    public static let localSumScale = 65_536.0

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case wouldWrap(String)
        case tooLittleNoisePerClient(Double)
        case tooManyColluders(colluders: Int, survivors: Int)

        public var description: String {
            switch self {
            case .wouldWrap(let why): "the sum could wrap mod 2^32: \(why)"
            case .tooLittleNoisePerClient(let sigma): "each client's noise share (σ = \(sigma)) is below 4"
            case .tooManyColluders(let c, let m): "\(c) assumed colluders leave no honest share among \(m) minimum survivors"
            }
        }
    }

    public init(
        clipNorm: Double, k: Int, dimension: Int, minimumSurvivors: Int, assumedColluders: Int = 0, sumScale: Double, countScale: Double,
        clientSigma: Double
    ) {
        self.clipNorm = clipNorm
        self.k = k
        self.dimension = dimension
        self.minimumSurvivors = minimumSurvivors
        self.assumedColluders = assumedColluders
        self.sumScale = sumScale
        self.countScale = countScale
        self.clientSigma = clientSigma
    }

    public var length: Int { k * dimension + k }
    /// Shares that are certain to be in the sum and not known to the coordinator.
    public var honestShares: Int { max(1, minimumSurvivors - assumedColluders) }
    /// The noise standard deviation the release is guaranteed, in the integer domain.
    public var sigma: Double { clientSigma * Double(honestShares).squareRoot() }
    /// L2 sensitivity of the integer release to one user.
    public var sensitivity: Double {
        ((sumScale * clipNorm) * (sumScale * clipNorm) + countScale * countScale).squareRoot() + Double(length).squareRoot()
    }
    public var noiseMultiplier: Double { sigma / sensitivity }

    /// Standard deviations of the decoded sums and counts when `shares` noise draws were summed.
    public func decodedStd(survivors shares: Int) -> (sums: Double, counts: Double) {
        let total = clientSigma * Double(shares).squareRoot()
        return (total / sumScale, total / countScale)
    }

    /// The sums/counts split of a planned `SumCountNoise`: one integer σ, with the counts'
    /// scale set so that the decoded standard deviations are the planned σ_s and σ_c.
    static func grid(noise: SumCountNoise, sumScale: Double, k: Int, dimension: Int) -> (countScale: Double, sigma: Double) {
        let countScale = sumScale * noise.sumStd / noise.countStd
        let length = Double(k * dimension + k)
        let delta = ((sumScale * noise.clipNorm) * (sumScale * noise.clipNorm) + countScale * countScale).squareRoot() + length.squareRoot()
        return (countScale, noise.noiseMultiplier * delta)
    }

    /// Local mode: the client adds the whole σ = z·Δ on a 2^-16 grid (Int64 words never wrap).
    public static func local(noise: SumCountNoise, k: Int, dimension: Int) -> FixedPointNoise {
        let (countScale, sigma) = grid(noise: noise, sumScale: localSumScale, k: k, dimension: dimension)
        return FixedPointNoise(
            clipNorm: noise.clipNorm, k: k, dimension: dimension, minimumSurvivors: 1, sumScale: localSumScale, countScale: countScale,
            clientSigma: sigma
        )
    }

    /// Distributed mode: scales chosen so that `maxUsers` users' statistics plus 12 standard
    /// deviations of the noise of all `clients` shares stay below 2^30; each share sized so that
    /// `minimumSurvivors − colluders` of them carry the planned σ.
    public static func distributed(
        noise: SumCountNoise, k: Int, dimension: Int, minimumSurvivors: Int, colluders: Int = 0, maxUsers: Int, clients: Int? = nil
    ) throws -> FixedPointNoise {
        guard colluders >= 0, minimumSurvivors - colluders >= 1 else {
            throw Failure.tooManyColluders(colluders: colluders, survivors: minimumSurvivors)
        }
        let honest = Double(minimumSurvivors - colluders)
        let spread = Double(max(clients ?? minimumSurvivors, minimumSurvivors)) / honest
        var sumScale = 65_536.0
        while sumScale >= 16 {
            let (countScale, sigma) = grid(noise: noise, sumScale: sumScale, k: k, dimension: dimension)
            let bound = Double(maxUsers) * max(sumScale * noise.clipNorm, countScale) + Double(maxUsers) + 12 * sigma * spread.squareRoot()
            if bound < Double(1 << 30) {
                let clientSigma = sigma / honest.squareRoot()
                guard clientSigma >= 4 else { throw Failure.tooLittleNoisePerClient(clientSigma) }
                return FixedPointNoise(
                    clipNorm: noise.clipNorm, k: k, dimension: dimension, minimumSurvivors: minimumSurvivors, assumedColluders: colluders,
                    sumScale: sumScale, countScale: countScale, clientSigma: clientSigma
                )
            }
            sumScale /= 2
        }
        throw Failure.wouldWrap("\(maxUsers) users at clip norm \(noise.clipNorm) need a scale below 16")
    }

    /// A client's statistics on the grid: scaled, stochastically rounded, plus its discrete
    /// Gaussian share (k·d sums, then k counts).
    /// Inlinable, so that the caller's generators are specialised in (k·d + k draws).
    @inlinable
    public func encodeIntegers<G: RandomNumberGenerator>(
        _ statistics: LocalStatistics, rounding: inout G, noise: inout DiscreteGaussianSampler<G>
    ) -> [Int64] {
        var words = [Int64](repeating: 0, count: length)
        func word(_ scaled: Double) -> Int64 {
            let low = scaled.rounded(.down)
            // Uniform in [0, 1) on the 2^-53 grid, as `Double.random(in: 0..<1)` draws it.
            let uniform = Double(rounding.next() >> 11) * 0x1p-53
            let rounded = Int64(low) + (uniform < scaled - low ? 1 : 0)
            return rounded &+ noise.next()
        }
        for i in 0..<(k * dimension) { words[i] = word(statistics.sums[i] * sumScale) }
        for j in 0..<k { words[k * dimension + j] = word(Double(statistics.counts[j]) * countScale) }
        return words
    }

    /// The same as the words a client feeds secure aggregation (mod 2^32).
    public func encode<G: RandomNumberGenerator>(_ statistics: LocalStatistics, rounding: inout G, noise: inout DiscreteGaussianSampler<G>) -> [UInt32] {
        encodeIntegers(statistics, rounding: &rounding, noise: &noise).map { UInt32(truncatingIfNeeded: $0) }
    }

    /// An aggregate of integer words back in float: sums (k × d) and counts (k).
    public func decode(integers values: [Int64]) -> (sums: [Double], counts: [Double]) {
        (values[0..<(k * dimension)].map { Double($0) / sumScale }, values[(k * dimension)...].map { Double($0) / countScale })
    }

    /// The secure-aggregation sum back in float.
    public func decode(_ sum: [UInt32]) -> (sums: [Double], counts: [Double]) {
        decode(integers: sum.map { Int64(Int32(bitPattern: $0)) })
    }

    /// The ledger's record of the release: this z, in the given mode.
    public func mechanism(mode: PrivacyLedger.Mechanism.Mode) -> PrivacyLedger.Mechanism {
        .init(kind: mode == .distributed ? .gaussian : .discreteGaussian, noiseMultiplier: noiseMultiplier, mode: mode)
    }

    public var mechanism: PrivacyLedger.Mechanism { mechanism(mode: .distributed) }
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
    public var assumedColluders: Int
    public var clientSigma: Double

    public init(length: Int, baseSensitivity: Double, scale: Int, minimumSurvivors: Int, assumedColluders: Int = 0, clientSigma: Double) {
        self.length = length
        self.baseSensitivity = baseSensitivity
        self.scale = scale
        self.minimumSurvivors = minimumSurvivors
        self.assumedColluders = assumedColluders
        self.clientSigma = clientSigma
    }

    public var honestShares: Int { max(1, minimumSurvivors - assumedColluders) }
    public var sigma: Double { clientSigma * Double(honestShares).squareRoot() }
    public var sensitivity: Double { Double(scale) * baseSensitivity }
    public var noiseMultiplier: Double { sigma / sensitivity }

    /// The smallest scale giving every share σ ≥ 4, checked against wrapping: `maxTotal` (the
    /// largest true sum of one coordinate) plus 12 standard deviations of all shares below 2^30.
    public static func make(
        noiseMultiplier z: Double, baseSensitivity: Double, length: Int, minimumSurvivors m: Int, colluders: Int = 0, clients: Int, maxTotal: Int
    ) throws -> DistributedIntegerNoise {
        guard colluders >= 0, m - colluders >= 1 else { throw FixedPointNoise.Failure.tooManyColluders(colluders: colluders, survivors: m) }
        let perShare = z * baseSensitivity / Double(m - colluders).squareRoot()
        let scale = max(1, Int((4 / perShare).rounded(.up)))
        let noise = DistributedIntegerNoise(
            length: length, baseSensitivity: baseSensitivity, scale: scale, minimumSurvivors: m, assumedColluders: colluders,
            clientSigma: perShare * Double(scale)
        )
        let bound = Double(maxTotal) * Double(scale) + 12 * noise.clientSigma * Double(max(clients, m)).squareRoot()
        guard bound < Double(1 << 30) else { throw FixedPointNoise.Failure.wouldWrap("a true count up to \(maxTotal) at scale \(scale)") }
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
