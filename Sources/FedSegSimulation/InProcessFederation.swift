import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegRecommend
import FedSegSecureAggregation
import Foundation

/// The whole private segmentation on one machine, with no network: clients embed their users
/// locally, every release is charged to each client's ledger and to the coordinator's before it
/// happens, and the report compares the result with centralised non-private K-means. It is the
/// reference the networked coordinator and clients are checked against (`client-sim simulate`),
/// and the one place distributed mode (secure aggregation) runs end to end so far.
public struct InProcessFederation: Sendable {
    public struct Configuration: Sendable {
        public var clients: Int
        public var k: Int
        public var epsilon: Double
        public var delta: Double
        public var mode: String  // "local", "central" or "distributed"
        public var embedder: EmbedderChoice
        public var seed: UInt64
        public var stateDirectory: URL
        /// Share of the run's 1/z² budget for clustering; the rest pays for the recommendation release.
        public var clusteringShare: Double = 0.7
        /// Items a user contributes to the recommendation histogram at most.
        public var maxItemsPerUser: Int = 20
        /// Fraction of each user's interactions held out for evaluation (never sent anywhere).
        public var holdoutFraction: Double = 0.2
        /// Fraction of users treated as new (cold start): all their interactions held out.
        public var coldStartFraction: Double = 0.1
        /// Distributed mode: share of clients that drop out of each secure-aggregation round.
        public var secureAggregationDropout = 0.1
        /// Where embeddings are remembered between runs (nil: no cache).
        public var cacheDirectory: URL?

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
        public var recommendation: [RecommendationRow]
        public var ariTruth: Double?
        public var nmiTruth: Double?
        public var ariCentralized: Double
        public var costRatio: Double
        public var plan: String
        public var ledgersVerified: Bool
        public var embedSeconds: Double
        public var wallSeconds: Double
    }

    public struct RecommendationRow: Codable, Sendable {
        public var model: String
        public var recallAt10: Double
        public var ndcgAt10: Double
        public var coverage: Double
        public var coldStartRecallAt10: Double

        enum CodingKeys: String, CodingKey {
            case model, coverage
            case recallAt10 = "recall_at_10"
            case ndcgAt10 = "ndcg_at_10"
            case coldStartRecallAt10 = "cold_start_recall_at_10"
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public func run(dataset: Dataset, log: (String) -> Void = { _ in }) throws -> Report {
        let clock = ContinuousClock()
        let started = clock.now
        let c = configuration
        let (model, warning) = c.embedder.make()
        if let warning { log("warning: \(warning)") }
        let embedder: any Embedder = try c.cacheDirectory.map { try CachingEmbedder(base: model, directory: $0) } ?? model
        log("embedding \(dataset.items.count) items and \(dataset.users.count) users with \(embedder.identifier)")
        let prepared = try PreparedDataset.make(
            dataset, embedder: embedder, seed: c.seed, holdoutFraction: c.holdoutFraction, coldStartFraction: c.coldStartFraction
        )
        let (itemVectors, points, training, coldStart) = (prepared.itemVectors, prepared.points, prepared.training, prepared.coldStart)
        let embedSeconds = prepared.embedSeconds

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
        for (u, s) in shardOf.enumerated() where !coldStart[u] { members[s].append(u) }
        let shards = members.map { KMeans.gatherRows(points, $0) }

        // Distributed mode: the aggregate carries the noise once (SecAgg+ with distributed discrete
        // Gaussian shares), so it is planned like central noise.
        let centralNoise = c.mode == "central" || c.mode == "distributed"
        let mode: NoiseMode = centralNoise ? .central : .local(shards: clientCount)
        let plan = try PrivateClusteringPlan.make(
            epsilon: c.epsilon, delta: c.delta, k: c.k, dimension: embedder.dimension, mode: mode, hasPublicStart: true,
            histogramShare: c.mode == "distributed" ? 0 : PrivateClusteringPlan.defaultHistogramShare,
            budgetShare: c.clusteringShare
        )
        let recommendationNoise = try Calibration.noiseMultiplier(epsilon: c.epsilon, delta: c.delta, rounds: 1)
            / (1 - c.clusteringShare).squareRoot()
        log("plan: \(plan.reason); recommendation release: discrete Gaussian, z = \(String(format: "%.3f", recommendationNoise)), at most \(c.maxItemsPerUser) items per user")

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
        let modeName = c.mode
        func charge(_ release: String, round: Int, noiseMultiplier: Double, kind: PrivacyLedger.Mechanism.Kind = .gaussian) throws {
            let mechanism = PrivacyLedger.Mechanism(kind: kind, noiseMultiplier: noiseMultiplier, mode: modeName)
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
        let centroids: Matrix
        if c.mode == "distributed" {
            let minimumSurvivors = max(1, Int((Double(clientCount) * (1 - c.secureAggregationDropout - 0.1)).rounded(.down)))
            let distributed = try DistributedClustering.run(
                shards: shards, start: start, startVariances: variances, plan: plan, minimumSurvivors: minimumSurvivors,
                dropout: c.secureAggregationDropout, seed: c.seed
            )
            log(String(format: "secure aggregation: %d clients, %.0f%% dropping out after sharing keys, each adding a discrete Gaussian share σ = %.1f (sums ×%.0f), survivors %@",
                       clientCount, c.secureAggregationDropout * 100, distributed.noise.clientSigma, distributed.noise.sumScale,
                       distributed.rounds.map { String($0.survivors) }.joined(separator: ", ")))
            centroids = distributed.centroids
        } else {
            centroids = PrivateClustering.run(shards: shards, start: start, startVariances: variances, plan: plan, noise: &noise, priorReleases: prior).centroids
        }
        let labels = KMeans.assign(points, to: centroids)

        // Recommendation phase: each client's per-segment item histogram, noised, charged first.
        let catalog = ItemCatalog(ids: dataset.items.map(\.item))
        try charge("recommend", round: plan.rounds + 1, noiseMultiplier: recommendationNoise, kind: .discreteGaussian)
        var exact = SegmentHistogram(segments: c.k, items: catalog.count)
        var released = SegmentHistogram(segments: c.k, items: catalog.count)
        var sampling = SecureRandom()
        for group in members {
            var local = SegmentHistogram(segments: c.k, items: catalog.count)
            for u in group {
                local.add(userItems: training[u], segment: Int(labels[u]), catalog: catalog, maxItemsPerUser: c.maxItemsPerUser, using: &sampling)
            }
            exact.merge(local)
            if !centralNoise {
                try local.addNoise(noiseMultiplier: recommendationNoise, maxItemsPerUser: c.maxItemsPerUser, generator: BufferedSecureRandom())
            }
            released.merge(local)
        }
        // Distributed mode: each client's discrete Gaussian share summed through secure aggregation
        // is, to within τ < 1e-60, one discrete Gaussian on the aggregate; drawn once here.
        if centralNoise {
            try released.addNoise(noiseMultiplier: recommendationNoise, maxItemsPerUser: c.maxItemsPerUser, generator: BufferedSecureRandom())
        }
        let copies = centralNoise ? 1.0 : Double(clientCount)
        let releasedNoiseStd = recommendationNoise * SegmentHistogram.sensitivity(maxItemsPerUser: c.maxItemsPerUser) * copies.squareRoot()
        let recommendation = Self.evaluate(
            exact: exact, privateModel: SegmentModel.build(from: released, runID: "eval", version: 1, noiseStd: releasedNoiseStd),
            labels: labels, centroids: centroids, prepared: prepared
        )
        // Clustering quality over the users that took part (cold-start users are new, not clustered).
        let participants = dataset.users.indices.filter { !coldStart[$0] }
        let participantPoints = KMeans.gatherRows(points, participants)
        let participantLabels = participants.map { labels[$0] }
        let baseline = KMeans.fit(participantPoints, .init(k: c.k, restarts: 5, seed: c.seed))
        let truth = prepared.truth(for: participants)
        let sizes = Metrics.clusterSizes(labels: participantLabels, k: c.k)
        let nearest = KMeans.squaredDistances(centroids, to: itemVectors)
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
            segments: segments, recommendation: recommendation,
            ariTruth: truth.map { Metrics.adjustedRandIndex(participantLabels, $0) },
            nmiTruth: truth.map { Metrics.normalizedMutualInformation(participantLabels, $0) },
            ariCentralized: Metrics.adjustedRandIndex(participantLabels, baseline.labels),
            costRatio: Metrics.inertia(points: participantPoints, centroids: centroids, labels: participantLabels) / baseline.inertia,
            plan: plan.reason, ledgersVerified: verified, embedSeconds: embedSeconds, wallSeconds: Self.seconds(clock.now - started)
        )
    }

    /// Recall@10, NDCG@10 and coverage for global popularity, non-private and private segment
    /// models and the blended local ranking; cold-start users are placed by their text alone.
    static func evaluate(
        exact: SegmentHistogram, privateModel: SegmentModel, labels: [Int32], centroids: Matrix, prepared: PreparedDataset
    ) -> [RecommendationRow] {
        let (points, textVectors, users) = (prepared.points, prepared.textVectors, prepared.dataset.users)
        let (training, heldOut, coldStart, itemRow, itemVectors) = (prepared.training, prepared.heldOut, prepared.coldStart, prepared.itemRow, prepared.itemVectors)
        // Global popularity from the exact training interactions: the strongest form of the baseline.
        var popularity = SegmentHistogram(segments: 1, items: exact.items)
        for s in 0..<exact.segments { for i in 0..<exact.items { popularity.counts[i] += exact.counts[s * exact.items + i] } }
        let popular = SegmentModel.build(from: popularity, runID: "eval", version: 1)
        let nonPrivate = SegmentModel.build(from: exact, runID: "eval", version: 1)
        let coldLabels = KMeans.assign(textVectors, to: centroids)
        let rankers: [(String, LocalRanker, Bool)] = [
            ("popularity", LocalRanker(model: popular), false),
            ("segment_nonprivate", LocalRanker(model: nonPrivate), true),
            ("segment_private", LocalRanker(model: privateModel), true),
            ("blended", LocalRanker(model: privateModel, itemVectors: itemVectors, blend: 0.3), true),
        ]
        return rankers.map { name, ranker, segmented in
            var recall = 0.0, ndcg = 0.0, count = 0, coldRecall = 0.0, coldCount = 0
            var lists: [[Int]] = []
            for u in users.indices where !heldOut[u].isEmpty {
                if coldStart[u] {
                    let hasText = !users[u].texts.isEmpty
                    let segment: Int? = segmented && hasText ? Int(coldLabels[u]) : nil
                    let list = ranker.recommend(segment: segment, userVector: hasText ? textVectors.row(u) : nil, exclude: [])
                    coldRecall += RankingMetrics.recall(list, relevant: heldOut[u])
                    coldCount += 1
                } else {
                    let exclude = Set(training[u].compactMap { itemRow[$0] })
                    let list = ranker.recommend(segment: segmented ? Int(labels[u]) : nil, userVector: points.row(u), exclude: exclude)
                    recall += RankingMetrics.recall(list, relevant: heldOut[u])
                    ndcg += RankingMetrics.ndcg(list, relevant: heldOut[u])
                    count += 1
                    lists.append(list)
                }
            }
            return RecommendationRow(
                model: name, recallAt10: recall / Double(max(1, count)), ndcgAt10: ndcg / Double(max(1, count)),
                coverage: RankingMetrics.coverage(lists, catalogSize: exact.items),
                coldStartRecallAt10: coldRecall / Double(max(1, coldCount))
            )
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
