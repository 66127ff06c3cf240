import FedSegClient
import FedSegCoordinator
import Foundation
import Logging
import ServiceLifecycle

/// The coordinator daemon's own application (`CoordinatorDaemon.buildCoordinator`), run inside
/// this process on a free loopback port for as long as `body` runs: `client-sim simulate` is
/// `client-sim run` against it, so what the simulator measures is what operators deploy.
public enum InProcessCoordinator {
    /// What `body` is handed: where the coordinator listens, its admin token, and the same
    /// application's router for requests that skip the sockets.
    public struct Handle: Sendable {
        public var url: String
        public var adminToken: String
        public var exchange: any CoordinatorExchange
    }

    /// Initialises `stateDirectory` if it is new (recording the lifetime budget), serves it on 127.0.0.1, and hands `body` the
    /// base URL, the admin token and the in-process exchange; stops the server gracefully afterwards, error or not.
    public static func with<T: Sendable>(
        stateDirectory: URL, totalEpsilon: Double, totalDelta: Double, embeddingCache: URL?, logLevel: Logger.Level = .warning,
        _ body: @Sendable (Handle) async throws -> T
    ) async throws -> T {
        let keyPath = stateDirectory.appendingPathComponent(CoordinatorDaemon.keyFile).path
        if !FileManager.default.fileExists(atPath: keyPath) {
            _ = try CoordinatorDaemon.initialize(stateDirectory: stateDirectory.path, totalEpsilon: totalEpsilon, totalDelta: totalDelta)
        }
        var configuration = CoordinatorConfiguration()
        configuration.stateDirectory = stateDirectory.path
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.embeddingCache = embeddingCache?.path
        var logger = Logger(label: "fedseg.coordinator")
        logger.logLevel = logLevel
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let app = try await CoordinatorDaemon.buildCoordinator(configuration, logger: logger, onListening: { port in
            portSink.yield(port)
            portSink.finish()
        })
        let exchange = try await RouterExchange(app: app, logger: logger)
        let token = try CoordinatorDaemon.readAdminToken(path: stateDirectory.appendingPathComponent(CoordinatorDaemon.adminTokenFile).path)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask {
                // A server that stops before listening ends the wait for its port too.
                defer { portSink.finish() }
                try await group.run()
                return nil
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else {
                try await tasks.waitForAll()
                throw SimulationError.runFailed("the in-process coordinator stopped before it listened")
            }
            let result: T
            do {
                result = try await body(Handle(url: "http://127.0.0.1:\(port)", adminToken: token, exchange: exchange))
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }
}
