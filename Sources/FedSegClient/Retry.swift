import Foundation

/// Retries what a coordinator restart interrupts: network errors and 5xx answers, with
/// exponential backoff (0.2 s doubling to 5 s) and full jitter, until `seconds` have passed.
/// A refusal (4xx) is final and thrown at once.
public enum Retry {
    public static func untilDeadline<T: Sendable>(
        seconds: Double, first: Double = 0.2, longest: Double = 5, _ body: @Sendable () async throws -> T
    ) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        var delay = first
        while true {
            do {
                return try await body()
            } catch {
                guard isRetryable(error), Date() < deadline else { throw error }
                let wait = min(Double.random(in: 0...delay), max(0, deadline.timeIntervalSinceNow))
                try await Task.sleep(for: .seconds(wait))
                delay = min(delay * 2, longest)
            }
        }
    }

    /// Network failures and answers ≥ 500 (both transports say which); not refusals,
    /// cancellation or local errors.
    public static func isRetryable(_ error: any Error) -> Bool {
        if let transport = error as? TransportError { return transport.isRetryable }
        if let admin = error as? AdminClient.Failure { return admin.status >= 500 }
        return false
    }
}
