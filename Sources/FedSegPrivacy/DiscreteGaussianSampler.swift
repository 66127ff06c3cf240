import FedSegMath

/// Exact sampling from the discrete Gaussian N_Z(0, σ²) (Canonne, Kamath & Steinke 2020,
/// Algorithms 1-3): discrete Laplace proposals accepted with probability exp(−γ), every
/// probability a rational evaluated in exact integer arithmetic, so no floating-point rounding
/// shapes the output distribution.
///
/// σ² is held as a rational p/1024, rounded up from the requested variance (more noise, never
/// less). Integer arithmetic is 128-bit, which bounds σ ≤ 2^20; a proposal beyond 2^26 (more than
/// 64σ, probability below 1e-27) would overflow and is rejected.
public struct DiscreteGaussianSampler<Generator: RandomNumberGenerator> {
    public var generator: Generator
    /// σ² = varianceNumerator / varianceDenominator.
    public let varianceNumerator: Int128
    public static var varianceDenominator: Int128 { 1024 }
    /// The discrete Laplace scale t = ⌊σ⌋ + 1.
    let laplaceScale: Int128

    public enum Failure: Error, Equatable {
        case varianceOutOfRange(Double)
    }

    public init(sigma: Double, generator: Generator) throws {
        guard sigma.isFinite, sigma > 0, sigma <= 1_048_576 else { throw Failure.varianceOutOfRange(sigma) }
        let scaled = (sigma * sigma * Double(Self.varianceDenominator)).rounded(.up)
        varianceNumerator = Int128(scaled)
        // t = floor(sqrt(p/q)) + 1, computed exactly.
        var root = Int128((scaled / Double(Self.varianceDenominator)).squareRoot())
        while (root + 1) * (root + 1) * Self.varianceDenominator <= varianceNumerator { root += 1 }
        while root * root * Self.varianceDenominator > varianceNumerator { root -= 1 }
        laplaceScale = root + 1
        self.generator = generator
    }

    /// The variance actually used (≥ the requested σ²).
    public var variance: Double { Double(varianceNumerator) / Double(Self.varianceDenominator) }

    public mutating func next() -> Int64 {
        let p = varianceNumerator
        let q = Self.varianceDenominator
        let t = laplaceScale
        let bound: Int128 = 1 << 26
        while true {
            let y = discreteLaplace(scale: t)
            let magnitude = y < 0 ? -y : y
            if magnitude > bound { continue }
            // γ = (|y| − σ²/t)² / (2σ²) = (|y|·q·t − p)² / (2·p·q·t²)
            let difference = magnitude * q * t - p
            if bernoulliExp(numerator: difference * difference, denominator: 2 * p * q * t * t) {
                return Int64(y)
            }
        }
    }

    // MARK: building blocks

    /// Uniform integer in [0, n) by rejection from the smallest power of two ≥ n: no division,
    /// at most two tries expected, and one 64-bit word per try while n ≤ 2^64 (every draw but
    /// the final acceptance test's). A 128-bit modulo per draw had been a tenth of a local
    /// update's CPU.
    mutating func uniform(below n: Int128) -> Int128 {
        precondition(n > 0)
        let range = UInt128(n)
        if range == 1 { return 0 }
        let bits = 128 - (range - 1).leadingZeroBitCount
        if bits <= 64 {
            let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
            let limit = UInt64(range - 1)
            while true {
                let word = generator.next() & mask
                if word <= limit { return Int128(word) }
            }
        }
        let mask: UInt128 = bits == 128 ? .max : (1 << UInt128(bits)) - 1
        while true {
            let word = (UInt128(generator.next()) << 64 | UInt128(generator.next())) & mask
            if word < range { return Int128(word) }
        }
    }

    /// Bernoulli(n/d), 0 ≤ n ≤ d.
    mutating func bernoulli(numerator n: Int128, denominator d: Int128) -> Bool {
        uniform(below: d) < n
    }

    /// Bernoulli(exp(−n/d)) for n/d ≥ 0 (CKS Algorithm 1).
    mutating func bernoulliExp(numerator n: Int128, denominator d: Int128) -> Bool {
        var n = n
        // exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋))
        while n > d {
            if !bernoulliExpAtMostOne(numerator: 1, denominator: 1) { return false }
            n -= d
        }
        return bernoulliExpAtMostOne(numerator: n, denominator: d)
    }

    /// Bernoulli(exp(−γ)) for γ = n/d ∈ [0, 1]: draw A_k ~ Bernoulli(γ/k) until one fails; the
    /// number of successes is even with probability exp(−γ).
    private mutating func bernoulliExpAtMostOne(numerator n: Int128, denominator d: Int128) -> Bool {
        var k: Int128 = 1
        while bernoulli(numerator: n, denominator: d * k) { k += 1 }
        return k % 2 == 1
    }

    /// Discrete Laplace with scale t: P(x) ∝ exp(−|x|/t) (CKS Algorithm 2).
    mutating func discreteLaplace(scale t: Int128) -> Int128 {
        while true {
            let u = uniform(below: t)
            if !bernoulliExp(numerator: u, denominator: t) { continue }
            var v: Int128 = 0
            while bernoulliExp(numerator: 1, denominator: 1) { v += 1 }
            let x = u + t * v
            let negative = generator.next() & 1 == 1
            if negative && x == 0 { continue }
            return negative ? -x : x
        }
    }
}

extension DiscreteGaussianSampler where Generator == BufferedSecureRandom {
    /// Noise from the OS CSPRNG, drawn in bulk (an exact draw takes dozens of words).
    public init(sigma: Double) throws {
        try self.init(sigma: sigma, generator: BufferedSecureRandom())
    }
}
