import GRDB

extension DatabaseWriter {
    /// Makes every commit of this writer wait for the disk (`PRAGMA synchronous = FULL`).
    ///
    /// GRDB's WAL set-up, which runs whenever a `DatabasePool` opens and when a `DatabaseQueue`
    /// creates a WAL database, sets the writer to `NORMAL` after any `prepareDatabase` has run:
    /// in WAL mode that commits without an fsync, durable across a crash of the process but not
    /// of the machine. A charge must be on disk before what it pays for is sent or published, so
    /// every FedSeg database calls this once it is open.
    public func requireDurableCommits() throws {
        try writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
    }

    /// The writer's `PRAGMA synchronous` (0 off, 1 normal, 2 full, 3 extra).
    public func synchronousLevel() throws -> Int {
        try writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }
}
