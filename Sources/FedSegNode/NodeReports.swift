import FedSegClient
import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation

/// What `fedseg-node segments`, `recommend` and `status` answer, computed on the node from its
/// stored users and its kept model: nothing here is sent anywhere.
extension NodeHome {
    public struct SegmentsReport: Sendable, Codable {
        public struct Assignment: Sendable, Codable {
            public var user: String
            public var segment: Int
        }

        public struct Segment: Sendable, Codable {
            public var id: Int
            /// This node's users in it (exact: computed here, never released).
            public var users: Int
            /// A short name from the titles and tags of its top items.
            public var label: String
            public var topItems: [String]

            enum CodingKeys: String, CodingKey {
                case id, users, label
                case topItems = "top_items"
            }
        }

        public var runID: String
        public var modelVersion: Int
        public var users: Int
        /// Users of this node per segment (index = segment id).
        public var sizes: [Int]
        public var segments: [Segment]
        public var assignments: [Assignment]

        enum CodingKeys: String, CodingKey {
            case users, sizes, segments, assignments
            case runID = "run_id"
            case modelVersion = "model_version"
        }
    }

    /// Each stored user's segment under the latest kept model.
    public func segments() async throws -> SegmentsReport {
        guard let model = try await latestModel(), let centroids = model.centroidMatrix else { throw Failure.noModel }
        let users = try store.users()
        guard users.allSatisfy({ $0.vector.count == centroids.cols }) else {
            throw Failure.invalid("the stored users' vectors (d = \(users.first?.vector.count ?? 0)) do not match the model's \(model.embedderID) (d = \(centroids.cols)): serve with the embedder the runs use")
        }
        var points = Matrix(rows: users.count, cols: centroids.cols)
        for (u, user) in users.enumerated() { points.setRow(u, to: user.vector) }
        let labels = users.isEmpty ? [] : KMeans.assign(points, to: centroids)
        var sizes = [Int](repeating: 0, count: centroids.rows)
        for label in labels { sizes[Int(label)] += 1 }
        let items = try catalogue()
        let tops = (0..<centroids.rows).map { j in
            (model.segments.first { $0.id == j }?.items ?? []).prefix(8).compactMap { $0 < model.catalogItems.count ? model.catalogItems[$0] : nil }
        }
        let names = SegmentLabel.make(segments: tops.map { $0.compactMap { items[$0].map(UserProfiles.itemText) } })
        let segments = (0..<centroids.rows).map { j in
            SegmentsReport.Segment(id: j, users: sizes[j], label: names[j], topItems: Array(tops[j].prefix(5)))
        }
        return SegmentsReport(
            runID: model.runID, modelVersion: model.version, users: users.count, sizes: sizes, segments: segments,
            assignments: zip(users, labels).map { SegmentsReport.Assignment(user: $0.id, segment: Int($1)) }
        )
    }

    public struct Recommendation: Sendable, Codable {
        public struct Item: Sendable, Codable {
            public var rank: Int
            public var item: String
            public var title: String?
        }

        public var runID: String
        public var modelVersion: Int
        /// The user's segment (nil: the model has no per-segment lists, the global one was used).
        public var segment: Int?
        public var user: String?
        public var items: [Item]

        enum CodingKeys: String, CodingKey {
            case segment, user, items
            case runID = "run_id"
            case modelVersion = "model_version"
        }
    }

    public enum RecommendationSubject: Sendable {
        case user(String)
        case text(String)
    }

    /// Top items for a stored user (without what they have) or a new user's text (cold start),
    /// ranked here from the kept model.
    public func recommend(_ subject: RecommendationSubject, k: Int) async throws -> Recommendation {
        guard let model = try await latestModel() else { throw Failure.noModel }
        guard !model.catalogItems.isEmpty else {
            throw Failure.invalid("the latest model (run \(model.runID)) has no catalogue: that run had no recommendation phase (start runs with --catalog)")
        }
        let catalogIndex = Dictionary(model.catalogItems.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        let vector: [Float]
        var exclude = Set<Int>()
        var userID: String?
        switch subject {
        case .user(let id):
            guard let user = try store.user(id) else {
                throw Failure.invalid("no user \(id) on this node (users come from the data directory `serve` reads)")
            }
            vector = user.vector
            exclude = Set(user.items.compactMap { catalogIndex[$0] })
            userID = id
        case .text(let text):
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw Failure.invalid("--text is empty") }
            let settings = try store.settings()
            let choice = settings.embedder.flatMap(EmbedderChoice.init(rawValue:)) ?? .minilm
            // Not cached: a one-off text stays out of the node's files.
            let embedder = try Self.embedder(choice)
            guard embedder.identifier == model.embedderID else {
                throw Failure.invalid("this node embeds with \(embedder.identifier) but the model's segments live in \(model.embedderID)")
            }
            vector = try UserProfiles.vector(ofText: text, embedder: embedder)
        }
        let segment = ClientNode.segment(of: vector, model: model)
        // Re-ranked here with the user's own vector against the public items' (no privacy cost), by
        // the blend `serve` chose from this node's own users.
        let items = try catalogue()
        let settings = try store.settings()
        let blend = settings.rerankBlend ?? 0
        let itemVectors = blend > 0 ? try catalogueVectors(model: model, items: items) : nil
        let ranked = LocalRanker(model: model, itemVectors: itemVectors, blend: itemVectors == nil ? 0 : blend, globalWeight: settings.rerankGlobalWeight ?? 0)
            .recommend(segment: segment, userVector: vector, exclude: exclude, k: k)
        let titles = items.mapValues(\.title)
        return Recommendation(
            runID: model.runID, modelVersion: model.version, segment: model.segments.isEmpty ? nil : segment, user: userID,
            items: ranked.enumerated().map { position, index in
                let id = model.catalogItems[index]
                return .init(rank: position + 1, item: id, title: titles[id])
            }
        )
    }

    /// The embeddings of the model's catalogue, in its order, from the items this node holds
    /// (cached by `serve`); nil when the node holds none of them or the embedder differs.
    func catalogueVectors(model: SegmentModel, items: [String: Dataset.Item]) throws -> Matrix? {
        let settings = try store.settings()
        guard !items.isEmpty, let choice = settings.embedder.flatMap(EmbedderChoice.init(rawValue:)) else { return nil }
        let cache = settings.cacheDirectory.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? directory.appendingPathComponent("embeddings", isDirectory: true)
        let embedder = try CachingEmbedder(base: try Self.embedder(choice), directory: cache)
        guard embedder.identifier == model.embedderID else { return nil }
        let known = model.catalogItems.enumerated().compactMap { index, id in items[id].map { (index, UserProfiles.itemText($0)) } }
        guard !known.isEmpty else { return nil }
        let vectors = try embedder.embed(known.map(\.1))
        var matrix = Matrix(rows: model.catalogItems.count, cols: vectors.cols)
        for (row, (index, _)) in known.enumerated() { matrix.setRow(index, to: vectors.row(row)) }
        return matrix
    }

    /// The items of the data directory `serve` last read (empty when it is gone).
    func catalogue() throws -> [String: Dataset.Item] {
        guard let path = try store.settings().dataDirectory,
            let items = try? Dataset.loadItems(from: URL(fileURLWithPath: path, isDirectory: true))
        else { return [:] }
        return Dictionary(items.map { ($0.item, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public struct Status: Sendable, Codable {
        public struct Run: Sendable, Codable {
            public var runID: String
            /// Releases of this run charged to the node's ledger.
            public var chargedRounds: Int
            /// Rounds the node declined (with their reasons).
            public var declined: [String]
            public var modelVersion: Int?

            enum CodingKeys: String, CodingKey {
                case declined
                case runID = "run_id"
                case chargedRounds = "charged_rounds"
                case modelVersion = "model_version"
            }
        }

        public var stateDirectory: String
        public var clientID: String?
        public var enrolled: Bool
        public var coordinatorURL: String?
        public var coordinatorFingerprint: String?
        public var signingKey: String
        public var users: Int
        public var epsilonSpent: Double
        public var epsilonBudget: Double?
        public var ledgerVerified: Bool
        public var runs: [Run]

        enum CodingKeys: String, CodingKey {
            case enrolled, users, runs
            case stateDirectory = "state_dir"
            case clientID = "client_id"
            case coordinatorURL = "coordinator_url"
            case coordinatorFingerprint = "coordinator_fingerprint"
            case signingKey = "signing_key"
            case epsilonSpent = "epsilon_spent"
            case epsilonBudget = "epsilon_budget"
            case ledgerVerified = "ledger_verified"
        }
    }

    public func status() async throws -> Status {
        let settings = try store.settings()
        let node = try clientNode(id: settings.clientID ?? "unenrolled", embedderID: "", budget: nil)
        let keys = await node.pinnedKeys
        let ledger = try await node.ledger()
        let audit = try LedgerAudit.run(ledger)
        let population = "client:\(settings.clientID ?? "unenrolled")"
        var charged: [String: Int] = [:]
        for record in try ledger.records() where record.population == population {
            charged[Self.runID(ofRelease: record.releaseID), default: 0] += 1
        }
        let declines = try await node.declines()
        var models: [String: Int] = [:]
        for model in try store.models() { models[model.runID] = max(models[model.runID] ?? 0, model.version) }
        let runIDs = Set(charged.keys).union(declines.keys).union(models.keys).sorted()
        let entry = audit.populations.first { $0.population == population }
        let budget = try entry?.epsilonBudget ?? ledger.budget(for: population)?.epsilon
        return Status(
            stateDirectory: directory.path, clientID: settings.clientID, enrolled: settings.enrolledAt != nil, coordinatorURL: settings.coordinatorURL,
            coordinatorFingerprint: keys.map { Self.fingerprint(ofHex: $0.signing.hex) }, signingKey: node.signingKeyHex,
            users: try store.users().count, epsilonSpent: entry?.epsilonSpent ?? 0, epsilonBudget: budget,
            ledgerVerified: audit.verified,
            runs: runIDs.map { Status.Run(runID: $0, chargedRounds: charged[$0] ?? 0, declined: declines[$0] ?? [], modelVersion: models[$0]) }
        )
    }

    /// The ledger audit of this node (hash chain, every ε recomputed).
    public func audit() async throws -> LedgerAudit {
        let settings = try store.settings()
        let node = try clientNode(id: settings.clientID ?? "unenrolled", embedderID: "", budget: nil)
        return try LedgerAudit.run(try await node.ledger())
    }

    /// "RUN/round-N" → "RUN".
    static func runID(ofRelease release: String) -> String {
        guard let range = release.range(of: "/round-", options: .backwards) else { return release }
        return String(release[..<range.lowerBound])
    }
}
