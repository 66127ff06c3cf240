import FedSegProtocol
import Foundation

/// When clients were last seen (a poll naming the client, an enrolment, an accepted message),
/// held in memory and written to the registry in batches: a poll every second from thousands of
/// clients must not be a database write each. Times are the coordinator's clock.
final class LivenessBook: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [String: Double] = [:]
    /// Spoofed ids in polls cannot grow the book without bound: beyond this, marks wait for the flush.
    static let capacity = 200_000

    func mark(_ id: String, at time: Double) {
        guard !id.isEmpty, id.utf8.count <= 64 else { return }
        lock.withLock {
            guard pending.count < Self.capacity || pending[id] != nil else { return }
            pending[id] = max(pending[id] ?? 0, time)
        }
    }

    func drain() -> [String: Double] {
        lock.withLock {
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
    }
}

extension Coordinator {
    /// Records that a client is there (the caller's clock is the coordinator's).
    public nonisolated func markSeen(_ clientID: String) {
        liveness.mark(clientID, at: settings.clock.now())
    }

    /// Writes what was seen since the last flush to the registry.
    public nonisolated func flushLiveness() throws {
        try store.registry.markSeen(liveness.drain())
    }

    /// Seen before this: stale (when active).
    nonisolated var staleBefore: Double { settings.clock.now() - settings.staleAfterSeconds }

    /// Active clients seen within `staleAfterSeconds`: the ones a round waits for.
    public nonisolated func liveClientIDs() throws -> [String] {
        try flushLiveness()
        return try store.registry.liveClientIDs(seenSince: staleBefore)
    }

    /// Every enrolled client with its last-seen time (pending marks included) and whether it is stale.
    public nonisolated func clientEntries() throws -> [ClientEntry] {
        try flushLiveness()
        let staleBefore = staleBefore
        return try store.registry.clients().map { client in
            ClientEntry(
                id: client.id, status: client.status, enrolledAt: client.enrolledAt, lastSeenAt: client.lastSeenAt,
                stale: client.status == .active && client.lastSeenAt < staleBefore
            )
        }
    }

    /// Active clients that are not live, for `fedseg run status` (at most 100).
    nonisolated func staleClientIDs() throws -> [String] {
        let live = Set(try liveClientIDs())
        return Array(try store.activeClientIDs().filter { !live.contains($0) }.prefix(100))
    }
}
