import AsyncHTTPClient
import CoreMetrics
import FedSegClient
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegRecommend
import Foundation
import SwiftProtobuf
import Logging
import Prometheus
import ServiceLifecycle

/// `fedseg-node serve`: a tenant's node as a long-running process. It polls the coordinator for
/// the open round (naming itself, so rounds wait for it), answers every round it may through the
/// client engine (`ClientNode`, the code the simulator runs), keeps each finished run's signed
/// model, reloads its data when the files change, and stops between steps on SIGTERM.
///
/// Restarts are safe by the engine's design: an answer is charged and stored in one transaction
/// before it is sent, and resent as the same bytes; a distributed round whose secrets a restart
/// lost is sat out, with whatever stage messages were stored resent.
public actor NodeService: Service {
    public struct Options: Sendable {
        public var dataDirectory: URL
        public var embedder: EmbedderChoice = .minilm
        /// The lifetime budget of each user on this node (recorded when the ledger has none).
        public var budget: (epsilon: Double, delta: Double)?
        public var pollSeconds = 1.0
        /// Where embeddings are cached (default: STATE_DIR/embeddings).
        public var cacheDirectory: URL?
        /// Progress lines while embedding (on a terminal only); `--quiet` turns them off.
        public var showProgress = false

        public init(dataDirectory: URL) { self.dataDirectory = dataDirectory }
    }

    public nonisolated let id: String
    let home: NodeHome
    let options: Options
    let node: ClientNode
    let embedder: any Embedder
    let transport: HTTPCoordinatorTransport
    let http: HTTPClient
    let logger: Logger
    public nonisolated let metrics: NodeMetrics
    /// The state directory's lock, for as long as the service lives: a second `serve` on the
    /// same directory is refused, naming this one.
    let lock: StateLock
    var dataVersion: NodeData.FilesVersion
    var current: NodeData
    var handledRounds = Set<UInt64>()
    var runsWithoutModel = Set<String>()
    var lastModelCheck = Date.distantPast
    var unreachableSince: Date?
    var latestModelKey: String?

    /// Checks everything before taking part: enrolled, the embedder loads, the data reads.
    public init(home: NodeHome, options: Options, logger: Logger) async throws {
        let lock = try StateLock(stateDirectory: home.directory.path, fileName: StateLock.nodeFile, purpose: "fedseg-node serve")
        var settings = try home.store.settings()
        guard let id = settings.clientID, let url = settings.coordinatorURL, settings.enrolledAt != nil else {
            throw NodeHome.Failure.notEnrolled(home.directory.path)
        }
        let embedder = try CachingEmbedder(
            base: try NodeHome.embedder(options.embedder, progress: ProgressLine("loading MiniLM (layers)", quiet: !options.showProgress)),
            directory: options.cacheDirectory ?? home.directory.appendingPathComponent("embeddings", isDirectory: true)
        )
        let loaded = try NodeData.load(directory: options.dataDirectory, embedder: embedder, showProgress: options.showProgress)
        let node = try home.clientNode(embedderID: embedder.identifier, budget: options.budget ?? (NodeService.defaultBudget.epsilon, NodeService.defaultBudget.delta), data: loaded.data)
        if let budget = options.budget {
            let ledger = try await node.ledger()
            let population = "client:\(id)"
            if let current = try ledger.budget(for: population), current.epsilon != budget.epsilon || current.delta != budget.delta {
                try ledger.setBudget(.init(population: population, epsilon: budget.epsilon, delta: budget.delta), reason: "fedseg-node serve --budget-epsilon")
            }
        }
        try home.store.replaceUsers(ids: loaded.data.userIDs, points: loaded.data.points, items: loaded.data.items)
        settings.embedder = options.embedder.rawValue
        settings.dataDirectory = options.dataDirectory.standardizedFileURL.path
        settings.cacheDirectory = options.cacheDirectory?.standardizedFileURL.path
        try home.store.save(settings)
        self.id = id
        self.lock = lock
        self.home = home
        self.options = options
        self.node = node
        self.embedder = embedder
        self.logger = logger
        self.dataVersion = loaded.version
        self.current = loaded
        self.metrics = NodeMetrics()
        http = HTTPCoordinatorTransport.makeHTTPClient(connectionsPerHost: 4, caCertificate: settings.caCertificate)
        transport = HTTPCoordinatorTransport(baseURL: url, client: http)
        metrics.users.record(Double(loaded.data.userIDs.count))
        logger.info("node ready", metadata: [
            "id": "\(id)", "coordinator": "\(url)", "users": "\(loaded.data.userIDs.count)", "skipped_users": "\(loaded.skipped)",
            "embedder": "\(embedder.identifier)",
        ])
    }

    /// Test hooks (`FEDSEG_TEST_NODE_CRASH_AT`): the process kills itself (SIGKILL) once an
    /// answer is charged and stored and before it is sent, the worst moment for a crash.
    enum CrashPoint: String {
        case beforeSend = "before-send"
        case beforeMaskedInput = "before-masked-input"
    }

    nonisolated func crash(at point: CrashPoint) {
        guard ProcessInfo.processInfo.environment["FEDSEG_TEST_NODE_CRASH_AT"] == point.rawValue else { return }
        logger.critical("test hook: killing this process", metadata: ["FEDSEG_TEST_NODE_CRASH_AT": "\(point.rawValue)"])
        kill(getpid(), SIGKILL)
    }

    /// Each user's lifetime budget on a node unless `--budget-epsilon` says otherwise.
    public static let defaultBudget = (epsilon: 10.0, delta: 1e-5)

    public func run() async throws {
        if let stored = try? await home.latestModel() {
            await node.adopt(stored)
            latestModelKey = "\(stored.runID)/\(stored.version)"
        }
        await cancelWhenGracefulShutdown { await self.loop() }
        try? await http.shutdown()
        logger.notice("node stopped", metadata: ["id": "\(id)"])
    }

    func loop() async {
        while !Task.isCancelled {
            await reloadIfChanged()
            let publication: [UInt8]?
            do {
                publication = try await transport.currentPlan(client: id)
                if let since = unreachableSince {
                    logger.notice("coordinator reachable again", metadata: ["after_seconds": "\(Int(Date().timeIntervalSince(since)))"])
                    unreachableSince = nil
                }
            } catch {
                if unreachableSince == nil {
                    unreachableSince = Date()
                    logger.warning("coordinator unreachable; retrying", metadata: ["why": "\(HTTPCoordinatorTransport.explain(error, url: transport.baseURL))"])
                }
                try? await Task.sleep(for: .seconds(min(5, options.pollSeconds * 2)))
                continue
            }
            if let publication {
                await take(publication)
            } else {
                await refreshModelIfDue()
            }
            try? await Task.sleep(for: .seconds(options.pollSeconds))
        }
    }

    /// Reloads the data directory between rounds when its files changed (new users are embedded;
    /// known texts come from the cache).
    func reloadIfChanged() async {
        let version = NodeData.filesVersion(options.dataDirectory)
        guard version != dataVersion else { return }
        do {
            let loaded = try NodeData.load(directory: options.dataDirectory, embedder: embedder, showProgress: options.showProgress)
            dataVersion = loaded.version
            current = loaded
            try home.store.replaceUsers(ids: loaded.data.userIDs, points: loaded.data.points, items: loaded.data.items)
            await node.replaceData(loaded.data)
            metrics.users.record(Double(loaded.data.userIDs.count))
            logger.info("data reloaded", metadata: ["users": "\(loaded.data.userIDs.count)", "skipped_users": "\(loaded.skipped)"])
        } catch {
            // Keep answering for the users already loaded; say once what is wrong with the files.
            dataVersion = version
            logger.error("data not reloaded; keeping the users loaded before", metadata: ["why": "\(error)"])
        }
    }

    /// One round: verified with the pinned key, then answered through the engine.
    func take(_ publication: [UInt8]) async {
        let plan: Fedseg_V1_RoundPlan
        do {
            plan = try await node.verifyPlan(publication)
        } catch {
            let key = UInt64.max
            if !handledRounds.contains(key) { logger.error("round plan refused", metadata: ["why": "\(error)"]) }
            handledRounds.insert(key)
            return
        }
        guard !handledRounds.contains(plan.round) else { return }
        handledRounds.insert(plan.round)
        runsWithoutModel.insert(plan.runID)
        let phase = RunPhase(wire: plan.phase)?.rawValue ?? "unknown"
        logger.info("round open", metadata: ["run": "\(plan.runID)", "round": "\(plan.round)", "phase": "\(phase)", "mode": "\(plan.privacyMode == .distributed ? "distributed" : "local")"])
        if plan.privacyMode == .distributed {
            await takeDistributed(publication, plan: plan)
            return
        }
        do {
            let answer = try await node.answer(publication)
            if !answer.resent, answer.kind != .decline { crash(at: .beforeSend) }
            let outcome = await node.send(answer, transport: transport)
            await record(outcome, answer: answer, round: plan.round)
        } catch {
            metrics.outcome("failed")
            logger.error("round not answered", metadata: ["round": "\(plan.round)", "why": "\(error)"])
        }
    }

    func record(_ outcome: ClientNode.SendOutcome, answer: ClientNode.Answer, round: UInt64) async {
        let label: String
        switch outcome {
        case .accepted, .alreadyAccepted: label = answer.kind == .decline ? "declined" : "accepted"
        case .rejected: label = "rejected"
        case .gaveUp: label = "gave_up"
        }
        metrics.outcome(label)
        var metadata: Logger.Metadata = ["round": "\(round)", "message": "\(answer.kind)", "outcome": "\(outcome)"]
        if answer.resent { metadata["resent"] = "true" }
        if let reason = answer.declineReason { metadata["decline_reason"] = "\(reason)" }
        if label == "rejected" || label == "gave_up" {
            logger.warning("answer not taken", metadata: metadata)
        } else {
            logger.info(answer.kind == .decline ? "round declined" : "answer sent", metadata: metadata)
        }
        if let ledger = try? await node.ledger(), let spent = try? ledger.spent(by: "client:\(id)") { metrics.epsilonSpent.record(spent) }
    }

    /// A distributed round, stage by stage, until the coordinator finishes or aborts it.
    func takeDistributed(_ publication: [UInt8], plan: Fedseg_V1_RoundPlan) async {
        guard plan.secagg.cohort.contains(id) else {
            logger.info("not in this round's cohort (enrolled or seen after it opened)", metadata: ["round": "\(plan.round)"])
            return
        }
        var sent = Set<Fedseg_V1_MessageKind>()
        var stored: [Fedseg_V1_MessageKind: ClientNode.Answer] = [:]
        do {
            let advertisement = try await node.secAggAdvertise(publication)
            let outcome = await node.send(advertisement, transport: transport)
            await record(outcome, answer: advertisement, round: plan.round)
            if advertisement.kind == .decline { return }
            sent.insert(.secaggAdvertise)
        } catch ClientNode.NodeError.lostRoundState(let round) {
            logger.warning("restarted mid-round: sitting it out, resending what was stored", metadata: ["round": "\(round)"])
            stored = (try? await node.storedStageAnswers(round: plan.round, deadline: Date().addingTimeInterval(30))) ?? [:]
        } catch {
            metrics.outcome("failed")
            logger.error("round not answered", metadata: ["round": "\(plan.round)", "why": "\(error)"])
            return
        }
        let kinds: [Fedseg_V1_SecAggStageKind: Fedseg_V1_MessageKind] = [
            .secaggStageShare: .secaggShares, .secaggStageMask: .secaggMaskedInput, .secaggStageConsistency: .secaggConsistency,
            .secaggStageUnmask: .secaggUnmask,
        ]
        let recovering = !stored.isEmpty || sent.isEmpty
        let giveUp = Date(timeIntervalSince1970: Double(plan.deadlineUnixMs) / 1000).addingTimeInterval(60)
        while !Task.isCancelled, Date() < giveUp {
            let viewBytes: [UInt8]?
            do {
                viewBytes = try await transport.secAggStage(round: plan.round, client: id)
            } catch {
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            guard let viewBytes, let signed = try? Fedseg_V1_SignedPublication(serializedBytes: viewBytes),
                let view = try? Fedseg_V1_SecAggStage(serializedBytes: signed.payload), view.stage != .secaggStageFinished
            else { break }
            if recovering {
                if let kind = kinds[view.stage], var answer = stored[kind], !sent.contains(kind) {
                    answer.deadline = Date(timeIntervalSince1970: Double(view.stageDeadlineUnixMs) / 1000)
                    let outcome = await node.send(answer, transport: transport)
                    await record(outcome, answer: answer, round: plan.round)
                    sent.insert(kind)
                }
            } else {
                do {
                    if let answer = try await node.secAggStep(viewBytes), !sent.contains(answer.kind) {
                        if answer.kind == .secaggMaskedInput, !answer.resent { crash(at: .beforeMaskedInput) }
                        let outcome = await node.send(answer, transport: transport)
                        await record(outcome, answer: answer, round: plan.round)
                        if case .gaveUp = outcome {} else { sent.insert(answer.kind) }
                    }
                } catch {
                    metrics.outcome("failed")
                    logger.warning("left the round", metadata: ["round": "\(plan.round)", "why": "\(error)"])
                    break
                }
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        await node.endSecAgg()
    }

    /// Fetches the latest model when a run this node saw may have finished (every 5 s), or
    /// once a minute otherwise, and keeps it if it is new and verifies.
    func refreshModelIfDue() async {
        let interval: Double = runsWithoutModel.isEmpty ? 60 : 5
        guard Date().timeIntervalSince(lastModelCheck) >= interval else { return }
        lastModelCheck = Date()
        do {
            guard let keys = await node.pinnedKeys, let bytes = try await transport.latestModel() else { return }
            let model = try NodeHome.verifyModel(bytes, key: keys.signing)
            runsWithoutModel.remove(model.runID)
            let key = "\(model.runID)/\(model.version)"
            guard key != latestModelKey else { return }
            try home.store.keep(runID: model.runID, version: model.version, publication: bytes, at: Date().timeIntervalSince1970)
            await node.adopt(model)
            latestModelKey = key
            metrics.modelVersion.record(Double(model.version))
            // How much this node's own users favour content over the model's lists (measured here).
            let blend = current.chooseBlend(for: model, embedderID: embedder.identifier)
            var settings = try home.store.settings()
            settings.rerankBlend = blend.content
            settings.rerankGlobalWeight = blend.global
            try home.store.save(settings)
            logger.info("segment model kept", metadata: [
                "run": "\(model.runID)", "version": "\(model.version)", "segments": "\(model.centroidMatrix?.rows ?? 0)", "catalogue": "\(model.catalogSize)",
                "rerank_blend": "\(blend.content)", "rerank_global_weight": "\(blend.global)",
            ])
        } catch {
            logger.warning("segment model not kept", metadata: ["why": "\(error)"])
        }
    }
}

/// The node's counters, in its own Prometheus registry (`/metrics` on `--http-port`), each with
/// HELP and TYPE lines.
public final class NodeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let users: Prometheus.Gauge
    let epsilonSpent: Prometheus.Gauge
    let modelVersion: Prometheus.Gauge
    static let answersHelp = "Rounds this node answered, by outcome (accepted, declined, failed, ...), since it started"

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "fedseg", subsystem: "node", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        registry = PrometheusCollectorRegistry()
        users = registry.makeGauge(descriptor: Self.name("users", "", "Users this node holds"))
        epsilonSpent = registry.makeGauge(descriptor: Self.name("epsilon_spent", "", "Lifetime epsilon this node's ledger has spent for its users"))
        modelVersion = registry.makeGauge(descriptor: Self.name("model_version", "", "Version of the segment model this node keeps"))
    }

    func outcome(_ label: String) {
        registry.makeCounter(descriptor: Self.name("answers", "total", Self.answersHelp), labels: [("outcome", label)]).increment()
    }

    public func exposition() -> String { registry.emitToString() }
}
