import Foundation

// The admin API's JSON shapes (docs/PROTOCOL.md), shared by the coordinator that serves them and
// the tools that read them (`fedseg`, `client-sim`). Keys are snake_case on the wire.

/// What an operator chooses when starting a training run (admin API `POST /admin/v1/runs`,
/// `fedseg run start`). JSON with snake_case keys; every field but `k`, `epsilon` and `delta`
/// has a default that works for a small federation on loopback.
public struct RunParameters: Codable, Sendable, Equatable {
    /// Segments; with `k_selection` `auto` or the `density` clusterer, the most segments allowed.
    public var k: Int
    /// `fixed` (k segments) or `auto` (chosen in 2...k after the first Lloyd round).
    public var kSelection: SegmentCountSelection = .fixed
    /// `kmeans` or `density` (dense regions of the DP-weighted candidates).
    public var clusterer: Clusterer = .kmeans
    /// A segment whose released count falls under this share of all released counts in the last
    /// Lloyd round is dropped (its users join the nearest other segment); 0 keeps all.
    public var minSegmentShare: Double = 0.02
    /// The embedder every client must use: `all-MiniLM-L6-v2` or `hashing-v1-d<D>-s<S>`.
    public var embedderID: String = "all-MiniLM-L6-v2"
    public var dimension: Int = 384
    /// DP Lloyd rounds at most (fewer when centroids stop moving).
    public var rounds: Int = 2
    /// The run's (ε, δ), for every user, over initialisation, clustering and recommendation.
    public var epsilon: Double
    public var delta: Double
    /// Share of the run's 1/z² budget spent on clustering; the rest on the recommendation release.
    /// 1 when the run has no catalogue.
    public var clusteringShare: Double = 0.7
    public var clipNorm: Double = 1
    /// Lloyd rounds after the first clip and sum each user's offset from its segment's current
    /// centroid (bounded by a clip norm derived from released values) instead of the vector itself.
    public var centeredClipping: Bool = true
    /// The recommendation histogram carries a global row besides the segments' (each user's
    /// items counted twice, sensitivity √(2m)): the global list new users get from it carries
    /// less noise than the sum of every segment's row.
    public var globalRow: Bool = true
    /// `local`: every client adds the full noise to its own update. `distributed`: secure
    /// aggregation (SecAgg+); each client adds a share of the noise and the coordinator learns
    /// only the noised sum of at least `min_participants` clients.
    public var privacyMode: PrivacyMode = .local
    /// Distributed mode: an upper bound on the users the federation holds, which sizes the
    /// quantisation so that the integer sum never wraps mod 2^32.
    public var maxUsers: Int = 1_000_000
    /// Distributed mode: clients assumed to collude with the coordinator (each can subtract its
    /// own noise share). Shares are sized so that the fewest survivors minus these still carry
    /// the planned noise.
    public var assumedColluders: Int = 1
    /// A round is aggregated with at least this many updates, abandoned with fewer.
    public var minParticipants: Int = 1
    /// Seconds a round stays open.
    public var roundDeadlineSeconds: Double = 30
    /// Probability with which each client takes part in a round (it samples itself; 1: all).
    public var samplingRate: Double = 1
    /// Stop early once no centroid moved more than this (L2); 0 disables.
    public var convergenceTolerance: Double = 1e-3
    /// `public`: K-means on the embedded seed phrases; `random`: seeded random unit directions.
    public var initialization: Initialization = .public
    /// Public text (item titles, operator phrases) embedded on the coordinator for the start.
    public var seedPhrases: [String] = []
    /// Share of the clustering budget for the start histogram: which public candidate (K-means
    /// centre of the seed phrases) each user is nearest to, noised, so the start follows the
    /// private data's cluster sizes. Public starts only; 0 starts from the seed phrases alone.
    public var startHistogramShare: Double = 0.1
    public var seed: UInt64 = 1
    /// The public catalogue (item ids) for the recommendation phase; empty: no recommendation.
    public var catalog: [String] = []
    public var maxItemsPerUser: Int = 20
    /// A round abandoned this many times in a row fails the run.
    public var maxAbandonedRounds: Int = 3

    public init(k: Int, epsilon: Double, delta: Double) {
        self.k = k
        self.epsilon = epsilon
        self.delta = delta
    }

    enum CodingKeys: String, CodingKey {
        case k, dimension, rounds, epsilon, delta, seed, catalog, initialization
        case embedderID = "embedder_id"
        case clusteringShare = "clustering_share"
        case clipNorm = "clip_norm"
        case centeredClipping = "centered_clipping"
        case globalRow = "global_row"
        case privacyMode = "privacy_mode"
        case minParticipants = "min_participants"
        case roundDeadlineSeconds = "round_deadline_seconds"
        case samplingRate = "sampling_rate"
        case convergenceTolerance = "convergence_tolerance"
        case seedPhrases = "seed_phrases"
        case maxItemsPerUser = "max_items_per_user"
        case maxAbandonedRounds = "max_abandoned_rounds"
        case maxUsers = "max_users"
        case assumedColluders = "assumed_colluders"
        case startHistogramShare = "start_histogram_share"
        case kSelection = "k_selection"
        case clusterer
        case minSegmentShare = "min_segment_share"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var p = RunParameters(k: try c.decode(Int.self, forKey: .k), epsilon: try c.decode(Double.self, forKey: .epsilon), delta: try c.decode(Double.self, forKey: .delta))
        func take<T: Decodable>(_ key: CodingKeys, _ path: WritableKeyPath<RunParameters, T>) throws {
            if let value = try c.decodeIfPresent(T.self, forKey: key) { p[keyPath: path] = value }
        }
        try take(.embedderID, \.embedderID)
        try take(.dimension, \.dimension)
        try take(.rounds, \.rounds)
        try take(.clusteringShare, \.clusteringShare)
        try take(.clipNorm, \.clipNorm)
        try take(.centeredClipping, \.centeredClipping)
        try take(.globalRow, \.globalRow)
        try take(.privacyMode, \.privacyMode)
        try take(.minParticipants, \.minParticipants)
        try take(.roundDeadlineSeconds, \.roundDeadlineSeconds)
        try take(.samplingRate, \.samplingRate)
        try take(.convergenceTolerance, \.convergenceTolerance)
        try take(.initialization, \.initialization)
        try take(.seedPhrases, \.seedPhrases)
        try take(.seed, \.seed)
        try take(.catalog, \.catalog)
        try take(.maxItemsPerUser, \.maxItemsPerUser)
        try take(.maxAbandonedRounds, \.maxAbandonedRounds)
        try take(.maxUsers, \.maxUsers)
        try take(.assumedColluders, \.assumedColluders)
        try take(.startHistogramShare, \.startHistogramShare)
        try take(.kSelection, \.kSelection)
        try take(.clusterer, \.clusterer)
        try take(.minSegmentShare, \.minSegmentShare)
        self = p
    }

    /// Every rule a run's parameters must meet, checked before anything is stored.
    public func validate() throws {
        func require(_ condition: Bool, _ field: String, _ rule: String) throws {
            if !condition { throw ProtocolError.invalidField(field, rule) }
        }
        try require((1...1024).contains(k), "k", "must be in 1...1024")
        try require((1...4096).contains(dimension), "dimension", "must be in 1...4096")
        try require((1...100).contains(rounds), "rounds", "must be in 1...100")
        try require(epsilon.isFinite && epsilon > 0, "epsilon", "must be positive")
        try require(delta > 0 && delta < 1, "delta", "must be in (0, 1)")
        try require(clusteringShare > 0 && clusteringShare <= 1, "clustering_share", "must be in (0, 1]")
        try require(catalog.isEmpty || clusteringShare < 1, "clustering_share", "must leave budget for the recommendation phase when a catalog is given")
        try require(clipNorm.isFinite && clipNorm > 0, "clip_norm", "must be positive")
        try require(privacyMode == .local || minParticipants >= 2, "min_participants", "must be at least 2 in distributed mode (secure aggregation sums at least two clients)")
        try require((1...100_000_000).contains(maxUsers), "max_users", "must be in 1...10^8")
        try require(minParticipants >= 1, "min_participants", "must be at least 1")
        try require(
            assumedColluders >= 0 && (privacyMode == .local || assumedColluders < max(2, minParticipants)), "assumed_colluders",
            "must be at least 0 and below max(2, min_participants): secure aggregation needs one honest noise share among the fewest survivors"
        )
        try require(roundDeadlineSeconds > 0 && roundDeadlineSeconds <= 86_400, "round_deadline_seconds", "must be in (0, 86400]")
        try require(samplingRate > 0 && samplingRate <= 1, "sampling_rate", "must be in (0, 1]")
        try require(convergenceTolerance >= 0, "convergence_tolerance", "must not be negative")
        try require(initialization == .random || seedPhrases.count >= k, "seed_phrases", "needs at least k phrases for a public start")
        try require(startHistogramShare >= 0 && startHistogramShare < 1, "start_histogram_share", "must be in [0, 1)")
        try require(
            clusterer == .kmeans || (initialization == .public && startHistogramShare > 0), "clusterer",
            "density finds the dense regions of the start histogram: it needs a public start (seed phrases) and start_histogram_share > 0"
        )
        try require(
            (kSelection == .fixed && clusterer == .kmeans) || k <= 64, "k",
            "must be at most 64 with k_selection auto or the density clusterer (it is the most segments allowed)"
        )
        try require(kSelection == .fixed || k >= 2, "k", "must be at least 2 with k_selection auto (it is the most segments allowed)")
        try require(minSegmentShare >= 0 && minSegmentShare < 0.5, "min_segment_share", "must be in [0, 0.5)")
        try require(catalog.count <= 1_000_000, "catalog", "must hold at most 10^6 items")
        try require(Set(catalog).count == catalog.count, "catalog", "must not repeat an item")
        try require(maxItemsPerUser >= 1, "max_items_per_user", "must be at least 1")
        try require(maxAbandonedRounds >= 1, "max_abandoned_rounds", "must be at least 1")
        guard let embedder = EmbedderIdentifier.parse(embedderID) else {
            throw ProtocolError.invalidField("embedder_id", "must be all-MiniLM-L6-v2 or hashing-v1-d<D>-s<S> (the embedders clients run)")
        }
        try require(embedder.dimension == dimension, "dimension", "is \(dimension), but \(embedderID) embeds in \(embedder.dimension) dimensions")
    }
}

extension RunParameters {
    /// The command line's `--k N` or `--k auto`: auto chooses k in 2...`maxK` after the first
    /// Lloyd round (`k_selection` auto, `k` = maxK).
    public static func segmentCount(_ text: String, maxK: Int) throws -> (k: Int, selection: SegmentCountSelection) {
        if text == SegmentCountSelection.auto.rawValue { return (maxK, .auto) }
        guard let k = Int(text), k >= 1 else { throw ProtocolError.invalidField("k", "must be a positive number of segments or auto (got \"\(text)\")") }
        return (k, .fixed)
    }
}

/// Run state as the admin API and `fedseg run` show it.
public struct RunSummary: Codable, Sendable {
    public var id: String
    public var status: RunStatus
    public var reason: String?
    public var phase: RunPhase
    public var k: Int
    public var dimension: Int
    public var embedderID: String
    public var privacyMode: PrivacyMode
    public var epsilon: Double
    public var delta: Double
    public var epsilonSpent: Double
    public var plannedRounds: Int
    public var committedRounds: Int
    public var noiseMultiplier: Double
    public var openRound: OpenRoundSummary?
    public var rounds: [RoundSummary]
    /// Active clients not seen within the coordinator's `stale_after_seconds` (at most 100 ids):
    /// rounds do not wait for them. nil for runs that are over.
    public var staleClients: [String]?
    /// How the run's segments were chosen and which were dropped (nil until a run that chooses
    /// them has, and for fixed-k runs that dropped none).
    public var segmentation: SegmentationRecord?

    public init(id: String, status: RunStatus, reason: String?, phase: RunPhase, k: Int, dimension: Int, embedderID: String, privacyMode: PrivacyMode, epsilon: Double, delta: Double, epsilonSpent: Double, plannedRounds: Int, committedRounds: Int, noiseMultiplier: Double, openRound: OpenRoundSummary?, rounds: [RoundSummary]) {
        self.id = id
        self.status = status
        self.reason = reason
        self.phase = phase
        self.k = k
        self.dimension = dimension
        self.embedderID = embedderID
        self.privacyMode = privacyMode
        self.epsilon = epsilon
        self.delta = delta
        self.epsilonSpent = epsilonSpent
        self.plannedRounds = plannedRounds
        self.committedRounds = committedRounds
        self.noiseMultiplier = noiseMultiplier
        self.openRound = openRound
        self.rounds = rounds
    }

    enum CodingKeys: String, CodingKey {
        case id
        case status
        case reason
        case phase
        case k
        case dimension
        case embedderID = "embedder_id"
        case privacyMode = "privacy_mode"
        case epsilon
        case delta
        case epsilonSpent = "epsilon_spent"
        case plannedRounds = "planned_rounds"
        case committedRounds = "committed_rounds"
        case noiseMultiplier = "noise_multiplier"
        case openRound = "open_round"
        case rounds
        case staleClients = "stale_clients"
        case segmentation
    }
}

/// Why a run has the segments it has: the k it was given, what chose the k it has, the score of
/// every k tried, and the segments dropped for holding too few users. Computed from released
/// values only (the start histogram, the first round's centroids, the last round's noisy
/// counts), so it costs no privacy.
public struct SegmentationRecord: Codable, Sendable, Equatable {
    public struct Score: Codable, Sendable, Equatable {
        public var k: Int
        /// The weighted silhouette of the candidates under that k (−1...1, higher is better);
        /// nil where some segment held under `min_segment_share` of the weight.
        public var silhouette: Double?

        public init(k: Int, silhouette: Double?) {
            self.k = k
            self.silhouette = silhouette
        }

        /// `silhouette` is written as null where not eligible, as docs/PROTOCOL.md says.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(k, forKey: .k)
            try c.encode(silhouette, forKey: .silhouette)
        }

        enum CodingKeys: String, CodingKey { case k, silhouette }
    }

    public struct Dropped: Codable, Sendable, Equatable {
        /// The round whose released counts showed it.
        public var round: UInt64
        /// Its index among the segments before that round's drop.
        public var segment: Int
        /// Its share of the round's released counts.
        public var share: Double

        public init(round: UInt64, segment: Int, share: Double) {
            self.round = round
            self.segment = segment
            self.share = share
        }
    }

    public var requestedK: Int
    public var selection: SegmentCountSelection
    public var clusterer: Clusterer
    /// Segments after the start (before any drop).
    public var chosenK: Int
    /// Segments now.
    public var currentK: Int
    /// In words, for `fedseg run status`.
    public var reason: String
    public var scores: [Score]
    public var dropped: [Dropped]

    public init(
        requestedK: Int, selection: SegmentCountSelection, clusterer: Clusterer, chosenK: Int, currentK: Int, reason: String, scores: [Score] = [],
        dropped: [Dropped] = []
    ) {
        self.requestedK = requestedK
        self.selection = selection
        self.clusterer = clusterer
        self.chosenK = chosenK
        self.currentK = currentK
        self.reason = reason
        self.scores = scores
        self.dropped = dropped
    }

    enum CodingKeys: String, CodingKey {
        case selection, clusterer, reason, scores, dropped
        case requestedK = "requested_k"
        case chosenK = "chosen_k"
        case currentK = "current_k"
    }
}

public struct OpenRoundSummary: Codable, Sendable {
    public var id: UInt64
    public var phase: RunPhase
    public var participants: Int
    public var declined: Int
    public var expected: Int
    public var deadlineUnix: Double
    /// Distributed rounds: the open secure-aggregation stage (advertise, share, mask, unmask)
    /// and how many clients have completed each so far.
    public var secAggStage: String?
    public var secAggProgress: [String: Int]?

    public init(
        id: UInt64, phase: RunPhase, participants: Int, declined: Int, expected: Int, deadlineUnix: Double, secAggStage: String? = nil,
        secAggProgress: [String: Int]? = nil
    ) {
        self.id = id
        self.phase = phase
        self.participants = participants
        self.declined = declined
        self.expected = expected
        self.deadlineUnix = deadlineUnix
        self.secAggStage = secAggStage
        self.secAggProgress = secAggProgress
    }

    enum CodingKeys: String, CodingKey {
        case id
        case phase
        case participants
        case declined
        case expected
        case deadlineUnix = "deadline_unix"
        case secAggStage = "secagg_stage"
        case secAggProgress = "secagg_progress"
    }
}

public struct RoundSummary: Codable, Sendable {
    public var id: UInt64
    public var phase: RunPhase
    public var status: RoundStatus
    public var participants: Int
    public var declined: Int
    public var expected: Int
    public var centroidShift: Double?
    /// Clustering rounds: the clip norm of the round's plan, and whether it clipped each user's
    /// offset from its centroid (a centred round) rather than the vector.
    public var clipNorm: Double?
    public var centered: Bool?

    public init(
        id: UInt64, phase: RunPhase, status: RoundStatus, participants: Int, declined: Int, expected: Int, centroidShift: Double?,
        clipNorm: Double? = nil, centered: Bool? = nil
    ) {
        self.id = id
        self.phase = phase
        self.status = status
        self.participants = participants
        self.declined = declined
        self.expected = expected
        self.centroidShift = centroidShift
        self.clipNorm = clipNorm
        self.centered = centered
    }

    enum CodingKeys: String, CodingKey {
        case id
        case phase
        case status
        case participants
        case declined
        case expected
        case centroidShift = "centroid_shift"
        case clipNorm = "clip_norm"
        case centered
    }
}

public struct SegmentsReport: Codable, Sendable {
    public struct Segment: Codable, Sendable {
        public var id: Int
        public var norm: Double
        /// The segment's (noisy) member count as released in the last committed round.
        public var releasedCount: Double?
        /// The released count rounded and clamped at 0: a noisy size, never negative on screen.
        public var size: Int?
        /// Mean squared distance of a member to the centroid, 1 − ‖c‖², derived from the released
        /// centroid (members' vectors have unit norm): no release of its own.
        public var spread: Double
        public var nearestSeedPhrases: [String]
        /// A short name from the nearest public seed phrases (empty without them).
        public var label: String
        /// The segment's first items in the published model (catalogue ids; empty without one).
        public var topItems: [String]

        public init(id: Int, norm: Double, releasedCount: Double?, nearestSeedPhrases: [String], label: String = "", topItems: [String] = []) {
            self.id = id
            self.norm = norm
            self.releasedCount = releasedCount
            self.size = releasedCount.map { max(0, Int($0.rounded())) }
            self.spread = max(0, 1 - norm * norm)
            self.nearestSeedPhrases = nearestSeedPhrases
            self.label = label
            self.topItems = topItems
        }

        enum CodingKeys: String, CodingKey {
            case id, norm, size, spread, label
            case releasedCount = "released_count"
            case nearestSeedPhrases = "nearest_seed_phrases"
            case topItems = "top_items"
        }
    }

    public var runID: String
    public var status: RunStatus
    public var k: Int
    public var dimension: Int
    /// Largest centroid movement of each committed clustering round.
    public var shiftHistory: [Double]
    public var segments: [Segment]

    public init(runID: String, status: RunStatus, k: Int, dimension: Int, shiftHistory: [Double], segments: [Segment]) {
        self.runID = runID
        self.status = status
        self.k = k
        self.dimension = dimension
        self.shiftHistory = shiftHistory
        self.segments = segments
    }

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case status
        case k
        case dimension
        case shiftHistory = "shift_history"
        case segments
    }
}

/// `GET /admin/v1/status`.
public struct AdminStatus: Codable, Sendable {
    public var clients: Int
    public var activeClients: Int
    /// Active clients seen within `stale_after_seconds`: those a round waits for.
    public var liveClients: Int
    public var run: RunSummary?
    public var coordinatorSigningKey: String

    public init(clients: Int, activeClients: Int, liveClients: Int, run: RunSummary?, coordinatorSigningKey: String) {
        self.clients = clients
        self.activeClients = activeClients
        self.liveClients = liveClients
        self.run = run
        self.coordinatorSigningKey = coordinatorSigningKey
    }

    enum CodingKeys: String, CodingKey {
        case clients
        case activeClients = "active_clients"
        case liveClients = "live_clients"
        case run
        case coordinatorSigningKey = "coordinator_signing_key"
    }
}

/// One enrolled client as `GET /admin/v1/clients` lists it.
public struct ClientEntry: Codable, Sendable {
    public var id: String
    public var status: ClientStatus
    public var enrolledAt: Double
    /// The last time the client polled for a round or had a message accepted (Unix seconds).
    public var lastSeenAt: Double
    /// Active but not seen within the coordinator's `stale_after_seconds`: rounds do not wait for it.
    public var stale: Bool

    public init(id: String, status: ClientStatus, enrolledAt: Double, lastSeenAt: Double, stale: Bool) {
        self.id = id
        self.status = status
        self.enrolledAt = enrolledAt
        self.lastSeenAt = lastSeenAt
        self.stale = stale
    }

    enum CodingKeys: String, CodingKey {
        case id
        case status
        case stale
        case enrolledAt = "enrolled_at"
        case lastSeenAt = "last_seen_at"
    }
}

/// `POST /admin/v1/privacy/budget`: every user's new lifetime budget and why (recorded in the
/// ledger); the response echoes the budget now in force.
public struct BudgetRequest: Codable, Sendable, Equatable {
    public var epsilon: Double
    /// nil: keep the recorded δ (it cannot change once anything is charged).
    public var delta: Double?
    public var reason: String

    public init(epsilon: Double, delta: Double?, reason: String) {
        self.epsilon = epsilon
        self.delta = delta
        self.reason = reason
    }

    public func validate() throws {
        guard epsilon.isFinite, epsilon > 0 else { throw ProtocolError.invalidField("epsilon", "must be positive and finite") }
        if let delta, !(delta > 0 && delta < 1) { throw ProtocolError.invalidField("delta", "must be in (0, 1)") }
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty, reason.utf8.count <= 512 else {
            throw ProtocolError.invalidField("reason", "must say why, in 1 to 512 bytes")
        }
    }
}

/// The embedder ids a run may name: `all-MiniLM-L6-v2` (384 dimensions) or
/// `hashing-v1-d<D>-s<S>` (D in 1...4096, S a 64-bit seed). Anything else no client runs.
public enum EmbedderIdentifier {
    public static let miniLM = "all-MiniLM-L6-v2"

    public enum Kind: Equatable, Sendable {
        case miniLM
        case hashing(dimension: Int, seed: UInt64)

        public var dimension: Int {
            switch self {
            case .miniLM: 384
            case .hashing(let dimension, _): dimension
            }
        }
    }

    public static func parse(_ identifier: String) -> Kind? {
        if identifier == miniLM { return .miniLM }
        let parts = identifier.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "hashing", parts[1] == "v1", parts[2].hasPrefix("d"), parts[3].hasPrefix("s"),
            let dimension = Int(parts[2].dropFirst()), let seed = UInt64(parts[3].dropFirst()), (1...4096).contains(dimension),
            String(dimension) == parts[2].dropFirst(), String(seed) == parts[3].dropFirst()
        else { return nil }
        return .hashing(dimension: dimension, seed: seed)
    }
}

/// The one error shape of the admin API (docs/PROTOCOL.md, "Admin errors"):
/// `{"error": {"code": "invalid_field", "field": "k", "message": "k: must be in 1...1024"}}`.
/// `field` names the offending JSON key (dotted for nested keys) when there is one.
public struct AdminError: Codable, Sendable, Error, Equatable, CustomStringConvertible {
    public enum Code: String, Codable, Sendable {
        /// The body is not JSON, or not a JSON object.
        case malformedJSON = "malformed_json"
        /// A field is missing, of the wrong type, or breaks a rule; `field` names it.
        case invalidField = "invalid_field"
        case badRequest = "bad_request"
        case unauthorized
        case notFound = "not_found"
        /// The request conflicts with the coordinator's state (a run in progress, no run to stop).
        case conflict
        /// The privacy budget refuses it.
        case budget
        case tooLarge = "too_large"
        /// The coordinator cannot store what it must (disk full, damaged state): retry later.
        case unavailable
        case `internal`
    }

    public var code: Code
    public var message: String
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { message }

    /// The wrapper every error body is: `{"error": {...}}`.
    public struct Body: Codable, Sendable {
        public var error: AdminError
        public init(error: AdminError) { self.error = error }
    }

    /// A JSON body decoded into `T`, with decoding errors told as the field and rule they break
    /// rather than as Foundation's internals.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(AdminError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw AdminError(decoding: error)
        } catch {
            throw AdminError(.malformedJSON, "the body is not valid JSON")
        }
    }

    init(decoding error: DecodingError) {
        func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (key.map { [$0] } ?? [])
            return keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        func describe(_ type: Any.Type) -> String {
            switch type {
            case is Int.Type, is UInt64.Type, is Int64.Type, is UInt32.Type: "an integer"
            case is Double.Type, is Float.Type: "a number"
            case is String.Type: "a string"
            case is Bool.Type: "true or false"
            default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context, key)
            self.init(.invalidField, "\(field): is required", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context)
            self.init(field.isEmpty ? .malformedJSON : .invalidField, field.isEmpty ? "the body must be a JSON object" : "\(field): must be \(describe(type))", field: field.isEmpty ? nil : field)
        case .valueNotFound(let type, let context):
            let field = path(context)
            self.init(.invalidField, "\(field): must be \(describe(type)), not null", field: field)
        case .dataCorrupted(let context):
            let field = path(context)
            if field.isEmpty {
                self.init(.malformedJSON, "the body is not valid JSON")
            } else {
                let rule = context.debugDescription
                self.init(.invalidField, rule.hasPrefix(field) ? rule : "\(field): \(rule)", field: field)
            }
        @unknown default:
            self.init(.malformedJSON, "the body does not decode")
        }
    }
}
