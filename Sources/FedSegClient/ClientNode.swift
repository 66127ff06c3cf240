import CSQLite
import FedSegClustering
import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegSecureAggregation
import Foundation
import GRDB
import SwiftProtobuf

/// What a client holds: its users' profile vectors (embedded locally) and, per user, the items
/// they interacted with. Nothing of it leaves the node except as clipped, noised statistics.
public struct ClientData: Sendable {
    public var userIDs: [String]
    /// One unit-norm profile vector per user.
    public var points: Matrix
    /// Item ids per user (the interactions the node may use; evaluation hold-outs excluded).
    public var items: [[String]]

    public init(userIDs: [String], points: Matrix, items: [[String]]) {
        precondition(userIDs.count == points.rows && items.count == points.rows, "one row and one item list per user")
        self.userIDs = userIDs
        self.points = points
        self.items = items
    }
}

/// A client node: an edge device (one user) or a tenant shard (many), the same code.
///
/// Its state directory holds its key file (0600) and one SQLite database with its privacy
/// ledger, its enrollment (the pinned coordinator keys) and an outbox of sealed messages per
/// round. A round is charged to the ledger and its sealed answer written to the outbox in one
/// transaction before anything is sent; retries resend those exact bytes, so a round is never
/// answered twice with different noise, across restarts too.
public actor ClientNode {
    public nonisolated let id: String
    private nonisolated let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    public nonisolated let directory: URL
    public nonisolated let population: String
    nonisolated let keys: ClientKeys
    /// Opened on use and closed by `suspend()`, so a process can hold thousands of idle nodes
    /// without holding thousands of open files.
    var queue: DatabaseQueue?
    public nonisolated let embedderID: String
    public var data: ClientData
    var coordinatorSigningKey: Signing.PublicKey?
    var coordinatorKxKey: KeyAgreement.PublicKey? {
        didSet { if coordinatorKxKey != oldValue { upstreamKey = nil } }
    }
    /// The session key for messages to the pinned coordinator, derived on first use.
    var upstreamKey: Envelope.SessionKey?
    public private(set) var model: SegmentModel?
    public internal(set) var lastPlan: Fedseg_V1_RoundPlan?
    /// The distributed round this node is taking part in (its secrets live only here).
    var participation: SecAggParticipation?

    public static let keyFile = "node.key"
    public static let databaseFile = "client.sqlite"

    final class ClientKeys: Sendable {
        let identity: NodeIdentity
        init(identity: consuming NodeIdentity) { self.identity = identity }
    }

    /// Opens (creating if needed) a node's state directory. `budget` is the ε, δ each of its users
    /// may spend over the node's lifetime.
    public init(directory: URL, id: String, embedderID: String, data: ClientData, epsilonBudget: Double, delta: Double) throws {
        try self.init(directory: directory, id: id, embedderID: embedderID, data: data, budget: (epsilonBudget, delta))
    }

    /// `budget` is recorded when the ledger has none; nil leaves the ledger's as it is (a node
    /// opened to enrol, or to read its state).
    public init(directory: URL, id: String, embedderID: String, data: ClientData, budget: (epsilon: Double, delta: Double)?) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let keyPath = directory.appendingPathComponent(Self.keyFile).path
        if !fm.fileExists(atPath: keyPath) { try NodeIdentity().save(to: keyPath) }
        keys = ClientKeys(identity: try NodeIdentity.load(from: keyPath))
        let creating = !fm.fileExists(atPath: directory.appendingPathComponent(Self.databaseFile).path)
        let database = try Self.openDatabase(directory)
        // A new database's tables and budget are written without waiting for the disk (a dozen
        // fsyncs per node made): the next durable commit (its enrollment, its first charge)
        // syncs the WAL and all of this with it, and a crash before that leaves a database this
        // initialiser completes again. The switch to WAL before it was synced (`openDatabase`).
        if creating { try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = OFF") } }
        let ledger = try PrivacyLedger(database: database)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("client-node-v1") { db in
            try db.create(table: "enrollment") { t in
                t.column("client_id", .text).primaryKey()
                t.column("coordinator_signing_key", .blob).notNull()
                t.column("coordinator_kx_key", .blob).notNull()
                t.column("enrolled_at", .double).notNull()
            }
            try db.create(table: "outbox") { t in
                t.column("round", .integer).primaryKey()
                t.column("run_id", .text).notNull()
                t.column("kind", .integer).notNull()
                t.column("envelope", .blob).notNull()
                t.column("created_at", .double).notNull()
                t.column("outcome", .text)
            }
        }
        // Distributed rounds send one message per secure-aggregation stage.
        migrator.registerMigration("client-node-v2-stages") { db in
            try db.create(table: "stage_outbox") { t in
                t.column("round", .integer).notNull()
                t.column("kind", .integer).notNull()
                t.column("envelope", .blob).notNull()
                t.column("created_at", .double).notNull()
                t.primaryKey(["round", "kind"])
            }
        }
        // Distributed rounds: the enrolled signing key first seen for each peer, so a coordinator
        // cannot swap a neighbour's identity key between rounds (trust on first use).
        migrator.registerMigration("client-node-v3-peer-keys") { db in
            try db.create(table: "peer_keys") { t in
                t.column("client_id", .text).primaryKey()
                t.column("signing_key", .blob).notNull()
                t.column("first_seen", .double).notNull()
            }
        }
        try migrator.migrate(database)
        queue = database
        self.id = id
        executor = SerialQueueExecutor(label: "fedseg.node.\(id)")
        self.directory = directory
        self.embedderID = embedderID
        self.data = data
        self.population = "client:\(id)"
        if let budget, try ledger.budget(for: population) == nil {
            try ledger.setBudget(.init(population: population, epsilon: budget.epsilon, delta: budget.delta))
        }
        if creating { try database.requireDurableCommits() }
        if let row = try database.read({ db in try Row.fetchOne(db, sql: "SELECT * FROM enrollment WHERE client_id = ?", arguments: [id]) }) {
            coordinatorSigningKey = try Signing.PublicKey(bytes: [UInt8]((row["coordinator_signing_key"] as Data)))
            coordinatorKxKey = try KeyAgreement.PublicKey(bytes: [UInt8]((row["coordinator_kx_key"] as Data)))
        }
    }

    static func openDatabase(_ directory: URL) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        // WAL is a property of the file: set once when the database is made. Asking for it on
        // every open costs GRDB a write transaction, and its fsync, each time a suspended node
        // wakes up (13% of a 600-client simulation's CPU).
        let path = directory.appendingPathComponent(databaseFile).path
        if !FileManager.default.fileExists(atPath: path) { configuration.journalMode = .wal }
        // A charge is on disk before its envelope can be sent: every commit waits for the disk
        // (SQLite's default, stated rather than assumed), set again after the WAL set-up of a new
        // database, which leaves NORMAL.
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        if configuration.journalMode == .wal { try queue.requireDurableCommits() }
        return queue
    }

    var database: DatabaseQueue {
        get throws {
            if let queue { return queue }
            let opened = try Self.openDatabase(directory)
            queue = opened
            return opened
        }
    }

    /// The node's public signing key, hex (what the coordinator's registry shows).
    public nonisolated var signingKeyHex: String { keys.identity.signing.publicKey.hex }

    /// Replaces the users the node answers for (between rounds: its data changed).
    public func replaceData(_ data: ClientData) { self.data = data }

    /// The node's privacy ledger.
    public func ledger() throws -> PrivacyLedger { try PrivacyLedger(database: database) }

    /// Closes the database until the node is next used. The WAL is left as it is (not
    /// checkpointed into the database on close): what it holds was on disk at each commit, the
    /// next open reads it back, and a checkpoint at every suspension had cost two more waits for
    /// the disk per node and round.
    public func suspend() throws {
        guard let queue else { return }
        queue.inDatabase { db in _ = fedseg_sqlite_no_checkpoint_on_close(db.sqliteConnection, 1) }
        try queue.close()
        self.queue = nil
    }

    /// Enrolls with a one-time token and pins the coordinator's keys.
    public func enroll(token: String, transport: any CoordinatorTransport) async throws {
        let request = Fedseg_V1_EnrollRequest.with {
            $0.protocolVersion = fedsegProtocolVersion
            $0.token = token
            $0.clientID = id
            $0.signingPublicKey = Data(keys.identity.signing.publicKey.bytes)
            $0.kxPublicKey = Data(keys.identity.keyAgreement.publicKey.bytes)
        }
        let response = try await transport.enroll(request)
        let signing = try Signing.PublicKey(bytes: [UInt8](response.coordinatorSigningKey))
        let kx = try KeyAgreement.PublicKey(bytes: [UInt8](response.coordinatorKxKey))
        try await database.write { [id] db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO enrollment (client_id, coordinator_signing_key, coordinator_kx_key, enrolled_at) VALUES (?, ?, ?, ?)",
                arguments: [id, Data(signing.bytes), Data(kx.bytes), Date().timeIntervalSince1970]
            )
        }
        coordinatorSigningKey = signing
        coordinatorKxKey = kx
    }

    /// The coordinator's keys as pinned at enrollment.
    public var pinnedKeys: (signing: Signing.PublicKey, kx: KeyAgreement.PublicKey)? {
        guard let coordinatorSigningKey, let coordinatorKxKey else { return nil }
        return (coordinatorSigningKey, coordinatorKxKey)
    }

    /// Pins coordinator keys learnt out of band (they are public) without enrolling: such a node
    /// can seal messages, which the coordinator refuses as from an unknown sender.
    public func pin(signing: Signing.PublicKey, kx: KeyAgreement.PublicKey) {
        coordinatorSigningKey = signing
        coordinatorKxKey = kx
    }

    public enum NodeError: Error, Equatable, CustomStringConvertible {
        case notEnrolled
        case badSignature
        case invalidPlan(String)
        case secureAggregation(String)
        /// The node advertised in this distributed round and then lost its secrets (a restart).
        case lostRoundState(UInt64)

        public var description: String {
            switch self {
            case .secureAggregation(let why): "secure aggregation: \(why)"
            case .notEnrolled: "not enrolled"
            case .badSignature: "the publication's signature does not verify with the pinned coordinator key"
            case .invalidPlan(let why): "invalid round plan: \(why)"
            case .lostRoundState(let round):
                "this node advertised keys in distributed round \(round) and lost them (it restarted): it sits the round out, which secure aggregation tolerates"
            }
        }
    }

    /// The node's answer to one round, sealed and recorded, ready to send.
    public struct Answer: Sendable {
        public var round: UInt64
        public var kind: Fedseg_V1_MessageKind
        public var envelope: [UInt8]
        /// Why the node declined (nil for an update).
        public var declineReason: String?
        /// True when this is the stored answer from an earlier attempt.
        public var resent: Bool
        public var deadline: Date
    }

    /// Verifies a signed plan with the pinned key and validates it.
    public func verifyPlan(_ publicationBytes: [UInt8]) throws -> Fedseg_V1_RoundPlan {
        guard let key = coordinatorSigningKey else { throw NodeError.notEnrolled }
        guard let publication = try? Fedseg_V1_SignedPublication(serializedBytes: publicationBytes), publication.kind == .roundPlan,
            key.isValidSignature([UInt8](publication.signature), for: publication.payload)
        else { throw NodeError.badSignature }
        let plan: Fedseg_V1_RoundPlan
        do {
            plan = try MessageCodec.decode(Fedseg_V1_RoundPlan.self, from: [UInt8](publication.payload))
            try plan.validate()
        } catch {
            throw NodeError.invalidPlan("\(error)")
        }
        return plan
    }

    /// Decides and seals this node's answer to a round: the stored one if it already answered;
    /// else a decline (not sampled, wrong embedder, budget) or its noised statistics, charged
    /// to its ledger together with writing the outbox.
    public func answer(_ publicationBytes: [UInt8]) throws -> Answer {
        let plan = try verifyPlan(publicationBytes)
        lastPlan = plan
        let deadline = Date(timeIntervalSince1970: Double(plan.deadlineUnixMs) / 1000)
        if let stored = try storedAnswer(round: plan.round, deadline: deadline) { return stored }
        guard plan.privacyMode == .local else {
            throw NodeError.secureAggregation("round \(plan.round) is distributed: answer it stage by stage (secAggAdvertise, secAggStep)")
        }
        if let reason = reasonToDecline(plan) { return try decline(plan, reason: reason, deadline: deadline) }
        let releaseID = "\(plan.runID)/round-\(plan.round)"
        let mechanism: PrivacyLedger.Mechanism
        let kind: Fedseg_V1_MessageKind
        let plaintext: [UInt8]
        switch plan.phase {
        case .clustering:
            // The node charges the noise it adds itself, computed from the plan's grid and σ: a
            // plan with too little noise is refused by the budget, not trusted.
            mechanism = plan.localNoise.mechanism(mode: .local)
            kind = .clientUpdate
            plaintext = try clusteringUpdate(plan).serializedBytes()
        case .recommendation:
            mechanism = .init(kind: .discreteGaussian, noiseMultiplier: plan.sumStd / plan.histogramSensitivity, mode: .local)
            kind = .recommendationUpdate
            plaintext = try recommendationUpdate(plan).serializedBytes()
        case .start:
            // Sensitivity 1: a user counts in one bin.
            mechanism = .init(kind: .discreteGaussian, noiseMultiplier: plan.sumStd, mode: .local)
            kind = .startHistogram
            plaintext = try startHistogram(plan).serializedBytes()
        default:
            throw NodeError.invalidPlan("unknown phase")
        }
        let envelope = try seal(plaintext, kind: kind, round: plan.round)
        do {
            try database.write { [population] db in
                // Charged once per release: a crash after this commit and before sending leaves a
                // charge and a stored envelope, which the next attempt sends.
                try PrivacyLedger.charge(db, releaseID: releaseID, round: Int64(plan.round), mechanism: mechanism, populations: [population])
                try db.execute(
                    sql: "INSERT INTO outbox (round, run_id, kind, envelope, created_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [Int64(plan.round), plan.runID, kind.rawValue, Data(envelope), Date().timeIntervalSince1970]
                )
            }
        } catch let failure as PrivacyLedger.Failure {
            if case .budgetExceeded = failure { return try decline(plan, reason: "budget", deadline: deadline) }
            throw failure
        }
        return Answer(round: plan.round, kind: kind, envelope: envelope, declineReason: nil, resent: false, deadline: deadline)
    }

    /// Why the node sits a round out before computing anything: it sampled itself out, or the
    /// plan names another embedder.
    func reasonToDecline(_ plan: Fedseg_V1_RoundPlan) -> String? {
        // Checked before sampling or charging: a node with no users has nothing to release.
        guard data.points.rows > 0 else { return "no_users" }
        if plan.samplingRate < 1 {
            var rng = SecureRandom()
            if Double.random(in: 0..<1, using: &rng) >= plan.samplingRate { return "not_sampled" }
        }
        guard plan.embedderID == embedderID, Int(plan.dimension) == data.points.cols else {
            return "embedder \(embedderID) (d = \(data.points.cols)) does not match the plan's"
        }
        return nil
    }

    func storedAnswer(round: UInt64, deadline: Date) throws -> Answer? {
        guard let stored = try database.read({ db in try Row.fetchOne(db, sql: "SELECT kind, envelope FROM outbox WHERE round = ?", arguments: [Int64(round)]) }) else {
            return nil
        }
        let kind = Fedseg_V1_MessageKind(rawValue: stored["kind"]) ?? .decline
        return Answer(round: round, kind: kind, envelope: [UInt8](stored["envelope"] as Data), declineReason: nil, resent: true, deadline: deadline)
    }

    /// The rounds this node declined, by run ("round N"), oldest first.
    public func declines() throws -> [String: [String]] {
        try database.read { db in
            var result: [String: [String]] = [:]
            let rows = try Row.fetchAll(
                db, sql: "SELECT run_id, round FROM outbox WHERE kind = ? ORDER BY round", arguments: [Fedseg_V1_MessageKind.decline.rawValue]
            )
            for row in rows { result[row["run_id"], default: []].append("round \(row["round"] as Int64)") }
            return result
        }
    }

    func decline(_ plan: Fedseg_V1_RoundPlan, reason: String, deadline: Date) throws -> Answer {
        let message = Fedseg_V1_Decline.with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.reason = String(reason.utf8.prefix(256)) ?? "declined"
        }
        let envelope = try seal(try message.serializedBytes(), kind: .decline, round: plan.round)
        try database.write { db in
            try db.execute(
                sql: "INSERT INTO outbox (round, run_id, kind, envelope, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [Int64(plan.round), plan.runID, Fedseg_V1_MessageKind.decline.rawValue, Data(envelope), Date().timeIntervalSince1970]
            )
        }
        return Answer(round: plan.round, kind: .decline, envelope: envelope, declineReason: reason, resent: false, deadline: deadline)
    }

    /// Seals a message for the coordinator, bound to a round and kind.
    public func seal(_ plaintext: [UInt8], kind: Fedseg_V1_MessageKind, round: UInt64) throws -> [UInt8] {
        guard let coordinator = coordinatorKxKey else { throw NodeError.notEnrolled }
        let key = try upstreamKey ?? Envelope.SessionKey.client(keys.identity.keyAgreement, to: coordinator)
        upstreamKey = key
        return try Envelope.seal(plaintext, header: .init(kind: UInt8(kind.rawValue), round: round, clientID: id), key: key)
    }

    /// Clipped per-cluster sums and counts under the plan's centroids on the plan's fixed-point
    /// grid, plus discrete Gaussian noise from the OS CSPRNG: nothing is noised in floating point.
    func clusteringUpdate(_ plan: Fedseg_V1_RoundPlan) throws -> Fedseg_V1_ClientUpdate {
        let noise = plan.localNoise
        var sampler = try DiscreteGaussianSampler(sigma: noise.clientSigma, generator: BufferedSecureRandom())
        var rounding = BufferedSecureRandom()
        let words = noise.encodeIntegers(clusteringStatistics(plan), rounding: &rounding, noise: &sampler)
        return .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.words = words
        }
    }

    /// Each user's items (at most m, sampled) in their segment's row (and the global row when the
    /// plan has one), plus discrete Gaussian noise.
    func recommendationUpdate(_ plan: Fedseg_V1_RoundPlan) throws -> Fedseg_V1_RecommendationUpdate {
        var histogram = recommendationHistogram(plan)
        try histogram.addNoise(
            noiseMultiplier: plan.sumStd / plan.histogramSensitivity, maxItemsPerUser: Int(plan.maxItemsPerUser), generator: BufferedSecureRandom()
        )
        return .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.counts = histogram.counts.map { Int64($0) }
        }
    }

    // What each release kind computes from the node's data before any noise: one function per
    // kind, shared by local rounds (noise added here) and distributed ones (a noise share added
    // after quantisation, `secAggInput`).

    /// Clipped per-cluster sums and counts under the plan's centroids.
    func clusteringStatistics(_ plan: Fedseg_V1_RoundPlan) -> LocalStatistics {
        let k = Int(plan.k)
        let d = Int(plan.dimension)
        guard data.points.rows > 0 else { return LocalStatistics(k: k, dimension: d) }
        return LocalStatistics.compute(points: data.points, centroids: Matrix(rows: k, cols: d, storage: plan.centroids), clipNorm: Float(plan.clipNorm), centered: plan.centered)
    }

    /// Each user's items (at most m, sampled with the OS CSPRNG) in the row of their segment, and
    /// again in the global row when the plan has one.
    func recommendationHistogram(_ plan: Fedseg_V1_RoundPlan) -> SegmentHistogram {
        let k = Int(plan.k)
        let catalog = ItemCatalog(ids: plan.catalogItems)
        var histogram = SegmentHistogram(segments: k, items: catalog.count, globalRow: plan.globalRow)
        guard data.points.rows > 0 else { return histogram }
        let labels = KMeans.assign(data.points, to: Matrix(rows: k, cols: Int(plan.dimension), storage: plan.centroids))
        var rng = SecureRandom()
        for (u, items) in data.items.enumerated() {
            histogram.add(userItems: items, segment: Int(labels[u]), catalog: catalog, maxItemsPerUser: Int(plan.maxItemsPerUser), using: &rng)
        }
        return histogram
    }

    /// How many of the node's users are nearest each public candidate (one count per user).
    func candidateCounts(_ plan: Fedseg_V1_RoundPlan) -> [Double] {
        var counts = [Double](repeating: 0, count: Int(plan.candidateCount))
        guard data.points.rows > 0 else { return counts }
        let candidates = Matrix(rows: Int(plan.candidateCount), cols: Int(plan.dimension), storage: plan.candidates)
        for label in KMeans.assign(data.points, to: candidates) { counts[Int(label)] += 1 }
        return counts
    }

    /// The start histogram: candidate counts plus discrete Gaussian noise (σ = the plan's sum_std).
    func startHistogram(_ plan: Fedseg_V1_RoundPlan) throws -> Fedseg_V1_StartHistogram {
        var histogram = SegmentHistogram(segments: 1, items: Int(plan.candidateCount))
        histogram.counts = candidateCounts(plan)
        try histogram.addNoise(noiseMultiplier: plan.sumStd, maxItemsPerUser: 1, generator: BufferedSecureRandom())
        return .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.counts = histogram.counts.map { Int64($0) }
        }
    }

    public enum SendOutcome: Sendable, Equatable {
        case accepted
        /// The coordinator already had it (an earlier attempt got through): success.
        case alreadyAccepted
        case rejected(Fedseg_V1_ErrorResponse.Code, String)
        /// No answer before the round's deadline.
        case gaveUp(String)
    }

    /// Sends an answer, retrying network errors and 5xx answers with exponential backoff and
    /// jitter until the round's deadline (however many attempts that takes); always the same bytes.
    /// `maxAttempts` caps the attempts; nil retries until the deadline. `backoff` is the first
    /// and the longest wait in seconds.
    public func send(
        _ answer: Answer, transport: any CoordinatorTransport, maxAttempts: Int? = nil, backoff: (first: Double, longest: Double) = (0.2, 5)
    ) async -> SendOutcome {
        var delay = backoff.first
        var lastError = ""
        var attempt = 0
        while true {
            attempt += 1
            do {
                let result = try await transport.submit(round: answer.round, envelope: answer.envelope)
                let outcome: SendOutcome
                switch result {
                case .accepted: outcome = .accepted
                case .rejected(.replay, _): outcome = .alreadyAccepted
                case .rejected(let code, let message): outcome = .rejected(code, message)
                }
                try? record(outcome, round: answer.round)
                return outcome
            } catch {
                lastError = "\(error)"
                if let transportError = error as? TransportError, !transportError.isRetryable { return .gaveUp(lastError) }
                // Full jitter: many nodes retrying after one coordinator restart do not arrive together.
                let wait = Double.random(in: delay / 2...delay)
                if let maxAttempts, attempt >= maxAttempts { break }
                if Date().addingTimeInterval(wait) > answer.deadline { break }
                try? await Task.sleep(for: .seconds(wait))
                delay = min(delay * 2, backoff.longest)
            }
        }
        return .gaveUp("no answer before the round's deadline: \(lastError)")
    }

    /// Notes what became of a sent answer. A note for the operator only (nothing is decided from
    /// it, and a lost one is the same answer sent again), so it is committed without waiting for
    /// the disk: the charge and the envelope before it were (`answer`), and an fsync per note had
    /// doubled a message's wait on storage.
    func record(_ outcome: SendOutcome, round: UInt64) throws {
        try database.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            defer { try? db.execute(sql: "PRAGMA synchronous = FULL") }
            try db.inTransaction {
                try db.execute(sql: "UPDATE outbox SET outcome = ? WHERE round = ?", arguments: ["\(outcome)", Int64(round)])
                return .commit
            }
        }
    }

    /// Answers and sends in one go.
    public func participate(_ publicationBytes: [UInt8], transport: any CoordinatorTransport) async throws -> SendOutcome {
        let answer = try answer(publicationBytes)
        return await send(answer, transport: transport)
    }

    /// Fetches, verifies and keeps the latest segment model (refusing an older version).
    @discardableResult
    public func refreshModel(transport: any CoordinatorTransport) async throws -> SegmentModel? {
        guard let key = coordinatorSigningKey else { throw NodeError.notEnrolled }
        guard let bytes = try await transport.latestModel() else { return model }
        let publication = try Fedseg_V1_SignedPublication(serializedBytes: bytes)
        guard publication.kind == .segmentModel else { throw NodeError.badSignature }
        let verified = try SegmentModel.verify(
            .init(payload: publication.payload, signature: [UInt8](publication.signature)), coordinatorKey: key,
            runID: nil, latestVersion: nil, catalogSize: nil
        )
        if let current = model, current.runID == verified.runID, verified.version <= current.version { return current }
        model = verified
        return verified
    }

    /// Adopts a model verified elsewhere (the simulator verifies one copy per node).
    public func adopt(_ verified: SegmentModel) { model = verified }

    /// The segment of a profile vector under the model's centroids (nil without a model).
    public nonisolated static func segment(of vector: [Float], model: SegmentModel) -> Int? {
        guard let centroids = model.centroidMatrix, centroids.cols == vector.count else { return nil }
        return Int(KMeans.assign(Matrix(rows: 1, cols: vector.count, storage: vector), to: centroids)[0])
    }

    /// Top-k catalogue indices for a user (known or new): their segment's list without what
    /// they already have; the global list when the model has no segments for them.
    public nonisolated static func recommend(
        _ vector: [Float], model: SegmentModel, exclude: Set<Int>, k: Int = 10
    ) -> [Int] {
        LocalRanker(model: model).recommend(segment: Self.segment(of: vector, model: model), userVector: vector, exclude: exclude, k: k)
    }
}
