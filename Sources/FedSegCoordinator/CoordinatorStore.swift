import FedSegClustering
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import GRDB
import SwiftProtobuf

/// The coordinator's one SQLite database (WAL, through GRDB): the client registry, the privacy
/// ledger, runs, rounds with their centroids, and published segment models. One file, so that a
/// round's result, its ledger charges and the end of its replay records commit in one transaction.
public final class CoordinatorStore: Sendable {
    public static let fileName = "coordinator.sqlite"

    public let database: DatabasePool
    public let registry: ClientRegistry
    public let ledger: PrivacyLedger
    /// The open round's accepted envelopes, beside the database (`EnvelopeLog`).
    let envelopeLog: EnvelopeLog

    public struct Run: Codable, Sendable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "runs"
        public var id: String
        public var parameters: Data  // RunParameters, JSON
        public var status: RunStatus
        public var reason: String?
        public var phase: RunPhase
        public var centroids: Data  // k × d float32, little-endian
        public var variances: Data  // k float64, little-endian
        public var committedRounds: Int
        public var abandonedInARow: Int
        public var createdAt: Double
        public var finishedAt: Double?
        /// The public candidates of the start histogram (JSON `StartCandidates`), while it matters.
        public var startCandidates: Data?
        /// `StoredChecksum` of id, parameters, centroids, variances, start candidates and segmentation.
        public var checksum: String? = nil
        /// How the run's segments were chosen and dropped (JSON `SegmentationRecord`); nil until
        /// a start chooses them or a round drops one.
        public var segmentation: Data? = nil
        /// Each segment's spread estimated from the first Lloyd round (k float64, little-endian):
        /// what bounds later centred rounds' clip. Nil before that round.
        public var spreads: Data? = nil

        enum CodingKeys: String, CodingKey {
            case id, parameters, status, reason, phase, centroids, variances, checksum, segmentation, spreads
            case startCandidates = "start_candidates"
            case committedRounds = "committed_rounds"
            case abandonedInARow = "abandoned_in_a_row"
            case createdAt = "created_at"
            case finishedAt = "finished_at"
        }

        public func decodedParameters() throws -> RunParameters {
            try JSONDecoder().decode(RunParameters.self, from: parameters)
        }
    }

    public struct Round: Codable, Sendable, FetchableRecord, MutablePersistableRecord {
        public static let databaseTableName = "rounds"
        public var id: Int64?
        public var runID: String
        public var phase: RunPhase
        public var status: RoundStatus
        public var openedAt: Double
        public var deadline: Double
        public var publication: Data  // the signed RoundPlan, exactly as served
        public var expected: Int
        public var participants: Int
        public var declined: Int
        public var centroidShift: Double?
        public var centroids: Data?  // after the round, k × d float32
        public var counts: Data?  // the released (noisy) counts, k float64
        public var closedAt: Double?
        /// `StoredChecksum` of id, run, plan, centroids and counts.
        public var checksum: String? = nil

        enum CodingKeys: String, CodingKey {
            case id, phase, status, publication, expected, participants, declined, centroids, counts, deadline, checksum
            case runID = "run_id"
            case openedAt = "opened_at"
            case centroidShift = "centroid_shift"
            case closedAt = "closed_at"
        }

        public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
    }

    public struct PublishedModel: Codable, Sendable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "segment_models"
        public var runID: String
        public var version: Int
        public var publication: Data  // SignedPublication bytes
        public var createdAt: Double
        /// `StoredChecksum` of run, version and publication.
        public var checksum: String? = nil

        enum CodingKeys: String, CodingKey {
            case version, publication, checksum
            case runID = "run_id"
            case createdAt = "created_at"
        }
    }

    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        database = try DatabasePool(path: path, configuration: configuration)
        // Group commit answers a batch once it is on disk: the pool's WAL set-up left NORMAL.
        try database.requireDurableCommits()
        registry = try ClientRegistry(database: database)
        ledger = try PrivacyLedger(database: database)
        envelopeLog = EnvelopeLog(directory: Self.envelopeDirectory(databasePath: path))
        var migrator = DatabaseMigrator()
        migrator.registerMigration("coordinator-v1") { db in
            try db.create(table: Run.databaseTableName) { t in
                t.column("id", .text).primaryKey()
                t.column("parameters", .blob).notNull()
                t.column("status", .text).notNull()
                t.column("reason", .text)
                t.column("phase", .text).notNull()
                t.column("centroids", .blob).notNull()
                t.column("variances", .blob).notNull()
                t.column("committed_rounds", .integer).notNull()
                t.column("abandoned_in_a_row", .integer).notNull()
                t.column("created_at", .double).notNull()
                t.column("finished_at", .double)
            }
            // AUTOINCREMENT: a round id is never reused, so an envelope bound to one round can
            // never be replayed into a later one, across runs and restarts.
            try db.create(table: Round.databaseTableName) { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("run_id", .text).notNull().references(Run.databaseTableName)
                t.column("phase", .text).notNull()
                t.column("status", .text).notNull()
                t.column("opened_at", .double).notNull()
                t.column("deadline", .double).notNull()
                t.column("publication", .blob).notNull()
                t.column("expected", .integer).notNull()
                t.column("participants", .integer).notNull()
                t.column("declined", .integer).notNull()
                t.column("centroid_shift", .double)
                t.column("centroids", .blob)
                t.column("counts", .blob)
                t.column("closed_at", .double)
            }
            try db.create(table: PublishedModel.databaseTableName) { t in
                t.column("run_id", .text).notNull().references(Run.databaseTableName)
                t.column("version", .integer).notNull()
                t.column("publication", .blob).notNull()
                t.column("created_at", .double).notNull()
                t.primaryKey(["run_id", "version"])
            }
        }
        // Distributed rounds: the secure-aggregation stage and the members each closed stage had.
        migrator.registerMigration("coordinator-v2-secagg") { db in
            try db.alter(table: Round.databaseTableName) { t in t.add(column: "secagg", .blob) }
        }
        // The start histogram: the run's public candidates, kept for recovery.
        migrator.registerMigration("coordinator-v3-start") { db in
            try db.alter(table: Run.databaseTableName) { t in t.add(column: "start_candidates", .blob) }
        }
        // Checksums on what the coordinator acts on, checked at every read.
        migrator.registerMigration("coordinator-v4-checksums") { db in
            for table in [Run.databaseTableName, Round.databaseTableName, PublishedModel.databaseTableName] {
                try db.alter(table: table) { t in t.add(column: "checksum", .text) }
            }
            try Self.backfillChecksums(db)
        }
        migrator.registerMigration("coordinator-v5-segmentation") { db in
            try db.alter(table: Run.databaseTableName) { t in t.add(column: "segmentation", .blob) }
        }
        // Centred Lloyd rounds: the segments' spreads that bound their clip norm.
        migrator.registerMigration("coordinator-v6-spreads") { db in
            try db.alter(table: Run.databaseTableName) { t in t.add(column: "spreads", .blob) }
        }
        try migrator.migrate(database)
        try sweepEnvelopeLogs()
    }

    /// `coordinator.sqlite` → `coordinator-envelopes/`.
    public static func envelopeDirectory(databasePath path: String) -> URL {
        let database = URL(fileURLWithPath: path)
        return database.deletingLastPathComponent().appendingPathComponent("\(database.deletingPathExtension().lastPathComponent)-envelopes", isDirectory: true)
    }

    /// Removes the envelope logs of rounds that are no longer open (a crash between a round's
    /// end and the removal of its file leaves one behind).
    func sweepEnvelopeLogs() throws {
        let open = Set(try database.read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM rounds WHERE status = ?", arguments: [RoundStatus.collecting])
        })
        for round in envelopeLog.rounds() where !open.contains(round) { envelopeLog.remove(round: round) }
    }

    public func runs() throws -> [Run] {
        try database.read { db in try Run.order(Column("created_at")).fetchAll(db).map { try $0.verified() } }
    }

    public func run(_ id: String) throws -> Run? {
        try database.read { db in try Run.fetchOne(db, key: id)?.verified() }
    }

    public func rounds(run id: String) throws -> [Round] {
        try database.read { db in try Round.filter(Column("run_id") == id).order(Column("id")).fetchAll(db).map { try $0.verified() } }
    }

    public func latestModel() throws -> PublishedModel? {
        try database.read { db in try PublishedModel.order(Column("created_at").desc, Column("version").desc).fetchOne(db)?.verified() }
    }

    /// Envelopes accepted in a round that has not committed yet, in the order they were accepted:
    /// from the round's envelope log, or from the row (a database written before the log).
    public func pendingEnvelopes(round: Int64) throws -> [[UInt8]] {
        let rows = try database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT envelope, envelope_offset, envelope_length FROM accepted_messages
                    WHERE round = ? AND (envelope IS NOT NULL OR envelope_offset IS NOT NULL) ORDER BY accepted_at, envelope_offset
                    """,
                arguments: [round]
            )
        }
        let logged = rows.compactMap { row -> (offset: Int64, length: Int)? in
            guard (row["envelope"] as Data?) == nil else { return nil }
            return (row["envelope_offset"], row["envelope_length"])
        }
        var fromLog = try envelopeLog.read(round: round, ranges: logged).makeIterator()
        return rows.map { row in
            if let inline: Data = row["envelope"] { return [UInt8](inline) }
            return fromLog.next()!
        }
    }
}

extension CoordinatorStore {
    /// A run's segments: centroid norms, released counts of the last committed round, centroid
    /// shift per round and, given the embedded seed phrases, the three nearest each centroid.
    public func segments(runID: String?, seedVectors: Matrix?) throws -> SegmentsReport {
        guard let runID = try runID ?? runs().last?.id, let run = try run(runID) else { throw CoordinatorError.noRun }
        let parameters = try run.decodedParameters()
        let centroids = try Packing.unpackMatrix(run.centroids, cols: parameters.dimension, maxRows: parameters.k)
        let k = centroids.rows
        let rounds = try rounds(run: runID).filter { $0.status == .committed && $0.phase == .clustering }
        let released = rounds.last?.counts.map(Packing.unpackDoubles).flatMap { $0.count == k ? $0 : nil }
        var nearest = [[String]](repeating: [], count: k)
        var labels = [String](repeating: "", count: k)
        if let seedVectors, seedVectors.rows == parameters.seedPhrases.count, seedVectors.cols == parameters.dimension {
            let distances = KMeans.squaredDistances(centroids, to: seedVectors)
            let closest = (0..<k).map { j in
                distances[j].enumerated().sorted { $0.element < $1.element }.prefix(8).map { parameters.seedPhrases[$0.offset] }
            }
            nearest = closest.map { Array($0.prefix(3)) }
            labels = SegmentLabel.make(segments: closest)
        }
        // The published model's lists, when this run has one (signed by this coordinator).
        var topItems = [[String]](repeating: [], count: k)
        if let published = try database.read({ db in
            try PublishedModel.filter(Column("run_id") == runID).order(Column("version").desc).fetchOne(db)?.verified()
        }), let signed = try? Fedseg_V1_SignedPublication(serializedBytes: published.publication),
            let model = try? SegmentModel(message: Fedseg_V1_SegmentModel(serializedBytes: signed.payload)), model.catalogItems.count == model.catalogSize {
            for segment in model.segments where (0..<k).contains(segment.id) {
                topItems[segment.id] = segment.items.prefix(5).map { model.catalogItems[$0] }
            }
        }
        return SegmentsReport(
            runID: runID, status: run.status, k: k, dimension: parameters.dimension,
            shiftHistory: rounds.compactMap(\.centroidShift),
            segments: (0..<k).map { j in
                SegmentsReport.Segment(
                    id: j, norm: Double(BLAS.nrm2(centroids.row(j))), releasedCount: released?[j], nearestSeedPhrases: nearest[j],
                    label: labels[j], topItems: topItems[j]
                )
            }
        )
    }
}

/// Little-endian packing of centroid matrices and variance vectors for BLOB columns.
enum Packing {
    static func pack(_ matrix: Matrix) -> Data {
        matrix.storage.withUnsafeBytes { Data($0) }
    }

    /// A centroid blob of 1...maxRows rows of `cols` (a run's k can shrink: chosen or dropped segments).
    static func unpackMatrix(_ data: Data, cols: Int, maxRows: Int) throws -> Matrix {
        let row = cols * MemoryLayout<Float>.size
        let rows = row > 0 ? data.count / row : 0
        guard (1...max(1, maxRows)).contains(rows), rows * row == data.count else {
            throw CoordinatorError.state("centroid blob of \(data.count) bytes is not 1...\(maxRows) rows of \(cols) floats")
        }
        return try unpackMatrix(data, rows: rows, cols: cols)
    }

    static func unpackMatrix(_ data: Data, rows: Int, cols: Int) throws -> Matrix {
        guard data.count == rows * cols * MemoryLayout<Float>.size else {
            throw CoordinatorError.state("centroid blob of \(data.count) bytes for \(rows) x \(cols)")
        }
        var matrix = Matrix(rows: rows, cols: cols)
        matrix.storage.withUnsafeMutableBytes { _ = data.copyBytes(to: $0) }
        return matrix
    }

    static func pack(_ values: [Double]) -> Data {
        values.withUnsafeBytes { Data($0) }
    }

    static func unpackDoubles(_ data: Data) -> [Double] {
        var values = [Double](repeating: 0, count: data.count / MemoryLayout<Double>.size)
        values.withUnsafeMutableBytes { _ = data.copyBytes(to: $0) }
        return values
    }
}

/// A write the database could not make: the disk is full, or the file cannot be written. The
/// transaction rolled back, so nothing of it is stored and retrying once the cause is gone works.
public struct StorageFailure: Error, CustomStringConvertible {
    public enum Cause: Sendable { case diskFull, ioError, readOnly }

    public var cause: Cause
    /// What could not be written, when it was not the database itself.
    public var detail: String?

    public init(cause: Cause, detail: String? = nil) {
        self.cause = cause
        self.detail = detail
    }

    public init?(_ error: any Error) {
        if let failure = error as? StorageFailure {
            self = failure
            return
        }
        guard let database = error as? DatabaseError else { return nil }
        switch database.resultCode {
        case .SQLITE_FULL: cause = .diskFull
        case .SQLITE_IOERR, .SQLITE_CANTOPEN: cause = .ioError
        case .SQLITE_READONLY: cause = .readOnly
        default: return nil
        }
    }

    public var description: String {
        let what = detail.map { "the coordinator's state (\($0))" } ?? "the coordinator's database"
        return switch cause {
        case .diskFull: "the disk holding \(what) is full: nothing of this write was stored; free space and it is retried"
        case .ioError: "\(what) could not be written (I/O error): nothing of this write was stored; check the disk"
        case .readOnly: "\(what) is read-only: nothing of this write was stored; check the state directory's permissions"
        }
    }
}
