import FedSegMath
import Foundation

/// Continuous Gaussian noise (Marsaglia's polar method) from a given generator.
///
/// Used in local mode on float statistics. Floating-point Gaussians can leak through the pattern
/// of representable values (Mironov 2012); where a release must be exact, use
/// `DiscreteGaussianSampler` on a fixed-point grid instead (the product does for integer-valued
/// releases: counts, item histograms, and secure aggregation).
public struct GaussianSampler<Generator: RandomNumberGenerator> {
    public var generator: Generator
    private var spare: Double?

    public init(generator: Generator) {
        self.generator = generator
    }

    public mutating func next(standardDeviation: Double) -> Double {
        standardDeviation * nextStandard()
    }

    public mutating func nextStandard() -> Double {
        if let value = spare {
            spare = nil
            return value
        }
        while true {
            let u = 2 * generator.nextUniform() - 1
            let v = 2 * generator.nextUniform() - 1
            let s = u * u + v * v
            if s > 0 && s < 1 {
                let factor = (-2 * log(s) / s).squareRoot()
                spare = v * factor
                return u * factor
            }
        }
    }

    /// Adds N(0, σ²) to every element.
    public mutating func addNoise(to values: inout [Double], standardDeviation: Double) {
        for i in values.indices { values[i] += next(standardDeviation: standardDeviation) }
    }
}

extension GaussianSampler where Generator == BufferedSecureRandom {
    /// Noise from the OS CSPRNG (drawn in bulk): the product's default.
    public init() {
        self.init(generator: BufferedSecureRandom())
    }
}
