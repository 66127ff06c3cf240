import FedSegPostgres
import FedSegTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

private let leaderLock = 0x6665_6473_6567_0003

/// What one coordinator process would hold: its connection pool and its lease.
private func process(_ server: TemporaryPostgres, _ name: String) async throws -> (PostgresStore, PostgresLeaderLease) {
    let database = try await PostgresStore.open(PostgresLocation(url: server.url))
    return (database, try await PostgresLeaderLease.open(database, holder: name))
}

/// Asks for the lease every 20 ms until it is taken or `limit` has passed.
private func acquire(_ lease: PostgresLeaderLease, within limit: Duration) async throws -> PostgresLeaderLease.Term? {
    let started = ContinuousClock.now
    while ContinuousClock.now - started < limit {
        if let term = try await lease.tryAcquire() { return term }
        try await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

@Suite("Leader lease on PostgreSQL")
struct LeaderLeaseTests {
    @Test("one leader at a time; a released lease goes to the next process with a new term, and the old term's writes are refused")
    func oneLeaderAtATime() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let (first, a) = try await process(server, "coordinator-a")
        let (second, b) = try await process(server, "coordinator-b")
        defer { first.close(); second.close() }

        let termA = try #require(try await a.tryAcquire())
        #expect(termA == .init(epoch: 1, holder: "coordinator-a"))
        #expect(try await a.tryAcquire() == termA)
        #expect(try await b.tryAcquire() == nil)
        #expect(try await PostgresLeaderLease.recordedTerm(second) == termA)
        #expect(await a.stillLeads())

        try await a.release()
        let termB = try #require(try await b.tryAcquire())
        #expect(termB == .init(epoch: 2, holder: "coordinator-b"))
        #expect(await !a.stillLeads())
        await #expect(throws: PostgresLeaderLease.Failure.notLeader(mine: 1, current: 2, holder: "coordinator-b")) {
            try await first.transaction("closing a round") { connection in
                try await PostgresLeaderLease.requireLeadership(connection, term: termA, logger: Logger(label: "test"))
            }
        }
        try await second.transaction("closing a round") { connection in
            try await PostgresLeaderLease.requireLeadership(connection, term: termB, logger: Logger(label: "test"))
        }
        await a.close()
        await b.close()
        // A lease dropped without close() (an early return) still closes its connection, and the
        // lease it held is freed for the next process.
        do {
            let (_, dropped) = try await process(server, "coordinator-c")
            #expect(try await dropped.tryAcquire()?.epoch == 3)
        }
        let (_, next) = try await process(server, "coordinator-d")
        #expect(try await acquire(next, within: .seconds(120))?.epoch == 4)
        await next.close()
    }

    @Test("kill -9 of the process holding the lease frees it: another process takes it at once, with the next term")
    func takeoverAfterKill() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let database = try await PostgresStore.open(PostgresLocation(url: server.url))
        defer { database.close() }
        let successor = try await PostgresLeaderLease.open(database, holder: "coordinator-b")

        // The first leader is another process: psql takes the lock and its term, then sits idle
        // on an open connection, as a coordinator between rounds does.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: server.program("psql"))
        holder.arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.socketDirectory, "-U", server.user, server.database]
        let input = Pipe()
        holder.standardInput = input
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        try holder.run()
        input.fileHandleForWriting.write(Data("""
            SELECT pg_advisory_lock(\(leaderLock));
            UPDATE coordinator_leader SET epoch = epoch + 1, holder = 'psql', acquired_at = now() WHERE id = 1;

            """.utf8))
        // Generous limits: under the whole suite on two cores, psql alone took over 10 s to start.
        let deadline = ContinuousClock.now + .seconds(120)
        while try await PostgresLeaderLease.recordedTerm(database).holder != "psql" {
            guard ContinuousClock.now < deadline else { Issue.record("psql never took the lease"); return }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await successor.tryAcquire() == nil)

        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let killed = ContinuousClock.now
        let term = try await acquire(successor, within: .seconds(120))
        #expect(term == .init(epoch: 2, holder: "coordinator-b"))
        // Freed with the session, not after a TCP timeout: seconds alone, well under a minute loaded.
        #expect(ContinuousClock.now - killed < .seconds(60))
        await successor.close()
    }

    @Test("a leader whose lease connection was cut is fenced: the next term begins and the cut leader's writes are refused")
    func cutLeaderIsFenced() async throws {
        let server = try await TemporaryPostgres.start()
        defer { server.stop() }
        let (first, a) = try await process(server, "coordinator-a")
        let (second, b) = try await process(server, "coordinator-b")
        defer { first.close(); second.close() }
        let termA = try #require(try await a.tryAcquire())

        // The server ends the session that holds the lock (as a network cut or an operator would).
        _ = try await second.transaction("cutting the leader") { connection in
            try await connection.query(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND ((classid::bigint << 32) | objid::bigint) = \(leaderLock)",
                logger: Logger(label: "test")
            )
        }
        let termB = try await acquire(b, within: .seconds(120))
        #expect(termB?.epoch == termA.epoch + 1)
        // A still believes it leads until it checks; its writes are refused either way.
        #expect(a.currentTerm == termA)
        await #expect(throws: PostgresLeaderLease.Failure.self) {
            try await first.transaction("closing a round") { connection in
                try await PostgresLeaderLease.requireLeadership(connection, term: termA, logger: Logger(label: "test"))
            }
        }
        #expect(await !a.stillLeads())
        #expect(a.currentTerm == nil)
        // The cut lease cannot be taken again on its dead connection; a new one waits its turn.
        await #expect(throws: PostgresStoreError.self) { try await a.tryAcquire() }
        let (_, again) = try await process(server, "coordinator-a")
        #expect(try await again.tryAcquire() == nil)
        await again.close()
        await a.close()
        await b.close()
    }
}
