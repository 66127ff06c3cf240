import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import FedSegSecureAggregation
import CoreMetrics
import Foundation
import GRDB
import Logging
import SwiftProtobuf

/// The coordinator's long-term keys, shared read-only with request handlers so that envelopes
/// are opened concurrently, outside the round state machine.
public final class CoordinatorKeys: Sendable {
    public let identity: NodeIdentity

    public init(identity: consuming NodeIdentity) {
        self.identity = identity
    }
}

/// The round state machine of one coordinator: plan → collecting → aggregating → committed.
///
/// Memory is bounded by the running sums of the open round (k·d doubles, or k·catalogue counts);
/// individual updates are never held. Each accepted envelope is recorded durably (with its replay
/// record) before it is added, so after a crash the open round's sums are rebuilt from disk; a
/// round's result, its ledger charges and the release of its envelopes commit in one transaction.
public actor Coordinator {
    public struct Settings: Sendable {
        /// Total budget of every user across all runs this coordinator will ever release.
        public var totalEpsilon: Double = 16
        public var totalDelta: Double = 1e-5
        public var limits = ProtocolLimits()
        /// Where embeddings of seed phrases are cached.
        public var embeddingCache: URL?
        public var modelFiles = MiniLMModelFiles.defaultLocation()
        /// Test hook (`FEDSEG_TEST_CRASH_AT`): `aggregate` or `commit` kills the process with
        /// SIGKILL at that point of the first round it closes, to prove recovery.
        public var crashPoint: String?

        public init() {}
    }

    /// The population every coordinator release is charged to, whatever the run.
    public static let allUsers = "all-users"

    struct ActiveRun {
        var id: String
        var parameters: RunParameters
        var privacy: RunPrivacyPlan
        var centroids: Matrix
        var variances: [Double]
        var committedRounds: Int
        var phase: String
        var abandonedInARow: Int
        var startedAt: Double
    }

    struct OpenRound {
        var id: UInt64
        var plan: Fedseg_V1_RoundPlan
        var publication: [UInt8]
        var deadline: Double
        var openedAt: Double
        var expected: Int
        var sums: [Double]
        var counts: [Double]
        var participants = 0
        var declined = 0
        /// Distributed mode: the secure-aggregation stages, and at the end the variance of the
        /// decoded sums and counts (which the merge needs instead of copies × plan σ²).
        var secagg: SecAggRound?
        var noiseVariance: (sums: Double, counts: Double)?
    }

    public nonisolated let store: CoordinatorStore
    public nonisolated let keys: CoordinatorKeys
    public nonisolated let metrics: CoordinatorMetrics
    public nonisolated let settings: Settings
    public nonisolated let intake: UpdateIntake
    let logger: Logger
    var active: ActiveRun?
    var open: OpenRound?
    /// The current run's embedded seed phrases (for `segments()`), kept from its start.
    var seedVectors: (runID: String, vectors: Matrix)?

    public init(store: CoordinatorStore, keys: CoordinatorKeys, settings: Settings, metrics: CoordinatorMetrics, logger: Logger) throws {
        self.store = store
        self.keys = keys
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.intake = UpdateIntake(registry: store.registry, limits: settings.limits)
        // The configured total is authoritative at every start: lowering it below what is spent
        // refuses further runs; nothing already recorded changes.
        try store.ledger.setBudget(.init(population: Self.allUsers, epsilon: settings.totalEpsilon, delta: settings.totalDelta))
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: Recovery

    /// Picks up a run that was in progress when the process stopped: committed rounds stay as
    /// they are; an open round is resumed with its sums rebuilt from the envelopes it had
    /// accepted, under the same signed plan and deadline.
    public func recover() throws {
        guard let run = try store.database.read({ db in try CoordinatorStore.Run.filter(Column("status") == "running").fetchOne(db) }) else { return }
        let parameters = try run.decodedParameters()
        active = ActiveRun(
            id: run.id, parameters: parameters, privacy: try parameters.privacyPlan(),
            centroids: try Packing.unpackMatrix(run.centroids, rows: parameters.k, cols: parameters.dimension),
            variances: Packing.unpackDoubles(run.variances), committedRounds: run.committedRounds, phase: run.phase,
            abandonedInARow: run.abandonedInARow, startedAt: run.createdAt
        )
        let latest = try store.database.read { db in
            try CoordinatorStore.Round.filter(Column("run_id") == run.id).order(Column("id").desc).fetchOne(db)
        }
        if let latest, latest.status == "collecting", let id = latest.id {
            let publication = try Fedseg_V1_SignedPublication(serializedBytes: latest.publication)
            let plan = try Fedseg_V1_RoundPlan(serializedBytes: publication.payload)
            var round = Self.emptyRound(id: UInt64(id), plan: plan, publication: [UInt8](latest.publication), deadline: latest.deadline, openedAt: latest.openedAt, expected: latest.expected)
            let persisted = try store.secAggState(round: id)
            if var secagg = round.secagg, let persisted {
                secagg.stage = persisted.stage
                secagg.stageDeadline = persisted.stageDeadline
                round.secagg = secagg
            }
            let envelopes = try store.pendingEnvelopes(round: id)
            for envelope in envelopes {
                let kinds = round.secagg.map { _ in [Fedseg_V1_MessageKind.decline, .secaggAdvertise, .secaggShares, .secaggMaskedInput, .secaggUnmask] }
                let (clientID, _, message) = try intake.decode(envelope, plan: plan, coordinator: keys.identity.keyAgreement, checkStatus: false, kinds: kinds)
                if let secagg = round.secagg {
                    guard let index = secagg.context.index[clientID] else { continue }
                    if let persisted, !Self.belongs(message, from: index, to: persisted) { continue }
                    // Replayed in the order accepted: each fits the stage it was accepted in.
                    var replaying = secagg
                    if let kind = Self.kind(of: message), let stage = SecAggRound.Stage.of(kind: kind) { replaying.stage = stage }
                    guard replaying.expects(message, from: index) else { continue }
                }
                try Self.add(message, from: clientID, to: &round)
            }
            open = round
            logger.notice("resumed round", metadata: ["run": "\(run.id)", "round": "\(id)", "updates": "\(round.participants)", "declines": "\(round.declined)"])
        } else {
            logger.notice("resuming run", metadata: ["run": "\(run.id)", "committed_rounds": "\(run.committedRounds)"])
            try advance()
        }
    }

    // MARK: Runs

    /// Starts a run with centroids prepared outside the actor (`RunStart.prepare`).
    public func start(_ prepared: RunStart.Prepared) throws -> RunSummary {
        if let active { throw CoordinatorError.runInProgress(active.id) }
        let p = prepared.parameters
        let privacy = try p.privacyPlan()
        // Every release of the run must fit what is left of the coordinator-wide budget.
        let history = try store.ledger.records().filter { $0.population == Self.allUsers }.compactMap(\.mechanismValue)
        guard let total = try store.ledger.budget(for: Self.allUsers) else { throw CoordinatorError.state("no all-users budget") }
        let wouldBe = try PrivacyLedger.epsilon(of: history + privacy.mechanisms, delta: total.delta)
        guard wouldBe <= total.epsilon else {
            throw CoordinatorError.budget(String(format: "the run would take all users to ε = %.4f, over the coordinator's total %.4f", wouldBe, total.epsilon))
        }
        let runEpsilon = try PrivacyLedger.epsilon(of: privacy.mechanisms, delta: p.delta)
        guard runEpsilon <= p.epsilon * (1 + 1e-9) else {
            throw CoordinatorError.budget(String(format: "planned releases compose to ε = %.4f, over the run's %.4f", runEpsilon, p.epsilon))
        }
        if p.privacyMode == "distributed" {
            let active = try store.database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM clients WHERE status = 'active'") } ?? 0
            guard active >= max(2, p.minParticipants) else {
                throw CoordinatorError.invalidParameters("distributed mode needs at least max(2, min_participants) = \(max(2, p.minParticipants)) active clients, \(active) are enrolled")
            }
        }
        var suffix = [UInt8](repeating: 0, count: 4)
        suffix.withUnsafeMutableBytes { SecureRandom.fill($0) }
        let id = "run-\(Int(Self.now()))-\(suffix.hexString)"
        let now = Self.now()
        let run = CoordinatorStore.Run(
            id: id, parameters: try JSONEncoder().encode(p), status: "running", reason: nil, phase: "clustering",
            centroids: Packing.pack(prepared.centroids), variances: Packing.pack(prepared.variances), committedRounds: 0,
            abandonedInARow: 0, createdAt: now, finishedAt: nil
        )
        try store.database.write { db in
            try run.insert(db)
            try PrivacyLedger.Budget(population: "run:\(id)", epsilon: p.epsilon, delta: p.delta).save(db)
        }
        active = ActiveRun(
            id: id, parameters: p, privacy: privacy, centroids: prepared.centroids, variances: prepared.variances,
            committedRounds: 0, phase: "clustering", abandonedInARow: 0, startedAt: now
        )
        seedVectors = prepared.seedVectors.map { (id, $0) }
        logger.notice("run started", metadata: ["run": "\(id)", "plan": "\(privacy.clustering.reason)"])
        try openRound()
        return try summary(id)
    }

    /// Stops the run: the open round is abandoned (nothing released, nothing charged by the coordinator).
    public func stop(reason: String = "stopped by the operator") throws -> RunSummary {
        guard let run = active else { throw CoordinatorError.noRun }
        try finish(status: "stopped", reason: reason)
        return try summary(run.id)
    }

    // MARK: Rounds

    public struct RoundSnapshot: Sendable {
        public var round: UInt64
        public var plan: Fedseg_V1_RoundPlan
        /// Distributed mode: the cohort and graph, and the kinds the open stage takes.
        public var secagg: SecAggContext?
        public var kinds: [Fedseg_V1_MessageKind]?
        var stage: SecAggRound.Stage?
    }

    public func currentPublication() -> [UInt8]? { open?.publication }

    public func snapshot() -> RoundSnapshot? {
        open.map { RoundSnapshot(round: $0.id, plan: $0.plan, secagg: $0.secagg?.context, kinds: $0.secagg?.stage.kinds, stage: $0.secagg?.stage) }
    }

    public enum AddOutcome: Sendable { case added, late }

    /// Adds an accepted message to the open round's sums (or its secure-aggregation state).
    public func add(_ message: UpdateIntake.Message, round: UInt64, clientID: String = "") throws -> AddOutcome {
        guard var current = open, current.id == round else { return .late }
        if let secagg = current.secagg {
            guard let index = secagg.context.index[clientID], secagg.expects(message, from: index) else { return .late }
        }
        try Self.add(message, from: clientID, to: &current)
        open = current
        switch message {
        case .decline: metrics.declines.increment()
        case .clientUpdate, .recommendationUpdate, .secAggMaskedInput: metrics.updatesAccepted.increment()
        default: break
        }
        if current.secagg != nil {
            try advanceSecAgg()
        } else if current.participants + current.declined >= current.expected {
            try close()
        }
        return .added
    }

    static func kind(of message: UpdateIntake.Message) -> Fedseg_V1_MessageKind? {
        switch message {
        case .decline: .decline
        case .secAggAdvertise: .secaggAdvertise
        case .secAggShares: .secaggShares
        case .secAggMaskedInput: .secaggMaskedInput
        case .secAggUnmask: .secaggUnmask
        case .clientUpdate, .recommendationUpdate: nil
        }
    }

    /// Whether a recorded stage message was part of its stage when that stage closed.
    static func belongs(_ message: UpdateIntake.Message, from index: Int, to state: SecAggRound.Persisted) -> Bool {
        guard let kind = kind(of: message), let stage = SecAggRound.Stage.of(kind: kind) else { return true }
        guard stage < state.stage else { return true }
        switch kind {
        case .secaggAdvertise: return state.advertised.contains(index)
        case .secaggShares: return state.shared.contains(index)
        case .secaggMaskedInput: return state.survivors.contains(index)
        default: return !state.advertised.contains(index)
        }
    }

    /// Moves a distributed round through its stages; at the end, its sum becomes the round's
    /// result (or the round is abandoned).
    func advanceSecAgg() throws {
        guard var current = open, var secagg = current.secagg else { return }
        let outcome = secagg.advance(now: Self.now())
        current.secagg = secagg
        current.declined = secagg.declined.count
        open = current
        switch outcome {
        case .open:
            return
        case .nextStage:
            try store.saveSecAggState(secagg.persisted, round: Int64(current.id))
            logger.info("secure aggregation stage", metadata: [
                "round": "\(current.id)", "stage": "\(secagg.stage)", "advertised": "\(secagg.server.directory.count)",
                "shared": "\(secagg.server.shared.count)", "masked": "\(secagg.server.survivors.count)",
            ])
            // A stage nobody is left to answer closes at once.
            if secagg.stageComplete { try advanceSecAgg() }
        case .aborted(let reason):
            open = nil
            try abandon(current, reason: "secure aggregation aborted: \(reason)")
        case .finished(let sum, let survivors):
            current.participants = survivors
            if current.plan.phase == .clustering {
                let noise = current.plan.distributedNoise
                let decoded = noise.decode(sum)
                current.sums = decoded.sums
                current.counts = decoded.counts
                let std = noise.decodedStd(survivors: survivors)
                current.noiseVariance = (std.sums * std.sums, std.counts * std.counts)
            } else {
                let noise = current.plan.distributedHistogramNoise(
                    baseSensitivity: SegmentHistogram.sensitivity(maxItemsPerUser: Int(current.plan.maxItemsPerUser))
                )
                current.sums = noise.decode(sum)
                let std = noise.decodedStd(survivors: survivors)
                current.noiseVariance = (std * std, std * std)
            }
            current.secagg = nil
            open = current
            try close()
        }
    }

    /// The signed view of the open distributed round for one client (or the public progress).
    public func secAggView(round: UInt64, clientID: String?) throws -> [UInt8]? {
        guard let current = open, current.id == round, let run = active else { return nil }
        var view: Fedseg_V1_SecAggStage
        if let secagg = current.secagg {
            var index: Int?
            if let clientID {
                guard let i = secagg.context.index[clientID] else { return nil }
                index = i
            }
            view = secagg.view(for: index, runID: run.id, round: round)
        } else {
            view = Fedseg_V1_SecAggStage()
            view.runID = run.id
            view.round = round
            view.stage = .secaggStageFinished
        }
        let payload = try view.serializedData()
        return try Fedseg_V1_SignedPublication.with {
            $0.kind = .secaggStage
            $0.payload = payload
            $0.signature = Data(keys.identity.signing.signature(for: payload))
        }.serializedBytes()
    }

    static func add(_ message: UpdateIntake.Message, from clientID: String, to round: inout OpenRound) throws {
        if var secagg = round.secagg {
            guard let index = secagg.context.index[clientID] else { throw CoordinatorError.state("\(clientID) is not in the cohort") }
            try secagg.receive(message, from: index)
            round.secagg = secagg
            round.declined = secagg.declined.count
            return
        }
        switch message {
        case .clientUpdate(let update):
            update.sums.withUnsafeBufferPointer { source in
                for i in 0..<source.count { round.sums[i] += Double(source[i]) }
            }
            for j in 0..<update.counts.count { round.counts[j] += Double(update.counts[j]) }
            round.participants += 1
        case .recommendationUpdate(let update):
            for i in 0..<update.counts.count { round.sums[i] += Double(update.counts[i]) }
            round.participants += 1
        case .decline:
            round.declined += 1
        case .secAggAdvertise, .secAggShares, .secAggMaskedInput, .secAggUnmask:
            throw CoordinatorError.state("a secure-aggregation message in a local round")
        }
    }

    /// Closes the open round when its deadline has passed; called by the ticker.
    public func tick() throws {
        if open?.secagg != nil { return try advanceSecAgg() }
        guard let current = open,
            Self.now() >= current.deadline || current.participants + current.declined >= current.expected
        else { return }
        try close()
    }

    nonisolated func crash(at point: String) {
        if settings.crashPoint == point {
            logger.critical("test hook: SIGKILL at \(point)")
            kill(getpid(), SIGKILL)
        }
    }

    func close() throws {
        guard let current = open, let run = active else { return }
        open = nil
        let elapsed = Self.now() - current.openedAt
        guard current.participants >= run.parameters.minParticipants else {
            try abandon(current, reason: "\(current.participants) of \(run.parameters.minParticipants) required updates")
            return
        }
        crash(at: "aggregate")
        metrics.roundSeconds.recordNanoseconds(Int64(elapsed * 1e9))
        metrics.participants.record(Double(current.participants))
        if current.plan.phase == .clustering {
            try commitClustering(current, run: run)
        } else {
            try commitRecommendation(current, run: run)
        }
        try advance()
    }

    func abandon(_ round: OpenRound, reason: String) throws {
        guard var run = active else { return }
        run.abandonedInARow += 1
        active = run
        try store.database.write { db in
            try db.execute(sql: "UPDATE rounds SET status = 'abandoned', participants = ?, declined = ?, closed_at = ? WHERE id = ?",
                           arguments: [round.participants, round.declined, Self.now(), Int64(round.id)])
            try db.execute(sql: "UPDATE accepted_messages SET envelope = NULL WHERE round = ?", arguments: [Int64(round.id)])
            try db.execute(sql: "UPDATE runs SET abandoned_in_a_row = ? WHERE id = ?", arguments: [run.abandonedInARow, run.id])
        }
        metrics.roundsAbandoned.increment()
        logger.warning("round abandoned", metadata: ["round": "\(round.id)", "why": "\(reason)"])
        if run.abandonedInARow >= run.parameters.maxAbandonedRounds {
            try finish(status: "failed", reason: "\(run.abandonedInARow) rounds in a row abandoned (\(reason))")
        } else {
            try openRound()
        }
    }

    func commitClustering(_ round: OpenRound, run: ActiveRun) throws {
        var updated = run
        let plan = round.plan
        let copies = Double(round.participants)
        let previous = run.centroids
        let variance = round.noiseVariance ?? (copies * plan.sumStd * plan.sumStd, copies * plan.countStd * plan.countStd)
        PrivateClustering.merge(
            centroids: &updated.centroids, variances: &updated.variances, sums: round.sums, counts: round.counts,
            sumVariance: variance.sums, countVariance: variance.counts
        )
        var shift = 0.0
        for j in 0..<previous.rows {
            var squared = 0.0
            for t in 0..<previous.cols {
                let diff = Double(updated.centroids[j, t] - previous[j, t])
                squared += diff * diff
            }
            shift = max(shift, squared.squareRoot())
        }
        updated.committedRounds += 1
        updated.abandonedInARow = 0
        let mechanism = run.privacy.clusteringMechanism
        try store.database.write { db in
            // The charge comes first: if the budget refuses it, nothing of the round is stored.
            try PrivacyLedger.charge(
                db, releaseID: "\(run.id)/round-\(round.id)", round: Int64(round.id), mechanism: mechanism,
                populations: ["run:\(run.id)", Self.allUsers]
            )
            crash(at: "commit")
            try db.execute(
                sql: "UPDATE rounds SET status = 'committed', participants = ?, declined = ?, centroid_shift = ?, centroids = ?, counts = ?, closed_at = ? WHERE id = ?",
                arguments: [round.participants, round.declined, shift, Packing.pack(updated.centroids), Packing.pack(round.counts), Self.now(), Int64(round.id)]
            )
            try db.execute(
                sql: "UPDATE runs SET centroids = ?, variances = ?, committed_rounds = ?, abandoned_in_a_row = 0 WHERE id = ?",
                arguments: [Packing.pack(updated.centroids), Packing.pack(updated.variances), updated.committedRounds, run.id]
            )
            try db.execute(sql: "UPDATE accepted_messages SET envelope = NULL WHERE round = ?", arguments: [Int64(round.id)])
        }
        // Converged, or out of rounds: on to recommendation (or done).
        if updated.committedRounds >= run.parameters.rounds || shift < run.parameters.convergenceTolerance {
            updated.phase = run.parameters.catalog.isEmpty ? "done" : "recommendation"
            try store.database.write { db in try db.execute(sql: "UPDATE runs SET phase = ? WHERE id = ?", arguments: [updated.phase, run.id]) }
        }
        active = updated
        metrics.roundsCommitted.increment()
        try recordEpsilon()
        logger.info("round committed", metadata: [
            "round": "\(round.id)", "participants": "\(round.participants)", "declined": "\(round.declined)",
            "centroid_shift": "\(String(format: "%.5f", shift))",
        ])
    }

    func commitRecommendation(_ round: OpenRound, run: ActiveRun) throws {
        guard let mechanism = run.privacy.recommendationMechanism else { throw CoordinatorError.state("no recommendation phase") }
        var histogram = SegmentHistogram(segments: run.parameters.k, items: run.parameters.catalog.count)
        histogram.counts = round.sums
        let noiseStd = round.noiseVariance.map { $0.sums.squareRoot() } ?? round.plan.sumStd * Double(round.participants).squareRoot()
        let version = try store.database.read { db in
            try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM segment_models WHERE run_id = ?", arguments: [run.id])
        } ?? 0
        var model = SegmentModel.build(from: histogram, runID: run.id, version: version + 1, noiseStd: noiseStd)
        model.centroids = run.centroids.storage
        model.dimension = run.parameters.dimension
        model.embedderID = run.parameters.embedderID
        let publication = try publication(of: model)
        try store.database.write { db in
            try PrivacyLedger.charge(
                db, releaseID: "\(run.id)/round-\(round.id)", round: Int64(round.id), mechanism: mechanism,
                populations: ["run:\(run.id)", Self.allUsers]
            )
            crash(at: "commit")
            try CoordinatorStore.PublishedModel(runID: run.id, version: model.version, publication: publication, createdAt: Self.now()).insert(db)
            try db.execute(
                sql: "UPDATE rounds SET status = 'committed', participants = ?, declined = ?, closed_at = ? WHERE id = ?",
                arguments: [round.participants, round.declined, Self.now(), Int64(round.id)]
            )
            try db.execute(sql: "UPDATE runs SET phase = 'done' WHERE id = ?", arguments: [run.id])
            try db.execute(sql: "UPDATE accepted_messages SET envelope = NULL WHERE round = ?", arguments: [Int64(round.id)])
        }
        active?.phase = "done"
        metrics.roundsCommitted.increment()
        try recordEpsilon()
        logger.info("segment model published", metadata: ["run": "\(run.id)", "version": "\(model.version)", "participants": "\(round.participants)"])
    }

    func publication(of model: SegmentModel) throws -> Data {
        let signed = try model.signed(with: keys.identity.signing)
        return try Fedseg_V1_SignedPublication.with {
            $0.kind = .segmentModel
            $0.payload = signed.payload
            $0.signature = Data(signed.signature)
        }.serializedData()
    }

    /// After a commit: the next round, or the end of the run. A run without a catalogue ends by
    /// publishing its centroids alone (post-processing of committed rounds, no new charge).
    func advance() throws {
        guard let run = active else { return }
        if run.phase == "done" {
            let published = try store.database.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM segment_models WHERE run_id = ?", arguments: [run.id])
            } ?? 0
            if published == 0 {
                var model = SegmentModel(
                    runID: run.id, version: 1, catalogSize: 0, segments: [], global: .init(id: -1, items: [], scores: [])
                )
                model.centroids = run.centroids.storage
                model.dimension = run.parameters.dimension
                model.embedderID = run.parameters.embedderID
                let publication = try publication(of: model)
                try store.database.write { db in
                    try CoordinatorStore.PublishedModel(runID: run.id, version: 1, publication: publication, createdAt: Self.now()).insert(db)
                }
            }
            try finish(status: "completed", reason: nil)
        } else {
            try openRound()
        }
    }

    func finish(status: String, reason: String?) throws {
        guard let run = active else { return }
        let abandoned = open
        open = nil
        try store.database.write { db in
            if let abandoned {
                try db.execute(sql: "UPDATE rounds SET status = 'abandoned', closed_at = ? WHERE id = ?", arguments: [Self.now(), Int64(abandoned.id)])
                try db.execute(sql: "UPDATE accepted_messages SET envelope = NULL WHERE round = ?", arguments: [Int64(abandoned.id)])
            }
            try db.execute(sql: "UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?", arguments: [status, reason, Self.now(), run.id])
        }
        active = nil
        logger.notice("run finished", metadata: ["run": "\(run.id)", "status": "\(status)", "reason": "\(reason ?? "")"])
    }

    func openRound() throws {
        guard let run = active else { return }
        let p = run.parameters
        let cohort = try store.database.read { db in try String.fetchAll(db, sql: "SELECT id FROM clients WHERE status = 'active' ORDER BY id") }
        let expected = cohort.count
        let now = Self.now()
        let deadline = now + p.roundDeadlineSeconds
        var plan = Fedseg_V1_RoundPlan()
        plan.protocolVersion = fedsegProtocolVersion
        plan.runID = run.id
        plan.k = UInt32(p.k)
        plan.dimension = UInt32(p.dimension)
        plan.centroids = run.centroids.storage
        plan.clipNorm = p.clipNorm
        plan.privacyMode = p.privacyMode == "distributed" ? .distributed : .local
        plan.samplingRate = p.samplingRate
        plan.deadlineUnixMs = Int64(deadline * 1000)
        plan.minParticipants = UInt32(p.minParticipants)
        plan.embedderID = p.embedderID
        plan.delta = p.delta
        plan.expectedParticipants = UInt32(max(1, Int((Double(expected) * p.samplingRate).rounded())))
        let width: Int
        if run.phase == "clustering" {
            plan.phase = .clustering
            let noise = run.privacy.clustering.noise
            plan.noiseMultiplier = run.privacy.clustering.noiseMultiplier
            plan.sumStd = noise.sumStd
            plan.countStd = noise.countStd
            width = p.k * p.dimension
        } else {
            guard let z = run.privacy.recommendationNoiseMultiplier else { throw CoordinatorError.state("no recommendation phase") }
            plan.phase = .recommendation
            plan.noiseMultiplier = z
            plan.sumStd = z * SegmentHistogram.sensitivity(maxItemsPerUser: p.maxItemsPerUser)
            plan.countStd = plan.sumStd
            plan.maxItemsPerUser = UInt32(p.maxItemsPerUser)
            plan.catalogSize = UInt32(p.catalog.count)
            plan.catalogItems = p.catalog
            width = p.k * p.catalog.count
        }
        if plan.privacyMode == .distributed {
            let minimum = max(2, p.minParticipants)
            guard cohort.count >= minimum else {
                try finish(status: "failed", reason: "distributed mode: \(cohort.count) active clients, secure aggregation needs at least \(minimum)")
                return
            }
            do {
                plan.secagg = try Self.secAggPlan(plan: plan, run: run, cohort: cohort, minimum: minimum)
            } catch {
                try finish(status: "failed", reason: "distributed mode: \(error)")
                return
            }
            if plan.phase == .clustering {
                plan.sumStd = plan.secagg.clientSigma * Double(minimum).squareRoot() / plan.secagg.sumScale
                plan.countStd = plan.secagg.clientSigma * Double(minimum).squareRoot() / plan.secagg.countScale
            } else {
                plan.sumStd = plan.secagg.clientSigma * Double(minimum).squareRoot() / plan.secagg.countScale
                plan.countStd = plan.sumStd
            }
        }
        let keys = self.keys
        let (id, publication): (Int64, [UInt8]) = try store.database.write { db in
            var row = CoordinatorStore.Round(
                id: nil, runID: run.id, phase: run.phase, status: "collecting", openedAt: now, deadline: deadline,
                publication: Data(), expected: expected, participants: 0, declined: 0, centroidShift: nil, centroids: nil, counts: nil,
                closedAt: nil
            )
            try row.insert(db)
            guard let id = row.id else { throw CoordinatorError.state("round id not assigned") }
            plan.round = UInt64(id)
            let payload = try plan.serializedData()
            let publication: [UInt8] = try Fedseg_V1_SignedPublication.with {
                $0.kind = .roundPlan
                $0.payload = payload
                $0.signature = Data(keys.identity.signing.signature(for: payload))
            }.serializedBytes()
            try db.execute(sql: "UPDATE rounds SET publication = ? WHERE id = ?", arguments: [Data(publication), id])
            return (id, publication)
        }
        try plan.validate(limits: settings.limits)
        open = Self.emptyRound(id: UInt64(id), plan: plan, publication: publication, deadline: deadline, openedAt: now, expected: expected, width: width)
        logger.info("round open", metadata: ["run": "\(run.id)", "round": "\(id)", "phase": "\(run.phase)", "expected": "\(expected)"])
    }

    static func emptyRound(
        id: UInt64, plan: Fedseg_V1_RoundPlan, publication: [UInt8], deadline: Double, openedAt: Double, expected: Int, width: Int? = nil
    ) -> OpenRound {
        let k = Int(plan.k)
        if plan.privacyMode == .distributed {
            // The sums come from the unmasked total at the end; nothing is summed in float before.
            return OpenRound(
                id: id, plan: plan, publication: publication, deadline: deadline, openedAt: openedAt, expected: expected,
                sums: [], counts: [], secagg: SecAggRound(round: plan, openedAt: openedAt)
            )
        }
        let size = width ?? (plan.phase == .clustering ? k * Int(plan.dimension) : k * Int(plan.catalogSize))
        return OpenRound(
            id: id, plan: plan, publication: publication, deadline: deadline, openedAt: openedAt, expected: expected,
            sums: [Double](repeating: 0, count: size), counts: [Double](repeating: 0, count: k)
        )
    }

    /// The secure-aggregation plan of a distributed round: the cohort in a fixed order, a fresh
    /// graph seed, and quantisation and noise shares sized so that any `minimum` survivors'
    /// sum carries the run's planned noise and the sum of all never wraps.
    static func secAggPlan(plan: Fedseg_V1_RoundPlan, run: ActiveRun, cohort: [String], minimum: Int) throws -> Fedseg_V1_SecAggPlan {
        let p = run.parameters
        var parameters = SecAgg.Parameters(clients: cohort.count, length: plan.secAggWidth, round: plan.round, graphSeed: 0, minimumSurvivors: minimum)
        parameters.degree = min(parameters.degree, 254)
        parameters.threshold = max(1, (parameters.degree + 2) / 3)
        var secagg = Fedseg_V1_SecAggPlan()
        secagg.cohort = cohort
        secagg.degree = UInt32(parameters.degree)
        secagg.threshold = UInt32(parameters.threshold)
        secagg.minSurvivors = UInt32(minimum)
        var random = SecureRandom()
        secagg.graphSeed = random.next()
        secagg.length = UInt32(plan.secAggWidth)
        secagg.stageSeconds = p.roundDeadlineSeconds / 4
        if plan.phase == .clustering {
            let noise = try DistributedNoise.make(
                noise: run.privacy.clustering.noise, k: p.k, dimension: p.dimension, minimumSurvivors: minimum, maxUsers: p.maxUsers,
                clients: cohort.count
            )
            secagg.sumScale = noise.sumScale
            secagg.countScale = noise.countScale
            secagg.clientSigma = noise.clientSigma
        } else {
            guard let z = run.privacy.recommendationNoiseMultiplier else { throw CoordinatorError.state("no recommendation phase") }
            let noise = try DistributedIntegerNoise.make(
                noiseMultiplier: z, baseSensitivity: SegmentHistogram.sensitivity(maxItemsPerUser: p.maxItemsPerUser), length: plan.secAggWidth,
                minimumSurvivors: minimum, clients: cohort.count, maxTotal: p.maxUsers
            )
            secagg.sumScale = Double(noise.scale)
            secagg.countScale = Double(noise.scale)
            secagg.clientSigma = noise.clientSigma
        }
        return secagg
    }

    func recordEpsilon() throws {
        guard let run = active else { return }
        metrics.epsilonSpent.record(try store.ledger.spent(by: "run:\(run.id)"))
    }

    // MARK: Reads for the admin API

    public func summary(_ id: String? = nil) throws -> RunSummary {
        guard let runID = try (id ?? active?.id ?? store.runs().last?.id) else { throw CoordinatorError.noRun }
        guard let run = try store.run(runID) else { throw CoordinatorError.state("unknown run \(runID)") }
        let rounds = try store.rounds(run: runID)
        let parameters = try run.decodedParameters()
        let spent = try store.ledger.budget(for: "run:\(runID)") == nil ? 0 : try store.ledger.spent(by: "run:\(runID)")
        return RunSummary(
            id: runID, status: run.status, reason: run.reason, phase: run.phase, k: parameters.k, dimension: parameters.dimension,
            embedderID: parameters.embedderID, privacyMode: parameters.privacyMode, epsilon: parameters.epsilon, delta: parameters.delta,
            epsilonSpent: spent, plannedRounds: parameters.rounds, committedRounds: run.committedRounds,
            noiseMultiplier: try parameters.privacyPlan().clustering.noiseMultiplier,
            openRound: open.map { round in
                OpenRoundSummary(
                    id: round.id, phase: round.plan.phase == .clustering ? "clustering" : "recommendation", participants: round.participants,
                    declined: round.declined, expected: round.expected, deadlineUnix: round.deadline, secAggStage: round.secagg.map { "\($0.stage)" },
                    secAggProgress: round.secagg.map { [
                        "advertised": $0.server.directory.count, "shared": $0.server.shared.count, "masked": $0.server.survivors.count,
                        "revealed": $0.revealed.count,
                    ] }
                )
            },
            rounds: rounds.map {
                RoundSummary(id: UInt64($0.id ?? 0), phase: $0.phase, status: $0.status, participants: $0.participants, declined: $0.declined, expected: $0.expected, centroidShift: $0.centroidShift)
            }
        )
    }

    /// The current (or last) run's centroids, with the public seed phrases nearest each.
    public func segments() throws -> SegmentsReport {
        guard let runID = try (active?.id ?? store.runs().last?.id) else { throw CoordinatorError.noRun }
        return try store.segments(runID: runID, seedVectors: seedVectors?.runID == runID ? seedVectors?.vectors : nil)
    }

    /// Seed phrase vectors of the run, for `segments()` after a restart (embedding is done by
    /// the caller, outside the actor).
    public func setSeedVectors(runID: String, vectors: Matrix) {
        seedVectors = (runID, vectors)
    }

    public func needsSeedVectors() throws -> RunParameters? {
        guard let runID = try (active?.id ?? store.runs().last?.id), seedVectors?.runID != runID, let run = try store.run(runID) else { return nil }
        let parameters = try run.decodedParameters()
        return parameters.seedPhrases.isEmpty ? nil : parameters
    }
}
