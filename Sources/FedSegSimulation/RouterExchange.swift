import FedSegClient
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization

/// Requests handed straight to the coordinator application's router in this process: the same
/// route handlers, checks and state machine as over HTTP, without sockets, HTTP parsing or an
/// HTTP client. What `client-sim simulate --transport memory` (and `fedseg-bench scale`) runs
/// thousands of simulated nodes over, so that the figure measures the coordinator and the nodes
/// rather than loopback TCP; `--transport http` keeps the sockets.
public struct RouterExchange<Responder: HTTPResponder>: CoordinatorExchange
where Responder.Context: RequestContext & InitializableFromSource<ApplicationRequestContextSource> {
    let responder: Responder
    let logger: Logger
    /// Handlers never touch the channel; a request context must name one, as in Hummingbird's
    /// own router tests.
    let channel: NIOAsyncTestingChannel

    public init<App: ApplicationProtocol>(app: App, logger: Logger) async throws where App.Responder == Responder {
        responder = try await app.responder
        self.logger = logger
        channel = NIOAsyncTestingChannel()
    }

    public func exchange(_ method: NIOHTTP1.HTTPMethod, _ path: String, body: [UInt8]?) async throws -> (status: Int, body: [UInt8]) {
        var headers = HTTPFields()
        if let body {
            headers[.contentType] = "application/x-protobuf"
            headers[.contentLength] = String(body.count)
        }
        let request = Request(
            head: .init(method: .init(method.rawValue) ?? .get, scheme: "http", authority: "in-process", path: path, headerFields: headers),
            body: RequestBody(buffer: ByteBuffer(bytes: body ?? []))
        )
        let context = Responder.Context(source: ApplicationRequestContextSource(channel: channel, logger: logger))
        let response: Response
        do {
            response = try await responder.respond(to: request, context: context)
        } catch let error as any HTTPResponseError {
            // What the server answers for an error a handler threw.
            let collector = BodyCollector()
            try await error.response(from: request, context: context).body.write(collector)
            return (Int(error.status.code), collector.bytes)
        } catch {
            return (500, [])
        }
        let collector = BodyCollector()
        try await response.body.write(collector)
        return (Int(response.status.code), collector.bytes)
    }
}

/// Collects a response body (a class: `ResponseBody.write` consumes its writer).
final class BodyCollector: ResponseBodyWriter, Sendable {
    private let collected = Mutex<[UInt8]>([])

    var bytes: [UInt8] { collected.withLock { $0 } }

    func write(_ buffer: ByteBuffer) async throws {
        collected.withLock { $0.append(contentsOf: buffer.readableBytesView) }
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
