import ArgumentParser
import FedSegCoordinator
import FedSegMath
import FedSegPostgres
import FedSegProtocol
import FedSegTestSupport
import Foundation

/// The intake's durable step alone: recording accepted updates (replay record and sealed
/// envelope, committed to disk) in the SQLite store one coordinator process uses today, and in
/// PostgreSQL from one and from two processes. A component figure, not the intake: no HTTP, no
/// decryption, no decoding (`fedseg-bench coordinator` measures those).
struct DurableSuite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "durable",
        abstract: "Recording accepted updates (replay records and envelopes, durable): SQLite in one process, PostgreSQL from one and two processes; updates/s."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "A PostgreSQL database to use (postgres://…); by default one is started in a temporary directory (Debian's postgresql).")
    var database: String?

    @Option(name: .long, help: "Seconds each configuration runs.")
    var seconds = 5.0

    @Option(name: .long, help: "Updates per batch (the intake's group commit; it averaged 12 over HTTP and 27 in process).")
    var batch = 16

    @Option(name: .long, help: "Batches in flight per process.")
    var concurrency = 4

    @Option(name: .long, help: "Bytes per envelope (an update of k = 16, d = 384 is about 24.7 KB sealed).")
    var envelopeBytes = 24_700

    @Option(name: .long, help: "Internal: run as worker N against --database and print its count.")
    var worker: Int?

    struct WorkerResult: Codable {
        var updatesPerSecond: Double
    }

    struct Output: Codable {
        var suite = "durable"
        var batch: Int
        var concurrency: Int
        var envelopeBytes: Int
        var sqliteUpdatesPerSecond: Double
        var postgresOneProcessUpdatesPerSecond: Double
        var postgresTwoProcessesUpdatesPerSecond: Double
    }

    func run() async throws {
        if let worker, let database {
            let result = try await postgresWorker(url: database, index: worker)
            try printJSON(result)
            return
        }
        let sqlite = try await sqliteRun()
        let server: TemporaryPostgres? = database == nil ? try await TemporaryPostgres.start() : nil
        defer { server?.stop() }
        let url = database ?? server!.url
        // Creates the tables once, so the workers do not race to.
        let setup = try await PostgresStore.open(PostgresLocation(url: url))
        _ = try await PostgresAcceptedMessages(database: setup)
        setup.close()
        // Worker 0 alone, then workers 1 and 2 together: every run records clients of its own.
        let one = try workers(url: url, first: 0, count: 1)
        let two = try workers(url: url, first: 1, count: 2)
        let output = Output(
            batch: batch, concurrency: concurrency, envelopeBytes: envelopeBytes, sqliteUpdatesPerSecond: sqlite,
            postgresOneProcessUpdatesPerSecond: one, postgresTwoProcessesUpdatesPerSecond: two
        )
        if json {
            try printJSON(output)
        } else {
            print("recording accepted updates: \(batch) a batch, \(concurrency) batches in flight a process, \(envelopeBytes)-byte envelopes, \(seconds) s each")
            print(String(format: "  SQLite (CoordinatorStore, one process)       %8.0f updates/s", sqlite))
            print(String(format: "  PostgreSQL, one process                      %8.0f updates/s", one))
            print(String(format: "  PostgreSQL, two processes                    %8.0f updates/s", two))
        }
    }

    /// Distinct clients per worker and batch, so that no two batches conflict (as processes behind
    /// a load balancer that pins clients would see).
    func batches(worker: Int) -> @Sendable (Int) -> [(clientID: String, round: UInt64, kind: UInt8, envelope: [UInt8], reveals: Bool)] {
        var rng = SeededRandom(seed: UInt64(worker + 1))
        let envelope = (0..<envelopeBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let batch = batch
        return { index in
            (0..<batch).map { offset in
                (clientID: "w\(worker)-c\(index * batch + offset)", round: 1, kind: UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue), envelope: envelope, reveals: true)
            }
        }
    }

    func sqliteRun() async throws -> Double {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-durable-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CoordinatorStore(path: directory.appendingPathComponent(CoordinatorStore.fileName).path)
        let make = batches(worker: 0)
        return try await timed { index in
            let outcome = try store.accept(make(index), charge: nil)
            guard outcome.rejections.allSatisfy({ $0 == nil }) else { throw ValidationError("SQLite run saw replays") }
        }
    }

    func postgresWorker(url: String, index: Int) async throws -> WorkerResult {
        let database = try await PostgresStore.open(PostgresLocation(url: url), maximumConnections: concurrency)
        defer { database.close() }
        let store = try await PostgresAcceptedMessages(database: database)
        let make = batches(worker: index)
        let rate = try await timed { batchIndex in
            let messages = make(batchIndex).map { PostgresAcceptedMessages.Message(clientID: $0.clientID, round: $0.round, kind: $0.kind, envelope: $0.envelope, reveals: $0.reveals) }
            let outcome = try await store.accept(messages, charge: nil)
            // Every update is new: a refusal here would make the figure meaningless.
            guard outcome.rejections.allSatisfy({ $0 == nil }) else { throw ValidationError("worker \(index) saw replays: its clients were not fresh") }
        }
        return WorkerResult(updatesPerSecond: rate)
    }

    /// Runs `concurrency` loops of batches for `seconds`; updates/s.
    func timed(_ body: @escaping @Sendable (Int) async throws -> Void) async throws -> Double {
        let seconds = seconds
        let concurrency = concurrency
        let batch = batch
        let clock = ContinuousClock()
        let start = clock.now
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    var done = 0
                    var index = lane
                    while clock.now - start < .seconds(seconds) {
                        try await body(index)
                        index += concurrency
                        done += 1
                    }
                    return done
                }
            }
            var total = 0
            for try await count in group { total += count }
            return total
        }
        let elapsed = clock.now - start
        return Double(counts * batch) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
    }

    /// `count` worker processes at once against `url`; their updates/s summed.
    func workers(url: String, first: Int, count: Int) throws -> Double {
        let arguments = [
            "durable", "--database", url, "--seconds", "\(seconds)", "--batch", "\(batch)", "--concurrency", "\(concurrency)",
            "--envelope-bytes", "\(envelopeBytes)",
        ]
        let results = ResultsBox(count: count)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            results.set(index, Result { try runChild(WorkerResult.self, arguments: arguments + ["--worker", "\(first + index)"], environment: [:]) })
        }
        return try results.values().reduce(0) { $0 + $1.updatesPerSecond }
    }

    final class ResultsBox: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Result<WorkerResult, any Error>?]

        init(count: Int) { results = Array(repeating: nil, count: count) }

        func set(_ index: Int, _ result: Result<WorkerResult, any Error>) { lock.withLock { results[index] = result } }

        func values() throws -> [WorkerResult] { try lock.withLock { try results.map { try $0!.get() } } }
    }
}
