import FedSegProtocol

extension Fedseg_V1_RoundPlan {
    /// A clustering round's grid and noise exactly as its signed plan states them: what clients
    /// encode with and charge, and what the coordinator decodes with. Local mode: the plan's
    /// `sum_scale`, `count_scale` and `integer_sigma`; distributed: its secure-aggregation plan.
    public var clusteringNoise: FixedPointNoise {
        privacyMode == .distributed ? distributedNoise : localNoise
    }

    /// A local clustering round's grid: one client adds the whole σ.
    public var localNoise: FixedPointNoise {
        FixedPointNoise(
            clipNorm: clipNorm, k: Int(k), dimension: Int(dimension), minimumSurvivors: 1, sumScale: sumScale, countScale: countScale,
            clientSigma: integerSigma
        )
    }

    /// A distributed clustering round's quantisation and noise shares.
    public var distributedNoise: FixedPointNoise {
        FixedPointNoise(
            clipNorm: clipNorm, k: Int(k), dimension: Int(dimension), minimumSurvivors: Int(secagg.minSurvivors),
            assumedColluders: Int(secagg.assumedColluders), sumScale: secagg.sumScale, countScale: secagg.countScale,
            clientSigma: secagg.clientSigma
        )
    }

    /// The same for a distributed histogram round (start or recommendation), whose histogram
    /// changes by at most `baseSensitivity` (L2) with one user.
    public func distributedHistogramNoise(baseSensitivity: Double) -> DistributedIntegerNoise {
        DistributedIntegerNoise(
            length: Int(secagg.length), baseSensitivity: baseSensitivity, scale: max(1, Int(secagg.countScale.rounded())),
            minimumSurvivors: Int(secagg.minSurvivors), assumedColluders: Int(secagg.assumedColluders), clientSigma: secagg.clientSigma
        )
    }
}
