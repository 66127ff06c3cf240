import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `coordinator init` and `coordinator serve`: the state directory and the long-running process.
public enum CoordinatorDaemon {
    public static let keyFile = "coordinator.key"
    public static let adminTokenFile = "admin.token"

    public struct Initialized: Sendable {
        public var stateDirectory: String
        public var signingKey: String
        public var adminTokenFile: String
    }

    /// Creates a state directory (0700) with the coordinator's keys (0600), an admin token file
    /// (0600) and the database, whose ledger records every user's lifetime budget. Refuses a
    /// directory that already holds keys.
    public static func initialize(
        stateDirectory: String, totalEpsilon: Double = Coordinator.defaultTotalEpsilon, totalDelta: Double = Coordinator.defaultTotalDelta
    ) throws -> Initialized {
        let fm = FileManager.default
        let directory = URL(fileURLWithPath: stateDirectory, isDirectory: true)
        let keyPath = directory.appendingPathComponent(keyFile).path
        guard !fm.fileExists(atPath: keyPath) else { throw CoordinatorError.state("\(stateDirectory) is already initialised (\(keyFile) exists)") }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let identity = NodeIdentity()
        try identity.save(to: keyPath)
        var secret = [UInt8](repeating: 0, count: 32)
        secret.withUnsafeMutableBytes { SecureRandom.fill($0) }
        let tokenPath = directory.appendingPathComponent(adminTokenFile).path
        guard fm.createFile(atPath: tokenPath, contents: Data((secret.hexString + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CoordinatorError.state("cannot write \(tokenPath)")
        }
        let store = try CoordinatorStore(path: directory.appendingPathComponent(CoordinatorStore.fileName).path)
        do {
            try store.ledger.setBudget(.init(population: Coordinator.allUsers, epsilon: totalEpsilon, delta: totalDelta), reason: "coordinator init")
        } catch let failure as PrivacyLedger.Failure {
            throw CoordinatorError.budget(failure.description)
        }
        return Initialized(stateDirectory: stateDirectory, signingKey: identity.signing.publicKey.hex, adminTokenFile: tokenPath)
    }

    /// The admin token as written by `initialize`, refusing a file others can read.
    public static func readAdminToken(path: String) throws -> String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw CoordinatorError.state("\(path) is readable by group or others (mode \(String(mode, radix: 8))); chmod 600 it")
        }
        let token = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw CoordinatorError.state("\(path) is empty") }
        return token
    }

    /// Why the daemon could not serve, as an operator can act on it (not the socket library's text).
    public static func explainServeFailure(_ error: any Error, _ configuration: CoordinatorConfiguration) -> String {
        let text = String(describing: error)
        let address = "\(configuration.host):\(configuration.port)"
        if text.contains("Address already in use") || text.contains("EADDRINUSE") {
            return "cannot listen on \(address): the address is in use (another coordinator, or another program); stop it or pick another --port"
        }
        if text.contains("Permission denied") || text.contains("EACCES") {
            return "cannot listen on \(address): permission denied (ports below 1024 need privileges); pick another --port"
        }
        if text.contains("Cannot assign requested address") || text.contains("EADDRNOTAVAIL") || text.contains("connectFailed") || text.contains("unknown host") {
            return "cannot listen on \(address): no interface of this machine has that address; check --host"
        }
        if let storage = StorageFailure(error) { return storage.description }
        return "stopped on an unexpected error (\(type(of: error))): \(text.prefix(300))"
    }

    /// Runs until SIGTERM or SIGINT, then stops accepting, finishes in-flight requests and exits.
    public static func serve(_ configuration: CoordinatorConfiguration, logger: Logger) async throws {
        let app = try await buildCoordinator(configuration, logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        logger.notice("stopped")
    }

    /// The daemon as a Hummingbird application: the state directory opened, the open run
    /// resumed, the routes and the round ticker. `serve` runs it; `client-sim simulate` runs the
    /// same application in its own process.
    public static func buildCoordinator(
        _ configuration: CoordinatorConfiguration, logger: Logger, onListening: (@Sendable (Int) async -> Void)? = nil
    ) async throws -> Application<RouterResponder<BasicRequestContext>> {
        try configuration.validate()
        let directory = URL(fileURLWithPath: configuration.stateDirectory, isDirectory: true)
        let keyPath = directory.appendingPathComponent(keyFile).path
        try requireInitialised(configuration.stateDirectory)
        // One coordinator per state directory, for as long as the application lives.
        let lock = try StateLock.coordinator(stateDirectory: configuration.stateDirectory, purpose: "coordinator serve")
        let keys = CoordinatorKeys(identity: try NodeIdentity.load(from: keyPath))
        let token = try readAdminToken(path: directory.appendingPathComponent(adminTokenFile).path)
        let store = try CoordinatorStore(path: directory.appendingPathComponent(CoordinatorStore.fileName).path)
        var settings = Coordinator.Settings()
        settings.totalEpsilon = configuration.totalEpsilon
        settings.totalDelta = configuration.totalDelta
        settings.limits.maximumMessageBytes = configuration.maxMessageBytes
        settings.staleAfterSeconds = configuration.staleAfterSeconds
        settings.embeddingCache = configuration.embeddingCache.map { URL(fileURLWithPath: $0, isDirectory: true) }
            ?? directory.appendingPathComponent("embeddings", isDirectory: true)
        settings.crashPoint = ProcessInfo.processInfo.environment["FEDSEG_TEST_CRASH_AT"].flatMap(Coordinator.CrashPoint.init(rawValue:))
        let coordinator = try Coordinator(store: store, keys: keys, settings: settings, metrics: CoordinatorMetrics(), logger: logger)
        // Damaged state is refused before anything resumes from it: the ledger's chain and every
        // recomputed ε (the audit), then the open round's signed plan (`recover`).
        let audit = try LedgerAudit.run(store.ledger)
        guard audit.verified else {
            let problems = audit.problems.prefix(5).map { ($0.sequence.map { "record \($0): " } ?? "") + $0.reason }.joined(separator: "; ")
            throw CoordinatorError.state("the privacy ledger in \(configuration.stateDirectory) fails verification (\(problems)): restore the state directory from a backup; `fedseg privacy audit --state-dir` lists every problem")
        }
        try await coordinator.recover()
        if let total = try store.ledger.budget(for: Coordinator.allUsers) {
            logger.notice("privacy", metadata: [
                "total_epsilon": "\(total.epsilon)", "total_delta": "\(total.delta)",
                "spent": "\(String(format: "%.4f", (try? store.ledger.spent(by: Coordinator.allUsers)) ?? 0))",
                "modes": "local (every client noises its own update) or distributed (secure aggregation; each client adds a noise share), chosen per run; every release is charged before it is published",
            ])
        }
        let responseLog = try configuration.responseLog.map(ResponseLog.init(path:))
        if let responseLog {
            logger.notice("recording every answer", metadata: ["response_log": "\(responseLog.path)", "holds": "admin answers, enrollment tokens included: keep it private"])
        }
        let router = CoordinatorRoutes.router(
            coordinator: coordinator, adminTokenHash: SHA256.hash(Data(token.utf8)).bytes, secureCookies: configuration.tls != nil,
            responseLog: responseLog
        )
        let portFile = configuration.portFile
        let scheme = configuration.tls == nil ? "http" : "https"
        if configuration.tls == nil, !CoordinatorServer.isLoopback(configuration.host) {
            logger.warning("serving plain HTTP on a non-loopback address (--insecure-http)", metadata: [
                "host": "\(configuration.host)", "exposed": "the admin token and round plans travel in the clear; updates stay end-to-end encrypted",
            ])
        }
        var app = Application(
            router: router,
            server: try CoordinatorServer.builder(limits: configuration.connections, tls: configuration.tls, logger: logger),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "fedseg-coordinator"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.notice("listening", metadata: [
                    "address": "\(scheme)://\(configuration.host):\(port)", "state_dir": "\(configuration.stateDirectory)",
                    "signing_key": "\(keys.identity.signing.publicKey.hex)",
                    "max_connections": "\(configuration.connections.maximumConnections)",
                ])
                if let portFile { try? "\(port)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
                await onListening?(port)
            },
            logger: logger
        )
        app.addServices(RoundTicker(coordinator: coordinator, logger: logger, lock: lock))
        return app
    }
}

/// Closes rounds whose deadline has passed.
struct RoundTicker: Service {
    let coordinator: Coordinator
    let logger: Logger
    /// The state directory's lock, released when the application (and this service) goes.
    let lock: StateLock

    func run() async throws {
        var lastStorageWarning = ContinuousClock.now - .seconds(60)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(100))
            do {
                try await coordinator.tick()
            } catch {
                if let storage = StorageFailure(error) {
                    // Said at most every 10 s: the ticker retries ten times a second.
                    let now = ContinuousClock.now
                    if now - lastStorageWarning > .seconds(10) {
                        lastStorageWarning = now
                        logger.critical("the open round cannot end yet", metadata: ["why": "\(storage)", "effect": "the round stays open and uncommitted; nothing more is charged; it ends once the write succeeds"])
                    }
                } else {
                    logger.error("closing a round failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

extension StateLock {
    /// The coordinator state directory's lock, its refusal as a `CoordinatorError`.
    public static func coordinator(stateDirectory: String, purpose: String) throws -> StateLock {
        do {
            return try StateLock(stateDirectory: stateDirectory, fileName: coordinatorFile, purpose: purpose)
        } catch {
            throw CoordinatorError.state(error.description)
        }
    }
}

extension CoordinatorDaemon {
    /// Checks that `stateDirectory` was made by `coordinator init`: nothing but `init` creates
    /// one, so a mistyped path is an error rather than a fresh, empty state.
    public static func requireInitialised(_ stateDirectory: String) throws {
        let keyPath = URL(fileURLWithPath: stateDirectory).appendingPathComponent(keyFile).path
        guard FileManager.default.fileExists(atPath: keyPath) else {
            throw CoordinatorError.state(
                "\(stateDirectory) is not a coordinator state directory (no \(keyFile)): check the path, or create one with `coordinator init --state-dir \(stateDirectory)`"
            )
        }
    }
}
