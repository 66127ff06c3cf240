import Foundation

/// Zero-concentrated DP (Bun & Steinke 2016): a Gaussian release with noise multiplier z is
/// ρ = 1/(2z²)-zCDP, ρ adds up under composition, and ρ-zCDP implies (ε, δ)-DP with
/// ε = ρ + 2√(ρ ln(1/δ)). Without subsampling it is a quick second opinion on the RDP accountant
/// (which is never looser, since it optimises over orders).
public struct ZCDPAccountant: Sendable, Equatable {
    public private(set) var rho: Double = 0

    public init() {}

    public mutating func composeGaussian(noiseMultiplier z: Double, count: Int = 1) {
        precondition(z >= 0 && count >= 0, "noise multiplier and count must be non-negative")
        rho += z == 0 ? .infinity : Double(count) / (2 * z * z)
    }

    public func epsilon(delta: Double) -> Double {
        precondition(delta > 0 && delta < 1, "δ must lie in (0, 1)")
        return rho + 2 * (rho * log(1 / delta)).squareRoot()
    }
}
