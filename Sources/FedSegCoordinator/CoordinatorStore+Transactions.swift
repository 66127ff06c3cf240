import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation
import GRDB

/// Every write the coordinator makes, one method per transaction, so that what must happen
/// together (a round's result, its charge, the run's next phase and the end of its replay
/// records) commits together or not at all. The coordinator's state machine runs no SQL itself.
extension CoordinatorStore {
    /// A ledger charge of one release to the populations it concerns.
    public struct Charge: Sendable {
        public var releaseID: String
        public var round: Int64
        public var mechanism: PrivacyLedger.Mechanism
        public var populations: [String]
    }

    /// What a committed clustering round changes.
    struct ClusteringCommit {
        var runID: String
        var round: Int64
        var participants: Int
        var declined: Int
        var shift: Double
        var centroids: Matrix
        var variances: [Double]
        var releasedCounts: [Double]
        var committedRounds: Int
        /// The run's phase after this round (the switch to recommendation commits with it).
        var phase: RunPhase
        /// A new segmentation record when this round chose or dropped segments (nil: unchanged).
        var segmentation: SegmentationRecord? = nil
        /// The segments' spreads when this round estimated or changed them (nil: unchanged).
        var spreads: [Double]? = nil
    }

    // MARK: Reads

    /// The run in progress, if any.
    func runningRun() throws -> Run? {
        try database.read { db in try Run.filter(Column("status") == RunStatus.running).fetchOne(db)?.verified() }
    }

    func latestRound(runID: String) throws -> Round? {
        try database.read { db in try Round.filter(Column("run_id") == runID).order(Column("id").desc).fetchOne(db)?.verified() }
    }

    /// Active clients in id order: a distributed round's cohort, and how many a round expects.
    func activeClientIDs() throws -> [String] {
        try database.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM clients WHERE status = ? ORDER BY id", arguments: [ClientStatus.active])
        }
    }

    func roundStatus(_ id: Int64) throws -> RoundStatus? {
        try database.read { db in try RoundStatus.fetchOne(db, sql: "SELECT status FROM rounds WHERE id = ?", arguments: [id]) }
    }

    func isCharged(releaseID: String) throws -> Bool {
        try database.read { db in try Self.isCharged(db, releaseID: releaseID) }
    }

    static func isCharged(_ db: Database, releaseID: String) throws -> Bool {
        try PrivacyLedger.Record.filter(Column("release_id") == releaseID).fetchCount(db) > 0
    }

    func latestModelVersion(runID: String) throws -> Int {
        try database.read { db in
            try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM segment_models WHERE run_id = ?", arguments: [runID])
        } ?? 0
    }

    func secAggState(round: Int64) throws -> SecAggRound.Persisted? {
        guard let data = try database.read({ db in try Data.fetchOne(db, sql: "SELECT secagg FROM rounds WHERE id = ?", arguments: [round]) }) else {
            return nil
        }
        return try JSONDecoder().decode(SecAggRound.Persisted.self, from: data)
    }

    // MARK: Transactions

    /// A new run and its own budget.
    func create(_ run: Run, budget: PrivacyLedger.Budget) throws {
        try database.write { db in
            var sealed = run
            sealed.checksum = sealed.computeChecksum()
            try sealed.insert(db)
            try PrivacyLedger.setBudget(db, budget, reason: "run \(run.id): its (ε, δ)")
        }
    }

    /// Inserts a collecting round and stores its signed plan, which `sign` makes once the round id
    /// is known; returns both.
    func open(_ round: Round, sign: (UInt64) throws -> [UInt8]) throws -> (id: UInt64, publication: [UInt8]) {
        try database.write { db in
            var row = round
            try row.insert(db)
            guard let id = row.id else { throw CoordinatorError.state("round id not assigned") }
            let publication = try sign(UInt64(id))
            row.publication = Data(publication)
            row.checksum = row.computeChecksum()
            try db.execute(sql: "UPDATE rounds SET publication = ?, checksum = ? WHERE id = ?", arguments: [row.publication, row.checksum, id])
            return (UInt64(id), publication)
        }
    }

    /// Records accepted messages (replay records, with their envelopes for recovery) and, when
    /// given, the charge their round owes from now on (made when a message that `reveals` the
    /// round's data is recorded), in one transaction: all or none. A message
    /// the replay rules refuse (already accepted, or its client already answered, earlier in the
    /// batch too) is not recorded and gets its rejection, in order; nil for each one recorded.
    /// `charged`: whether this transaction made the charge.
    public func accept(
        _ messages: [(clientID: String, round: UInt64, kind: UInt8, envelope: [UInt8], reveals: Bool)], charge: Charge?
    ) throws -> (rejections: [UpdateIntake.Rejection?], charged: Bool) {
        try database.write { db in
            var rejections: [UpdateIntake.Rejection?] = []
            rejections.reserveCapacity(messages.count)
            // Each round's envelopes go to its log after the rows that name them, and are on
            // disk before this transaction commits.
            var logged: [Int64: [[UInt8]]] = [:]
            var next: [Int64: Int64] = [:]
            for message in messages {
                let round = Int64(bitPattern: message.round)
                if next[round] == nil { next[round] = try envelopeLog.end(round: round) }
                let offset = next[round]!
                do {
                    try UpdateIntake.recordAccepted(
                        db, clientID: message.clientID, round: message.round, kind: message.kind,
                        envelope: .logged(offset: offset, length: message.envelope.count)
                    )
                    rejections.append(nil)
                    logged[round, default: []].append(message.envelope)
                    next[round] = offset + Int64(message.envelope.count)
                } catch let rejection as UpdateIntake.Rejection {
                    // Refused before its row was written: the transaction holds the others.
                    rejections.append(rejection)
                }
            }
            for (round, envelopes) in logged.sorted(by: { $0.key < $1.key }) { try envelopeLog.append(round: round, envelopes) }
            guard let charge, zip(messages, rejections).contains(where: { $0.reveals && $1 == nil }) else { return (rejections, false) }
            try Self.charge(db, charge)
            return (rejections, true)
        }
    }

    /// A charge on its own (distributed rounds: before the unmasked sum is decoded). Charging a
    /// release already in the ledger is a no-op, so a resumed round does not pay twice.
    func charge(_ charge: Charge) throws {
        try database.write { db in try Self.charge(db, charge) }
    }

    static func charge(_ db: Database, _ charge: Charge) throws {
        guard try !isCharged(db, releaseID: charge.releaseID) else { return }
        try PrivacyLedger.charge(
            db, releaseID: charge.releaseID, round: charge.round, mechanism: charge.mechanism, populations: charge.populations
        )
    }

    func saveSecAggState(_ state: SecAggRound.Persisted, round: Int64) throws {
        let data = try JSONEncoder().encode(state)
        try database.write { db in try db.execute(sql: "UPDATE rounds SET secagg = ? WHERE id = ?", arguments: [data, round]) }
    }

    /// A clustering round's result, its charge (when not already made), the run's centroids and
    /// next phase; the round's envelopes are dropped.
    func commit(_ commit: ClusteringCommit, charge: Charge, beforeCommit: () throws -> Void = {}) throws {
        try database.write { db in
            // The charge comes first: if the budget refuses it, nothing of the round is stored.
            try Self.charge(db, charge)
            try beforeCommit()
            // Both rows are checked before they are built upon, and sealed again with what changed.
            guard var round = try Round.fetchOne(db, key: commit.round)?.verified(), var run = try Run.fetchOne(db, key: commit.runID)?.verified() else {
                throw CoordinatorError.state("round \(commit.round) or run \(commit.runID) is missing from the database")
            }
            round.status = .committed
            round.participants = commit.participants
            round.declined = commit.declined
            round.centroidShift = commit.shift
            round.centroids = Packing.pack(commit.centroids)
            round.counts = Packing.pack(commit.releasedCounts)
            round.closedAt = Date().timeIntervalSince1970
            round.checksum = round.computeChecksum()
            try round.update(db)
            run.centroids = Packing.pack(commit.centroids)
            run.variances = Packing.pack(commit.variances)
            run.committedRounds = commit.committedRounds
            run.abandonedInARow = 0
            run.phase = commit.phase
            if let segmentation = commit.segmentation { run.segmentation = try JSONEncoder().encode(segmentation) }
            if let spreads = commit.spreads { run.spreads = Packing.pack(spreads) }
            run.checksum = run.computeChecksum()
            try run.update(db)
            try Self.dropEnvelopes(db, round: commit.round)
        }
        envelopeLog.remove(round: commit.round)
    }

    /// The recommendation round's model, its charge, and the end of the run's releases.
    func commitRecommendation(
        runID: String, round: Int64, participants: Int, declined: Int, model: PublishedModel, charge: Charge, beforeCommit: () throws -> Void = {}
    ) throws {
        try database.write { db in
            try Self.charge(db, charge)
            try beforeCommit()
            try model.sealed().insert(db)
            try db.execute(
                sql: "UPDATE rounds SET status = ?, participants = ?, declined = ?, closed_at = ? WHERE id = ?",
                arguments: [RoundStatus.committed, participants, declined, Date().timeIntervalSince1970, round]
            )
            try db.execute(sql: "UPDATE runs SET phase = ? WHERE id = ?", arguments: [RunPhase.done, runID])
            try Self.dropEnvelopes(db, round: round)
        }
        envelopeLog.remove(round: round)
    }

    /// A model that is post-processing of committed rounds (no charge).
    func publish(_ model: PublishedModel) throws {
        try database.write { db in try model.sealed().insert(db) }
    }

    func abandon(round: Int64, participants: Int, declined: Int, runID: String, abandonedInARow: Int) throws {
        try database.write { db in
            try db.execute(
                sql: "UPDATE rounds SET status = ?, participants = ?, declined = ?, closed_at = ? WHERE id = ?",
                arguments: [RoundStatus.abandoned, participants, declined, Date().timeIntervalSince1970, round]
            )
            try Self.dropEnvelopes(db, round: round)
            try db.execute(sql: "UPDATE runs SET abandoned_in_a_row = ? WHERE id = ?", arguments: [abandonedInARow, runID])
        }
        envelopeLog.remove(round: round)
    }

    /// Ends a run; its open round, if any, is abandoned with it.
    func finish(runID: String, status: RunStatus, reason: String?, openRound: Int64?) throws {
        try database.write { db in
            if let openRound {
                try db.execute(
                    sql: "UPDATE rounds SET status = ?, closed_at = ? WHERE id = ?",
                    arguments: [RoundStatus.abandoned, Date().timeIntervalSince1970, openRound]
                )
                try Self.dropEnvelopes(db, round: openRound)
            }
            try db.execute(
                sql: "UPDATE runs SET status = ?, reason = ?, finished_at = ? WHERE id = ?",
                arguments: [status, reason, Date().timeIntervalSince1970, runID]
            )
        }
        if let openRound { envelopeLog.remove(round: openRound) }
    }

    /// Envelopes are kept only while their round is open (to rebuild its sums after a restart):
    /// the rows stop naming them here, and the round's log is removed once the transaction has
    /// committed (`envelopeLog.remove`, after each write that calls this).
    static func dropEnvelopes(_ db: Database, round: Int64) throws {
        try db.execute(
            sql: "UPDATE accepted_messages SET envelope = NULL, envelope_offset = NULL, envelope_length = NULL WHERE round = ?", arguments: [round]
        )
    }
}
