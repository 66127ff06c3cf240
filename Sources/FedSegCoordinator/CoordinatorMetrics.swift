import FedSegPrivacy
import Foundation
import HTTPTypes
import Hummingbird
import Prometheus
import Synchronization

/// What the coordinator counts, in its own Prometheus registry (no process-global bootstrap, so
/// several coordinators can live in one test process). Every metric carries HELP and TYPE lines;
/// counters count since the process started, the privacy gauges are lifetime totals read from the
/// ledger.
public final class CoordinatorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let roundsCommitted: Prometheus.Counter
    let roundsAbandoned: Prometheus.Counter
    let updatesAccepted: Prometheus.Counter
    let declines: Prometheus.Counter
    let roundSeconds: DurationHistogram
    let participants: Prometheus.Gauge
    /// Rejected client messages by reason since the process started, for the dashboard (the
    /// Prometheus counters hold the same numbers).
    private let rejections = Mutex<[String: Int]>([:])

    static let rejectedHelp = "Client messages refused, by reason (the error codes of docs/PROTOCOL.md), since the process started"
    static let epsilonSpentHelp = "Lifetime epsilon spent by a privacy population (all-users, or one run), recomputed from the ledger at its delta"
    static let epsilonBudgetHelp = "Lifetime epsilon budget of a privacy population, at its delta"
    static let requestsHelp = "HTTP requests answered, by method, route pattern and status code"
    static let requestSecondsHelp = "Seconds to answer an HTTP request, by method and route pattern"
    static let requestBuckets: [Duration] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5].map { .seconds($0) }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fedseg", metricName: metric, unitName: unit, helpText: help)
    }

    public init() {
        registry = PrometheusCollectorRegistry()
        roundsCommitted = registry.makeCounter(descriptor: Self.name("rounds_committed", "total", "Rounds aggregated and committed since the process started"))
        roundsAbandoned = registry.makeCounter(descriptor: Self.name("rounds_abandoned", "total", "Rounds abandoned (too few participants by the deadline) since the process started"))
        updatesAccepted = registry.makeCounter(descriptor: Self.name("updates_accepted", "total", "Client updates recorded (clustering, start histogram, recommendation, masked inputs) since the process started"))
        declines = registry.makeCounter(descriptor: Self.name("declines", "total", "Clients that declined a round (budget or sampling) since the process started"))
        roundSeconds = registry.makeDurationHistogram(
            descriptor: Self.name("round_duration", "seconds", "Seconds from a round's opening to its commit"),
            buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300].map { .seconds($0) }
        )
        participants = registry.makeGauge(descriptor: Self.name("round_participants", "", "Updates the last committed round aggregated"))
    }

    func rejected(_ reason: String) {
        registry.makeCounter(descriptor: Self.name("updates_rejected", "total", Self.rejectedHelp), labels: [("reason", reason)]).increment()
        rejections.withLock { $0[reason, default: 0] += 1 }
    }

    /// Rejections by reason since the process started.
    public func rejectionCounts() -> [String: Int] { rejections.withLock { $0 } }

    /// Sets the lifetime ε gauges of the populations with a budget (all of them when
    /// `populations` is nil), labelled by population and δ (the two figures of an audit differ
    /// because their δ does).
    func recordPrivacy(_ ledger: PrivacyLedger, populations: Set<String>? = nil) throws {
        for budget in try ledger.budgets() where populations?.contains(budget.population) ?? true {
            let labels = [("population", budget.population), ("delta", "\(budget.delta)")]
            registry.makeGauge(descriptor: Self.name("epsilon_spent", "", Self.epsilonSpentHelp), labels: labels).set(try ledger.spent(by: budget.population))
            registry.makeGauge(descriptor: Self.name("epsilon_budget", "", Self.epsilonBudgetHelp), labels: labels).set(budget.epsilon)
        }
    }

    func recordRequest(method: HTTPRequest.Method, route: String, status: HTTPResponse.Status, seconds: Double) {
        registry.makeCounter(
            descriptor: Self.name("http_requests", "total", Self.requestsHelp), labels: [("method", method.rawValue), ("route", route), ("status", "\(status.code)")]
        ).increment()
        registry.makeDurationHistogram(
            descriptor: Self.name("http_request_duration", "seconds", Self.requestSecondsHelp), labels: [("method", method.rawValue), ("route", route)],
            buckets: Self.requestBuckets
        ).record(.nanoseconds(Int64(seconds * 1e9)))
    }

    /// The Prometheus text exposition.
    public func exposition() -> String { registry.emitToString() }
}

/// Counts every request by its route pattern (`/v1/rounds/{round}/updates`, not each round's
/// path, so the label set stays small) and status, and times it.
struct RequestMetrics<Context: RequestContext>: RouterMiddleware {
    let metrics: CoordinatorMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        func record(_ status: HTTPResponse.Status) {
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            // Hummingbird names the not-found responder's endpoint "NotFound".
            let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
            metrics.recordRequest(method: request.method, route: route, status: status, seconds: seconds)
        }
        do {
            let response = try await next(request, context)
            record(response.status)
            return response
        } catch let error as any HTTPResponseError {
            record(error.status)
            throw error
        } catch {
            record(.internalServerError)
            throw error
        }
    }
}
