/// Noise for a release of per-cluster sums (sensitivity C: one user's clipped vector) and counts
/// (sensitivity 1), each with its own standard deviation. As one Gaussian mechanism on the
/// concatenation (sums/σ_s, counts/σ_c) its L2 sensitivity is √((C/σ_s)² + (1/σ_c)²), so the
/// release has noise multiplier z = 1/√((C/σ_s)² + (1/σ_c)²) — the z the accountant charges.
public struct SumCountNoise: Sendable, Equatable, Codable {
    public var clipNorm: Double
    public var sumStd: Double
    public var countStd: Double

    public init(clipNorm: Double, sumStd: Double, countStd: Double) {
        precondition(clipNorm > 0 && sumStd > 0 && countStd > 0, "clip norm and noise must be positive")
        self.clipNorm = clipNorm
        self.sumStd = sumStd
        self.countStd = countStd
    }

    /// Splits a target noise multiplier z between sums and counts: a share `countShare` of the
    /// squared sensitivity budget 1/z² goes to counts, the rest to sums.
    public init(noiseMultiplier z: Double, clipNorm: Double, countShare: Double) {
        precondition(z > 0 && clipNorm > 0, "noise multiplier and clip norm must be positive")
        precondition(countShare > 0 && countShare < 1, "count share must lie in (0, 1)")
        let budget = 1 / (z * z)
        self.init(
            clipNorm: clipNorm,
            sumStd: clipNorm / (budget * (1 - countShare)).squareRoot(),
            countStd: 1 / (budget * countShare).squareRoot()
        )
    }

    /// The noise multiplier of the whole release.
    public var noiseMultiplier: Double {
        1 / ((clipNorm / sumStd) * (clipNorm / sumStd) + (1 / countStd) * (1 / countStd)).squareRoot()
    }
}
