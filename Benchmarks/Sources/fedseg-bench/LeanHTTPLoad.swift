import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A load generator that costs the machine as little as it can, so that a loopback figure
/// measures the server: keep-alive HTTP/1.1 connections on one event-loop thread, each sending
/// the next prepared request as soon as the answer to its last one has arrived (what `wrk` does,
/// without a second program). async-http-client, the nodes' transport, spends about as much CPU
/// per request as the coordinator on this path; the `coordinator` suite reports both.
enum LeanHTTPLoad {
    struct Result {
        var seconds: Double
        /// HTTP status → count.
        var statuses: [Int: Int]
    }

    /// POSTs `bodies[i]` to `path` on `port`, each once, over `connections` connections.
    static func post(port: Int, path: String, bodies: [[UInt8]], connections: Int) async throws -> Result {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let requests = bodies.map { ByteBuffer(bytes: $0) }
        let next = NIOLockedValueBox(0)
        let statuses = NIOLockedValueBox([Int: Int]())
        let take: @Sendable () -> ByteBuffer? = {
            next.withLockedValue { index in
                guard index < requests.count else { return nil }
                defer { index += 1 }
                return requests[index]
            }
        }
        let record: @Sendable (Int) -> Void = { status in statuses.withLockedValue { $0[status, default: 0] += 1 } }
        let clock = ContinuousClock()
        let start = clock.now
        do {
            var finished: [EventLoopFuture<Void>] = []
            for _ in 0..<min(connections, bodies.count) {
                let done = group.next().makePromise(of: Void.self)
                _ = try await ClientBootstrap(group: group)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHTTPClientHandlers()
                            try channel.pipeline.syncOperations.addHandler(Sender(path: path, take: take, record: record, done: done))
                        }
                    }
                    .connect(host: "127.0.0.1", port: port).get()
                finished.append(done.futureResult)
            }
            for future in finished { try await future.get() }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        let elapsed = clock.now - start
        try await group.shutdownGracefully()
        return Result(
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
            statuses: statuses.withLockedValue { $0 }
        )
    }

    /// One connection: a request, its whole answer, the next request.
    final class Sender: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundOut = HTTPClientRequestPart

        let head: HTTPRequestHead
        let take: @Sendable () -> ByteBuffer?
        let record: @Sendable (Int) -> Void
        let done: EventLoopPromise<Void>
        var failed = false

        init(path: String, take: @escaping @Sendable () -> ByteBuffer?, record: @escaping @Sendable (Int) -> Void, done: EventLoopPromise<Void>) {
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
            head.headers.add(name: "Host", value: "127.0.0.1")
            head.headers.add(name: "Content-Type", value: "application/octet-stream")
            self.head = head
            self.take = take
            self.record = record
            self.done = done
        }

        func channelActive(context: ChannelHandlerContext) {
            sendNext(context: context)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let response): record(Int(response.status.code))
            case .body: break
            case .end: sendNext(context: context)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !failed { done.succeed() }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if !failed { done.fail(error) }
            failed = true
            context.close(promise: nil)
        }

        func sendNext(context: ChannelHandlerContext) {
            guard let body = take() else {
                context.close(promise: nil)
                return
            }
            var head = self.head
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
