import FedSegProtocol

extension Fedseg_V1_RoundPlan {
    /// A distributed clustering round's quantisation and noise shares, exactly as its signed plan
    /// states them: what clients encode with and charge, and what the coordinator decodes with.
    public var distributedNoise: DistributedNoise {
        DistributedNoise(
            clipNorm: clipNorm, k: Int(k), dimension: Int(dimension), minimumSurvivors: Int(secagg.minSurvivors),
            sumScale: secagg.sumScale, countScale: secagg.countScale, clientSigma: secagg.clientSigma
        )
    }

    /// The same for a distributed recommendation round, whose histogram changes by at most
    /// `baseSensitivity` (L2) with one user.
    public func distributedHistogramNoise(baseSensitivity: Double) -> DistributedIntegerNoise {
        DistributedIntegerNoise(
            length: Int(secagg.length), baseSensitivity: baseSensitivity, scale: max(1, Int(secagg.countScale.rounded())),
            minimumSurvivors: Int(secagg.minSurvivors), clientSigma: secagg.clientSigma
        )
    }
}
