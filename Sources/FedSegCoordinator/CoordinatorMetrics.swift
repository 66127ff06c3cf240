import CoreMetrics
import Foundation
import Prometheus

/// What the coordinator counts, through swift-metrics into its own Prometheus registry (no
/// process-global bootstrap, so several coordinators can live in one test process).
public final class CoordinatorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let roundsCommitted: CoreMetrics.Counter
    let roundsAbandoned: CoreMetrics.Counter
    let updatesAccepted: CoreMetrics.Counter
    let declines: CoreMetrics.Counter
    let roundSeconds: CoreMetrics.Timer
    let participants: CoreMetrics.Gauge
    let epsilonSpent: CoreMetrics.Gauge

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300].map { .seconds($0) }
        self.factory = factory
        roundsCommitted = CoreMetrics.Counter(label: "fedseg_rounds_committed_total", factory: factory)
        roundsAbandoned = CoreMetrics.Counter(label: "fedseg_rounds_abandoned_total", factory: factory)
        updatesAccepted = CoreMetrics.Counter(label: "fedseg_updates_accepted_total", factory: factory)
        declines = CoreMetrics.Counter(label: "fedseg_declines_total", factory: factory)
        roundSeconds = CoreMetrics.Timer(label: "fedseg_round_duration_seconds", factory: factory)
        participants = CoreMetrics.Gauge(label: "fedseg_round_participants", factory: factory)
        epsilonSpent = CoreMetrics.Gauge(label: "fedseg_epsilon_spent", factory: factory)
    }

    func rejected(_ reason: String) {
        CoreMetrics.Counter(label: "fedseg_updates_rejected_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// The Prometheus text exposition.
    public func exposition() -> String { registry.emitToString() }
}
