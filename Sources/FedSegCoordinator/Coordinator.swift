import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
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
            let envelopes = try store.pendingEnvelopes(round: id)
            for envelope in envelopes {
                let (_, _, message) = try intake.decode(envelope, plan: plan, coordinator: keys.identity.keyAgreement, checkStatus: false)
                Self.add(message, to: &round)
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
    }

    public func currentPublication() -> [UInt8]? { open?.publication }

    public func snapshot() -> RoundSnapshot? { open.map { RoundSnapshot(round: $0.id, plan: $0.plan) } }

    public enum AddOutcome: Sendable { case added, late }

    /// Adds an accepted message to the open round's sums.
    public func add(_ message: UpdateIntake.Message, round: UInt64) throws -> AddOutcome {
        guard var current = open, current.id == round else { return .late }
        Self.add(message, to: &current)
        open = current
        if case .decline = message { metrics.declines.increment() } else { metrics.updatesAccepted.increment() }
        if current.participants + current.declined >= current.expected { try close() }
        return .added
    }

    static func add(_ message: UpdateIntake.Message, to round: inout OpenRound) {
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
        }
    }

    /// Closes the open round when its deadline has passed; called by the ticker.
    public func tick() throws {
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
        PrivateClustering.merge(
            centroids: &updated.centroids, variances: &updated.variances, sums: round.sums, counts: round.counts,
            sumVariance: copies * plan.sumStd * plan.sumStd, countVariance: copies * plan.countStd * plan.countStd
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
        let noiseStd = round.plan.sumStd * Double(round.participants).squareRoot()
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
        let expected = try store.database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM clients WHERE status = 'active'") } ?? 0
        let now = Self.now()
        let deadline = now + p.roundDeadlineSeconds
        var plan = Fedseg_V1_RoundPlan()
        plan.protocolVersion = fedsegProtocolVersion
        plan.runID = run.id
        plan.k = UInt32(p.k)
        plan.dimension = UInt32(p.dimension)
        plan.centroids = run.centroids.storage
        plan.clipNorm = p.clipNorm
        plan.privacyMode = .local
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
        let size = width ?? (plan.phase == .clustering ? k * Int(plan.dimension) : k * Int(plan.catalogSize))
        return OpenRound(
            id: id, plan: plan, publication: publication, deadline: deadline, openedAt: openedAt, expected: expected,
            sums: [Double](repeating: 0, count: size), counts: [Double](repeating: 0, count: k)
        )
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
            openRound: open.map { OpenRoundSummary(id: $0.id, phase: $0.plan.phase == .clustering ? "clustering" : "recommendation", participants: $0.participants, declined: $0.declined, expected: $0.expected, deadlineUnix: $0.deadline) },
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
