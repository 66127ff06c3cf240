import FedSegPrivacy
import FedSegProtocol
import Foundation

extension RunParameters {
    /// The noise of every release, derived from the accountant before the first one.
    public func privacyPlan() throws -> RunPrivacyPlan {
        try validate()
        let clustering = try PrivateClusteringPlan.make(
            epsilon: epsilon, delta: delta, k: k, dimension: dimension, clipNorm: clipNorm,
            hasPublicStart: initialization == .public, rounds: rounds,
            histogramShare: initialization == .public ? startHistogramShare : 0, budgetShare: clusteringShare
        )
        let recommendation = catalog.isEmpty
            ? nil
            : try Calibration.noiseMultiplier(epsilon: epsilon, delta: delta, rounds: 1) / (1 - clusteringShare).squareRoot()
        return RunPrivacyPlan(clustering: clustering, recommendationNoiseMultiplier: recommendation, mode: privacyMode)
    }
}

/// The releases of a run and their noise, computed once before the first: the start histogram
/// (public starts with a histogram share), `rounds` Gaussian (sums, counts) releases, then one
/// discrete-Gaussian histogram release when there is a catalogue. Together they compose to at
/// most the run's (ε, δ) by RDP.
public struct RunPrivacyPlan: Sendable, Equatable {
    public var clustering: PrivateClusteringPlan
    public var recommendationNoiseMultiplier: Double?
    /// `local` or `distributed`: recorded with every release, so the audit shows how it was noised.
    /// The noise multipliers are the same in both modes; in distributed mode they hold for the
    /// sum of the fewest survivors a round accepts, quantisation included.
    public var mode: PrivacyMode = .local

    /// The start histogram: sensitivity 1 (a user is in one bin), discrete Gaussian noise.
    var ledgerMode: PrivacyLedger.Mechanism.Mode {
        switch mode {
        case .local: .local
        case .distributed: .distributed
        }
    }

    public var startMechanism: PrivacyLedger.Mechanism? {
        clustering.histogramNoiseMultiplier.map { .init(kind: .discreteGaussian, noiseMultiplier: $0, mode: ledgerMode) }
    }

    public var clusteringMechanism: PrivacyLedger.Mechanism {
        // Local rounds are discrete Gaussians on a fixed-point grid; distributed rounds sums of them.
        .init(kind: mode == .local ? .discreteGaussian : .gaussian, noiseMultiplier: clustering.noiseMultiplier, mode: ledgerMode)
    }

    public var recommendationMechanism: PrivacyLedger.Mechanism? {
        recommendationNoiseMultiplier.map { .init(kind: .discreteGaussian, noiseMultiplier: $0, mode: ledgerMode) }
    }

    /// Everything the run may release, for checking budgets before it starts.
    public var mechanisms: [PrivacyLedger.Mechanism] {
        (startMechanism.map { [$0] } ?? []) + Array(repeating: clusteringMechanism, count: clustering.rounds)
            + (recommendationMechanism.map { [$0] } ?? [])
    }
}

public enum CoordinatorError: Error, Equatable, CustomStringConvertible {
    case invalidParameters(String)
    case runInProgress(String)
    case noRun
    case unknownRun(String)
    case budget(String)
    case embedder(String)
    case state(String)
    /// A configuration file or flag the daemon cannot use.
    case configuration(String)

    public var description: String {
        switch self {
        case .invalidParameters(let why): "invalid run parameters: \(why)"
        case .runInProgress(let id): "run \(id) is still in progress; stop it first"
        case .noRun: "no run in progress"
        case .unknownRun(let id): "no run \(id) (fedseg run list names them)"
        case .budget(let why): "privacy budget: \(why)"
        case .embedder(let why): "embedder: \(why)"
        case .state(let why): "state: \(why)"
        case .configuration(let why): why
        }
    }
}
