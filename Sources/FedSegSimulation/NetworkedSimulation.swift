import AsyncHTTPClient
import FedSegClient
import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegNode
import Foundation
import SwiftProtobuf

/// `client-sim run`: many client nodes in one process against a running coordinator, over HTTP.
/// Each node has its own keys, state directory, shard and ledger; the simulator only plays the
/// network (which plan reaches whom, dropouts, stragglers, misbehaviour) and, at the end, the
/// evaluator that knows everyone's data.
public struct NetworkedSimulation: Sendable {
    public struct Configuration: Sendable {
        public var coordinatorURL: String
        public var adminToken: String
        /// Client traffic (plans, updates, stages, models) goes here instead of over HTTP to
        /// `coordinatorURL`: the in-process coordinator's router (`RouterExchange`). Admin
        /// requests still use HTTP.
        public var exchange: (any CoordinatorExchange)?
        /// PEM CA (or pinned certificate) for an `https://` coordinator.
        public var caCertificate: String?
        public var clients: Int
        /// Segments; with `kSelection` auto or the density clusterer, the most allowed.
        public var k: Int = 8
        public var kSelection: SegmentCountSelection = .fixed
        public var clusterer: Clusterer = .kmeans
        public var minSegmentShare = 0.02
        public var partition: Partition = .iid
        public var dropout: Double = 0
        public var stragglers: (probability: Double, seconds: Double)?
        public var rounds: Int = 2
        public var epsilon: Double = 8
        public var delta: Double = 1e-6
        public var embedder: EmbedderChoice = .minilm
        public var seed: UInt64 = 1
        public var misbehave: Misbehaviour?
        public var workDirectory: URL
        public var cacheDirectory: URL?
        public var roundDeadlineSeconds: Double = 30
        public var clusteringShare = 0.7
        /// Lloyd rounds after the first are centred (`RunParameters.centeredClipping`).
        public var centeredClipping = true
        /// The recommendation histogram carries a global row (`RunParameters.globalRow`).
        public var globalRow = true
        public var maxItemsPerUser = 20
        /// The run's catalogue: the dataset's first this many items (nil: all). The dataset's item
        /// order must then be a public ranking; the histogram is released over these items only,
        /// so items no one can see a reason to rank never carry noise into the lists.
        public var candidateItems: Int?
        public var maxSeedPhrases = 3000
        /// Share of the clients whose update a round needs.
        public var quorum = 0.5
        /// `local`, or `distributed` (secure aggregation, a noise share per client).
        public var privacyMode: PrivacyMode = .local
        /// Distributed mode: the public bound on users in a sum (`max_users`), and the clients
        /// assumed to collude with the coordinator.
        public var maxUsers = 1_000_000
        public var assumedColluders = 1
        /// Clients working at once.
        public var concurrency = 32
        /// Nodes kept open between uses, the first ones (nil: as many as the process's open-file
        /// limit allows, `openNodeLimit`); the rest close their database after each use.
        public var openNodes: Int?
        /// Take part in the run an operator starts (`fedseg run start`) instead of starting one:
        /// the simulator waits up to this many seconds for it.
        public var joinWithinSeconds: Double?
        public var showProgress = false

        public init(coordinatorURL: String, adminToken: String, clients: Int, workDirectory: URL) {
            self.coordinatorURL = coordinatorURL
            self.adminToken = adminToken
            self.clients = clients
            self.workDirectory = workDirectory
        }
    }

    /// The report (`--report FILE.json`): a stable interface, snake_case keys.
    public struct Report: Codable, Sendable {
        public struct Segment: Codable, Sendable {
            public var id: Int
            public var size: Int
            public var nearestItems: [String]
            /// A short name from the public texts of the items nearest the centroid.
            public var label: String

            enum CodingKeys: String, CodingKey {
                case id, size, label
                case nearestItems = "nearest_items"
            }
        }

        public var runID: String
        public var clients: Int
        public var users: Int
        public var rounds: Int
        public var participantsPerRound: [Int]
        public var privacyMode: PrivacyMode
        public var embedder: String
        public var epsilonSpent: Double
        public var epsilon: Double
        public var delta: Double
        public var segments: [Segment]
        public var ariTruth: Double?
        public var nmiTruth: Double?
        public var ariCentralized: Double
        public var costRatio: Double
        public var recommendation: [Evaluation.RecommendationRow]
        public var rejectedUpdates: [String: Int]
        public var misbehaviourAttempts: [String: Int]
        public var ledgersVerified: Bool
        public var ledgersAgree: Bool
        public var embedSeconds: Double
        public var wallSeconds: Double
        /// How the run chose its segments and which it dropped (nil: k as asked, none dropped).
        public var segmentation: SegmentationRecord? = nil
        /// The items the recommendation histogram was released over (the run's catalogue: all the
        /// dataset's, or its first `candidateItems`); nil without a published catalogue.
        public var releasedCatalogSize: Int? = nil
        /// The clip norm of each committed Lloyd round, in order (below the run's clip norm: a
        /// centred round, `RunParameters.centeredClipping`).
        public var clusteringClipNorms: [Double] = []

        enum CodingKeys: String, CodingKey {
            case clusteringClipNorms = "clustering_clip_norms"
            case clients, users, rounds, embedder, epsilon, delta, segments, recommendation, segmentation
            case releasedCatalogSize = "released_catalog_size"
            case runID = "run_id"
            case participantsPerRound = "participants_per_round"
            case privacyMode = "privacy_mode"
            case epsilonSpent = "epsilon_spent"
            case ariTruth = "ari_truth"
            case nmiTruth = "nmi_truth"
            case ariCentralized = "ari_centralized"
            case costRatio = "cost_ratio"
            case rejectedUpdates = "rejected_updates"
            case misbehaviourAttempts = "misbehaviour_attempts"
            case ledgersVerified = "ledgers_verified"
            case ledgersAgree = "ledgers_agree"
            case embedSeconds = "embed_seconds"
            case wallSeconds = "wall_seconds"
        }

        /// Encodes with null for missing values (scripts read `ari_truth: null`).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(runID, forKey: .runID)
            try c.encode(clients, forKey: .clients)
            try c.encode(users, forKey: .users)
            try c.encode(rounds, forKey: .rounds)
            try c.encode(participantsPerRound, forKey: .participantsPerRound)
            try c.encode(privacyMode, forKey: .privacyMode)
            try c.encode(embedder, forKey: .embedder)
            try c.encode(epsilonSpent, forKey: .epsilonSpent)
            try c.encode(epsilon, forKey: .epsilon)
            try c.encode(delta, forKey: .delta)
            try c.encode(segments, forKey: .segments)
            try c.encode(ariTruth, forKey: .ariTruth)
            try c.encode(nmiTruth, forKey: .nmiTruth)
            try c.encode(ariCentralized, forKey: .ariCentralized)
            try c.encode(costRatio, forKey: .costRatio)
            try c.encode(recommendation, forKey: .recommendation)
            try c.encode(rejectedUpdates, forKey: .rejectedUpdates)
            try c.encode(misbehaviourAttempts, forKey: .misbehaviourAttempts)
            try c.encode(ledgersVerified, forKey: .ledgersVerified)
            try c.encode(ledgersAgree, forKey: .ledgersAgree)
            try c.encode(embedSeconds, forKey: .embedSeconds)
            try c.encode(wallSeconds, forKey: .wallSeconds)
            try c.encode(segmentation, forKey: .segmentation)
            try c.encode(releasedCatalogSize, forKey: .releasedCatalogSize)
            try c.encode(clusteringClipNorms, forKey: .clusteringClipNorms)
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// What one node did in a round, for the progress line and the attempt counts.
    enum NodeResult: Sendable {
        case answered(ClientNode.SendOutcome, declined: Bool)
        case droppedOut
        case failed(String)
    }

    /// What the data must hold for the run to work, checked before the first charge: users, at
    /// least k of them with training data, a user for every client, and a catalogue.
    static func preflight(dataset: Dataset, configuration c: Configuration, participants: Int?) throws {
        guard !dataset.users.isEmpty else {
            throw SimulationError.invalid("the dataset holds no users (users.jsonl is empty): nothing to segment, nothing was charged")
        }
        guard !dataset.items.isEmpty else { throw SimulationError.invalid("the dataset holds no items (items.jsonl is empty): no catalogue to recommend from") }
        guard dataset.users.count >= c.k else {
            throw SimulationError.invalid("k = \(c.k) segments need at least \(c.k) users; the dataset has \(dataset.users.count): lower --k")
        }
        guard let participants else { return }
        guard participants >= c.k else {
            throw SimulationError.invalid("k = \(c.k) segments need at least \(c.k) users with training data; \(participants) of \(dataset.users.count) have some (the rest are held out as new users): lower --k or add users")
        }
        guard participants >= c.clients else {
            throw SimulationError.invalid("--clients \(c.clients) but only \(participants) users hold training data: every client needs a user; use --clients \(participants) or fewer")
        }
    }

    /// The run the simulator starts: from the command line and public data only (seed phrases,
    /// catalogue); nothing in it is computed from the users' data.
    static func runParameters(_ c: Configuration, embedderID: String, dimension: Int, seedPhrases: [String], catalog: [String]) -> RunParameters {
        var parameters = RunParameters(k: c.k, epsilon: c.epsilon, delta: c.delta)
        parameters.kSelection = c.kSelection
        parameters.clusterer = c.clusterer
        parameters.minSegmentShare = c.minSegmentShare
        parameters.embedderID = embedderID
        parameters.dimension = dimension
        parameters.rounds = c.rounds
        parameters.clusteringShare = c.clusteringShare
        parameters.centeredClipping = c.centeredClipping
        parameters.globalRow = c.globalRow
        parameters.minParticipants = max(c.privacyMode == .distributed ? 2 : 1, Int((Double(c.clients) * c.quorum).rounded(.down)))
        parameters.privacyMode = c.privacyMode
        // A public bound the operator chooses (never the dataset's size): distributed mode sizes
        // its quantisation so that this many users' sum never wraps.
        parameters.maxUsers = c.maxUsers
        parameters.assumedColluders = c.assumedColluders
        parameters.roundDeadlineSeconds = c.roundDeadlineSeconds
        parameters.seed = c.seed
        parameters.maxItemsPerUser = c.maxItemsPerUser
        parameters.seedPhrases = seedPhrases
        if seedPhrases.count < c.k { parameters.initialization = .random }
        parameters.catalog = catalog
        return parameters
    }

    public func run(dataset: Dataset, log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Report {
        let c = configuration
        let clock = ContinuousClock()
        let started = clock.now
        guard c.clients >= 1 else { throw SimulationError.invalid("--clients must be at least 1") }
        if c.privacyMode == .distributed {
            guard c.clients >= 2 else { throw SimulationError.invalid("distributed mode needs at least 2 clients") }
            guard c.misbehave == nil else { throw SimulationError.invalid("--misbehave is only simulated in local mode") }
        }
        // Every check that can fail runs here, before the run starts and anything is charged.
        try Self.preflight(dataset: dataset, configuration: c, participants: nil)
        let (base, warning) = c.embedder.make(progress: ProgressLine("loading MiniLM (layers)", quiet: !c.showProgress))
        if let warning { log("warning: \(warning)") }
        let embedder: any Embedder = try c.cacheDirectory.map { try CachingEmbedder(base: base, directory: $0) } ?? base
        log("embedding \(dataset.items.count) items and \(dataset.users.count) users with \(embedder.identifier) (on the clients' behalf; cached by model and text)")
        let prepared = try PreparedDataset.make(dataset, embedder: embedder, seed: c.seed, showProgress: c.showProgress)

        // Shards: cold-start users hold no training data and do not take part.
        let participants = dataset.users.indices.filter { !prepared.coldStart[$0] }
        try Self.preflight(dataset: dataset, configuration: c, participants: participants.count)
        let owner = c.partition.assign(users: participants, dataset: dataset, clients: c.clients, seed: c.seed)
        var members = [[Int]](repeating: [], count: c.clients)
        for (position, u) in participants.enumerated() { members[owner[position]].append(u) }

        let http = HTTPCoordinatorTransport.makeHTTPClient(connectionsPerHost: max(8, min(c.concurrency, 128)), caCertificate: c.caCertificate)
        let runTag = String(UInt64.random(in: 0..<(1 << 32)), radix: 16)
        do {
            let report = try await run(
                prepared: prepared, members: members, participants: participants, http: http, runTag: runTag, started: started, clock: clock, log: log
            )
            try await http.shutdown()
            return report
        } catch {
            // Nodes that end with a failed simulation are revoked too: left enrolled, every later
            // run would count them until they go stale.
            let admin = AdminClient(baseURL: c.coordinatorURL, token: c.adminToken, client: http)
            let revoked = await revokeQuietly((0..<c.clients).map { "sim-\(runTag)-\($0)" }, admin: admin, concurrency: c.concurrency)
            if revoked > 0 { log("revoked the \(revoked) client(s) this simulation had enrolled") }
            try? await http.shutdown()
            throw error
        }
    }

    /// Revokes what can be revoked (ids never enrolled, or a coordinator gone, are skipped); how many were.
    func revokeQuietly(_ ids: [String], admin: AdminClient, concurrency: Int) async -> Int {
        let count = RevokedCount()
        try? await forEach(0..<ids.count, concurrency: max(1, concurrency)) { index in
            if (try? await admin.revoke(ids[index])) != nil { await count.add() }
        }
        return await count.value
    }

    actor RevokedCount {
        var value = 0
        func add() { value += 1 }
    }

    func run(
        prepared: PreparedDataset, members: [[Int]], participants: [Int], http: HTTPClient, runTag: String, started: ContinuousClock.Instant,
        clock: ContinuousClock, log: @escaping @Sendable (String) -> Void
    ) async throws -> Report {
        let c = configuration
        let dataset = prepared.dataset
        let transport = c.exchange.map { HTTPCoordinatorTransport(exchange: $0) } ?? HTTPCoordinatorTransport(baseURL: c.coordinatorURL, client: http)
        let admin = AdminClient(baseURL: c.coordinatorURL, token: c.adminToken, client: http)
        let nodesDirectory = c.workDirectory.appendingPathComponent("clients", isDirectory: true)
        // An open node holds three files (its database, WAL and shared-memory index): as many
        // nodes as the process's file limit allows stay open between rounds (reopening costs a
        // node more than answering), the first ones; the rest are closed between uses.
        let openNodes = c.openNodes ?? Self.openNodeLimit()

        // Nodes: keys, state, shard, each enrolled as soon as it is made with a one-time token
        // from the admin API (valid for an hour): made, enrolled and then closed, rather than
        // closed and opened again to enrol. Tokens, enrolment and the run's start are retried
        // across a coordinator restart.
        let count = c.clients
        let enrolmentStarted = Date()
        let tokens = try await Retry.untilDeadline(seconds: 120) { try await admin.createTokens(count: count) }
        log("creating and enrolling \(c.clients) client nodes under \(nodesDirectory.path)")
        // Making a node writes its key file and database and waits for the disk: made on dispatch
        // threads, many at once, off the cooperative pool.
        let made = ClientSlots<ClientNode>(count: c.clients)
        try await forEach(0..<c.clients, concurrency: c.concurrency) { index in
            let users = members[index]
            let data = ClientData(
                userIDs: users.map { dataset.users[$0].user }, points: KMeans.gatherRows(prepared.points, users),
                items: users.map { prepared.training[$0] }
            )
            let node = try await Self.blocking {
                try ClientNode(
                    directory: nodesDirectory.appendingPathComponent("client-\(index)", isDirectory: true), id: "sim-\(runTag)-\(index)",
                    embedderID: prepared.embedderID, data: data, epsilonBudget: c.epsilon, delta: c.delta
                )
            }
            try await Retry.untilDeadline(seconds: 120) { try await node.enroll(token: tokens[index], transport: transport) }
            if index >= openNodes { try await node.suspend() }
            await made.set(index, node)
        }
        let nodes = await made.all()
        let nodeList = nodes
        log("enrolled \(c.clients) clients")
        guard let keys = await nodes[0].pinnedKeys else { throw SimulationError.runFailed("enrollment pinned no keys") }

        // Misbehaving clients: 10% (at least one) of the enrolled, or extra unenrolled ones.
        var rng = SeededRandom(seed: c.seed, stream: 0xBAD)
        var chosen = Set<Int>()
        var impostors: [ClientNode] = []
        if let misbehave = c.misbehave {
            if case .unenrolled(let fraction) = misbehave {
                for index in 0..<max(1, Int((Double(c.clients) * fraction).rounded())) {
                    let impostor = try ClientNode(
                        directory: c.workDirectory.appendingPathComponent("impostors/impostor-\(index)", isDirectory: true),
                        id: "impostor-\(runTag)-\(index)", embedderID: prepared.embedderID,
                        data: ClientData(userIDs: [], points: Matrix(rows: 0, cols: prepared.points.cols), items: []),
                        epsilonBudget: 1e6, delta: c.delta
                    )
                    await impostor.pin(signing: keys.signing, kx: keys.kx)
                    impostors.append(impostor)
                }
            } else {
                var order = Array(0..<c.clients)
                order.shuffle(using: &rng)
                chosen = Set(order.prefix(max(1, c.clients / 10)))
            }
        }

        let misbehaving = chosen

        // The run: parameters from the command line; seed phrases and catalogue are public.
        var phraseOrder = Array(prepared.itemTexts.indices)
        phraseOrder.shuffle(using: &rng)
        let parameters = Self.runParameters(
            c, embedderID: prepared.embedderID, dimension: prepared.points.cols,
            seedPhrases: phraseOrder.prefix(c.maxSeedPhrases).map { prepared.itemTexts[$0] },
            catalog: dataset.items.prefix(c.candidateItems ?? dataset.items.count).map(\.item)
        )
        let rejectedBefore = AdminClient.rejectedUpdates(fromMetrics: try await Retry.untilDeadline(seconds: 120) { try await admin.metricsText() })
        // Nodes idle since their enrolment ask for a plan, naming themselves, as an idle node
        // polls: on a slow or loaded machine enrolling them can outlast the coordinator's
        // liveness window, and a run is refused when too few clients are live.
        if c.joinWithinSeconds == nil, Date().timeIntervalSince(enrolmentStarted) >= 30 {
            let ids = nodeList.map(\.id)
            try await forEach(0..<ids.count, concurrency: c.concurrency) { index in _ = try? await transport.currentPlan(client: ids[index]) }
        }
        let started_: RunSummary
        if let seconds = c.joinWithinSeconds {
            started_ = try await join(within: seconds, admin: admin, transport: transport, ids: nodeList.map(\.id), log: log)
            guard started_.embedderID == prepared.embedderID, started_.dimension == prepared.points.cols else {
                throw SimulationError.invalid("run \(started_.id) uses \(started_.embedderID) (d = \(started_.dimension)); these clients embed with \(prepared.embedderID): pass the matching --embedder")
            }
        } else {
            do {
                started_ = try await Retry.untilDeadline(seconds: 120) { try await admin.startRun(parameters) }
            } catch let failure as AdminClient.Failure where failure.error?.code == .conflict {
                // A start whose answer was lost to a restart: the run in progress is the one it made
                // if it has these parameters.
                let current = try await Retry.untilDeadline(seconds: 120) { try await admin.currentRun() }
                guard (current.segmentation?.requestedK ?? current.k) == parameters.k, current.embedderID == parameters.embedderID, current.epsilon == parameters.epsilon,
                    current.committedRounds == 0
                else { throw failure }
                started_ = current
            }
        }
        let runID = started_.id
        log(String(format: "run %@ started: %@%d DP Lloyd round(s) at z = %.3f, then the recommendation release; ε = %g, δ = %g", runID, started_.phase == .start ? "the start histogram, " : "", started_.plannedRounds, started_.noiseMultiplier, started_.epsilon, started_.delta))

        // Rounds: one fetch of the signed plan per round, handed to every node, which verifies
        // it with its own pinned key.
        let attempts = AttemptCounter()
        var handled = Set<UInt64>()
        var summary = started_
        var unreachableSince: ContinuousClock.Instant?
        while true {
            // The coordinator may restart mid-run: keep asking for a while before giving up.
            let polled: (RunSummary, [UInt8]?)
            do {
                polled = (try await admin.run(runID), try await transport.currentPlan())
                unreachableSince = nil
            } catch {
                let since = unreachableSince ?? clock.now
                unreachableSince = since
                if clock.now - since > .seconds(120) { throw error }
                try await Task.sleep(for: .milliseconds(250))
                continue
            }
            summary = polled.0
            guard summary.status == .running else { break }
            guard let publication = polled.1,
                let signed = try? Fedseg_V1_SignedPublication(serializedBytes: publication),
                let plan = try? Fedseg_V1_RoundPlan(serializedBytes: signed.payload), plan.runID == runID, !handled.contains(plan.round)
            else {
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            handled.insert(plan.round)
            let phase = RunPhase(wire: plan.phase)?.rawValue ?? "unknown"
            let progress = Progress(label: "round \(plan.round) (\(phase))", total: c.clients, enabled: c.showProgress)
            let seed = c.seed &+ plan.round
            // Impostors try while the round is open, before the honest clients close it.
            for impostor in impostors {
                await attempts.add("unenrolled")
                _ = try? await impostor.participate(publication, transport: transport)
            }
            if plan.privacyMode == .distributed {
                try await playSecAggRound(
                    publication: publication, plan: plan, nodes: nodeList, transport: transport, seed: seed, openNodes: openNodes, clock: clock
                )
                continue
            }
            try await forEach(0..<c.clients, concurrency: c.concurrency) { index in
                var chance = SeededRandom(seed: seed, stream: UInt64(index))
                let result = await Self.play(
                    node: nodeList[index], index: index, publication: publication, plan: plan, transport: transport,
                    dropout: chance.nextUniform() < c.dropout,
                    straggle: c.stragglers.flatMap { chance.nextUniform() < $0.probability ? $0.seconds : nil },
                    misbehave: misbehaving.contains(index) ? c.misbehave : nil, attempts: attempts
                )
                if index >= openNodes { try? await nodeList[index].suspend() }
                await progress.advance(result)
            }
            await progress.finish()
        }
        guard summary.status == .completed else {
            throw SimulationError.runFailed("run \(runID) ended \(summary.status): \(summary.reason ?? "no reason given")")
        }

        // The published model, verified with the pinned key.
        let first = nodes[0]
        guard let model = try await Retry.untilDeadline(seconds: 120, { try await first.refreshModel(transport: transport) }), model.runID == runID,
            let centroids = model.centroidMatrix
        else { throw SimulationError.runFailed("no segment model for \(runID)") }
        // The run's k may differ from the one asked for: chosen at the start, or segments dropped.
        let k = centroids.rows
        for (index, node) in nodes.enumerated().dropFirst() where index < openNodes { await node.adopt(model) }
        log("segment model v\(model.version) verified; evaluating")

        // Evaluation (the simulator knows everyone's data; no client does).
        let labels = KMeans.assign(prepared.points, to: centroids)
        let participantPoints = KMeans.gatherRows(prepared.points, participants)
        let participantLabels = participants.map { labels[$0] }
        let baseline = KMeans.fit(participantPoints, .init(k: k, restarts: 5, seed: c.seed))
        let truth = prepared.truth(for: participants)
        // The baselines count every training item of every user (no cap of m per user) over the
        // whole catalogue, whatever the run released: the strongest form of each.
        let catalog = ItemCatalog(ids: dataset.items.map(\.item))
        var exact = SegmentHistogram(segments: k, items: catalog.count)
        var sampling = SeededRandom(seed: c.seed, stream: 0xE7)
        for u in participants {
            exact.add(userItems: prepared.training[u], segment: Int(labels[u]), catalog: catalog, maxItemsPerUser: .max, using: &sampling)
        }
        // A joined run may rank another catalogue than this dataset's (or than a prefix of it, the
        // candidate items): then there is nothing to compare.
        let comparable = model.catalogItems.isEmpty || model.catalogItems[...] == catalog.ids.prefix(model.catalogItems.count)
        if !comparable { log("the run's catalogue is not this dataset's: recommendation quality is not evaluated") }
        let recommendation = comparable ? Evaluation.evaluate(exact: exact, privateModel: model, labels: labels, centroids: centroids, prepared: prepared, members: members) : []
        let sizes = Metrics.clusterSizes(labels: participantLabels, k: k)
        let nearest = KMeans.squaredDistances(centroids, to: prepared.itemVectors)
        let closest = (0..<k).map { j in nearest[j].enumerated().sorted { $0.element < $1.element }.prefix(8).map(\.offset) }
        let names = SegmentLabel.make(segments: closest.map { $0.map { prepared.itemTexts[$0] } })
        let segments = (0..<k).map { j in
            Report.Segment(id: j, size: sizes[j], nearestItems: closest[j].prefix(3).map { dataset.items[$0].title }, label: names[j])
        }

        // Ledgers: every chain verifies; every client charge is a release of this run; a client
        // that answered every round spent exactly what the coordinator charged the run.
        let coordinatorAudit = try await Retry.untilDeadline(seconds: 120) { try await admin.ledger() }
        let runSeries = coordinatorAudit.populations.first { $0.population == "run:\(runID)" }?.series ?? []
        let coordinatorReleases = Set(runSeries.map(\.releaseID))
        var verified = coordinatorAudit.verified
        var agree = !coordinatorReleases.isEmpty
        var charged = [String: Int]()
        // Each node's ledger is opened and audited on a dispatch thread, many at once: one after
        // another, 10,000 of them had waited on the disk for most of the evaluation.
        let audits = ClientSlots<NodeAudit>(count: nodes.count)
        try await forEach(0..<nodes.count, concurrency: c.concurrency) { index in
            let ledger = try await nodeList[index].ledger()
            let audit = try await Self.blocking { () throws -> NodeAudit in
                let records = try ledger.records()
                return NodeAudit(verified: try LedgerAudit.run(ledger).verified, releases: Set(records.map(\.releaseID)), lastEpsilon: records.last?.epsilonAfter)
            }
            if index >= openNodes { try await nodeList[index].suspend() }
            await audits.set(index, audit)
        }
        for audit in await audits.all() {
            verified = verified && audit.verified
            agree = agree && audit.releases.allSatisfy { $0.hasPrefix(runID + "/") }
            for release in audit.releases { charged[release, default: 0] += 1 }
            if audit.releases == coordinatorReleases, let last = audit.lastEpsilon, let coordinatorLast = runSeries.last {
                agree = agree && abs(last - coordinatorLast.epsilon) < 1e-9
            }
        }
        // A joined run counts clients outside this simulation too: its own need not reach the quorum.
        let quorum = c.joinWithinSeconds == nil ? parameters.minParticipants : 1
        agree = agree && coordinatorReleases.allSatisfy { (charged[$0] ?? 0) >= quorum }

        // Simulated nodes end with the simulation: revoked, so later rounds do not wait for them.
        let ids = nodeList.map(\.id)
        try await forEach(0..<ids.count, concurrency: c.concurrency) { index in try await Retry.untilDeadline(seconds: 120) { try await admin.revoke(ids[index]) } }

        // This run's rejections: the coordinator's counters less what they were before it.
        var rejected = AdminClient.rejectedUpdates(fromMetrics: try await Retry.untilDeadline(seconds: 120) { try await admin.metricsText() })
        for (reason, count) in rejectedBefore { rejected[reason, default: 0] -= count }
        rejected = rejected.filter { $0.value > 0 }
        let committed = summary.rounds.filter { $0.status == .committed }
        return Report(
            runID: runID, clients: c.clients, users: dataset.users.count, rounds: committed.count,
            participantsPerRound: committed.map(\.participants), privacyMode: summary.privacyMode, embedder: prepared.embedderID,
            epsilonSpent: summary.epsilonSpent, epsilon: summary.epsilon, delta: summary.delta, segments: segments,
            ariTruth: truth.map { Metrics.adjustedRandIndex(participantLabels, $0) },
            nmiTruth: truth.map { Metrics.normalizedMutualInformation(participantLabels, $0) },
            ariCentralized: Metrics.adjustedRandIndex(participantLabels, baseline.labels),
            costRatio: Metrics.inertia(points: participantPoints, centroids: centroids, labels: participantLabels) / baseline.inertia,
            recommendation: recommendation, rejectedUpdates: rejected,
            misbehaviourAttempts: await attempts.counts, ledgersVerified: verified, ledgersAgree: agree,
            embedSeconds: prepared.embedSeconds, wallSeconds: Evaluation.seconds(clock.now - started), segmentation: summary.segmentation,
            releasedCatalogSize: model.catalogItems.isEmpty ? nil : model.catalogItems.count,
            clusteringClipNorms: committed.filter { $0.phase == .clustering }.compactMap(\.clipNorm)
        )
    }

    /// Waits for the operator's run, keeping this simulation's nodes live meanwhile (a poll
    /// naming each, every 30 s), and returns it once it is running.
    func join(
        within seconds: Double, admin: AdminClient, transport: HTTPCoordinatorTransport, ids: [String], log: @escaping @Sendable (String) -> Void
    ) async throws -> RunSummary {
        log("waiting up to \(Int(seconds)) s for an operator to start a run (fedseg run start)")
        let deadline = Date().addingTimeInterval(seconds)
        var lastPoll = Date()
        while Date() < deadline {
            if let current = try? await admin.currentRun(), current.status == .running {
                log("joining run \(current.id) (k = \(current.k), \(current.privacyMode) noise)")
                return current
            }
            if Date().timeIntervalSince(lastPoll) >= 30 {
                lastPoll = Date()
                try await forEach(0..<ids.count, concurrency: configuration.concurrency) { index in _ = try? await transport.currentPlan(client: ids[index]) }
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw SimulationError.runFailed("no run was started within \(Int(seconds)) s (--join): start one with `fedseg run start`")
    }

    /// One node's part in one round, as the network and its owner make it behave.
    static func play(
        node: ClientNode, index: Int, publication: [UInt8], plan: Fedseg_V1_RoundPlan, transport: any CoordinatorTransport,
        dropout: Bool, straggle: Double?, misbehave: Misbehaviour?, attempts: AttemptCounter
    ) async -> NodeResult {
        if dropout { return .droppedOut }
        if let straggle { try? await Task.sleep(for: .seconds(straggle)) }
        do {
            let answer = try await node.answer(publication)
            switch misbehave {
            case .tamper?:
                var tampered = answer.envelope
                tampered[tampered.count - 1] ^= 0x01
                await attempts.add("tamper")
                _ = try? await transport.submit(round: answer.round, envelope: tampered)
            case .oversize?:
                await attempts.add("oversize")
                _ = try? await transport.submit(round: answer.round, envelope: [UInt8](repeating: 0x46, count: (16 << 20) + 1))
            case .nan?:
                // A well-sealed message whose contents break the plan: words far out of range
                // (the wire carries integers, so no NaN), or the wrong number of counts.
                let bytes: [UInt8]?
                let kind: Fedseg_V1_MessageKind
                if plan.phase == .clustering {
                    var update = Fedseg_V1_ClientUpdate()
                    update.runID = plan.runID
                    update.round = plan.round
                    update.words = [Int64](repeating: .max, count: Int(plan.k) * Int(plan.dimension) + Int(plan.k))
                    (bytes, kind) = (try? update.serializedBytes(), .clientUpdate)
                } else if plan.phase == .start {
                    var histogram = Fedseg_V1_StartHistogram()
                    histogram.runID = plan.runID
                    histogram.round = plan.round
                    histogram.counts = [1, 2, 3]
                    (bytes, kind) = (try? histogram.serializedBytes(), .startHistogram)
                } else {
                    var update = Fedseg_V1_RecommendationUpdate()
                    update.runID = plan.runID
                    update.round = plan.round
                    update.counts = [1, 2, 3]
                    (bytes, kind) = (try? update.serializedBytes(), .recommendationUpdate)
                }
                if let bytes, let sealed = try? await node.seal(bytes, kind: kind, round: plan.round) {
                    await attempts.add("nan")
                    _ = try? await transport.submit(round: plan.round, envelope: sealed)
                }
            default:
                break
            }
            let outcome = await node.send(answer, transport: transport)
            if misbehave == .replay {
                await attempts.add("replay")
                _ = try? await transport.submit(round: answer.round, envelope: answer.envelope)
            }
            return .answered(outcome, declined: answer.kind == .decline)
        } catch {
            return .failed("\(error)")
        }
    }

    /// A distributed round, stage by stage: every node still in the protocol answers the open
    /// stage (at most `concurrency` at once), then the simulator waits for the coordinator to open
    /// the next. A node that drops out vanishes before one of the five stages, chosen at random.
    func playSecAggRound(
        publication: [UInt8], plan: Fedseg_V1_RoundPlan, nodes: [ClientNode], transport: HTTPCoordinatorTransport, seed: UInt64,
        openNodes: Int, clock: ContinuousClock
    ) async throws {
        let c = configuration
        var dropAt = [Int?](repeating: nil, count: nodes.count)
        var straggle = [Double?](repeating: nil, count: nodes.count)
        for index in nodes.indices {
            var chance = SeededRandom(seed: seed, stream: UInt64(index))
            if chance.nextUniform() < c.dropout { dropAt[index] = Int(chance.next() % 5) }
            straggle[index] = c.stragglers.flatMap { chance.nextUniform() < $0.probability ? $0.seconds : nil }
        }
        let phase = RunPhase(wire: plan.phase)?.rawValue ?? "unknown"
        let names = ["advertise", "share", "mask", "consistency", "unmask"]
        var live = Array(nodes.indices)
        let dropping = dropAt
        let delays = straggle
        for stage in 0..<names.count {
            if stage > 0 {
                guard try await waitForStage(stage + 1, round: plan.round, transport: transport, clock: clock) else { break }
            }
            let progress = Progress(label: "round \(plan.round) (\(phase), secure aggregation: \(names[stage]))", total: live.count, enabled: c.showProgress)
            let answered = IndexSet()
            let candidates = live
            try await forEach(0..<candidates.count, concurrency: c.concurrency) { position in
                let index = candidates[position]
                let node = nodes[index]
                if dropping[index] == stage {
                    await node.endSecAgg()
                    await progress.advance(.droppedOut)
                    return
                }
                let result = await Self.playStage(stage, node: node, publication: publication, round: plan.round, delay: delays[index], transport: transport)
                if index >= openNodes { try? await node.suspend() }
                if case .answered(let outcome, let declined) = result, !declined, outcome == .accepted || outcome == .alreadyAccepted {
                    await answered.insert(index)
                }
                await progress.advance(result)
            }
            await progress.finish()
            live = await answered.sorted
        }
        for node in nodes { await node.endSecAgg() }
        // The round ends when the coordinator has unmasked the sum (or aborted).
        _ = try await waitForStage(Int.max, round: plan.round, transport: transport, clock: clock)
    }

    /// One node's answer to one stage: its keys (or a decline), or its step for the open stage.
    static func playStage(
        _ stage: Int, node: ClientNode, publication: [UInt8], round: UInt64, delay: Double?, transport: HTTPCoordinatorTransport
    ) async -> NodeResult {
        do {
            let answer: ClientNode.Answer?
            if stage == 0 {
                if let delay { try? await Task.sleep(for: .seconds(delay)) }
                answer = try await node.secAggAdvertise(publication)
            } else {
                answer = try await node.secAggStep(round: round, transport: transport)
            }
            guard let answer else { return .failed("nothing to send") }
            return .answered(await node.send(answer, transport: transport), declined: answer.kind == .decline)
        } catch {
            return .failed("\(error)")
        }
    }

    /// Polls the public progress of a distributed round until `stage` is open (true) or the
    /// round is over (false); tolerates a coordinator restart for two minutes.
    func waitForStage(_ stage: Int, round: UInt64, transport: HTTPCoordinatorTransport, clock: ContinuousClock) async throws -> Bool {
        var unreachableSince: ContinuousClock.Instant?
        while true {
            do {
                guard let bytes = try await transport.secAggStage(round: round, client: nil) else { return false }
                unreachableSince = nil
                let publication = try Fedseg_V1_SignedPublication(serializedBytes: bytes)
                let view = try Fedseg_V1_SecAggStage(serializedBytes: publication.payload)
                if view.stage == .secaggStageFinished { return false }
                if view.stage.rawValue >= stage { return true }
            } catch {
                let since = unreachableSince ?? clock.now
                unreachableSince = since
                if clock.now - since > .seconds(120) { throw error }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Runs `body` for every element with at most `concurrency` at once.
    func forEach(
        _ range: Range<Int>, concurrency: Int, _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = range.lowerBound
            while next < range.upperBound, next - range.lowerBound < max(1, concurrency) {
                let index = next
                group.addTask { try await body(index) }
                next += 1
            }
            while try await group.next() != nil {
                if next < range.upperBound {
                    let index = next
                    group.addTask { try await body(index) }
                    next += 1
                }
            }
        }
    }
}

extension NetworkedSimulation {
    /// How many nodes may stay open at once: a quarter of the open-file limit (raised to its hard
    /// limit first), which leaves room for sockets and the coordinator's files. (A node that
    /// reopens its database every round costs about twice as much per round: 2,000 nodes took
    /// 4.1–5.0 s per round all reopening, 2.6–3.2 s with 1,666 of them open. The limit less 2,048
    /// kept 5,984 of 10,000 open, and that run was slower, 229.6 s against 201.1 s, one run each.)
    static func openNodeLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 500 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return max(100, Int(min(limit.rlim_cur, 1 << 20)) / 4 / 3)
    }
}

/// What the evaluation reads from one node's ledger.
struct NodeAudit: Sendable {
    var verified: Bool
    var releases: Set<String>
    var lastEpsilon: Double?
}

/// Per-client results made concurrently (nodes, audits), kept in client order.
actor ClientSlots<Value: Sendable> {
    private var slots: [Value?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Value) { slots[index] = value }

    func all() -> [Value] { slots.map { $0! } }
}

extension NetworkedSimulation {
    /// Runs blocking work (files, fsync) on a dispatch thread and waits for it without holding a
    /// thread of the cooperative pool.
    static func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }
}

actor IndexSet {
    var members = Set<Int>()
    func insert(_ index: Int) { members.insert(index) }
    var sorted: [Int] { members.sorted() }
}

actor AttemptCounter {
    var counts: [String: Int] = [:]
    func add(_ kind: String) { counts[kind, default: 0] += 1 }
}

/// A one-line progress bar per round on a terminal (stderr).
actor Progress {
    let label: String
    let total: Int
    let enabled: Bool
    var done = 0
    var accepted = 0
    var declined = 0
    var dropped = 0
    var failed = 0
    var lastDrawn = -1

    init(label: String, total: Int, enabled: Bool) {
        self.label = label
        self.total = total
        self.enabled = enabled
    }

    func advance(_ result: NetworkedSimulation.NodeResult) {
        done += 1
        switch result {
        case .answered(let outcome, let wasDecline):
            if wasDecline { declined += 1 } else if outcome == .accepted || outcome == .alreadyAccepted { accepted += 1 } else { failed += 1 }
        case .droppedOut: dropped += 1
        case .failed: failed += 1
        }
        draw(final: false)
    }

    func finish() { draw(final: true) }

    func draw(final: Bool) {
        let width = 30
        let filled = total == 0 ? width : done * width / total
        guard enabled || final, final || filled != lastDrawn else { return }
        lastDrawn = filled
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\(label) [\(bar)] \(done)/\(total)  accepted \(accepted)  declined \(declined)  dropped \(dropped)  failed \(failed)"
        FileHandle.standardError.write(Data(((enabled ? "\r" : "") + line + (final ? "\n" : "")).utf8))
    }
}
