import Foundation
/// The smallest noise multiplier that meets a target (ε, δ) over a planned number of releases.
public enum Calibration {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unreachable(epsilon: Double, delta: Double)
        case invalid(String)

        public var description: String {
            switch self {
            case .unreachable(let epsilon, let delta):
                "no noise multiplier up to 1e6 reaches ε=\(epsilon) at δ=\(delta)"
            case .invalid(let what): what
            }
        }
    }

    /// ε after `rounds` releases at noise multiplier `z` (Poisson-sampled when samplingRate < 1).
    public static func epsilon(noiseMultiplier z: Double, samplingRate q: Double, rounds: Int, delta: Double) throws -> Double {
        guard q >= 0 && q <= 1 else {
            throw RDPAccountant.Failure.invalidParameter("sampling rate must be in [0, 1], got \(q)")
        }
        var accountant = RDPAccountant()
        let event: RDPAccountant.Event = q < 1
            ? .poissonSampledGaussian(samplingRate: q, noiseMultiplier: z) : .gaussian(noiseMultiplier: z)
        try accountant.compose(event, count: rounds)
        return try accountant.epsilon(delta: delta).epsilon
    }

    /// Bisection on z (ε decreases as z grows) to a relative precision of 1e-6, rounded up so the
    /// returned multiplier never overspends.
    public static func noiseMultiplier(
        epsilon target: Double, delta: Double, rounds: Int, samplingRate q: Double = 1
    ) throws -> Double {
        guard target > 0, target.isFinite else { throw Failure.invalid("target ε must be positive and finite") }
        guard rounds >= 1 else { throw Failure.invalid("rounds must be at least 1") }
        guard delta > 0, delta < 1 else { throw Failure.invalid("δ must be in (0, 1)") }
        var high = 1.0
        while try epsilon(noiseMultiplier: high, samplingRate: q, rounds: rounds, delta: delta) > target {
            high *= 2
            if high > 1e6 { throw Failure.unreachable(epsilon: target, delta: delta) }
        }
        var low = 0.0
        while high - low > 1e-6 * high {
            let mid = (low + high) / 2
            if try epsilon(noiseMultiplier: mid, samplingRate: q, rounds: rounds, delta: delta) > target {
                low = mid
            } else {
                high = mid
            }
        }
        return high
    }
}
