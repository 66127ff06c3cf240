import AsyncHTTPClient
import FedSegProtocol
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import SwiftProtobuf

/// How a client reaches its coordinator. The HTTP implementation is the product; tests and the
/// simulator may wrap it (to drop, delay or corrupt messages).
public protocol CoordinatorTransport: Sendable {
    func enroll(_ request: Fedseg_V1_EnrollRequest) async throws -> Fedseg_V1_EnrollResponse
    /// The signed plan of the open round, or nil when none is open.
    func currentPlan() async throws -> [UInt8]?
    func submit(round: UInt64, envelope: [UInt8]) async throws -> SubmitResult
    /// The latest signed segment model, or nil when none is published.
    func latestModel() async throws -> [UInt8]?
    /// Distributed rounds: the signed view of the open secure-aggregation stage for `client`
    /// (the public progress when nil), or nil when the round is not open.
    func secAggStage(round: UInt64, client: String?) async throws -> [UInt8]?
}

extension CoordinatorTransport {
    public func secAggStage(round: UInt64, client: String?) async throws -> [UInt8]? {
        throw TransportError.malformedResponse("this transport does not carry secure aggregation")
    }
}

public enum SubmitResult: Sendable, Equatable {
    case accepted
    /// The coordinator refused the message, with its code and message.
    case rejected(Fedseg_V1_ErrorResponse.Code, String)
}

public enum TransportError: Error, CustomStringConvertible {
    /// The request did not get an answer (connection refused, reset, timed out): worth retrying.
    case network(String)
    /// The coordinator answered with an error that retrying will not change.
    case refused(status: Int, code: Fedseg_V1_ErrorResponse.Code, message: String)
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .network(let why): "network: \(why)"
        case .refused(let status, let code, let message): "coordinator refused (\(status), \(code)): \(message)"
        case .malformedResponse(let why): "malformed response: \(why)"
        }
    }

    public var isRetryable: Bool {
        if case .network = self { return true }
        if case .refused(let status, _, _) = self { return status >= 500 }
        return false
    }
}

/// One request to the coordinator's HTTP API and its answer (status and body), however it
/// travels: `HTTPCoordinatorTransport` sends it over the network; an in-process simulator can hand
/// it straight to the coordinator's router (`RouterExchange`), the same handlers without sockets.
public protocol CoordinatorExchange: Sendable {
    /// `path` starts with `/` and may carry a query.
    func exchange(_ method: HTTPMethod, _ path: String, body: [UInt8]?) async throws -> (status: Int, body: [UInt8])
}

/// The coordinator's HTTP API (docs/PROTOCOL.md): over async-http-client, or any exchange.
public final class HTTPCoordinatorTransport: CoordinatorTransport {
    public let baseURL: String
    private enum Route: Sendable {
        case network(HTTPClient)
        case exchange(any CoordinatorExchange)
    }
    private let route: Route
    let timeout: TimeAmount

    /// `client` is shared by all nodes of a process (one connection pool).
    public init(baseURL: String, client: HTTPClient, timeout: TimeAmount = .seconds(30)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.route = .network(client)
        self.timeout = timeout
    }

    /// Requests go to `exchange` (the answers are read exactly as over HTTP).
    public init(exchange: any CoordinatorExchange, name: String = "in-process") {
        self.baseURL = name
        self.route = .exchange(exchange)
        self.timeout = .seconds(30)
    }

    /// A pool sized for many concurrent simulated clients.
    /// `caCertificate`: a PEM file of the CA (or the coordinator's own self-signed certificate,
    /// pinned) that an `https://` coordinator must present; nil trusts the system's roots.
    /// `readTimeoutSeconds`: how long an answer may take (admin reads that embed seed phrases take longer).
    public static func makeHTTPClient(connectionsPerHost: Int = 64, caCertificate: String? = nil, readTimeoutSeconds: Int64 = 60) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(readTimeoutSeconds))
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caCertificate { tls.trustRoots = .file(caCertificate) }
        tls.minimumTLSVersion = .tlsv12
        configuration.tlsConfiguration = tls
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// A transport failure as a person can act on it: what could not be reached and what to check.
    public static func explain(_ error: any Error, url: String) -> String {
        let text = String(describing: error)
        if text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connectionRefused") || text.contains("ECONNREFUSED") {
            return "cannot connect to the coordinator at \(url): is `coordinator serve` running there (and on that port)?"
        }
        if text.contains("NIOSSL") || text.contains("handshake") || text.contains("certificate") || text.contains("TLS") {
            return "the TLS connection to \(url) failed: give the coordinator's CA or certificate with --ca-cert, and use the host name the certificate names"
        }
        if text.contains("remoteConnectionClosed") || text.contains("connectionReset") || text.contains("readTimeout") {
            return "the coordinator at \(url) closed the connection or did not answer in time; it may be restarting: try again"
        }
        if text.contains("invalidURL") || text.contains("emptyScheme") || text.contains("unsupportedScheme") || text.contains("emptyHost") {
            return "\(url) is not a coordinator URL: write it as http://HOST:PORT or https://HOST:PORT"
        }
        return "the coordinator at \(url) could not be reached (\(type(of: error)))"
    }

    func exchange(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> (status: Int, body: [UInt8]) {
        let client: HTTPClient
        switch route {
        case .network(let network): client = network
        case .exchange(let exchange): return try await exchange.exchange(method, path, body: body)
        }
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/x-protobuf")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await client.execute(request, timeout: timeout)
            var buffer = try await response.body.collect(upTo: 256 << 20)
            return (Int(response.status.code), buffer.readBytes(length: buffer.readableBytes) ?? [])
        } catch {
            throw TransportError.network("\(method) \(path): \(error)")
        }
    }

    static func errorResponse(_ status: Int, _ body: [UInt8]) -> TransportError {
        let error = (try? Fedseg_V1_ErrorResponse(serializedBytes: body)) ?? Fedseg_V1_ErrorResponse()
        return .refused(status: status, code: error.code, message: error.message.isEmpty ? "HTTP \(status)" : error.message)
    }

    public func enroll(_ request: Fedseg_V1_EnrollRequest) async throws -> Fedseg_V1_EnrollResponse {
        let (status, body) = try await exchange(.POST, "/v1/enroll", body: try request.serializedBytes())
        guard status == 200 else { throw Self.errorResponse(status, body) }
        do {
            return try Fedseg_V1_EnrollResponse(serializedBytes: body)
        } catch {
            throw TransportError.malformedResponse("enroll response: \(error)")
        }
    }

    public func currentPlan() async throws -> [UInt8]? { try await currentPlan(client: nil) }

    /// The open round's plan; naming `client` tells the coordinator the node is there, so rounds
    /// wait for it (docs/PROTOCOL.md, "Liveness").
    public func currentPlan(client: String?) async throws -> [UInt8]? {
        let (status, body) = try await exchange(.GET, "/v1/rounds/current" + (client.map { "?client=" + Self.queryEscaped($0) } ?? ""))
        if status == 404 { return nil }
        guard status == 200 else { throw Self.errorResponse(status, body) }
        return body
    }

    public func submit(round: UInt64, envelope: [UInt8]) async throws -> SubmitResult {
        let (status, body) = try await exchange(.POST, "/v1/rounds/\(round)/updates", body: envelope)
        if status == 202 || status == 200 { return .accepted }
        let error = Self.errorResponse(status, body)
        if error.isRetryable { throw error }
        guard case .refused(_, let code, let message) = error else { throw error }
        return .rejected(code, message)
    }

    public func secAggStage(round: UInt64, client: String?) async throws -> [UInt8]? {
        var path = "/v1/rounds/\(round)/secagg"
        if let client {
            path += "?client=" + Self.queryEscaped(client)
        }
        let (status, body) = try await exchange(.GET, path)
        if status == 404 { return nil }
        guard status == 200 else { throw Self.errorResponse(status, body) }
        return body
    }

    static func queryEscaped(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? value
    }

    public func latestModel() async throws -> [UInt8]? {
        let (status, body) = try await exchange(.GET, "/v1/models/latest")
        if status == 404 { return nil }
        guard status == 200 else { throw Self.errorResponse(status, body) }
        return body
    }
}
