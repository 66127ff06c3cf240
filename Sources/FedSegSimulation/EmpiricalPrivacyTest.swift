import FedSegClustering
import FedSegMath
import FedSegPrivacy
import FedSegRecommend
import FedSegSecureAggregation
import Foundation

/// `fedseg privacy test`: an empirical lower bound on the ε of a release, by distinguishing two
/// neighbouring inputs (Jagielski, Ullman & Oprea 2020; Nasr et al. 2021).
///
/// The release code is the product's: the clients' clipping and statistics
/// (`LocalStatistics.compute`), the fixed-point grid and exact discrete Gaussian
/// (`FixedPointNoise`, `DiscreteGaussianSampler`) and the histogram noise (`SegmentHistogram`),
/// as `ClientNode` and the coordinator's plans use them. Each trial runs it on D (a few fixed
/// users) or D' (D plus one canary chosen to be as distinguishable as possible: a vector at the
/// clip norm along one axis, or m items nobody else has). The distinguisher is the likelihood
/// ratio test of the Gaussian, a threshold on the output projected on the canary's effect; the
/// threshold is chosen on the first half of the trials (the one with the best bound there) and the
/// rates measured on the second, so
/// the Clopper–Pearson bounds hold for a fixed test. ε_lb = log((TPR_low − δ) / FPR_high).
public enum EmpiricalPrivacyTest {
    public enum Release: String, CaseIterable, Sendable, Codable {
        /// One client's local-mode clustering update (sums and counts on the grid).
        case localUpdate = "local-update"
        /// A distributed clustering round's sum as a coordinator colluding with the assumed
        /// colluders sees it: the honest survivors' shares (masks cancel exactly in the sum).
        case distributedSum = "distributed-sum"
        /// The recommendation histogram (a user's at most m items in their segment's row).
        case histogram
    }

    public struct Configuration: Sendable {
        public var release: Release
        public var epsilon: Double = 2
        public var delta: Double = 1e-5
        public var trials: Int
        /// Multiplies the release's noise: 1 is the product; below 1 a broken mechanism, which
        /// the test must catch (its bound then exceeds the claim).
        public var noiseScale: Double = 1
        public var confidence: Double = 0.95
        public var seed: UInt64 = 1

        public init(release: Release, trials: Int) {
            self.release = release
            self.trials = trials
        }
    }

    public struct Result: Sendable, Codable, Equatable {
        public var release: Release
        public var trials: Int
        public var confidence: Double
        public var epsilonClaimed: Double
        public var delta: Double
        public var epsilonLowerBound: Double
        public var noiseScale: Double
        public var noiseMultiplier: Double
        public var threshold: Double
        public var falsePositiveRate: Double
        public var truePositiveRate: Double

        enum CodingKeys: String, CodingKey {
            case release, trials, confidence, delta, threshold
            case epsilonClaimed = "epsilon_claimed"
            case epsilonLowerBound = "epsilon_lower_bound"
            case noiseScale = "noise_scale"
            case noiseMultiplier = "noise_multiplier"
            case falsePositiveRate = "false_positive_rate"
            case truePositiveRate = "true_positive_rate"
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case invalid(String)

        public var description: String {
            switch self {
            case .invalid(let why): why
            }
        }
    }

    /// A release under test: one run on D or D', projected on the canary's effect (the
    /// statistic whose threshold test is most powerful for Gaussian noise).
    struct Mechanism {
        var noiseMultiplier: Double
        var run: (_ withCanary: Bool) throws -> Double
    }

    public static func run(_ c: Configuration) throws -> Result {
        guard c.trials >= 200 else { throw Failure.invalid("--trials must be at least 200 (half choose the threshold, half measure it)") }
        guard c.epsilon > 0, c.epsilon.isFinite, c.delta > 0, c.delta < 1 else { throw Failure.invalid("need ε > 0 and δ in (0, 1)") }
        guard c.noiseScale > 0, c.noiseScale.isFinite else { throw Failure.invalid("--noise-scale must be positive") }
        guard c.confidence > 0, c.confidence < 1 else { throw Failure.invalid("--confidence must be in (0, 1)") }
        let z = try Calibration.noiseMultiplier(epsilon: c.epsilon, delta: c.delta, rounds: 1)
        let mechanism = try make(c.release, noiseMultiplier: z, noiseScale: c.noiseScale, seed: c.seed)
        // The claim is what the ledger would record for this release at its actual z.
        let claimed = try PrivacyLedger.epsilon(of: [.init(kind: .gaussian, noiseMultiplier: mechanism.noiseMultiplier)], delta: c.delta)

        let half = c.trials / 2
        var without = [Double](), with = [Double]()
        without.reserveCapacity(c.trials)
        with.reserveCapacity(c.trials)
        for _ in 0..<c.trials {
            without.append(try mechanism.run(false))
            with.append(try mechanism.run(true))
        }
        let alpha = 1 - c.confidence
        let threshold = bestThreshold(negatives: Array(without[..<half]), positives: Array(with[..<half]), delta: c.delta, alpha: alpha)
        let negatives = without[half...]
        let positives = with[half...]
        let falsePositives = negatives.count { $0 > threshold }
        let truePositives = positives.count { $0 > threshold }
        let fprHigh = ClopperPearson.upper(successes: falsePositives, trials: negatives.count, alpha: alpha)
        let tprLow = ClopperPearson.lower(successes: truePositives, trials: positives.count, alpha: alpha)
        let bound = tprLow - c.delta > 0 && fprHigh > 0 ? max(0, log((tprLow - c.delta) / fprHigh)) : 0
        return Result(
            release: c.release, trials: c.trials, confidence: c.confidence, epsilonClaimed: claimed, delta: c.delta, epsilonLowerBound: bound,
            noiseScale: c.noiseScale, noiseMultiplier: mechanism.noiseMultiplier, threshold: threshold,
            falsePositiveRate: Double(falsePositives) / Double(negatives.count), truePositiveRate: Double(truePositives) / Double(positives.count)
        )
    }

    /// The threshold with the largest Clopper–Pearson lower bound on the selection half (a point
    /// estimate would favour the far tail, where a handful of counts says nothing).
    static func bestThreshold(negatives: [Double], positives: [Double], delta: Double, alpha: Double) -> Double {
        let sortedNegatives = negatives.sorted()
        let sortedPositives = positives.sorted()
        var best = (score: -Double.infinity, threshold: sortedNegatives.last ?? 0)
        var falsePositives = 1
        while falsePositives <= negatives.count / 2 {
            let threshold = sortedNegatives[negatives.count - falsePositives]
            // Positives strictly above: binary search in the sorted half.
            var low = 0, high = sortedPositives.count
            while low < high {
                let mid = (low + high) / 2
                if sortedPositives[mid] > threshold { high = mid } else { low = mid + 1 }
            }
            let tprLow = ClopperPearson.lower(successes: sortedPositives.count - low, trials: sortedPositives.count, alpha: alpha)
            let fprHigh = ClopperPearson.upper(successes: falsePositives - 1, trials: negatives.count, alpha: alpha)
            if tprLow - delta > 0 {
                let score = log((tprLow - delta) / fprHigh)
                if score > best.score { best = (score, threshold) }
            }
            falsePositives += max(1, falsePositives / 8)
        }
        return best.threshold
    }

    static func make(_ release: Release, noiseMultiplier z: Double, noiseScale: Double, seed: UInt64) throws -> Mechanism {
        var data = SeededRandom(seed: seed, stream: 0xA0D17)
        switch release {
        case .localUpdate, .distributedSum:
            // Two clusters in 2 dimensions (small, so that many trials are cheap); D holds six
            // users, the canary sits beyond the clip norm (clipped to C, as every user is) on the
            // axis the centroids do not use, in cluster 0.
            let k = 2, d = 2, clip = 1.0
            let centroids = Matrix(rows: k, cols: d, storage: [0.5, 0, -0.5, 0])
            var base = [Float]()
            for u in 0..<6 { base += [Float(u % 2 == 0 ? 0.6 : -0.6), Float(data.nextUniform() * 0.2)] }
            let canary: [Float] = [0.2, 3]
            let withoutPoints = Matrix(rows: 6, cols: d, storage: base)
            let withPoints = Matrix(rows: 7, cols: d, storage: base + canary)
            let noise = SumCountNoise(noiseMultiplier: z, clipNorm: clip, countShare: 0.1)
            let survivors = 3, colluders = 1
            let grid = release == .localUpdate
                ? FixedPointNoise.local(noise: noise, k: k, dimension: d)
                : try FixedPointNoise.distributed(noise: noise, k: k, dimension: d, minimumSurvivors: survivors, colluders: colluders, maxUsers: 1000)
            let honest = release == .localUpdate ? 1 : survivors - colluders
            // The canary's effect on the words: its clipped vector in cluster 0's sums and one in
            // its count, scaled to the grid. Projecting on it gives the Gaussian's sufficient statistic.
            let clippedCanary = LocalStatistics.compute(points: Matrix(rows: 1, cols: d, storage: canary), centroids: centroids, clipNorm: Float(clip))
            var direction = clippedCanary.sums.map { $0 * grid.sumScale } + clippedCanary.counts.map { Double($0) * grid.countScale }
            let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
            direction = direction.map { $0 / norm }
            let statistics = (
                without: LocalStatistics.compute(points: withoutPoints, centroids: centroids, clipNorm: Float(clip)),
                with: LocalStatistics.compute(points: withPoints, centroids: centroids, clipNorm: Float(clip))
            )
            let emptyStatistics = LocalStatistics(k: k, dimension: d)
            var generator = BufferedSecureRandom()
            var sampler = try DiscreteGaussianSampler(sigma: grid.clientSigma * noiseScale, generator: BufferedSecureRandom())
            let expected = (statistics.without.sums.map { $0 * grid.sumScale } + statistics.without.counts.map { Double($0) * grid.countScale })
            return Mechanism(noiseMultiplier: grid.noiseMultiplier) { withCanary in
                // Client 0 holds the data (and the canary); the other honest survivors add their
                // noise shares on no data. Summed as secure aggregation sums: mod 2^32.
                var sum = [UInt32](repeating: 0, count: grid.length)
                for client in 0..<honest {
                    let own = client == 0 ? (withCanary ? statistics.with : statistics.without) : emptyStatistics
                    let words = grid.encode(own, rounding: &generator, noise: &sampler)
                    for i in sum.indices { sum[i] &+= words[i] }
                }
                var projection = 0.0
                for i in sum.indices { projection += (Double(Int32(bitPattern: sum[i])) - expected[i]) * direction[i] }
                return projection
            }
        case .histogram:
            // One segment, 6 items, m = 4; D's users hold items 0 and 1, the canary 2...5 and 0,
            // of which it keeps m.
            let m = 4
            let catalog = ItemCatalog(ids: (0..<6).map { "item-\($0)" })
            var base = SegmentHistogram(segments: 1, items: catalog.count)
            var rng = SeededRandom(seed: seed, stream: 0x4157)
            for _ in 0..<5 { base.add(userItems: ["item-0", "item-1"], segment: 0, catalog: catalog, maxItemsPerUser: m, using: &rng) }
            var canary = base
            canary.add(userItems: ["item-2", "item-3", "item-4", "item-5", "item-0"], segment: 0, catalog: catalog, maxItemsPerUser: m, using: &rng)
            let generator = BufferedSecureRandom()
            return Mechanism(noiseMultiplier: z) { withCanary in
                var released = withCanary ? canary : base
                try released.addNoise(noiseMultiplier: z * noiseScale, maxItemsPerUser: m, generator: generator)
                // The canary's effect: +1 on each of the (at most m) items it kept.
                var projection = 0.0
                for i in released.counts.indices where canary.counts[i] != base.counts[i] {
                    projection += (released.counts[i] - base.counts[i]) * (canary.counts[i] - base.counts[i])
                }
                return projection / SegmentHistogram.sensitivity(maxItemsPerUser: m)
            }
        }
    }
}

/// Exact binomial confidence bounds from the beta distribution (Clopper & Pearson 1934).
enum ClopperPearson {
    /// The lower end of the two-sided (1 − α) interval for a rate seen `successes` times in `trials`.
    static func lower(successes k: Int, trials n: Int, alpha: Double) -> Double {
        k == 0 ? 0 : Beta.quantile(alpha / 2, a: Double(k), b: Double(n - k + 1))
    }

    static func upper(successes k: Int, trials n: Int, alpha: Double) -> Double {
        k == n ? 1 : Beta.quantile(1 - alpha / 2, a: Double(k + 1), b: Double(n - k))
    }
}

/// The regularised incomplete beta function and its inverse, for the bounds above.
enum Beta {
    /// I_x(a, b) by its continued fraction (modified Lentz), using the symmetry for x beyond the mean.
    static func regularized(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logGammas: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
        let logFront: Double = logGammas + a * log(x) + b * log(1 - x)
        if x > (a + 1) / (a + b + 2) { return 1 - regularized(1 - x, a: b, b: a) }
        let tiny = 1e-300
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var f = d
        for m in 1...10_000 {
            let m = Double(m)
            var numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            d = 1 + numerator * d
            c = 1 + numerator / c
            d = 1 / (abs(d) < tiny ? tiny : d)
            c = abs(c) < tiny ? tiny : c
            f *= d * c
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1 + numerator * d
            c = 1 + numerator / c
            d = 1 / (abs(d) < tiny ? tiny : d)
            c = abs(c) < tiny ? tiny : c
            let step = d * c
            f *= step
            if abs(step - 1) < 1e-15 { break }
        }
        return exp(logFront) * f / a
    }

    /// The x with I_x(a, b) = p, by bisection (monotone in x; 200 halvings reach Double precision).
    static func quantile(_ p: Double, a: Double, b: Double) -> Double {
        var low = 0.0, high = 1.0
        for _ in 0..<200 {
            let mid = (low + high) / 2
            if regularized(mid, a: a, b: b) < p { low = mid } else { high = mid }
            if high - low < 1e-17 { break }
        }
        return (low + high) / 2
    }
}
