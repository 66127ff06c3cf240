import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL

/// What one connection may cost the daemon: how many may be open at once, how long a request's
/// head and body may take to arrive, and that a response saying `Connection: close` (413 after
/// an oversized declaration) really ends the connection. Slow or abandoned connections are closed
/// instead of held forever.
public struct ConnectionLimits: Sendable, Equatable {
    /// Open connections at once; one more is closed as soon as it is accepted.
    public var maximumConnections = 1024
    /// A connection that sends no complete request head (or is idle between requests) this long is closed.
    public var headerTimeoutSeconds = 30.0
    /// A request body that has not fully arrived this long after its head is abandoned and the connection closed.
    public var bodyTimeoutSeconds = 120.0

    public init() {}

    func validate() throws {
        guard (1...1_000_000).contains(maximumConnections) else { throw CoordinatorError.configuration("limits.max_connections must be in 1...1000000") }
        guard headerTimeoutSeconds > 0, headerTimeoutSeconds <= 3600 else {
            throw CoordinatorError.configuration("limits.header_timeout_seconds must be in (0, 3600]")
        }
        guard bodyTimeoutSeconds > 0, bodyTimeoutSeconds <= 3600 else {
            throw CoordinatorError.configuration("limits.body_timeout_seconds must be in (0, 3600]")
        }
    }
}

/// Open connections, shared by every connection's `ConnectionGuard`.
final class ConnectionCount: @unchecked Sendable {
    private let lock = NSLock()
    private var open = 0

    var current: Int { lock.withLock { open } }

    /// Takes a slot, or says there is none.
    func take(limit: Int) -> Bool {
        lock.withLock {
            guard open < limit else { return false }
            open += 1
            return true
        }
    }

    func give() { lock.withLock { open -= 1 } }
}

/// One per connection, between the HTTP codec and Hummingbird's request handling.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limits: ConnectionLimits
    let count: ConnectionCount
    let logger: Logger
    private var holdsSlot = false
    private var bodyDeadline: Scheduled<Void>?
    private var closeAfterResponse = false

    init(limits: ConnectionLimits, count: ConnectionCount, logger: Logger) {
        self.limits = limits
        self.count = count
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard count.take(limit: limits.maximumConnections) else {
            logger.warning("connection refused: at the connection limit", metadata: ["limit": "\(limits.maximumConnections)", "remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            context.close(promise: nil)
            return
        }
        holdsSlot = true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
        if holdsSlot {
            holdsSlot = false
            count.give()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            bodyDeadline?.cancel()
            let seconds = limits.bodyTimeoutSeconds
            let channel = context.channel
            bodyDeadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) { [logger] in
                logger.notice("connection closed: the request body did not arrive in time", metadata: ["body_timeout_seconds": "\(seconds)"])
                channel.close(promise: nil)
            }
        case .body: break
        case .end:
            bodyDeadline?.cancel()
            bodyDeadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard closeAfterResponse else { return context.write(data, promise: promise) }
            // The response is complete: flush it and end the connection, whatever is still unread.
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.writeAndFlush(data, promise: written)
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// TLS for `coordinator serve --tls-cert --tls-key` (PEM files).
public struct TLSFiles: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String

    public init(certificateChain: String, privateKey: String) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }

    func configuration() throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateChain)
        } catch {
            throw CoordinatorError.configuration("--tls-cert \(certificateChain): not a readable PEM certificate chain")
        }
        guard !chain.isEmpty else { throw CoordinatorError.configuration("--tls-cert \(certificateChain) holds no certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        } catch {
            throw CoordinatorError.configuration("--tls-key \(privateKey): not a readable PEM private key (an encrypted key is not supported)")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }
}

enum CoordinatorServer {
    /// HTTP/1.1 with the connection limits, over TLS when it is configured.
    static func builder(limits: ConnectionLimits, tls: TLSFiles?, logger: Logger) throws -> HTTPServerBuilder {
        let count = ConnectionCount()
        let http = HTTPServerBuilder.http1(configuration: .init(
            additionalChannelHandlers: [ConnectionGuard(limits: limits, count: count, logger: logger)],
            idleTimeout: .nanoseconds(Int64(limits.headerTimeoutSeconds * 1e9))
        ))
        guard let tls else { return http }
        return try .tls(http, tlsConfiguration: try tls.configuration())
    }

    /// Whether `host` only listens on this machine.
    static func isLoopback(_ host: String) -> Bool {
        ["127.0.0.1", "::1", "localhost", "[::1]"].contains(host.lowercased()) || host.hasPrefix("127.")
    }
}
