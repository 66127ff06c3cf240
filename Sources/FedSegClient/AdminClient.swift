import AsyncHTTPClient
import FedSegPrivacy
import FedSegProtocol
import Foundation
import NIOCore
import NIOHTTP1
import SwiftProtobuf

/// The coordinator's admin API (JSON, bearer token) for `fedseg` and `client-sim`.
public struct AdminClient: Sendable {
    public let baseURL: String
    let token: String
    let client: HTTPClient

    public init(baseURL: String, token: String, client: HTTPClient) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.client = client
    }

    public struct Failure: Error, CustomStringConvertible {
        public var status: Int
        public var message: String
        /// The admin API's error (docs/PROTOCOL.md, "Admin errors"), when the body was one.
        public var error: AdminError?
        public var description: String { "coordinator answered \(status): \(message)" }
    }

    func call(_ method: HTTPMethod, _ path: String, json body: Data? = nil) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let (response, bytes) = try await exchange(request, timeout: .seconds(600), limit: 256 << 20)
        guard (200..<300).contains(Int(response.status.code)) else {
            let error = try? JSONDecoder().decode(AdminError.Body.self, from: Data(bytes)).error
            let message = error?.message ?? (bytes.isEmpty ? "HTTP \(response.status.code)" : String(decoding: bytes.prefix(500), as: UTF8.self))
            throw Failure(status: Int(response.status.code), message: message, error: error)
        }
        return bytes
    }

    func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(bytes))
    }

    public func status() async throws -> AdminStatus { try decode(AdminStatus.self, try await call(.GET, "/admin/v1/status")) }

    public func createTokens(count: Int, lifetimeSeconds: Double = 3600) async throws -> [String] {
        let body = try JSONSerialization.data(withJSONObject: ["count": count, "lifetime_seconds": lifetimeSeconds])
        return try decode([String: [String]].self, try await call(.POST, "/admin/v1/clients/tokens", json: body))["tokens"] ?? []
    }

    public func clients() async throws -> [ClientEntry] { try decode([ClientEntry].self, try await call(.GET, "/admin/v1/clients")) }

    public func revoke(_ id: String) async throws { _ = try await call(.POST, "/admin/v1/clients/\(id)/revoke") }

    public func startRun(_ parameters: RunParameters) async throws -> RunSummary {
        try decode(RunSummary.self, try await call(.POST, "/admin/v1/runs", json: try JSONEncoder().encode(parameters)))
    }

    public func currentRun() async throws -> RunSummary { try decode(RunSummary.self, try await call(.GET, "/admin/v1/runs/current")) }

    public func run(_ id: String) async throws -> RunSummary { try decode(RunSummary.self, try await call(.GET, "/admin/v1/runs/\(id)")) }

    public func stopRun() async throws -> RunSummary { try decode(RunSummary.self, try await call(.POST, "/admin/v1/runs/current/stop")) }

    public func segments() async throws -> SegmentsReport { try decode(SegmentsReport.self, try await call(.GET, "/admin/v1/segments")) }

    /// Changes every user's lifetime budget (recorded in the ledger with `reason`).
    public func setBudget(_ request: BudgetRequest) async throws -> BudgetRequest {
        try decode(BudgetRequest.self, try await call(.POST, "/admin/v1/privacy/budget", json: try JSONEncoder().encode(request)))
    }

    public func ledger() async throws -> LedgerAudit { try decode(LedgerAudit.self, try await call(.GET, "/admin/v1/ledger")) }

    /// The Prometheus text of `/metrics` (not behind the token).
    public func metricsText() async throws -> String {
        String(decoding: try await exchange(HTTPClientRequest(url: baseURL + "/metrics"), timeout: .seconds(30), limit: 64 << 20).body, as: UTF8.self)
    }

    /// One request and its whole body; a request that gets no answer is `TransportError.network`,
    /// as on the client API, so both are retried and explained the same way.
    func exchange(_ request: HTTPClientRequest, timeout: TimeAmount, limit: Int) async throws -> (response: HTTPClientResponse, body: [UInt8]) {
        do {
            let response = try await client.execute(request, timeout: timeout)
            var buffer = try await response.body.collect(upTo: limit)
            return (response, buffer.readBytes(length: buffer.readableBytes) ?? [])
        } catch {
            throw TransportError.network("\(request.method) \(request.url): \(error)")
        }
    }

    /// `fedseg_updates_rejected_total` by reason, read from the metrics text.
    public static func rejectedUpdates(fromMetrics text: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("fedseg_updates_rejected_total{") {
            guard let open = line.range(of: "reason=\""), let close = line[open.upperBound...].firstIndex(of: "\""),
                let value = line.split(separator: " ").last.flatMap({ Double($0) })
            else { continue }
            counts[String(line[open.upperBound..<close]), default: 0] += Int(value)
        }
        return counts
    }
}
