import CoreMetrics
import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import Logging
import Prometheus
import SwiftProtobuf

/// The round state machine of one coordinator: plan → collecting → aggregating → committed.
///
/// Memory is bounded by the running sums of the open round (k·d doubles, or k·catalogue counts);
/// individual updates are never held. A message is recorded durably (with its replay record)
/// in the same step that adds it to the open round, so after a crash the round's sums are
/// rebuilt from disk and a message either counts or was never accepted. All SQL is in
/// `CoordinatorStore`; the two ways of noising a round are `LocalAggregation` and
/// `SecAggRound` behind `RoundAggregation`.
public actor Coordinator {
    public struct Settings: Sendable {
        /// Total budget of every user across all runs this coordinator will ever release, as the
        /// configuration states it: nil takes the ledger's recorded budget; a value must agree
        /// with it (`Coordinator.init` refuses otherwise). A first start records it (default 16, 10⁻⁵).
        public var totalEpsilon: Double?
        public var totalDelta: Double?
        public var limits = ProtocolLimits()
        /// Where embeddings of seed phrases are cached.
        public var embeddingCache: URL?
        public var modelFiles = MiniLMModelFiles.defaultLocation()
        /// Test hook (`FEDSEG_TEST_CRASH_AT`): kills the process with SIGKILL at that point of the
        /// first round it closes, to prove recovery.
        public var crashPoint: CrashPoint?
        public var clock: any WallClock = SystemWallClock()
        /// A client not seen for this long (no poll naming it, no accepted message) is stale:
        /// rounds neither wait for it nor, in distributed mode, put it in their cohort.
        public var staleAfterSeconds: Double = 120

        public init() {}
    }

    public enum CrashPoint: String, Sendable {
        /// After the round closed, before anything of it is stored.
        case aggregate
        /// Inside the commit transaction, after the charge.
        case commit
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
        var phase: RunPhase
        var abandonedInARow: Int
        var startedAt: Double
        /// The start histogram's public candidates (nil: the run starts from its seed phrases alone).
        var startCandidates: StartCandidates?
        var segmentation: SegmentationRecord? = nil
        /// Each segment's mean squared distance of its users from their mean, estimated from the
        /// first Lloyd round's raw release (nil before it): what bounds a centred round's clip.
        var spreads: [Double]? = nil

        /// The run's segments now: `parameters.k`, or what the start chose, less dropped ones.
        var k: Int { centroids.rows }
    }

    struct OpenRound {
        var id: UInt64
        var plan: Fedseg_V1_RoundPlan
        var publication: [UInt8]
        var deadline: Double
        var openedAt: Double
        var expected: Int
        var aggregation: any RoundAggregation
        /// Whether the run and all users have been charged for this round's release (local mode:
        /// at its first accepted update; distributed: before its sum is decoded).
        var charged = false

        var participants: Int { aggregation.participants }
        var declined: Int { aggregation.declined }
        var phase: RunPhase { RunPhase(wire: plan.phase) ?? .clustering }
    }

    public nonisolated let store: CoordinatorStore
    public nonisolated let keys: CoordinatorKeys
    public nonisolated let metrics: CoordinatorMetrics
    public nonisolated let settings: Settings
    public nonisolated let intake: UpdateIntake
    nonisolated let liveness = LivenessBook()
    var lastLivenessFlush = 0.0
    let logger: Logger
    var active: ActiveRun?
    var open: OpenRound?
    /// Messages waiting for the next group commit (`accept`).
    var pendingAccepts: [PendingAccept] = []
    var acceptFlushScheduled = false
    /// The current run's embedded seed phrases (for `segments()`), kept from its start.
    var seedVectors: (runID: String, vectors: Matrix)?

    /// The state machine commits to SQLite as it goes (each commit waits for the disk): on its
    /// own queue, so a commit never holds a thread the HTTP server and handlers need.
    private nonisolated let executor = SerialQueueExecutor(label: "fedseg.coordinator")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(store: CoordinatorStore, keys: CoordinatorKeys, settings: Settings, metrics: CoordinatorMetrics, logger: Logger) throws {
        self.store = store
        self.keys = keys
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.intake = UpdateIntake(registry: store.registry, limits: settings.limits)
        try Self.establishBudget(store.ledger, settings: settings)
    }

    public static let defaultTotalEpsilon = 16.0
    public static let defaultTotalDelta = 1e-5

    /// The lifetime budget is the ledger's: recorded once (init or first start) and changed only
    /// by `setLifetimeBudget`, itself a ledger record. A configuration that disagrees is refused,
    /// so restarting with another file or flag can never change it silently.
    static func establishBudget(_ ledger: PrivacyLedger, settings: Settings) throws {
        guard let recorded = try ledger.budget(for: allUsers) else {
            try ledger.setBudget(
                .init(population: allUsers, epsilon: settings.totalEpsilon ?? defaultTotalEpsilon, delta: settings.totalDelta ?? defaultTotalDelta),
                reason: "first start"
            )
            return
        }
        let epsilonDiffers = settings.totalEpsilon.map { $0 != recorded.epsilon } ?? false
        let deltaDiffers = settings.totalDelta.map { $0 != recorded.delta } ?? false
        guard !epsilonDiffers && !deltaDiffers else {
            throw CoordinatorError.budget("""
                the state directory's ledger records a lifetime budget of ε = \(recorded.epsilon), δ = \(recorded.delta); \
                the configuration asks for ε = \(settings.totalEpsilon ?? recorded.epsilon), δ = \(settings.totalDelta ?? recorded.delta). \
                The budget changes only through the ledger: start without privacy.total_epsilon/total_delta (or --total-epsilon/--total-delta), \
                then run `fedseg privacy budget set --epsilon E --reason WHY` against the daemon
                """)
        }
    }

    /// Changes every user's lifetime budget: an authenticated admin action, recorded in the
    /// ledger with its reason. Refused while a run is in progress (its releases were checked
    /// against the budget it started under); δ is fixed once anything is charged.
    public func setLifetimeBudget(epsilon: Double, delta: Double?, reason: String) throws -> PrivacyLedger.Budget {
        if let active { throw CoordinatorError.runInProgress(active.id) }
        guard let current = try store.ledger.budget(for: Self.allUsers) else { throw CoordinatorError.state("no all-users budget") }
        let budget = PrivacyLedger.Budget(population: Self.allUsers, epsilon: epsilon, delta: delta ?? current.delta)
        do {
            try store.ledger.setBudget(budget, reason: "admin: \(reason)")
        } catch let failure as PrivacyLedger.Failure {
            throw CoordinatorError.budget(failure.description)
        }
        try? recordEpsilon([Self.allUsers])
        logger.notice("lifetime budget changed", metadata: ["epsilon": "\(budget.epsilon)", "delta": "\(budget.delta)", "reason": "\(reason)"])
        return budget
    }

    var now: Double { settings.clock.now() }

    // MARK: Recovery

    /// Picks up a run that was in progress when the process stopped: committed rounds stay as
    /// they are; an open round is resumed with its sums rebuilt from the messages it had
    /// accepted, under the same signed plan and deadline.
    public func recover() throws {
        try? recordEpsilon()
        guard let run = try store.runningRun() else { return }
        let parameters = try run.decodedParameters()
        active = ActiveRun(
            id: run.id, parameters: parameters, privacy: try parameters.privacyPlan(),
            centroids: try Packing.unpackMatrix(run.centroids, cols: parameters.dimension, maxRows: parameters.k),
            variances: Packing.unpackDoubles(run.variances), committedRounds: run.committedRounds, phase: run.phase,
            abandonedInARow: run.abandonedInARow, startedAt: run.createdAt,
            startCandidates: try run.startCandidates.map { try JSONDecoder().decode(StartCandidates.self, from: $0) },
            segmentation: try run.segmentation.map { try JSONDecoder().decode(SegmentationRecord.self, from: $0) },
            spreads: run.spreads.map(Packing.unpackDoubles)
        )
        guard let latest = try store.latestRound(runID: run.id), latest.status == .collecting, let id = latest.id else {
            logger.notice("resuming run", metadata: ["run": "\(run.id)", "committed_rounds": "\(run.committedRounds)"])
            return try advance()
        }
        // The stored plan is signed: a damaged one is refused rather than resumed.
        guard let publication = try? Fedseg_V1_SignedPublication(serializedBytes: latest.publication),
            keys.identity.signing.publicKey.isValidSignature([UInt8](publication.signature), for: publication.payload),
            let plan = try? Fedseg_V1_RoundPlan(serializedBytes: publication.payload), plan.round == UInt64(id), plan.runID == run.id
        else {
            throw CoordinatorError.state("the stored plan of round \(id) (run \(run.id)) is damaged: its signature does not verify; restore the state directory from a backup")
        }
        var round = OpenRound(
            id: UInt64(id), plan: plan, publication: [UInt8](latest.publication), deadline: latest.deadline, openedAt: latest.openedAt,
            expected: latest.expected, aggregation: Self.aggregation(for: plan, openedAt: latest.openedAt)
        )
        try round.aggregation.resume(from: store.secAggState(round: id))
        for envelope in try store.pendingEnvelopes(round: id) {
            let decoded = try intake.decode(
                envelope, plan: plan, coordinator: keys.identity.keyAgreement, checkStatus: false, kinds: round.aggregation.allKinds
            )
            try round.aggregation.replay(decoded.message, from: decoded.clientID)
        }
        round.charged = try store.isCharged(releaseID: releaseID(round))
        open = round
        logger.notice("resumed round", metadata: ["run": "\(run.id)", "round": "\(id)", "updates": "\(round.participants)", "declines": "\(round.declined)"])
    }

    // MARK: Runs

    /// Starts a run with centroids prepared outside the actor (`RunStart.prepare`). Every check
    /// runs before anything is stored.
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
        // A run whose rounds cannot reach their quorum would charge its first releases for nothing.
        let enrolled = try store.activeClientIDs().count
        let live = try liveClientIDs().count
        let staleNote = live < enrolled
            ? " (\(enrolled - live) of the \(enrolled) active clients were not seen in the last \(Int(settings.staleAfterSeconds)) s; revoke them with fedseg clients revoke, or start their nodes)"
            : ""
        let needed = p.privacyMode == .distributed ? max(2, p.minParticipants) : p.minParticipants
        guard live >= needed else {
            throw CoordinatorError.invalidParameters(
                p.privacyMode == .distributed
                    ? "distributed mode needs at least max(2, min_participants) = \(needed) live clients, \(live) are live\(staleNote)"
                    : "min_participants = \(p.minParticipants) but \(live) clients are live\(staleNote): enrol clients first (fedseg clients token), or lower min_participants"
            )
        }
        // A public start spends its planned share on the start histogram; nothing else does.
        let phase: RunPhase = privacy.startMechanism == nil ? .clustering : .start
        guard phase == .clustering || prepared.startCandidates != nil else {
            throw CoordinatorError.state("the plan has a start histogram but the run has no public candidates")
        }
        let startedAt = now
        var suffix = [UInt8](repeating: 0, count: 4)
        suffix.withUnsafeMutableBytes { SecureRandom.fill($0) }
        let id = "run-\(Int(startedAt))-\(suffix.hexString)"
        let run = CoordinatorStore.Run(
            id: id, parameters: try JSONEncoder().encode(p), status: .running, reason: nil, phase: phase,
            centroids: Packing.pack(prepared.centroids), variances: Packing.pack(prepared.variances), committedRounds: 0,
            abandonedInARow: 0, createdAt: startedAt, finishedAt: nil,
            startCandidates: phase == .start ? try JSONEncoder().encode(prepared.startCandidates) : nil
        )
        try store.create(run, budget: .init(population: "run:\(id)", epsilon: p.epsilon, delta: p.delta))
        try? recordEpsilon(["run:\(id)"])
        active = ActiveRun(
            id: id, parameters: p, privacy: privacy, centroids: prepared.centroids, variances: prepared.variances,
            committedRounds: 0, phase: phase, abandonedInARow: 0, startedAt: startedAt,
            startCandidates: phase == .start ? prepared.startCandidates : nil
        )
        seedVectors = prepared.seedVectors.map { (id, $0) }
        logger.notice("run started", metadata: ["run": "\(id)", "plan": "\(privacy.clustering.reason)"])
        try openRound()
        return try summary(id)
    }

    /// Stops the run: the open round is abandoned (nothing released; what it accepted stays charged).
    public func stop(reason: String = "stopped by the operator") throws -> RunSummary {
        guard let run = active else { throw CoordinatorError.noRun }
        try finish(.stopped, reason: reason)
        return try summary(run.id)
    }

    // MARK: Rounds

    public struct RoundSnapshot: Sendable {
        public var round: UInt64
        public var plan: Fedseg_V1_RoundPlan
        /// The kinds the round takes now (a distributed round: its open stage's).
        public var kinds: [Fedseg_V1_MessageKind]
        /// Distributed mode: the checks a stage message needs beyond the plan (the round's graph).
        public var check: UpdateIntake.Check?
        /// Distributed mode: the stage a message kind belongs to relative to the open one.
        public var stageOrder: (@Sendable (Fedseg_V1_MessageKind) -> StageOrder)?
    }

    public enum StageOrder: Sendable { case open, closed(String), notOpenYet(String) }

    public func currentPublication() -> [UInt8]? { open?.publication }

    public func snapshot() -> RoundSnapshot? {
        open.map { RoundSnapshot(round: $0.id, plan: $0.plan, kinds: $0.aggregation.kinds, check: $0.aggregation.check, stageOrder: $0.aggregation.stageOrder) }
    }

    /// What became of a decoded message offered to the open round.
    public enum AcceptOutcome: Sendable, Equatable {
        /// Recorded and added to the round: it counts.
        case added
        /// The round (or its stage) closed first: nothing was recorded, so a retry is refused the
        /// same way rather than taken for a delivered message.
        case late(String)
        /// Refused by the replay rules (the same message again, or a second answer).
        case rejected(UpdateIntake.Rejection)
    }

    /// A message waiting for the next group commit, and who waits for its outcome.
    struct PendingAccept {
        var decoded: UpdateIntake.Decoded
        var envelope: [UInt8]
        var round: UInt64
        var continuation: CheckedContinuation<AcceptOutcome, any Error>
    }

    /// Records a message decoded by the intake and adds it to the open round, in one step: the
    /// round cannot close between the two. Local mode: the round's first update also charges the
    /// run and all users, in the same transaction (the coordinator has now seen private data).
    ///
    /// Group commit: messages that arrive while a commit is being written wait for the next
    /// one, which records all of them (replay records with their envelopes, and the charge) in
    /// one transaction and one fsync; each caller gets its own outcome once that transaction is
    /// on disk, so an `added` answer still means the message is durable. One writer and one
    /// fsync per message had been most of the intake's time.
    public func accept(_ decoded: UpdateIntake.Decoded, envelope: [UInt8], round: UInt64) async throws -> AcceptOutcome {
        try await withCheckedThrowingContinuation { continuation in
            pendingAccepts.append(PendingAccept(decoded: decoded, envelope: envelope, round: round, continuation: continuation))
            if !acceptFlushScheduled {
                acceptFlushScheduled = true
                Task { self.flushAccepts() }
            }
        }
    }

    /// Commits every waiting message at once and answers each.
    func flushAccepts() {
        acceptFlushScheduled = false
        let batch = pendingAccepts
        pendingAccepts = []
        let results: [Result<AcceptOutcome, any Error>]
        do {
            results = try acceptBatch(batch)
        } catch {
            results = Array(repeating: .failure(error), count: batch.count)
        }
        for (item, result) in zip(batch, results) { item.continuation.resume(with: result) }
    }

    /// The batch's messages in arrival order: each is checked against the open round as before,
    /// those it takes are recorded together (a replay within the batch is refused by the same
    /// transaction that recorded its first copy), then added, and the round moves on once.
    func acceptBatch(_ batch: [PendingAccept]) throws -> [Result<AcceptOutcome, any Error>] {
        var results = [Result<AcceptOutcome, any Error>?](repeating: nil, count: batch.count)
        var admitted: [Int] = []
        for (i, item) in batch.enumerated() {
            if let current = open, current.id == item.round, current.aggregation.expects(item.decoded.message, from: item.decoded.clientID) {
                admitted.append(i)
            } else {
                results[i] = Result { try closedOutcome(item.decoded, round: item.round) }
            }
        }
        guard var current = open, !admitted.isEmpty else { return results.map { $0! } }
        let reveals = admitted.map { current.aggregation.revealsOnAccept(batch[$0].decoded.message) }
        let charge = !current.charged && reveals.contains(true) ? try charge(for: current) : nil
        let rejections: [UpdateIntake.Rejection?]
        let charged: Bool
        do {
            (rejections, charged) = try store.accept(
                zip(admitted, reveals).map { i, reveals in
                    (clientID: batch[i].decoded.clientID, round: batch[i].round, kind: batch[i].decoded.kind, envelope: batch[i].envelope, reveals: reveals)
                },
                charge: charge
            )
        } catch let failure as PrivacyLedger.Failure {
            guard case .budgetExceeded = failure else { throw failure }
            try finish(.failed, reason: "the budget cannot pay for round \(current.id): \(failure)")
            for i in admitted { results[i] = .success(.late("the run ended: its budget cannot pay for round \(current.id)")) }
            return results.map { $0! }
        }
        if charged { current.charged = true }
        var added: [Int] = []
        for (position, i) in admitted.enumerated() {
            if let rejection = rejections[position] {
                results[i] = .success(.rejected(rejection))
                continue
            }
            let decoded = batch[i].decoded
            markSeen(decoded.clientID)
            do {
                try current.aggregation.add(decoded.message, from: decoded.clientID)
            } catch {
                results[i] = .failure(error)
                continue
            }
            switch decoded.message {
            case .decline: metrics.declines.increment()
            case .clientUpdate, .recommendationUpdate, .startHistogram, .secAggMaskedInput: metrics.updatesAccepted.increment()
            default: break
            }
            added.append(i)
        }
        open = current
        do {
            try progress()
            for i in added { results[i] = .success(.added) }
        } catch {
            for i in added { results[i] = .failure(error) }
        }
        return results.map { $0! }
    }

    /// The outcome for a message whose round (or stage) closed before it was added.
    func closedOutcome(_ decoded: UpdateIntake.Decoded, round: UInt64) throws -> AcceptOutcome {
        // Closed since the route looked: a message it had accepted before is still a replay.
        if try store.registry.wasAccepted(clientID: decoded.clientID, round: round, kind: decoded.kind) {
            return .rejected(.replay(client: decoded.clientID, round: round))
        }
        return .late(open?.id == round
            ? "round \(round) no longer takes this message from \(decoded.clientID)"
            : "round \(round) closed before the message was added")
    }

    /// Closes the open round when its deadline (or a stage's) has passed; called by the ticker.
    public func tick() throws {
        if now - lastLivenessFlush >= 5 {
            lastLivenessFlush = now
            try flushLiveness()
        }
        // A run between rounds: the next round (or the run's end) could not be stored last time.
        if open == nil, active != nil { try advance() }
        try progress()
    }

    /// Moves the open round on: the next secure-aggregation stage, or the round's close.
    func progress() throws {
        guard var current = open else { return }
        switch current.aggregation.advance(now: now, deadline: current.deadline, expected: current.expected) {
        case .open:
            open = current
        case .nextStage(let persisted):
            open = current
            try store.saveSecAggState(persisted, round: Int64(current.id))
            logger.info("secure aggregation stage", metadata: ["round": "\(current.id)", "stage": "\(persisted.stage)"])
            try progress()
        case .aborted(let reason):
            open = nil
            try keepOpenUnlessStored(current) { try abandon(current, reason: reason) }
        case .ready:
            open = nil
            try keepOpenUnlessStored(current) {
                guard current.participants >= active?.parameters.minParticipants ?? 1 else {
                    return try abandon(current, reason: "\(current.participants) of \(active?.parameters.minParticipants ?? 1) required updates")
                }
                // Charged before anything of the aggregate is decoded (local rounds were charged
                // with their first update).
                if !current.charged {
                    try store.charge(try charge(for: current))
                    current.charged = true
                }
                try close(current)
            }
        }
    }

    /// A round whose end could not be stored (a full disk, an I/O error: the transaction rolled
    /// back) stays open in memory as it is on disk, and the next tick ends it again.
    func keepOpenUnlessStored(_ round: OpenRound, _ end: () throws -> Void) throws {
        do {
            try end()
        } catch {
            if open == nil, active?.id == round.plan.runID, try store.roundStatus(Int64(round.id)) == .collecting {
                var kept = round
                kept.charged = try store.isCharged(releaseID: releaseID(round))
                open = kept
            }
            throw error
        }
    }

    nonisolated func crash(at point: CrashPoint) {
        if settings.crashPoint == point {
            logger.critical("test hook: SIGKILL at \(point.rawValue)")
            kill(getpid(), SIGKILL)
        }
    }

    func releaseID(_ round: OpenRound) -> String { "\(round.plan.runID)/round-\(round.id)" }

    /// The charge a round's release owes the run and all users.
    func charge(for round: OpenRound) throws -> CoordinatorStore.Charge {
        guard let run = active else { throw CoordinatorError.noRun }
        let planned: PrivacyLedger.Mechanism? = switch round.phase {
        case .start: run.privacy.startMechanism
        case .clustering: run.privacy.clusteringMechanism
        case .recommendation, .done: run.privacy.recommendationMechanism
        }
        guard let mechanism = planned else { throw CoordinatorError.state("the run's plan has no \(round.phase) release") }
        return .init(releaseID: releaseID(round), round: Int64(round.id), mechanism: mechanism, populations: ["run:\(run.id)", Self.allUsers])
    }

    func openRound() throws {
        guard let run = active, let phase = run.phase.wire else { return }
        // Only live clients: one that vanished would make the round wait its full deadline.
        let cohort = try liveClientIDs()
        let stale = try store.activeClientIDs().count - cohort.count
        if stale > 0 {
            logger.warning("stale clients left out of the round", metadata: ["stale": "\(stale)", "live": "\(cohort.count)", "stale_after_seconds": "\(settings.staleAfterSeconds)"])
        }
        let openedAt = now
        let deadline = openedAt + run.parameters.roundDeadlineSeconds
        var plan: Fedseg_V1_RoundPlan
        do {
            plan = try RoundPlanner.plan(run: run, phase: phase, cohort: cohort, deadline: deadline)
        } catch let refusal as RoundPlanner.Refusal {
            return try finish(.failed, reason: refusal.description)
        }
        let keys = self.keys
        let (id, publication) = try store.open(
            .init(
                id: nil, runID: run.id, phase: run.phase, status: .collecting, openedAt: openedAt, deadline: deadline, publication: Data(),
                expected: cohort.count, participants: 0, declined: 0, centroidShift: nil, centroids: nil, counts: nil, closedAt: nil
            ),
            sign: { id in
                plan.round = id
                return try keys.publication(.roundPlan, payload: try plan.serializedData())
            }
        )
        plan.round = id
        try plan.validate(limits: settings.limits)
        open = OpenRound(
            id: id, plan: plan, publication: publication, deadline: deadline, openedAt: openedAt, expected: cohort.count,
            aggregation: Self.aggregation(for: plan, openedAt: openedAt)
        )
        var metadata: Logger.Metadata = ["run": "\(run.id)", "round": "\(id)", "phase": "\(run.phase)", "expected": "\(cohort.count)"]
        if plan.centered { metadata["centered_clip_norm"] = "\(String(format: "%.4f", plan.clipNorm))" }
        logger.info("round open", metadata: metadata)
    }

    /// The aggregation a round's plan calls for: the one place local and distributed differ.
    static func aggregation(for plan: Fedseg_V1_RoundPlan, openedAt: Double) -> any RoundAggregation {
        plan.privacyMode == .distributed ? SecAggRound(round: plan, openedAt: openedAt) : LocalAggregation(plan: plan)
    }

    /// The lifetime ε gauges of `populations` (nil: every population, at start), each recomputed
    /// from the ledger: only those a change touched, not every past run's at every commit.
    func recordEpsilon(_ populations: Set<String>? = nil) throws {
        try metrics.recordPrivacy(store.ledger, populations: populations)
    }
}
