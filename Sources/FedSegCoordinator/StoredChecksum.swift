import FedSegCrypto
import Foundation
import GRDB

/// SHA-256 over the fields of a stored row that the coordinator acts on (centroids, variances,
/// parameters, plans, models), each length-prefixed, under a per-table label. Written with the
/// row and checked whenever it is read, so a flipped bit in the database is refused with the row
/// named instead of being served, resumed or built upon.
enum StoredChecksum {
    static func of(_ label: String, _ parts: [Data?]) -> String {
        var hasher = SHA256()
        hasher.update(Data("fedseg-row-v1/\(label)".utf8))
        for part in parts {
            var length = UInt64(part.map { UInt64($0.count) } ?? UInt64.max).littleEndian
            withUnsafeBytes(of: &length) { hasher.update($0) }
            if let part { hasher.update(part) }
        }
        return hasher.finalize().hex
    }

    static func data(_ text: String) -> Data { Data(text.utf8) }
    static func data(_ value: Int64) -> Data { withUnsafeBytes(of: value.littleEndian) { Data($0) } }

    static func damaged(_ what: String) -> CoordinatorError {
        .state("\(what) does not match its checksum: the database is damaged. Stop the daemon and restore coordinator.sqlite from a backup (the privacy ledger's own hash chain is checked separately by fedseg privacy audit)")
    }
}

extension CoordinatorStore.Run {
    func computeChecksum() -> String {
        // The segmentation record is sealed where present; rows written before it existed keep their checksum.
        StoredChecksum.of(
            "run",
            [StoredChecksum.data(id), parameters, centroids, variances, startCandidates] + (segmentation.map { [$0] } ?? [])
                + (spreads.map { [StoredChecksum.data("spreads"), $0] } ?? [])
        )
    }

    func verified() throws -> Self {
        guard checksum == computeChecksum() else { throw StoredChecksum.damaged("run \(id): its stored parameters, centroids or variances") }
        return self
    }
}

extension CoordinatorStore.Round {
    func computeChecksum() -> String {
        StoredChecksum.of("round", [StoredChecksum.data(id ?? 0), StoredChecksum.data(runID), publication, centroids, counts])
    }

    func verified() throws -> Self {
        guard checksum == computeChecksum() else { throw StoredChecksum.damaged("round \(id ?? 0): its stored plan, centroids or counts") }
        return self
    }
}

extension CoordinatorStore.PublishedModel {
    func computeChecksum() -> String {
        StoredChecksum.of("model", [StoredChecksum.data(runID), StoredChecksum.data(Int64(version)), publication])
    }

    func verified() throws -> Self {
        guard checksum == computeChecksum() else { throw StoredChecksum.damaged("segment model \(runID) v\(version)") }
        return self
    }

    func sealed() -> Self {
        var model = self
        model.checksum = model.computeChecksum()
        return model
    }
}

extension CoordinatorStore {
    /// Rows written before checksums existed get theirs once, at migration.
    static func backfillChecksums(_ db: Database) throws {
        for var run in try Run.fetchAll(db) {
            run.checksum = run.computeChecksum()
            try run.update(db)
        }
        for var round in try Round.fetchAll(db) {
            round.checksum = round.computeChecksum()
            try round.update(db)
        }
        for var model in try PublishedModel.fetchAll(db) {
            model.checksum = model.computeChecksum()
            try model.update(db)
        }
    }
}
