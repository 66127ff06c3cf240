import Foundation
import Hummingbird
import Logging

/// `/healthz` and `/metrics` of a node, on a local port (`--http-port`), for the tenant's own
/// monitoring. It serves nothing about users.
public enum NodeHTTP {
    public static func application(
        host: String, port: Int, metrics: NodeMetrics, logger: Logger, onListening: (@Sendable (Int) async -> Void)? = nil
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("healthz") { _, _ in "ok\n" }
        router.get("metrics") { _, _ in metrics.exposition() }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "fedseg-node"),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                logger.notice("health and metrics", metadata: ["address": "http://\(host):\(bound)"])
                await onListening?(bound)
            },
            logger: logger
        )
    }
}
