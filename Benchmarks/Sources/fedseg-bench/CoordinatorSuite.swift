import ArgumentParser
import FedSegClient
import FedSegCoordinator
import FedSegCrypto
import FedSegMath
import FedSegProtocol
import Foundation
import GRDB
import Hummingbird
import Logging
import ServiceLifecycle
import SwiftProtobuf

struct CoordinatorSuite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Update intake: CPU per update (decrypt, validate, record, aggregate) and a 1,000-client round over HTTP on loopback."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Clients in the round.")
    var clients = 1000

    @Option(name: .long, help: "Segments.")
    var k = 16

    @Option(name: .long, help: "Dimension.")
    var d = 384

    @Option(name: .long, help: "Concurrent HTTP submissions.")
    var concurrency = 64

    struct Output: Codable {
        var suite = "coordinator"
        var clients: Int
        var k: Int
        var d: Int
        var envelopeBytes: Int
        /// Per update, median over all clients, in microseconds.
        /// The floor: XChaCha20-Poly1305 open of the same envelope under an already derived key.
        var aeadOpenMicroseconds: Double
        /// A client's first message: its session key derived (X25519) and the envelope opened.
        var firstDecryptMicroseconds: Double
        /// Later messages: the cached session key looked up and the envelope opened.
        var decryptMicroseconds: Double
        var validateMicroseconds: Double
        var recordMicroseconds: Double
        var aggregateMicroseconds: Double
        /// In-process, `concurrency` updates in flight: wall time per update, CPU time per update,
        /// and the median latency of one call.
        var intakeMicroseconds: Double
        var intakeCPUMicroseconds: Double
        var intakeLatencyMicroseconds: Double
        /// `intakeCPUMicroseconds` ÷ `aeadOpenMicroseconds`.
        var intakeOverAEAD: Double
        /// Through the HTTP API on loopback, posted by async-http-client (the nodes' transport).
        var updatesPerSecond: Double
        var roundSeconds: Double
        /// The same, round 3, posted by `LeanHTTPLoad` (one event-loop thread, prepared
        /// requests): the coordinator's capacity with less of the two cores spent on the client.
        var updatesPerSecondLeanClient: Double
    }

    func run() async throws {
        let output = try await measure()
        if json { try printJSON(output); return }
        print("coordinator intake, k = \(k), d = \(d), envelope \(output.envelopeBytes) bytes, \(clients) clients")
        print(String(format: "floor: AEAD open of the envelope under a derived key %.1f µs; a client's first message (X25519 + open) %.1f µs",
                     output.aeadOpenMicroseconds, output.firstDecryptMicroseconds))
        print(String(format: "one at a time, per update (median µs): decrypt %.1f, decode+validate %.1f, record (envelope log + replay row, its own commit: two fsyncs) %.1f, aggregate %.1f",
                     output.decryptMicroseconds, output.validateMicroseconds, output.recordMicroseconds, output.aggregateMicroseconds))
        print(String(format: "whole intake, %d in flight in process: %.1f µs wall and %.1f µs CPU per update (%.1fx the AEAD floor), %.0f µs per call",
                     concurrency, output.intakeMicroseconds, output.intakeCPUMicroseconds, output.intakeOverAEAD, output.intakeLatencyMicroseconds))
        print(String(format: "HTTP on loopback (%d concurrent): %.0f updates/s accepted from async-http-client; round of %d clients open → committed in %.3f s",
                     concurrency, output.updatesPerSecond, clients, output.roundSeconds))
        print(String(format: "HTTP on loopback (%d connections), from a lean client (one NIO thread, prepared requests): %.0f updates/s accepted",
                     concurrency, output.updatesPerSecondLeanClient))
    }

    /// The figures, without printing (the `scale` suite folds them into its table).
    func measure() async throws -> Output {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-bench-coordinator-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyPath = directory.appendingPathComponent("coordinator.key").path
        try NodeIdentity().save(to: keyPath)
        let store = try CoordinatorStore(path: directory.appendingPathComponent(CoordinatorStore.fileName).path)
        var settings = Coordinator.Settings()
        settings.totalEpsilon = 1e6
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let coordinator = try Coordinator(
            store: store, keys: CoordinatorKeys(identity: try NodeIdentity.load(from: keyPath)), settings: settings,
            metrics: CoordinatorMetrics(), logger: logger
        )
        let clientKeys = (0..<clients).map { _ in ClientKey() }
        for (i, client) in clientKeys.enumerated() {
            try store.registry.add(id: "c\(i)", signingKey: Signing.PrivateKey().publicKey, kxKey: client.key.publicKey)
        }
        var parameters = RunParameters(k: k, epsilon: 100, delta: 1e-6)
        parameters.embedderID = "hashing-v1-d\(d)-s0"
        parameters.dimension = d
        parameters.rounds = 3
        parameters.initialization = .random
        parameters.clusteringShare = 1
        parameters.minParticipants = clients
        parameters.roundDeadlineSeconds = 3600
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: settings))

        // Part 1: one update's CPU, step by step, on round 1's plan.
        let first = try require(await coordinator.snapshot())
        var rng = SeededRandom(seed: 9)
        func envelopes(for plan: Fedseg_V1_RoundPlan) throws -> [[UInt8]] {
            try clientKeys.enumerated().map { i, client in
                let update = Fedseg_V1_ClientUpdate.with {
                    $0.runID = plan.runID
                    $0.round = plan.round
                    // Noised words on the plan's grid, as a client sends them.
                    $0.words = (0..<(k * d)).map { _ in Int64((rng.nextStandardNormal() * plan.sumScale).rounded()) }
                        + (0..<k).map { _ in Int64((rng.nextUniform() * 10 * plan.countScale).rounded()) }
                }
                return try Envelope.seal(
                    try update.serializedBytes(), header: .init(kind: 1, round: plan.round, clientID: "c\(i)"), sender: client.key,
                    recipient: coordinator.keys.identity.keyAgreement.publicKey
                )
            }
        }
        let sealed = try envelopes(for: first.plan)
        let clock = ContinuousClock()
        func micros(_ duration: Duration) -> Double { Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) * 1e-12 }
        var aead: [Double] = [], firstDecrypt: [Double] = [], decrypt: [Double] = [], validate: [Double] = [], record: [Double] = [],
            aggregate: [Double] = [], intake: [Double] = []
        var words = [Int64](repeating: 0, count: k * d + k)
        let keys = coordinator.keys
        let benchKeys = Envelope.SessionKeyCache()
        for (i, envelope) in sealed.enumerated() {
            let headerLength = try Envelope.peek(envelope).associatedDataLength
            let derived = try Envelope.SessionKey.coordinator(keys.identity.keyAgreement, from: clientKeys[i].key.publicKey)
            let a0 = clock.now
            _ = try Envelope.open(envelope, associatedDataLength: headerLength, key: derived)
            aead.append(micros(clock.now - a0))
            let f0 = clock.now
            _ = try Envelope.open(envelope, associatedDataLength: headerLength, key: try benchKeys.coordinatorKey(keys.identity.keyAgreement, from: clientKeys[i].key.publicKey))
            firstDecrypt.append(micros(clock.now - f0))
            let t0 = clock.now
            let plaintext = try Envelope.open(
                envelope, associatedDataLength: headerLength, key: try benchKeys.coordinatorKey(keys.identity.keyAgreement, from: clientKeys[i].key.publicKey)
            )
            let t1 = clock.now
            let update = try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: plaintext)
            try update.validate(against: first.plan)
            let t2 = clock.now
            try Self.record(envelope, index: i, store: store)
            let t3 = clock.now
            update.words.withUnsafeBufferPointer { source in for j in 0..<source.count { words[j] &+= source[j] } }
            let t4 = clock.now
            decrypt.append(micros(t1 - t0))
            validate.append(micros(t2 - t1))
            record.append(micros(t3 - t2))
            aggregate.append(micros(t4 - t3))
        }
        // The whole intake path as the HTTP handler runs it: decrypt and validate outside the
        // state machine, then record and add in one step. Each client's session key is derived
        // and its record read first, as by its message of an earlier round (a client's first
        // message pays the exchange and one read once: `firstDecryptMicroseconds`).
        for (i, _) in sealed.enumerated() {
            _ = try coordinator.intake.sessionKeys.coordinatorKey(keys.identity.keyAgreement, from: clientKeys[i].key.publicKey)
            _ = try store.registry.sender("c\(i)")
        }
        // `concurrency` updates in flight, as HTTP handlers run them: what the intake sustains
        // (wall and CPU per update; group commit batches what arrives together), and each call's
        // latency. The last update, which closes the round (aggregate, charge, next plan), is
        // sent after the timed part.
        let timed = clients - 1
        let intakeStart = clock.now
        let intakeCPUStart = processCPUNow()
        let plan = first.plan, kinds = first.kinds, round = first.round
        intake = try await withThrowingTaskGroup(of: Double.self) { tasks in
            var next = 0
            func submitNext() {
                let envelope = sealed[next]
                next += 1
                tasks.addTask {
                    let t0 = clock.now
                    let decoded = try coordinator.intake.decode(
                        envelope, plan: plan, coordinator: coordinator.keys.identity.keyAgreement, checkStatus: true, kinds: kinds
                    )
                    let outcome = try await coordinator.accept(decoded, envelope: envelope, round: round)
                    precondition(outcome == .added, "update: \(outcome)")
                    return micros(clock.now - t0)
                }
            }
            for _ in 0..<min(concurrency, timed) { submitNext() }
            var latencies: [Double] = []
            while let latency = try await tasks.next() {
                latencies.append(latency)
                if next < timed { submitNext() }
            }
            return latencies
        }
        let intakeWall = micros(clock.now - intakeStart) / Double(timed)
        let intakeCPU = (processCPUNow() - intakeCPUStart) * 1e6 / Double(timed)
        let closing = try coordinator.intake.decode(
            sealed[timed], plan: plan, coordinator: coordinator.keys.identity.keyAgreement, checkStatus: true, kinds: kinds
        )
        let closed = try await coordinator.accept(closing, envelope: sealed[timed], round: round)
        precondition(closed == .added, "the last update: \(closed)")

        // Part 2: round 2 over HTTP on loopback: every client posts its sealed update.
        let second = try require(await coordinator.snapshot())
        precondition(second.round != first.round, "round 1 committed")
        let secondSealed = try envelopes(for: second.plan)
        let router = CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data("bench".utf8)).bytes)
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { portContinuation.yield($0.localAddress?.port ?? 0) }, logger: logger
        )
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let server = Task { try await group.run() }
        var ports = portStream.makeAsyncIterator()
        let port = await ports.next() ?? 0
        let http = HTTPCoordinatorTransport.makeHTTPClient(connectionsPerHost: concurrency)
        let transport = HTTPCoordinatorTransport(baseURL: "http://127.0.0.1:\(port)", client: http)
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var next = 0
            func submitNext() {
                let index = next
                next += 1
                tasks.addTask {
                    let result = try await transport.submit(round: second.round, envelope: secondSealed[index])
                    precondition(result == .accepted, "update \(index): \(result)")
                }
            }
            for _ in 0..<min(concurrency, clients) { submitNext() }
            while try await tasks.next() != nil { if next < clients { submitNext() } }
        }
        let posted = clock.now - start
        while await coordinator.snapshot()?.round == second.round { try await Task.sleep(for: .milliseconds(1)) }
        let roundTime = clock.now - start
        try await http.shutdown()

        // Part 3: round 3 over HTTP on loopback from the lean load generator.
        let third = try require(await coordinator.snapshot())
        precondition(third.round != second.round, "round 2 committed")
        let thirdSealed = try envelopes(for: third.plan)
        let lean = try await LeanHTTPLoad.post(port: port, path: "/v1/rounds/\(third.round)/updates", bodies: thirdSealed, connections: concurrency)
        precondition(lean.statuses == [202: clients], "round 3's answers: \(lean.statuses)")
        await group.triggerGracefulShutdown()
        _ = try? await server.value

        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let output = Output(
            clients: clients, k: k, d: d, envelopeBytes: sealed[0].count, aeadOpenMicroseconds: median(aead),
            firstDecryptMicroseconds: median(firstDecrypt), decryptMicroseconds: median(decrypt),
            validateMicroseconds: median(validate), recordMicroseconds: median(record), aggregateMicroseconds: median(aggregate),
            intakeMicroseconds: intakeWall, intakeCPUMicroseconds: intakeCPU, intakeLatencyMicroseconds: median(intake),
            intakeOverAEAD: intakeCPU / median(aead), updatesPerSecond: Double(clients) / (micros(posted) / 1e6), roundSeconds: micros(roundTime) / 1e6,
            updatesPerSecondLeanClient: Double(clients) / lean.seconds
        )
        return output
    }
}

extension CoordinatorSuite {
    /// The durable record an accepted update costs on its own: the store's accept of a batch of
    /// one (the envelope appended to its round's log and on disk, then the replay row committed).
    static func record(_ envelope: [UInt8], index: Int, store: CoordinatorStore) throws {
        let (rejections, _) = try store.accept([(clientID: "bench-\(index)", round: 0, kind: 1, envelope: envelope, reveals: false)], charge: nil)
        precondition(rejections == [nil], "the record of update \(index) was refused")
    }
}

final class ClientKey: Sendable {
    let key = KeyAgreement.PrivateKey()
}

struct Unexpected: Error {}

func require<T>(_ value: T?) throws -> T {
    guard let value else { throw Unexpected() }
    return value
}
