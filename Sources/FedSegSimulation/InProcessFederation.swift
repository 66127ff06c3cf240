import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import Foundation

/// The whole private segmentation on one machine, with no network: clients embed their users
/// locally, every release is charged to each client's ledger and to the coordinator's before it
/// happens, and the report compares the result with centralised non-private K-means. It is the
/// reference the networked coordinator and clients are checked against, and what `make demo` runs
/// until they exist.
public struct InProcessFederation: Sendable {
    public struct Configuration: Sendable {
        public var clients: Int
        public var k: Int
        public var epsilon: Double
        public var delta: Double
        public var mode: String  // "local" or "central"
        public var embedder: EmbedderChoice
        public var seed: UInt64
        public var stateDirectory: URL

        public init(
            clients: Int, k: Int, epsilon: Double, delta: Double, mode: String, embedder: EmbedderChoice, seed: UInt64,
            stateDirectory: URL
        ) {
            self.clients = clients
            self.k = k
            self.epsilon = epsilon
            self.delta = delta
            self.mode = mode
            self.embedder = embedder
            self.seed = seed
            self.stateDirectory = stateDirectory
        }
    }

    /// The report; keys follow the networked simulator's report where they overlap.
    public struct Report: Codable, Sendable {
        public struct Segment: Codable, Sendable {
            public var id: Int
            public var size: Int
            /// The public items nearest the centroid (titles), to see what a segment is about.
            public var nearestItems: [String]
        }

        public var clients: Int
        public var users: Int
        public var rounds: Int
        public var privacyMode: String
        public var embedder: String
        public var epsilonSpent: Double
        public var delta: Double
        public var segments: [Segment]
        public var ariTruth: Double?
        public var nmiTruth: Double?
        public var ariCentralized: Double
        public var costRatio: Double
        public var plan: String
        public var ledgersVerified: Bool
        public var embedSeconds: Double
        public var wallSeconds: Double
    }

    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public func run(dataset: Dataset, log: (String) -> Void = { _ in }) throws -> Report {
        let clock = ContinuousClock()
        let started = clock.now
        let c = configuration
        let (embedder, warning) = c.embedder.make()
        if let warning { log("warning: \(warning)") }
        // Items are public: embed each once. A user's vector pools their own texts' embedding with
        // the embeddings of the items they liked (unit-normalised mean).
        log("embedding \(dataset.items.count) items and \(dataset.users.count) users with \(embedder.identifier)")
        let itemVectors = try embedder.embed(dataset.items.map { item in
            ([item.title, item.text ?? ""] + [(item.tags ?? []).prefix(8).joined(separator: ", ")]).joined(separator: ". ")
        })
        let itemRow = Dictionary(dataset.items.enumerated().map { ($1.item, $0) }, uniquingKeysWith: { a, _ in a })
        let textVectors = try embedder.embed(dataset.users.map { $0.texts.joined(separator: " ") })
        var points = Matrix(rows: dataset.users.count, cols: embedder.dimension)
        for (u, user) in dataset.users.enumerated() {
            var sum = [Float](repeating: 0, count: embedder.dimension)
            if !user.texts.isEmpty { BLAS.axpy(1, x: textVectors.row(u), y: &sum) }
            for id in user.items { if let row = itemRow[id] { BLAS.axpy(1, x: itemVectors.row(row), y: &sum) } }
            points.setRow(u, to: sum)
        }
        points.normalizeRows()
        let embedSeconds = Self.seconds(clock.now - started)

        // Clients: by the dataset's client field when present, else users dealt by id hash.
        let hasher = KeyedHash(seed: c.seed)
        var shardOf = [Int](repeating: 0, count: dataset.users.count)
        var names: [String: Int] = [:]
        for (u, user) in dataset.users.enumerated() {
            if let client = user.client {
                shardOf[u] = names[client] ?? { names[client] = names.count; return names.count - 1 }()
            } else {
                shardOf[u] = Int(hasher.hash(user.user) % UInt64(max(1, c.clients)))
            }
        }
        let clientCount = (shardOf.max() ?? 0) + 1
        var members = [[Int]](repeating: [], count: clientCount)
        for (u, s) in shardOf.enumerated() { members[s].append(u) }
        let shards = members.map { KMeans.gatherRows(points, $0) }

        let mode: NoiseMode = c.mode == "central" ? .central : .local(shards: clientCount)
        let plan = try PrivateClusteringPlan.make(
            epsilon: c.epsilon, delta: c.delta, k: c.k, dimension: embedder.dimension, mode: mode, hasPublicStart: true
        )
        log("plan: \(plan.reason)")

        // Ledgers: the coordinator's charges the population of all users; each client charges its own.
        try FileManager.default.createDirectory(at: c.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let coordinatorLedger = try PrivacyLedger(path: c.stateDirectory.appendingPathComponent(PrivacyLedger.fileName).path)
        try coordinatorLedger.setBudget(.init(population: "all-users", epsilon: c.epsilon, delta: c.delta))
        let clientsDirectory = c.stateDirectory.appendingPathComponent("clients")
        try FileManager.default.createDirectory(at: clientsDirectory, withIntermediateDirectories: true)
        var clientLedgers: [PrivacyLedger] = []
        for index in 0..<clientCount {
            let dir = clientsDirectory.appendingPathComponent("client-\(index)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let ledger = try PrivacyLedger(path: dir.appendingPathComponent(PrivacyLedger.fileName).path)
            try ledger.setBudget(.init(population: "client-\(index)", epsilon: c.epsilon, delta: c.delta))
            clientLedgers.append(ledger)
        }
        let modeName = c.mode == "central" ? "central" : "local"
        func charge(_ release: String, round: Int, noiseMultiplier: Double) throws {
            let mechanism = PrivacyLedger.Mechanism(kind: .gaussian, noiseMultiplier: noiseMultiplier, mode: modeName)
            for (index, ledger) in clientLedgers.enumerated() {
                try ledger.charge(releaseID: release, round: Int64(round), mechanism: mechanism, populations: ["client-\(index)"])
            }
            try coordinatorLedger.charge(releaseID: release, round: Int64(round), mechanism: mechanism, populations: ["all-users"])
        }

        var noise = GaussianSampler()
        let publicStart = PrivateClustering.publicStart(itemVectors, k: c.k, seed: c.seed)
        var start = publicStart.centroids
        var variances = publicStart.variances
        var prior: [PrivateClustering.Release] = []
        if let z = plan.histogramNoiseMultiplier {
            try charge("start-histogram", round: 0, noiseMultiplier: z)
            if let weighted = PrivateClustering.weightedStart(
                shards: shards, publicSample: itemVectors, k: c.k, candidates: 8 * c.k, plan: plan, noise: &noise,
                seed: c.seed, publicStart: publicStart.centroids
            ) {
                (start, variances, prior) = (weighted.centroids, weighted.variances, [weighted.release])
            }
        }
        for round in 1...plan.rounds {
            try charge("lloyd-\(round)", round: round, noiseMultiplier: plan.noiseMultiplier)
        }
        let result = PrivateClustering.run(shards: shards, start: start, startVariances: variances, plan: plan, noise: &noise, priorReleases: prior)
        let labels = KMeans.assign(points, to: result.centroids)
        let baseline = KMeans.fit(points, .init(k: c.k, restarts: 5, seed: c.seed))
        let truthNames = dataset.users.map(\.segment)
        var truth: [Int32]?
        if truthNames.allSatisfy({ $0 != nil }) {
            var ids: [String: Int32] = [:]
            truth = truthNames.map { name in ids[name!] ?? { ids[name!] = Int32(ids.count); return Int32(ids.count - 1) }() }
        }
        let sizes = Metrics.clusterSizes(labels: labels, k: c.k)
        let nearest = KMeans.squaredDistances(result.centroids, to: itemVectors)
        let segments = (0..<c.k).map { j in
            Report.Segment(
                id: j, size: sizes[j],
                nearestItems: nearest[j].enumerated().sorted { $0.element < $1.element }.prefix(3).map { dataset.items[$0.offset].title }
            )
        }
        let verified = try ([coordinatorLedger] + clientLedgers).allSatisfy { try LedgerAudit.run($0).verified }
        return Report(
            clients: clientCount, users: dataset.users.count, rounds: plan.rounds, privacyMode: modeName,
            embedder: embedder.identifier, epsilonSpent: try coordinatorLedger.spent(by: "all-users"), delta: c.delta,
            segments: segments, ariTruth: truth.map { Metrics.adjustedRandIndex(labels, $0) },
            nmiTruth: truth.map { Metrics.normalizedMutualInformation(labels, $0) },
            ariCentralized: Metrics.adjustedRandIndex(labels, baseline.labels),
            costRatio: Metrics.inertia(points: points, centroids: result.centroids, labels: labels) / baseline.inertia,
            plan: plan.reason, ledgersVerified: verified, embedSeconds: embedSeconds, wallSeconds: Self.seconds(clock.now - started)
        )
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
