import CProcessSpawn
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL server of its own for one test: Debian's `initdb` into a temporary directory and
/// `pg_ctl` serving on a Unix socket in it (no TCP port, so servers of parallel tests never meet),
/// stopped and removed by `stop()` or when the value goes away.
///
/// PostgreSQL refuses to run as root; as root (CI, containers) the server runs as the `postgres`
/// user Debian's package creates, through `runuser`. `make test` installs the package
/// (`scripts/setup --postgres`); when the server cannot be found or started, `start` throws an
/// error that says why, and the test fails with it: nothing is skipped.
public final class TemporaryPostgres: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Where the cluster, its socket and its log live.
    public let directory: URL
    public let socketDirectory: String
    public let user: String
    public let database: String
    let binDirectory: String
    let asUser: [String]

    /// `postgres://fedseg@localhost/fedseg?host=/tmp/…/socket`: the form `--database` takes.
    public var url: String { "postgres://\(user)@localhost/\(database)?host=\(socketDirectory)" }

    /// The first of `$FEDSEG_PG_BINDIR`, Debian's `/usr/lib/postgresql/<newest>/bin`,
    /// `/usr/local/bin` and `/usr/bin` that holds `initdb`, `pg_ctl` and `createdb`.
    public static func findBinDirectory() -> String? {
        var candidates: [String] = []
        if let configured = ProcessInfo.processInfo.environment["FEDSEG_PG_BINDIR"] { candidates.append(configured) }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) { candidates.append("/usr/lib/postgresql/\(version)/bin") }
        candidates.append("/usr/local/bin")
        candidates.append("/usr/bin")
        return candidates.first { directory in
            ["initdb", "pg_ctl", "createdb"].allSatisfy { FileManager.default.isExecutableFile(atPath: "\(directory)/\($0)") }
        }
    }

    /// Creates a cluster with a trusted local user `user` and a database `database`, and starts it,
    /// on a thread of its own: initdb and pg_ctl take a second or more, which would hold one of
    /// the few threads Swift's concurrency runs every test on.
    public static func start(user: String = "fedseg", database: String = "fedseg") async throws -> TemporaryPostgres {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try startBlocking(user: user, database: database) })
            }
        }
    }

    static func startBlocking(user: String, database: String) throws -> TemporaryPostgres {
        guard let bin = findBinDirectory() else {
            throw Failure(description: """
                PostgreSQL's server programs (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin, /usr/local/bin, \
                /usr/bin or $FEDSEG_PG_BINDIR: run scripts/setup --postgres (make test does), or apt-get install postgresql
                """)
        }
        // As root the server runs as postgres, which must reach the directory: /tmp, whatever $TMPDIR says.
        let base = geteuid() == 0 ? "/tmp" : NSTemporaryDirectory()
        let directory = URL(fileURLWithPath: base).appendingPathComponent("fedseg-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let socket = directory.appendingPathComponent("socket").path
        try FileManager.default.createDirectory(atPath: socket, withIntermediateDirectories: true)
        var asUser: [String] = []
        if geteuid() == 0 {
            guard let account = getpwnam("postgres") else {
                throw Failure(description: "running as root and there is no postgres user to run the server as: apt-get install postgresql creates one")
            }
            for path in [directory.path, socket] where chown(path, account.pointee.pw_uid, account.pointee.pw_gid) != 0 {
                throw Failure(description: "could not hand \(path) to the postgres user: \(String(cString: strerror(errno)))")
            }
            asUser = ["/usr/sbin/runuser", "-u", "postgres", "--"]
        }
        let server = TemporaryPostgres(directory: directory, socketDirectory: socket, user: user, database: database, binDirectory: bin, asUser: asUser)
        do {
            try server.command("initdb", ["-D", server.dataDirectory, "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync", "--locale=C"])
            try server.startServer()
            try server.command("createdb", ["-h", socket, "-U", user, database])
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    init(directory: URL, socketDirectory: String, user: String, database: String, binDirectory: String, asUser: [String]) {
        self.directory = directory
        self.socketDirectory = socketDirectory
        self.user = user
        self.database = database
        self.binDirectory = binDirectory
        self.asUser = asUser
    }

    deinit { stop() }

    /// The path of one of the server's client programs (`psql`, `pgbench`).
    public func program(_ name: String) -> String { "\(binDirectory)/\(name)" }

    var dataDirectory: String { directory.appendingPathComponent("data").path }
    var logFile: String { directory.appendingPathComponent("server.log").path }

    func startServer() throws {
        // fsync stays on: the tests check what survives a killed process, and the store's
        // durability is part of what they test.
        try command("pg_ctl", [
            "-D", dataDirectory, "-l", logFile, "-w", "-t", "60",
            "-o", "-k \(socketDirectory) -c listen_addresses='' -c max_connections=200", "start",
        ])
    }

    /// Runs one of the server's programs; a failure carries its output and the server log's tail.
    func command(_ name: String, _ arguments: [String]) throws {
        let launch = asUser + ["\(binDirectory)/\(name)"] + arguments
        let (status, output) = try Self.spawnAndWait(launch)
        guard status == 0 else {
            let log = (try? String(contentsOfFile: logFile, encoding: .utf8)).map { String($0.suffix(2000)) } ?? ""
            throw Failure(description: "\(name) failed (exit \(status)): \(output)\(log.isEmpty ? "" : "\nserver log:\n\(log)")")
        }
    }

    /// posix_spawn and waitpid, output to a file, every other descriptor closed in the child:
    /// `pg_ctl start` leaves the server running with whatever it inherited, and a descriptor
    /// Foundation's `Process` watches for the child's end would then stay open for the server's life.
    static func spawnAndWait(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let outputPath = NSTemporaryDirectory() + "fedseg-pg-command-\(UUID().uuidString).log"
        defer { unlink(outputPath) }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = argv.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                fedseg_spawn_closing_descriptors($0, outputPath, &pid)
            }
        }
        guard spawned == 0 else {
            throw Failure(description: "could not start \(arguments[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw Failure(description: "waiting for \(arguments[0]): \(String(cString: strerror(errno)))") }
        }
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // Exit status as the shell reports it; 128 + n for a signal.
        let exited = status & 0x7f == 0
        return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
    }

    /// Stops the server at once (`-m immediate`, as a crash would) and starts it again on the
    /// same cluster: what was committed must be there afterwards.
    public func crashAndRestart() throws {
        try command("pg_ctl", ["-D", dataDirectory, "-m", "immediate", "-w", "stop"])
        try startServer()
    }

    /// Stops the server and removes its directory; safe to call more than once.
    public func stop() {
        if FileManager.default.fileExists(atPath: "\(dataDirectory)/postmaster.pid") {
            try? command("pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "stop"])
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
