import FedSegMath

/// Exact sampling from the discrete Gaussian N_Z(0, σ²) (Canonne, Kamath & Steinke 2020,
/// Algorithms 1-3): discrete Laplace proposals accepted with probability exp(−γ), every
/// probability a rational evaluated in exact integer arithmetic, so no floating-point rounding
/// shapes the output distribution.
///
/// σ² is held as a rational p/1024, rounded up from the requested variance (more noise, never
/// less). Integer arithmetic is 128-bit, which bounds σ ≤ 2^20; a proposal beyond 2^26 (more than
/// 64σ, probability below 1e-27) would overflow and is rejected. The discrete Laplace proposals
/// (every draw but the acceptance test) fit in 64 bits and are drawn there, with the same words
/// and the same outcomes as the 128-bit steps.
///
/// Inlinable, so that a caller's generator is specialised in (a local update draws thousands of
/// samples; through the generic witness table they had been a fifth of a simulated round's CPU).
public struct DiscreteGaussianSampler<Generator: RandomNumberGenerator> {
    public var generator: Generator
    /// σ² = varianceNumerator / varianceDenominator.
    public let varianceNumerator: Int128
    public static var varianceDenominator: Int128 { 1024 }
    /// The discrete Laplace scale t = ⌊σ⌋ + 1.
    @usableFromInline let laplaceScale: Int128

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

    @inlinable
    public mutating func next() -> Int64 {
        let p = varianceNumerator
        let q = Self.varianceDenominator
        let t = laplaceScale
        let bound: Int128 = 1 << 26
        while true {
            // t ≤ 2^20 + 1 (σ ≤ 2^20): the proposal's arithmetic fits in 64 bits.
            let y = Int128(discreteLaplace64(scale: UInt64(t)))
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
    @inlinable
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
    @inlinable
    mutating func bernoulli(numerator n: Int128, denominator d: Int128) -> Bool {
        uniform(below: d) < n
    }

    /// Bernoulli(exp(−n/d)) for n/d ≥ 0 (CKS Algorithm 1).
    @inlinable
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
    @inlinable
    mutating func bernoulliExpAtMostOne(numerator n: Int128, denominator d: Int128) -> Bool {
        var k: Int128 = 1
        while bernoulli(numerator: n, denominator: d * k) { k += 1 }
        return k % 2 == 1
    }

    // MARK: the same steps in 64 bits, for the proposals

    /// `uniform(below:)` for n ≤ 2^64 − 1: the same mask, the same words, the same result.
    @inlinable
    mutating func uniform64(below n: UInt64) -> UInt64 {
        precondition(n > 0)
        if n == 1 { return 0 }
        let bits = 64 - (n - 1).leadingZeroBitCount
        let mask: UInt64 = bits == 64 ? .max : (1 << UInt64(bits)) - 1
        while true {
            let word = generator.next() & mask
            if word < n { return word }
        }
    }

    /// `bernoulliExpAtMostOne` while d·k fits in 64 bits (k, the count of successes, stays below
    /// 30 with probability 1 − 1e-32), the 128-bit steps beyond.
    @inlinable
    mutating func bernoulliExpAtMostOne64(numerator n: UInt64, denominator d: UInt64) -> Bool {
        var k: UInt64 = 1
        while true {
            let (dk, overflow) = d.multipliedReportingOverflow(by: k)
            if overflow {
                // Continue the same loop in 128 bits from this k.
                var wide = Int128(k)
                while bernoulli(numerator: Int128(n), denominator: Int128(d) * wide) { wide += 1 }
                return wide % 2 == 1
            }
            if uniform64(below: dk) >= n { return k % 2 == 1 }
            k += 1
        }
    }

    /// `bernoulliExp` for 64-bit n and d.
    @inlinable
    mutating func bernoulliExp64(numerator n: UInt64, denominator d: UInt64) -> Bool {
        var n = n
        while n > d {
            if !bernoulliExpAtMostOne64(numerator: 1, denominator: 1) { return false }
            n -= d
        }
        return bernoulliExpAtMostOne64(numerator: n, denominator: d)
    }

    /// Discrete Laplace with scale t: P(x) ∝ exp(−|x|/t) (CKS Algorithm 2), for t < 2^63 (here
    /// t ≤ 2^20 + 1); the magnitude u + t·v stays below 2^63 unless v exceeds 2^42, which has
    /// probability exp(−2^42).
    @inlinable
    mutating func discreteLaplace64(scale t: UInt64) -> Int64 {
        while true {
            let u = uniform64(below: t)
            if !bernoulliExp64(numerator: u, denominator: t) { continue }
            var v: UInt64 = 0
            while bernoulliExp64(numerator: 1, denominator: 1) { v += 1 }
            let (tv, overflowProduct) = t.multipliedReportingOverflow(by: v)
            let (x, overflowSum) = u.addingReportingOverflow(tv)
            let negative = generator.next() & 1 == 1
            // Beyond 2^63 a proposal is far past the 2^26 bound `next()` rejects anyway.
            if overflowProduct || overflowSum || x > UInt64(Int64.max) { return Int64.max }
            if negative && x == 0 { continue }
            return negative ? -Int64(x) : Int64(x)
        }
    }
}

extension DiscreteGaussianSampler where Generator == BufferedSecureRandom {
    /// Noise from the OS CSPRNG, drawn in bulk (an exact draw takes dozens of words).
    public init(sigma: Double) throws {
        try self.init(sigma: sigma, generator: BufferedSecureRandom())
    }
}
