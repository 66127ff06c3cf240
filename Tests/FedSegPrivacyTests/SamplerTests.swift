import FedSegMath
@testable import FedSegPrivacy
import Foundation
import Testing

/// Statistical checks on 10^6 draws. Each bound sits at 6 standard errors (or a chi-square
/// quantile with p < 1e-8), so a correct sampler fails a given check with probability below
/// 2e-9 and the whole suite with probability below 1e-7; seeded generators make runs repeat.
@Suite("Noise samplers")
struct SamplerTests {
    static let draws = 1_000_000

    @Test("the 64-bit proposals draw the same numbers, from the same words, as the 128-bit steps they replace", arguments: [0.5, 3, 1000, 8000, 300_000])
    func sixtyFourBitProposalsMatch(sigma: Double) throws {
        var fast = try DiscreteGaussianSampler(sigma: sigma, generator: SeededRandom(seed: 77))
        var wide = try DiscreteGaussianSampler(sigma: sigma, generator: SeededRandom(seed: 77))
        // `next()` as it was, every step in 128 bits (CKS Algorithm 2, then 3).
        func wideLaplace(scale t: Int128) -> Int128 {
            while true {
                let u = wide.uniform(below: t)
                if !wide.bernoulliExp(numerator: u, denominator: t) { continue }
                var v: Int128 = 0
                while wide.bernoulliExp(numerator: 1, denominator: 1) { v += 1 }
                let x = u + t * v
                let negative = wide.generator.next() & 1 == 1
                if negative && x == 0 { continue }
                return negative ? -x : x
            }
        }
        func wideNext() -> Int64 {
            let p = wide.varianceNumerator, q = DiscreteGaussianSampler<SeededRandom>.varianceDenominator, t = wide.laplaceScale
            while true {
                let y = wideLaplace(scale: t)
                let magnitude = y < 0 ? -y : y
                if magnitude > 1 << 26 { continue }
                let difference = magnitude * q * t - p
                if wide.bernoulliExp(numerator: difference * difference, denominator: 2 * p * q * t * t) { return Int64(y) }
            }
        }
        for _ in 0..<20_000 { #expect(fast.next() == wideNext()) }
        #expect(fast.generator.next() == wide.generator.next(), "both consumed the same words")
        let t = UInt64(fast.laplaceScale)
        for _ in 0..<5_000 { #expect(Int128(fast.discreteLaplace64(scale: t)) == wideLaplace(scale: Int128(t))) }
    }

    @Test("continuous Gaussian: mean, variance and tail frequencies")
    func gaussian() {
        var sampler = GaussianSampler(generator: SeededRandom(seed: 101))
        let sigma = 2.5
        var sum = 0.0, squares = 0.0, beyond1 = 0, beyond2 = 0, beyond3 = 0
        for _ in 0..<Self.draws {
            let x = sampler.next(standardDeviation: sigma)
            sum += x
            squares += x * x
            let z = abs(x) / sigma
            if z > 1 { beyond1 += 1 }
            if z > 2 { beyond2 += 1 }
            if z > 3 { beyond3 += 1 }
        }
        let n = Double(Self.draws)
        let mean = sum / n
        let variance = squares / n - mean * mean
        #expect(abs(mean) < 6 * sigma / n.squareRoot())
        // Var of the sample variance ≈ 2σ⁴/n.
        #expect(abs(variance - sigma * sigma) < 6 * (2 / n).squareRoot() * sigma * sigma)
        for (count, p) in [(beyond1, 0.31731050786291415), (beyond2, 0.04550026389635842), (beyond3, 0.0026997960632601866)] {
            #expect(abs(Double(count) / n - p) < 6 * (p * (1 - p) / n).squareRoot(), "tail \(p)")
        }
    }

    @Test("secure Gaussian noise is not constant")
    func secure() {
        var sampler = GaussianSampler()
        let values = (0..<100).map { _ in sampler.nextStandard() }
        #expect(Set(values).count == 100)
    }

    @Test("discrete Gaussian: integer draws with mean 0 and variance σ², tails as the pmf says")
    func discreteMoments() throws {
        let sigma = 3.0
        var sampler = try DiscreteGaussianSampler(sigma: sigma, generator: SeededRandom(seed: 202))
        var sum = 0.0, squares = 0.0, beyond = 0
        var histogram: [Int64: Int] = [:]
        for _ in 0..<Self.draws {
            let x = sampler.next()
            sum += Double(x)
            squares += Double(x * x)
            if abs(x) > 6 { beyond += 1 }
            histogram[x, default: 0] += 1
        }
        let n = Double(Self.draws)
        let pmf = Self.discreteGaussianPMF(sigma2: sampler.variance, range: -60...60)
        let mean = sum / n
        #expect(abs(mean) < 6 * sigma / n.squareRoot())
        // The discrete Gaussian's variance is slightly below σ² for small σ: compare with the pmf's.
        let exactVariance = pmf.reduce(0.0) { $0 + Double($1.key * $1.key) * $1.value }
        #expect(abs(squares / n - exactVariance) < 6 * (2 / n).squareRoot() * exactVariance)
        let tail = pmf.filter { abs($0.key) > 6 }.values.reduce(0, +)
        #expect(abs(Double(beyond) / n - tail) < 6 * (tail * (1 - tail) / n).squareRoot())

        // Chi-square against the pmf over cells with expected count ≥ 5; the rest pooled.
        var chiSquare = 0.0
        var cells = 0
        var pooledObserved = 0.0, pooledExpected = 0.0
        for (value, p) in pmf {
            let expected = p * n
            let observed = Double(histogram[value] ?? 0)
            if expected >= 5 {
                chiSquare += (observed - expected) * (observed - expected) / expected
                cells += 1
            } else {
                pooledObserved += observed
                pooledExpected += expected
            }
        }
        let outside = Double(histogram.filter { !(-60...60).contains($0.key) }.values.reduce(0, +))
        pooledObserved += outside
        if pooledExpected > 0 {
            chiSquare += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / pooledExpected
            cells += 1
        }
        // df = cells − 1 (about 40); P(χ²₄₀ > 110) < 1e-8.
        #expect(cells > 20)
        #expect(chiSquare < Double(cells - 1) + 12 * Double(cells - 1).squareRoot(), "chi-square \(chiSquare) over \(cells) cells")
    }

    @Test("the sampler's uniform draws stay below n and are uniform, across the 64-bit boundary")
    func uniformBelow() throws {
        var sampler = try DiscreteGaussianSampler(sigma: 2, generator: SeededRandom(seed: 404))
        let two64 = Int128(1) << 64
        for n in [Int128(1), 2, 3, 1000, two64 - 1, two64, two64 + 1, (Int128(1) << 100) + 7, Int128.max] {
            for _ in 0..<2000 {
                let u = sampler.uniform(below: n)
                #expect(u >= 0 && u < n, "uniform(below: \(n)) gave \(u)")
            }
        }
        // n = 3 (a mask of 2 bits, a quarter rejected) and n = 2^64 + 1 (two words, nearly half
        // rejected): each cell of the first and of the top third holds its share.
        for n in [Int128(3), two64 + 1] {
            var cells = [0, 0, 0]
            let trials = 300_000
            for _ in 0..<trials { cells[Int(sampler.uniform(below: n) * 3 / n)] += 1 }
            let expected = Double(trials) / 3
            let chiSquare = cells.reduce(0.0) { $0 + pow(Double($1) - expected, 2) / expected }
            // df = 2: P(χ²₂ > 40) ≈ 2e-9.
            #expect(chiSquare < 40, "n = \(n): \(cells)")
        }
    }

    @Test("discrete Gaussian with a large σ keeps its variance")
    func discreteLargeSigma() throws {
        var sampler = try DiscreteGaussianSampler(sigma: 1000, generator: SeededRandom(seed: 303))
        let n = 100_000
        var squares = 0.0
        for _ in 0..<n {
            let x = Double(sampler.next())
            squares += x * x
        }
        #expect(abs(squares / Double(n) / 1e6 - 1) < 6 * (2 / Double(n)).squareRoot())
    }

    @Test("discrete Gaussian refuses σ outside its exact range")
    func discreteRange() {
        #expect(throws: DiscreteGaussianSampler<SeededRandom>.Failure.self) {
            try DiscreteGaussianSampler(sigma: 0, generator: SeededRandom(seed: 1))
        }
        #expect(throws: DiscreteGaussianSampler<SeededRandom>.Failure.self) {
            try DiscreteGaussianSampler(sigma: 3e6, generator: SeededRandom(seed: 1))
        }
    }

    static func discreteGaussianPMF(sigma2: Double, range: ClosedRange<Int64>) -> [Int64: Double] {
        var weights: [Int64: Double] = [:]
        var total = 0.0
        for x in -2000...2000 {
            let w = exp(-Double(x * x) / (2 * sigma2))
            total += w
            if range.contains(Int64(x)) { weights[Int64(x)] = w }
        }
        return weights.mapValues { $0 / total }
    }
}

@Suite("Clipping and calibration")
struct ClippingTests {
    @Test("clipping bounds the norm and leaves short vectors alone", arguments: [Float(0.01), 0.5, 1, 3, 100])
    func clip(bound: Float) {
        var rng = SeededRandom(seed: UInt64(bound * 1000))
        for _ in 0..<200 {
            let length = 1 + Int(rng.next(upperBound: UInt64(500)))
            let scale = Float(rng.nextUniform() * 10)
            var v = (0..<length).map { _ in Float(rng.nextStandardNormal()) * scale }
            let original = v
            let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            Clipping.clip(&v, to: bound)
            let after = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(after <= Double(bound))
            if norm <= Double(bound) { #expect(v == original) } else { #expect(abs(after - Double(bound)) < 1e-4 * Double(bound)) }
        }
    }

    @Test("splitting z between sums and counts keeps the release's noise multiplier")
    func sumCount() {
        for share in [0.05, 0.2, 0.5, 0.9] {
            let noise = SumCountNoise(noiseMultiplier: 1.7, clipNorm: 2, countShare: share)
            #expect(abs(noise.noiseMultiplier - 1.7) < 1e-12)
        }
        let plain = SumCountNoise(clipNorm: 1, sumStd: 1, countStd: 1)
        #expect(abs(plain.noiseMultiplier - 1 / 2.0.squareRoot()) < 1e-12)
    }

    @Test("zCDP agrees with RDP in being looser, and composes additively")
    func zcdp() throws {
        var z = ZCDPAccountant()
        z.composeGaussian(noiseMultiplier: 2, count: 50)
        #expect(abs(z.rho - 50.0 / 8) < 1e-12)
        let rdp = try Calibration.epsilon(noiseMultiplier: 2, samplingRate: 1, rounds: 50, delta: 1e-6)
        #expect(z.epsilon(delta: 1e-6) >= rdp)
        #expect(z.epsilon(delta: 1e-6) < rdp * 1.2)
    }
}
