import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The sealed envelopes of open rounds, one append-only file per round beside the database
/// (`coordinator-envelopes/round-<id>.log`), so that a restarted coordinator can rebuild a
/// round's sums from what it accepted.
///
/// Why not in SQLite: an 18 KB envelope in a row is written twice (WAL frames of one page each,
/// then the checkpoint) and read back once, about half of the intake's CPU. Here a batch's
/// envelopes are one `pwrite` and one `fdatasync`; the replay record in the database names the
/// byte range, and is committed only after the range is on disk, so every committed record points
/// at bytes that are there. Bytes past the last committed record (a batch whose transaction did not
/// commit) are never read, and a later batch may write over them. A round's file is removed once
/// the transaction that ends the round has committed; files of rounds no longer open are swept
/// when the store opens.
final class EnvelopeLog: Sendable {
    let directory: URL

    private struct Writer {
        var round: Int64
        var descriptor: Int32
        /// Where the next batch goes: the end of what earlier batches wrote.
        var end: Int64
    }

    private struct State {
        var writer: Writer?
        /// Bytes a round's file may hold before a write is refused as a full disk would be:
        /// tests' stand-in for ENOSPC (nil: as much as the disk takes).
        var capacity: Int64?
    }

    private let state = Mutex(State())

    /// The directory is made with the first round's file: a store opened only to be read (an
    /// audit of a read-only copy) writes nothing.
    init(directory: URL) {
        self.directory = directory
    }

    deinit {
        state.withLock { state in
            if let writer = state.writer { close(writer.descriptor) }
            state.writer = nil
        }
    }

    func path(round: Int64) -> String { directory.appendingPathComponent("round-\(round).log").path }

    /// Where the next batch for `round` will be written.
    func end(round: Int64) throws -> Int64 {
        try state.withLock { state in try writer(&state, round: round).end }
    }

    /// Writes `envelopes` at the end of `round`'s file (`end(round:)`) and waits until they are on
    /// disk. On failure nothing counts as written: the next batch starts at the same place.
    func append(round: Int64, _ envelopes: [[UInt8]]) throws {
        guard !envelopes.isEmpty else { return }
        try state.withLock { state in
            var writer = try writer(&state, round: round)
            let total = envelopes.reduce(0) { $0 + $1.count }
            if let capacity = state.capacity, writer.end + Int64(total) > capacity {
                throw StorageFailure(cause: .diskFull, detail: "the envelope log of round \(round) is full")
            }
            try Self.write(envelopes, descriptor: writer.descriptor, at: writer.end, round: round)
            guard fdatasync(writer.descriptor) == 0 else { throw StorageFailure(errno: errno, round: round) }
            writer.end += Int64(total)
            state.writer = writer
        }
    }

    /// The bytes of each range of `round`'s file, in order, through one descriptor.
    func read(round: Int64, ranges: [(offset: Int64, length: Int)]) throws -> [[UInt8]] {
        guard !ranges.isEmpty else { return [] }
        let descriptor = open(path(round: round), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CoordinatorError.state("the envelope log of round \(round) (\(path(round: round))) is missing: restore the state directory from a backup")
        }
        defer { close(descriptor) }
        return try ranges.map { offset, length in
            var bytes = [UInt8](repeating: 0, count: length)
            var done = 0
            while done < length {
                let read = bytes.withUnsafeMutableBytes { buffer in pread(descriptor, buffer.baseAddress! + done, length - done, off_t(offset) + off_t(done)) }
                if read < 0, errno == EINTR { continue }
                guard read > 0 else {
                    throw CoordinatorError.state("the envelope log of round \(round) is shorter than its records say (\(offset + Int64(done)) of \(offset + Int64(length)) bytes): restore the state directory from a backup")
                }
                done += read
            }
            return bytes
        }
    }

    /// Removes `round`'s file (its round has ended, so its envelopes are no longer needed).
    func remove(round: Int64) {
        state.withLock { state in
            if let writer = state.writer, writer.round == round {
                close(writer.descriptor)
                state.writer = nil
            }
        }
        unlink(path(round: round))
    }

    /// The rounds that have a file here.
    func rounds() -> [Int64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { name in
            guard name.hasPrefix("round-"), name.hasSuffix(".log") else { return nil }
            return Int64(name.dropFirst("round-".count).dropLast(".log".count))
        }
    }

    /// Tests: refuse writes past `bytes` per round file, as a full disk would.
    func limit(to bytes: Int64?) {
        state.withLock { $0.capacity = bytes }
    }

    private func writer(_ state: inout State, round: Int64) throws -> Writer {
        if let writer = state.writer, writer.round == round { return writer }
        let path = path(round: round)
        if let writer = state.writer { close(writer.descriptor) }
        state.writer = nil
        let newDirectory = access(directory.path, F_OK) != 0
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StorageFailure(cause: .ioError, detail: "cannot create \(directory.path)")
        }
        let existed = access(path, F_OK) == 0
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StorageFailure(errno: errno, round: round) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let failure = StorageFailure(errno: errno, round: round)
            close(descriptor)
            throw failure
        }
        // A new file's name (and a new directory's) must survive a crash as well as its bytes.
        do {
            if !existed { try Self.sync(directory: directory.path, round: round) }
            if newDirectory { try Self.sync(directory: directory.deletingLastPathComponent().path, round: round) }
        } catch {
            close(descriptor)
            throw error
        }
        let writer = Writer(round: round, descriptor: descriptor, end: Int64(status.st_size))
        state.writer = writer
        return writer
    }

    private static func sync(directory path: String, round: Int64) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StorageFailure(errno: errno, round: round) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StorageFailure(errno: errno, round: round) }
    }

    /// The batch as one buffer and one `pwrite` (repeated for short writes): a copy of a few
    /// µs per envelope, against a system call each.
    private static func write(_ envelopes: [[UInt8]], descriptor: Int32, at start: Int64, round: Int64) throws {
        var batch: [UInt8] = []
        batch.reserveCapacity(envelopes.reduce(0) { $0 + $1.count })
        for envelope in envelopes { batch.append(contentsOf: envelope) }
        var done = 0
        while done < batch.count {
            let written = batch.withUnsafeBytes { bytes in pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(start) + off_t(done)) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw StorageFailure(errno: written < 0 ? errno : EIO, round: round) }
            done += written
        }
    }
}

extension StorageFailure {
    init(errno code: Int32, round: Int64) {
        switch code {
        case ENOSPC, EDQUOT, EFBIG: self.init(cause: .diskFull, detail: "the envelope log of round \(round)")
        case EROFS, EACCES, EPERM: self.init(cause: .readOnly, detail: "the envelope log of round \(round)")
        default: self.init(cause: .ioError, detail: "the envelope log of round \(round): \(String(cString: strerror(code)))")
        }
    }
}
