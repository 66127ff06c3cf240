#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Rényi-DP accounting for the Gaussian mechanism, with and without Poisson subsampling, composed
/// across heterogeneous releases and converted to (ε, δ).
///
/// Numerically this follows Google's dp_accounting 0.6 `RdpAccountant` (add-or-remove-one
/// neighbouring): the same default order grid, log A_α for integer orders (binomial expansion) and
/// fractional orders (the two-sided series of Mironov, Talwar & Zhang 2019, §3.3), and the
/// RDP→(ε, δ) conversion of Balle et al. 2020 (Prop. 12) / Asoodeh et al. 2020.
/// Tests hold it to dp_accounting's epsilons at 1e-6 relative error.
public struct RDPAccountant: Sendable, Equatable {
    /// dp_accounting's default orders: 1.1, 1.2, …, 10.9, then 11…63, 128, 256, 512, 1024.
    public static let defaultOrders: [Double] = {
        let fractional: [Double] = (1..<100).map { 1 + Double($0) / 10 }
        let integral: [Double] = (11..<64).map { Double($0) }
        let large: [Double] = [128, 256, 512, 1024]
        return fractional + integral + large
    }()

    public enum Event: Sendable, Equatable, Codable {
        /// One Gaussian release with noise std = noiseMultiplier × L2 sensitivity.
        case gaussian(noiseMultiplier: Double)
        /// A Gaussian release on a Poisson sample (each user in with probability samplingRate).
        case poissonSampledGaussian(samplingRate: Double, noiseMultiplier: Double)
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case invalidParameter(String)

        public var description: String {
            switch self {
            case .invalidParameter(let what): what
            }
        }
    }

    public let orders: [Double]
    /// Accumulated RDP at each order.
    public private(set) var rdp: [Double]

    public init(orders: [Double] = RDPAccountant.defaultOrders) {
        precondition(orders.allSatisfy { $0 > 1 }, "RDP orders must exceed 1")
        self.orders = orders
        self.rdp = [Double](repeating: 0, count: orders.count)
    }

    /// Adds `count` repetitions of `event`.
    public mutating func compose(_ event: Event, count: Int = 1) throws {
        guard count >= 0 else { throw Failure.invalidParameter("count must be non-negative, got \(count)") }
        let perEvent = try Self.rdp(of: event, orders: orders)
        for i in rdp.indices { rdp[i] += Double(count) * perEvent[i] }
    }

    /// ε at the given δ (minimised over orders), with the order that attains it.
    public func epsilon(delta: Double) throws -> (epsilon: Double, order: Double) {
        try Self.epsilon(orders: orders, rdp: rdp, delta: delta)
    }

    // MARK: RDP of one event

    public static func rdp(of event: Event, orders: [Double]) throws -> [Double] {
        switch event {
        case .gaussian(let z):
            return try rdpPoissonSampledGaussian(q: 1, noiseMultiplier: z, orders: orders)
        case .poissonSampledGaussian(let q, let z):
            return try rdpPoissonSampledGaussian(q: q, noiseMultiplier: z, orders: orders)
        }
    }

    static func rdpPoissonSampledGaussian(q: Double, noiseMultiplier z: Double, orders: [Double]) throws -> [Double] {
        guard q >= 0 && q <= 1 else { throw Failure.invalidParameter("sampling rate must be in [0, 1], got \(q)") }
        guard z >= 0, !z.isNaN else { throw Failure.invalidParameter("noise multiplier must be non-negative, got \(z)") }
        return orders.map { alpha in
            if q == 0 { return 0 }
            if z == 0 || alpha.isInfinite { return .infinity }
            if q == 1 { return alpha / (2 * z * z) }
            let logA = alpha.rounded() == alpha ? logAInteger(q: q, sigma: z, alpha: Int(alpha)) : logAFractional(q: q, sigma: z, alpha: alpha)
            return logA / (alpha - 1)
        }
    }

    /// log A_α = log Σ_{i=0}^{α} C(α, i) q^i (1−q)^{α−i} exp((i² − i) / 2σ²).
    static func logAInteger(q: Double, sigma: Double, alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q)
        let log1mq = log1p(-q)
        for i in 0...alpha {
            let term = logBinomial(Double(alpha), Double(i)) + Double(i) * logQ + Double(alpha - i) * log1mq
                + Double(i * i - i) / (2 * sigma * sigma)
            logA = logAdd(logA, term)
        }
        return logA
    }

    /// Fractional α: A_α split at z0 = σ² log(1/q − 1) + 1/2 into two series with erfc weights,
    /// summed until both terms decrease and fall 30 nats below the total (at most 1000 terms).
    static func logAFractional(q: Double, sigma: Double, alpha: Double) -> Double {
        var logA0 = -Double.infinity
        var logA1 = -Double.infinity
        let z0 = sigma * sigma * log(1 / q - 1) + 0.5
        let logQ = log(q)
        let log1mq = log1p(-q)
        var lastS0 = -Double.infinity
        var lastS1 = -Double.infinity
        for step in 0..<1000 {
            let i = Double(step)
            let j = alpha - i
            let coefficient = logBinomial(alpha, i)
            let logT0 = coefficient + i * logQ + j * log1mq
            let logT1 = coefficient + j * logQ + i * log1mq
            let logE0 = log(0.5) + logErfc((i - z0) / (2.0.squareRoot() * sigma))
            let logE1 = log(0.5) + logErfc((z0 - j) / (2.0.squareRoot() * sigma))
            let logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
            let logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
            logA0 = logAdd(logA0, logS0)
            logA1 = logAdd(logA1, logS1)
            let total = logAdd(logA0, logA1)
            if logS0 < lastS0 && logS1 < lastS1 && max(logS0, logS1) < total - 30 {
                return total
            }
            lastS0 = logS0
            lastS1 = logS1
        }
        // Did not converge: this order is excluded (its ε is infinite), as in dp_accounting.
        return .infinity
    }

    // MARK: conversion

    /// ε(δ) = min over orders of r + log(1 − 1/α) − log(δα)/(α − 1), with the KL shortcut
    /// ε = 0 when δ² > 1 − e^{−r}.
    public static func epsilon(orders: [Double], rdp: [Double], delta: Double) throws -> (epsilon: Double, order: Double) {
        guard delta >= 0, delta <= 1 else { throw Failure.invalidParameter("delta must be in [0, 1], got \(delta)") }
        guard orders.count == rdp.count, !orders.isEmpty else { throw Failure.invalidParameter("orders and RDP values differ in length") }
        if delta == 0 {
            return rdp.allSatisfy { $0 == 0 } ? (0, 0) : (.infinity, 0)
        }
        var best = Double.infinity
        var bestOrder = orders[0]
        for (alpha, r) in zip(orders, rdp) {
            let candidate: Double
            if r < 0 {
                candidate = 0
            } else if delta * delta + expm1(-r) > 0 {
                candidate = 0
            } else if alpha > 1.01 {
                candidate = r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
            } else {
                candidate = .infinity
            }
            if candidate < best {
                best = candidate
                bestOrder = alpha
            }
        }
        return (max(0, best), bestOrder)
    }

    // MARK: numerics

    static func logAdd(_ x: Double, _ y: Double) -> Double {
        let a = min(x, y)
        let b = max(x, y)
        if a == -.infinity { return b }
        return log1p(exp(a - b)) + b
    }

    /// log |C(n, k)| through log-gamma, for real n and k.
    static func logBinomial(_ n: Double, _ k: Double) -> Double {
        lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)
    }

    /// log erfc(x), accurate where erfc underflows (large x) through its asymptotic series.
    static func logErfc(_ x: Double) -> Double {
        let value = erfc(x)
        if value > 1e-300 { return log(value) }
        let x2 = x * x
        return -log(Double.pi) / 2 - log(x) - x2 - 0.5 / x2 + 0.625 / (x2 * x2) - 37.0 / 24.0 / (x2 * x2 * x2)
            + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
    }
}
