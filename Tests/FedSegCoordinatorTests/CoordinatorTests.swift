import FedSegClustering
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation
import GRDB
import Hummingbird
import Logging
import SwiftProtobuf
import Testing

@testable import FedSegCoordinator

/// A simulated client for driving the state machine directly: its keys and a way to seal.
extension TestClient {
    /// Per-round keys advertised as a node does: signed with the enrolled identity key.
    func advertisement(_ plan: Fedseg_V1_RoundPlan, encryptionKey: KeyAgreement.PublicKey, maskingKey: KeyAgreement.PublicKey) -> Fedseg_V1_SecAggAdvertise {
        let statement = SecAggSigning.advertisement(
            runID: plan.runID, round: plan.round, clientID: id, encryptionKey: Data(encryptionKey.bytes), maskingKey: Data(maskingKey.bytes)
        )
        return .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.encryptionKey = Data(encryptionKey.bytes)
            $0.maskingKey = Data(maskingKey.bytes)
            $0.signature = Data(keys.signing.signature(for: statement))
        }
    }

    /// A survivor's consistency message: its signature on the survivor set.
    func consistency(_ plan: Fedseg_V1_RoundPlan, survivors: [UInt32]) -> Fedseg_V1_SecAggConsistency {
        .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.signature = Data(keys.signing.signature(for: SecAggSigning.survivors(runID: plan.runID, round: plan.round, survivors: survivors)))
        }
    }
}

final class TestClient: Sendable {
    let id: String
    let keys: NodeIdentity

    init(id: String) {
        self.id = id
        self.keys = NodeIdentity()
    }

    func seal(_ message: some SwiftProtobuf.Message, kind: Fedseg_V1_MessageKind, round: UInt64, to coordinator: KeyAgreement.PublicKey) throws -> [UInt8] {
        try Envelope.seal(
            try message.serializedBytes(), header: .init(kind: UInt8(kind.rawValue), round: round, clientID: id), sender: keys.keyAgreement,
            recipient: coordinator
        )
    }
}


func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-coordinator-test-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func makeCoordinator(_ directory: URL, totalEpsilon: Double = 16, clock: any WallClock = SystemWallClock()) throws -> Coordinator {
    let store = try CoordinatorStore(path: directory.appendingPathComponent(CoordinatorStore.fileName).path)
    let keyPath = directory.appendingPathComponent("coordinator.key").path
    if !FileManager.default.fileExists(atPath: keyPath) { try NodeIdentity().save(to: keyPath) }
    var settings = Coordinator.Settings()
    settings.totalEpsilon = totalEpsilon
    settings.clock = clock
    return try Coordinator(
        store: store, keys: CoordinatorKeys(identity: try NodeIdentity.load(from: keyPath)), settings: settings,
        metrics: CoordinatorMetrics(), logger: Logger(label: "test")
    )
}

func smallRun(rounds: Int = 2, minParticipants: Int = 3) -> RunParameters {
    var p = RunParameters(k: 2, epsilon: 4, delta: 1e-6)
    p.embedderID = "hashing-v1-d4-s0"
    p.dimension = 4
    p.rounds = rounds
    p.initialization = .random
    p.clusteringShare = 1
    p.minParticipants = minParticipants
    p.convergenceTolerance = 0
    return p
}

/// Offers a sealed message as the route does: decoded against the open round (its kinds and
/// checks), then recorded and added in one step.
func offer(_ sealed: [UInt8], to coordinator: Coordinator) async throws -> Coordinator.AcceptOutcome {
    let snapshot = try #require(await coordinator.snapshot())
    return try await offer(sealed, to: coordinator, plan: snapshot.plan, kinds: snapshot.kinds, check: snapshot.check)
}

/// The same against a given plan (a round that may have closed since).
func offer(
    _ sealed: [UInt8], to coordinator: Coordinator, plan: Fedseg_V1_RoundPlan, kinds: [Fedseg_V1_MessageKind]? = nil, check: UpdateIntake.Check? = nil
) async throws -> Coordinator.AcceptOutcome {
    let decoded = try coordinator.intake.decode(
        sealed, plan: plan, coordinator: coordinator.keys.identity.keyAgreement, checkStatus: true, kinds: kinds, check: check
    )
    return try await coordinator.accept(decoded, envelope: sealed, round: plan.round)
}

/// A local clustering update with these (already "noised") values on the plan's fixed-point
/// grid, rounded to the nearest step: what a client sends, without its noise.
func gridUpdate(_ plan: Fedseg_V1_RoundPlan, sums: [Float], counts: [Float]) -> Fedseg_V1_ClientUpdate {
    .with {
        $0.runID = plan.runID
        $0.round = plan.round
        $0.words = sums.map { Int64((Double($0) * plan.sumScale).rounded()) } + counts.map { Int64((Double($0) * plan.countScale).rounded()) }
    }
}

@Suite("Coordinator state machine")
struct CoordinatorStateTests {
    func update(_ plan: Fedseg_V1_RoundPlan, sums: [Float], counts: [Float]) -> Fedseg_V1_ClientUpdate {
        gridUpdate(plan, sums: sums, counts: counts)
    }

    func enroll(_ count: Int, in coordinator: Coordinator, prefix: String = "c") throws -> [TestClient] {
        let clients = (0..<count).map { TestClient(id: "\(prefix)\($0)") }
        for client in clients {
            try coordinator.store.registry.add(id: client.id, signingKey: client.keys.signing.publicKey, kxKey: client.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        }
        return clients
    }

    func decline(_ plan: Fedseg_V1_RoundPlan) -> Fedseg_V1_Decline {
        .with {
            $0.runID = plan.runID
            $0.round = plan.round
            $0.reason = "budget"
        }
    }

    @Test("the store's commits wait for the disk (a DatabasePool's WAL set-up leaves NORMAL), new or reopened")
    func durableCommits() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent(CoordinatorStore.fileName).path
        #expect(try CoordinatorStore(path: path).database.synchronousLevel() == 2)
        #expect(try CoordinatorStore(path: path).database.synchronousLevel() == 2)
        let ledger = directory.appendingPathComponent(PrivacyLedger.fileName).path
        #expect(try PrivacyLedger(path: ledger).database.synchronousLevel() == 2)
    }

    @Test("messages offered at once are committed together: each answered once durable, a copy in the same batch refused, the round charged once")
    func groupCommit() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let coordinator = try makeCoordinator(directory, clock: ManualWallClock())
        // 41 live clients: the round waits for the last one, so it is open for every offer below.
        let everyone = try enroll(41, in: coordinator)
        let clients = Array(everyone.prefix(40))
        let coordinatorKey = coordinator.keys.identity.keyAgreement.publicKey
        _ = try await coordinator.start(try RunStart.prepare(smallRun(minParticipants: 40), settings: coordinator.settings))
        let first = try #require(await coordinator.snapshot())
        // Every client's update, client 0's twice and client 1's decline after its update, all in
        // flight together.
        var sealed = try clients.enumerated().map { i, client in
            try client.seal(update(first.plan, sums: [Float](repeating: 0.01, count: 8), counts: [1, Float(i % 2)]), kind: .clientUpdate, round: first.round, to: coordinatorKey)
        }
        sealed.append(sealed[0])
        sealed.append(try clients[1].seal(decline(first.plan), kind: .decline, round: first.round, to: coordinatorKey))
        let offers = sealed
        let outcomes = try await withThrowingTaskGroup(of: (Int, Coordinator.AcceptOutcome).self) { group in
            for (i, envelope) in offers.enumerated() { group.addTask { (i, try await offer(envelope, to: coordinator, plan: first.plan)) } }
            var outcomes = [Coordinator.AcceptOutcome?](repeating: nil, count: offers.count)
            for try await (i, outcome) in group { outcomes[i] = outcome }
            return outcomes.map { $0! }
        }
        #expect(outcomes.prefix(40).allSatisfy { $0 == .added })
        #expect(outcomes[40] == .rejected(.replay(client: "c0", round: first.round)))
        guard case .rejected(.alreadyAnswered(client: "c1", round: first.round, earlier: _)) = outcomes[41] else {
            Issue.record("a decline after an update must be refused as a second answer, got \(outcomes[41])")
            return
        }
        #expect(try clients.allSatisfy { try coordinator.store.registry.wasAccepted(clientID: $0.id, round: first.round, kind: 1) })
        #expect(try coordinator.store.ledger.records().count == 2, "charged once, with the first update: the run and all users")
        // The last client's update closes the round with all 41.
        let last = try everyone[40].seal(update(first.plan, sums: [Float](repeating: 0.01, count: 8), counts: [1, 0]), kind: .clientUpdate, round: first.round, to: coordinatorKey)
        #expect(try await offer(last, to: coordinator, plan: first.plan) == .added)
        let rounds = try coordinator.store.rounds(run: first.plan.runID)
        #expect(rounds.first?.status == .committed && rounds.first?.participants == 41)
        #expect(try coordinator.store.ledger.records().count == 2, "the commit does not charge again")
        let released = try #require(rounds.first.flatMap { $0.counts.map(Packing.unpackDoubles) })
        #expect(abs(released[0] - 41) <= 41 / first.plan.countScale && abs(released[1] - 20) <= 41 / first.plan.countScale)
    }

    @Test("a round aggregates exact sums, charges the ledger at its first update, survives a restart mid-round, and ends with a signed model")
    func roundsAndRecovery() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(directory, clock: clock)
        let clients = try enroll(3, in: coordinator)
        let coordinatorKey = coordinator.keys.identity.keyAgreement.publicKey
        _ = try await coordinator.start(try RunStart.prepare(smallRun(), settings: coordinator.settings))
        let first = try #require(await coordinator.snapshot())
        #expect(first.plan.k == 2 && first.plan.dimension == 4 && first.plan.phase == .clustering)
        #expect(try coordinator.store.ledger.records().isEmpty, "nothing is charged before the coordinator sees an update")

        // Round 1: three updates; the first one charges the run and all users; the released
        // counts are their exact sum.
        let counts: [[Float]] = [[1, 2], [3, 4], [5, 6.5]]
        for (i, client) in clients.enumerated() {
            let sealed = try client.seal(update(first.plan, sums: [Float](repeating: Float(i), count: 8), counts: counts[i]), kind: .clientUpdate, round: first.round, to: coordinatorKey)
            #expect(try await offer(sealed, to: coordinator) == .added)
            if i == 0 {
                let records = try coordinator.store.ledger.records()
                #expect(Set(records.map(\.population)) == ["run:\(first.plan.runID)", Coordinator.allUsers])
                #expect(records.allSatisfy { $0.releaseID == "\(first.plan.runID)/round-\(first.round)" })
            }
        }
        let rounds = try coordinator.store.rounds(run: first.plan.runID)
        #expect(rounds.first?.status == .committed)
        // Exact to the grid: each client's count is rounded to one step of 1/count_scale.
        let released = try #require(rounds.first.flatMap { $0.counts.map(Packing.unpackDoubles) })
        #expect(zip(released, [9, 12.5]).allSatisfy { abs($0 - $1) <= 3 / first.plan.countScale })
        #expect(try coordinator.store.ledger.records().count == 2, "the commit does not charge again")
        // A late update for the closed round (from a client enrolled since) is refused and leaves
        // no record, so its retry is refused the same way rather than taken for delivered; a
        // client whose update counted is told it was a replay.
        let latecomer = try enroll(1, in: coordinator, prefix: "late")[0]
        let late = try latecomer.seal(update(first.plan, sums: [Float](repeating: 0, count: 8), counts: [0, 0]), kind: .clientUpdate, round: first.round, to: coordinatorKey)
        for _ in 0..<2 {
            guard case .late = try await offer(late, to: coordinator, plan: first.plan) else {
                Issue.record("a late update must be answered late")
                return
            }
        }
        #expect(try !coordinator.store.registry.wasAccepted(clientID: latecomer.id, round: first.round, kind: 1))
        let again = try clients[0].seal(update(first.plan, sums: [Float](repeating: 0, count: 8), counts: [0, 0]), kind: .clientUpdate, round: first.round, to: coordinatorKey)
        #expect(try await offer(again, to: coordinator, plan: first.plan) == .rejected(.replay(client: "c0", round: first.round)))

        // Round 2: one update and one decline accepted, then the process "dies".
        let second = try #require(await coordinator.snapshot())
        #expect(second.round > first.round)
        let sealed = try clients[0].seal(update(second.plan, sums: [Float](repeating: 1, count: 8), counts: [7, 0]), kind: .clientUpdate, round: second.round, to: coordinatorKey)
        #expect(try await offer(sealed, to: coordinator) == .added)
        let sealedDecline = try clients[1].seal(decline(second.plan), kind: .decline, round: second.round, to: coordinatorKey)
        #expect(try await offer(sealedDecline, to: coordinator) == .added)

        // Their envelopes are in round 2's log, named by their replay records, not in the rows.
        let logPath = coordinator.store.envelopeLog.path(round: Int64(second.round))
        #expect(FileManager.default.fileExists(atPath: logPath))
        let logged = try await coordinator.store.database.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM accepted_messages WHERE round = ? AND envelope IS NULL AND envelope_offset IS NOT NULL", arguments: [Int64(second.round)])
        }
        #expect(logged == 2)
        #expect(try coordinator.store.pendingEnvelopes(round: Int64(second.round)) == [sealed, sealedDecline])
        // Round 1's log went with its commit.
        #expect(!FileManager.default.fileExists(atPath: coordinator.store.envelopeLog.path(round: Int64(first.round))))

        // A new coordinator on the same state resumes round 2 with what was accepted.
        let restarted = try makeCoordinator(directory, clock: clock)
        try await restarted.recover()
        let resumed = try #require(await restarted.snapshot())
        #expect(resumed.round == second.round)
        let publication = await restarted.currentPublication()
        let before = await coordinator.currentPublication()
        #expect(publication != nil && publication == before, "the same signed plan")
        let summary = try await restarted.summary()
        #expect(summary.openRound?.participants == 1 && summary.openRound?.declined == 1)
        // The replayed update is refused; the third client completes the round.
        #expect(try await offer(sealed, to: restarted) == .rejected(.replay(client: "c0", round: second.round)))
        let third = try clients[2].seal(update(resumed.plan, sums: [Float](repeating: 2, count: 8), counts: [0, 5]), kind: .clientUpdate, round: resumed.round, to: coordinatorKey)
        #expect(try await offer(third, to: restarted) == .added)
        // Three responses (two updates, one decline) but min participants 3: abandoned, not
        // released, and still charged: the coordinator decrypted two updates of it.
        let afterSecond = try restarted.store.rounds(run: resumed.plan.runID)
        #expect(afterSecond.first { $0.id == Int64(resumed.round) }?.status == .abandoned)
        let records = try restarted.store.ledger.records()
        #expect(records.count == 4 && records.suffix(2).allSatisfy { $0.releaseID == "\(second.plan.runID)/round-\(second.round)" })
        #expect(try restarted.store.pendingEnvelopes(round: Int64(resumed.round)).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: logPath), "an abandoned round's log is removed")
    }

    @Test("the envelope log: bytes past the last committed record are never read, a log of a round no longer open is swept at start, and a missing log is refused by name")
    func envelopeLog() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(directory, clock: clock)
        let clients = try enroll(3, in: coordinator)
        let key = coordinator.keys.identity.keyAgreement.publicKey
        _ = try await coordinator.start(try RunStart.prepare(smallRun(), settings: coordinator.settings))
        let round = try #require(await coordinator.snapshot())
        let log = coordinator.store.envelopeLog
        let first = try clients[0].seal(update(round.plan, sums: [Float](repeating: 1, count: 8), counts: [1, 0]), kind: .clientUpdate, round: round.round, to: key)
        #expect(try await offer(first, to: coordinator) == .added)
        // A batch written whose transaction never committed: garbage past the records' end.
        let garbage = [UInt8](repeating: 0xAB, count: 4096)
        try log.append(round: Int64(round.round), [garbage])
        let second = try clients[1].seal(update(round.plan, sums: [Float](repeating: 2, count: 8), counts: [0, 1]), kind: .clientUpdate, round: round.round, to: key)
        #expect(try await offer(second, to: coordinator) == .added)
        #expect(try coordinator.store.pendingEnvelopes(round: Int64(round.round)) == [first, second])
        // A log left by a round that ended (a crash before its removal) goes at the next start;
        // the open round's stays.
        let stale = log.path(round: 999_999)
        #expect(FileManager.default.createFile(atPath: stale, contents: Data(garbage)))
        let restarted = try makeCoordinator(directory, clock: clock)
        #expect(!FileManager.default.fileExists(atPath: stale))
        try await restarted.recover()
        #expect(try await restarted.summary().openRound?.participants == 2)
        // A log that is gone cannot rebuild the round: refused, naming the file.
        try FileManager.default.removeItem(atPath: log.path(round: Int64(round.round)))
        let damaged = try makeCoordinator(directory, clock: clock)
        do {
            try await damaged.recover()
            Issue.record("a round whose envelope log is missing cannot be resumed")
        } catch {
            #expect("\(error)".contains("envelope log of round \(round.round)") && "\(error)".contains("missing"), "\(error)")
        }
    }

    @Test("one answer per client per round: an update after a decline is refused and does not close the round")
    func oneAnswerPerRound() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let clients = try enroll(3, in: coordinator)
        let key = coordinator.keys.identity.keyAgreement.publicKey
        _ = try await coordinator.start(try RunStart.prepare(smallRun(minParticipants: 2), settings: coordinator.settings))
        let round = try #require(await coordinator.snapshot())
        #expect(try await offer(try clients[0].seal(decline(round.plan), kind: .decline, round: round.round, to: key), to: coordinator) == .added)
        let afterDecline = try clients[0].seal(update(round.plan, sums: [Float](repeating: 0.1, count: 8), counts: [1, 1]), kind: .clientUpdate, round: round.round, to: key)
        #expect(try await offer(afterDecline, to: coordinator) == .rejected(.alreadyAnswered(client: "c0", round: round.round, earlier: 3)))
        #expect(try await coordinator.summary().openRound.map { ($0.participants, $0.declined) } ?? (-1, -1) == (0, 1))
        #expect(try coordinator.store.ledger.records().isEmpty, "a refused second answer is not charged")
        // The honest clients' updates are the round's: it closes on them, not on the double answer.
        for client in clients.dropFirst() {
            let sealed = try client.seal(update(round.plan, sums: [Float](repeating: 0.2, count: 8), counts: [2, 2]), kind: .clientUpdate, round: round.round, to: key)
            #expect(try await offer(sealed, to: coordinator) == .added)
        }
        let committed = try #require(try coordinator.store.rounds(run: round.plan.runID).first)
        #expect(committed.status == .committed && committed.participants == 2 && committed.declined == 1)
    }

    @Test("a round closes at its deadline on the injected clock; a round without updates charges nothing")
    func deadlineOnTheClock() async throws {
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: clock)
        _ = try enroll(2, in: coordinator)
        var parameters = smallRun(minParticipants: 1)
        parameters.maxAbandonedRounds = 2
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: coordinator.settings))
        let first = try #require(await coordinator.snapshot())
        #expect(first.plan.deadlineUnixMs == Int64((clock.now() + parameters.roundDeadlineSeconds) * 1000))
        clock.advance(by: parameters.roundDeadlineSeconds - 1)
        try await coordinator.tick()
        #expect(await coordinator.snapshot()?.round == first.round, "still open before its deadline")
        clock.advance(by: 1)
        try await coordinator.tick()
        let second = try #require(await coordinator.snapshot())
        #expect(second.round > first.round)
        #expect(try coordinator.store.rounds(run: first.plan.runID).first?.status == .abandoned)
        #expect(try coordinator.store.ledger.records().isEmpty)
        clock.advance(by: parameters.roundDeadlineSeconds)
        try await coordinator.tick()
        #expect(await coordinator.snapshot() == nil)
        let run = try #require(try coordinator.store.run(first.plan.runID))
        #expect(run.status == .failed && run.reason?.contains("2 rounds in a row abandoned") == true)
    }

    @Test("a full disk: an update that cannot be recorded is refused as a storage failure, nothing of the round is stored or charged at commit, and the round commits once space is back")
    func diskFull() async throws {
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: clock)
        let clients = try enroll(3, in: coordinator)
        var parameters = smallRun(rounds: 1, minParticipants: 2)
        parameters.k = 8
        parameters.dimension = 384
        parameters.embedderID = "hashing-v1-d384-s0"
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: coordinator.settings))
        let round = try #require(await coordinator.snapshot())
        let key = coordinator.keys.identity.keyAgreement.publicKey
        let values = [Float](repeating: 0.01, count: 8 * 384)
        for client in clients.prefix(2) {
            let sealed = try client.seal(update(round.plan, sums: values, counts: [Float](repeating: 1, count: 8)), kind: .clientUpdate, round: round.plan.round, to: key)
            #expect(try await offer(sealed, to: coordinator) == .added)
        }
        let charges = try coordinator.store.ledger.records().count
        // Neither the database nor the round's envelope log may grow: what the disk would say
        // when full.
        try await coordinator.store.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA max_page_count = 1") }
        coordinator.store.envelopeLog.limit(to: 0)
        let late = try clients[2].seal(update(round.plan, sums: values, counts: [Float](repeating: 1, count: 8)), kind: .clientUpdate, round: round.plan.round, to: key)
        do {
            _ = try await offer(late, to: coordinator)
            Issue.record("an update cannot be recorded on a full disk")
        } catch {
            #expect(StorageFailure(error)?.cause == .diskFull, "\(error)")
        }
        clock.advance(by: parameters.roundDeadlineSeconds + 1)
        do {
            try await coordinator.tick()
            Issue.record("the commit cannot succeed on a full disk")
        } catch {
            #expect(StorageFailure(error)?.cause == .diskFull, "\(error)")
            #expect("\(StorageFailure(error)!)".contains("full"))
        }
        // Nothing of it stored, nothing more charged, the round still open and still served.
        #expect(await coordinator.snapshot()?.round == round.round)
        #expect(try coordinator.store.rounds(run: round.plan.runID).map(\.status) == [.collecting])
        #expect(try coordinator.store.ledger.records().count == charges)
        #expect(try coordinator.store.pendingEnvelopes(round: Int64(round.round)).count == 2)
        #expect(try await coordinator.summary().status == .running)
        // Space is back: the next tick commits the round, and the run completes.
        try await coordinator.store.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA max_page_count = 1073741823") }
        coordinator.store.envelopeLog.limit(to: nil)
        try await coordinator.tick()
        #expect(try coordinator.store.rounds(run: round.plan.runID).map(\.status) == [.committed])
        #expect(try coordinator.store.rounds(run: round.plan.runID).first?.participants == 2)
        #expect(try await coordinator.summary(round.plan.runID).status == .completed)
        #expect(try coordinator.store.ledger.records().count == charges)
    }

    @Test("the last clustering round, its charge and the switch to recommendation commit together or not at all")
    func phaseSwitchIsOneTransaction() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        _ = try enroll(1, in: coordinator)
        var parameters = smallRun(rounds: 1, minParticipants: 1)
        parameters.catalog = ["a", "b", "c"]
        parameters.clusteringShare = 0.7
        _ = try await coordinator.start(try RunStart.prepare(parameters, settings: coordinator.settings))
        let round = try #require(await coordinator.snapshot())
        let runID = round.plan.runID
        let charge = CoordinatorStore.Charge(
            releaseID: "\(runID)/round-\(round.round)", round: Int64(round.round),
            mechanism: try parameters.privacyPlan().clusteringMechanism, populations: ["run:\(runID)", Coordinator.allUsers]
        )
        struct Interrupted: Error {}
        let commit = CoordinatorStore.ClusteringCommit(
            runID: runID, round: Int64(round.round), participants: 1, declined: 0, shift: 0.5, centroids: Matrix(rows: 2, cols: 4),
            variances: [1, 1], releasedCounts: [1, 1], committedRounds: 1, phase: .recommendation
        )
        #expect(throws: Interrupted.self) { try coordinator.store.commit(commit, charge: charge, beforeCommit: { throw Interrupted() }) }
        let run = try #require(try coordinator.store.run(runID))
        #expect(run.phase == .clustering && run.committedRounds == 0)
        #expect(try coordinator.store.rounds(run: runID).first?.status == .collecting)
        #expect(try coordinator.store.ledger.records().isEmpty)
        try coordinator.store.commit(commit, charge: charge)
        let after = try #require(try coordinator.store.run(runID))
        #expect(after.phase == .recommendation && after.committedRounds == 1)
        #expect(try coordinator.store.ledger.records().count == 2)
    }

    @Test("a public start opens with the start histogram: candidates in the signed plan, charged at its first answer, then clustering from the weighted start")
    func startHistogram() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let clients = try enroll(2, in: coordinator)
        var parameters = smallRun(rounds: 1, minParticipants: 2)
        parameters.initialization = .public
        parameters.seedPhrases = (0..<40).map { "phrase \($0) about topic \($0 % 4)" }
        let prepared = try RunStart.prepare(parameters, settings: coordinator.settings)
        let candidates = try #require(prepared.startCandidates)
        #expect(candidates.count == StartCandidates.count(k: 2, phrases: 40))
        let summary = try await coordinator.start(prepared)
        #expect(summary.phase == .start)
        let round = try #require(await coordinator.snapshot())
        #expect(round.plan.phase == .start && round.kinds == [.startHistogram, .decline])
        #expect(Int(round.plan.candidateCount) == candidates.count && round.plan.candidates == candidates.centers)
        let z = try #require(try parameters.privacyPlan().clustering.histogramNoiseMultiplier)
        #expect(round.plan.sumStd == z, "sensitivity 1: the noise σ is the noise multiplier")
        // All the mass on candidate 0: the weighted start moves a centroid onto it.
        let key = coordinator.keys.identity.keyAgreement.publicKey
        for client in clients {
            let histogram = Fedseg_V1_StartHistogram.with {
                $0.runID = round.plan.runID
                $0.round = round.round
                $0.counts = (0..<candidates.count).map { $0 == 0 ? 1000 : 0 }
            }
            #expect(try await offer(try client.seal(histogram, kind: .startHistogram, round: round.round, to: key), to: coordinator) == .added)
        }
        let records = try coordinator.store.ledger.records()
        #expect(records.count == 2 && records.allSatisfy { $0.mechanism == "discrete_gaussian" && abs($0.noiseMultiplier - z) < 1e-12 })
        let next = try #require(await coordinator.snapshot())
        #expect(next.plan.phase == .clustering)
        let start = Matrix(rows: 2, cols: 4, storage: next.plan.centroids)
        let nearest = (0..<2).map { j in StartCandidates.squaredDistance(candidates.matrix, 0, start, j) }.min() ?? 1
        #expect(nearest < 1e-9, "a start centroid sits on the candidate holding all the mass")
        #expect(try coordinator.store.run(round.plan.runID)?.phase == .clustering)
    }

    @Test("k auto: the first Lloyd round runs with the most segments; its released centroids choose k (recorded with every k's score) and are merged; the record survives a restart")
    func chosenSegments() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(directory, clock: clock)
        let clients = try enroll(2, in: coordinator)
        var parameters = smallRun(rounds: 2, minParticipants: 2)
        parameters.k = 6
        parameters.kSelection = .auto
        parameters.initialization = .public
        parameters.seedPhrases = (0..<40).map { "phrase \($0) about topic \($0 % 4)" }
        let prepared = try RunStart.prepare(parameters, settings: coordinator.settings)
        let candidates = try #require(prepared.startCandidates)
        _ = try await coordinator.start(prepared)
        let round = try #require(await coordinator.snapshot())
        let key = coordinator.keys.identity.keyAgreement.publicKey
        for client in clients {
            let histogram = Fedseg_V1_StartHistogram.with {
                $0.runID = round.plan.runID
                $0.round = round.round
                $0.counts = (0..<candidates.count).map { _ in 10 }
            }
            #expect(try await offer(try client.seal(histogram, kind: .startHistogram, round: round.round, to: key), to: coordinator) == .added)
        }
        let first = try #require(await coordinator.snapshot())
        #expect(first.plan.phase == .clustering && first.plan.k == 6, "the first Lloyd round runs with the most segments allowed")
        #expect(try await coordinator.summary().segmentation == nil)

        // Its release: segments 0 and 1 near one direction, 2 and 3 near another, 4 on a third,
        // 5 (a handful of users) on a fourth. Three groups of users, one stray segment.
        let places: [[Float]] = [[0.9, 0, 0, 0], [0.88, 0.05, 0, 0], [0, 0.9, 0, 0], [0.05, 0.88, 0, 0], [0, 0, 0.9, 0], [0, 0, 0, 0.9]]
        let counts: [Float] = [250, 250, 250, 250, 250, 1]
        for client in clients {
            let sums = zip(places, counts).flatMap { place, count in place.map { $0 * count } }
            let sealed = try client.seal(update(first.plan, sums: sums, counts: counts), kind: .clientUpdate, round: first.round, to: key)
            #expect(try await offer(sealed, to: coordinator) == .added)
        }
        let second = try #require(await coordinator.snapshot())
        #expect(second.plan.k == 3 && second.plan.centroids.count == 3 * 4)
        let record = try #require(try await coordinator.summary().segmentation)
        #expect(record.requestedK == 6 && record.selection == .auto && record.chosenK == 3 && record.currentK == 3, "\(record)")
        // The stray segment (under 2% of the counts) does not vote: five voters, k in 2...5.
        #expect(record.scores.map(\.k) == Array(2...5), "\(record.scores)")
        let best = record.scores.compactMap { score in score.silhouette.map { (score.k, $0) } }.max { $0.1 < $1.1 }
        #expect(best?.0 == 3, "\(record.scores)")
        #expect(record.reason.contains("k = 3") && record.dropped.isEmpty)
        // Merged by count: one centroid sits between segments 0 and 1.
        let merged = Matrix(rows: 3, cols: 4, storage: second.plan.centroids)
        #expect((0..<3).contains { abs(merged[$0, 0] - 0.89) < 0.02 && abs(merged[$0, 1] - 0.025) < 0.02 }, "\(merged.storage)")
        #expect(try await coordinator.summary().k == 3)

        let restarted = try makeCoordinator(directory, clock: clock)
        try await restarted.recover()
        #expect(try #require(await restarted.snapshot()).plan.k == 3)
        #expect(try await restarted.summary().segmentation == record)
    }

    @Test("Lloyd rounds after the first are centred, clipped to the spread the first round released; the spreads survive a restart")
    func centredRounds() async throws {
        let directory = try temporaryDirectory()
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(directory, clock: clock)
        let clients = try enroll(3, in: coordinator)
        let key = coordinator.keys.identity.keyAgreement.publicKey
        _ = try await coordinator.start(try RunStart.prepare(smallRun(rounds: 3), settings: coordinator.settings))
        let first = try #require(await coordinator.snapshot())
        #expect(!first.plan.centered && first.plan.clipNorm == 1, "the first round clips the vectors themselves")
        // Each client: 1,000 unit-norm users per segment whose mean is 0.9 long, so their spread
        // (mean squared distance from their mean) is 1 − 0.81 = 0.19.
        let means: [[Float]] = [[0.9, 0, 0, 0], [0, 0.9, 0, 0]]
        for client in clients {
            let sums = means.flatMap { $0.map { $0 * 1000 } }
            let sealed = try client.seal(update(first.plan, sums: sums, counts: [1000, 1000]), kind: .clientUpdate, round: first.round, to: key)
            #expect(try await offer(sealed, to: coordinator) == .added)
        }
        let second = try #require(await coordinator.snapshot())
        #expect(second.plan.phase == .clustering && second.plan.centered)
        #expect(abs(second.plan.clipNorm - 0.19.squareRoot()) < 0.01, "clip norm \(second.plan.clipNorm)")
        // The same noise multiplier (so the same charge) at the smaller bound: deviations smaller
        // by the bound (to the grid's rounding term, √(k·d + k) in Δ).
        #expect(abs(second.plan.noiseMultiplier - first.plan.noiseMultiplier) < 1e-12)
        #expect(abs(second.plan.sumStd / first.plan.sumStd - second.plan.clipNorm) < 1e-3 * second.plan.clipNorm)
        let centroids = Matrix(rows: 2, cols: 4, storage: second.plan.centroids)
        #expect(abs(centroids[0, 0] - 0.9) < 0.01 && abs(centroids[1, 1] - 0.9) < 0.01, "\(centroids.storage)")

        // The process dies with round 2 open; the restarted coordinator still centres round 3.
        let restarted = try makeCoordinator(directory, clock: clock)
        try await restarted.recover()
        #expect(try #require(await restarted.snapshot()).round == second.round)
        // Round 2's offsets: the users' mean lies 0.05 further along the first axis than the centroid.
        for client in clients {
            let offsets: [Float] = [50, 0, 0, 0, 0, 0, 0, 0]
            let sealed = try client.seal(update(second.plan, sums: offsets, counts: [1000, 1000]), kind: .clientUpdate, round: second.round, to: key)
            #expect(try await offer(sealed, to: restarted) == .added)
        }
        let third = try #require(await restarted.snapshot())
        #expect(third.plan.centered && abs(third.plan.clipNorm - 0.19.squareRoot()) < 0.01, "clip norm \(third.plan.clipNorm)")
        let moved = Matrix(rows: 2, cols: 4, storage: third.plan.centroids)
        #expect(abs(moved[0, 0] - (centroids[0, 0] + 0.05)) < 0.01, "a centred round moves the centroid by the mean offset: \(moved.storage)")
        // The run summary (admin API, fedseg run status) says how each round clipped.
        let summarized = try await restarted.summary().rounds
        #expect(summarized.map(\.centered) == [false, true, true] && summarized.first?.clipNorm == 1)
        #expect(summarized.dropFirst().allSatisfy { abs(($0.clipNorm ?? 1) - 0.19.squareRoot()) < 0.01 })

        // A run that turns it off clips the vectors in every round.
        let plainDirectory = try temporaryDirectory()
        let plain = try makeCoordinator(plainDirectory, clock: clock)
        let plainClients = try enroll(3, in: plain)
        var parameters = smallRun(rounds: 3)
        parameters.centeredClipping = false
        _ = try await plain.start(try RunStart.prepare(parameters, settings: plain.settings))
        let plainFirst = try #require(await plain.snapshot())
        for client in plainClients {
            let sums = means.flatMap { $0.map { $0 * 1000 } }
            let sealed = try client.seal(update(plainFirst.plan, sums: sums, counts: [1000, 1000]), kind: .clientUpdate, round: plainFirst.round, to: plain.keys.identity.keyAgreement.publicKey)
            #expect(try await offer(sealed, to: plain) == .added)
        }
        let plainSecond = try #require(await plain.snapshot())
        #expect(!plainSecond.plan.centered && plainSecond.plan.clipNorm == 1)
    }

    @Test("a segment under min_segment_share of the last Lloyd round's released counts is dropped before the recommendation release, and the record is stored")
    func droppedSegments() async throws {
        let directory = try temporaryDirectory()
        let coordinator = try makeCoordinator(directory, clock: ManualWallClock())
        let clients = try enroll(2, in: coordinator)
        _ = try await coordinator.start(try RunStart.prepare(smallRun(rounds: 1, minParticipants: 2), settings: coordinator.settings))
        let first = try #require(await coordinator.snapshot())
        let key = coordinator.keys.identity.keyAgreement.publicKey
        // Segment 1 holds 0.5% of the released counts, under the 2% minimum.
        for client in clients {
            let sealed = try client.seal(update(first.plan, sums: [Float](repeating: 0, count: 8), counts: [500, 2.5]), kind: .clientUpdate, round: first.round, to: key)
            #expect(try await offer(sealed, to: coordinator) == .added)
        }
        let done = try await coordinator.summary()
        #expect(done.status == .completed && done.k == 1)
        let record = try #require(done.segmentation)
        #expect(record.requestedK == 2 && record.chosenK == 2 && record.currentK == 1 && record.reason == "k = 2 as requested")
        #expect(record.dropped.map(\.segment) == [1] && record.dropped.first?.round == first.round)
        #expect(abs((record.dropped.first?.share ?? 0) - 5 / 1005.0) < 1e-3)
        let stored = try #require(try coordinator.store.rounds(run: first.plan.runID).first { $0.id == Int64(first.round) }?.counts.map(Packing.unpackDoubles))
        #expect(stored.count == 1, "the round keeps the released counts of the segments it kept")
        #expect(try coordinator.store.segments(runID: first.plan.runID, seedVectors: nil).segments.count == 1)
        let restarted = try makeCoordinator(directory, clock: ManualWallClock())
        #expect(try await restarted.summary(first.plan.runID).segmentation == record)
    }

    @Test("a run is refused when its releases would exceed the coordinator's total budget")
    func totalBudget() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), totalEpsilon: 2)
        await #expect(throws: CoordinatorError.self) { try await coordinator.start(try RunStart.prepare(smallRun(), settings: coordinator.settings)) }
        #expect(await coordinator.snapshot() == nil)
        #expect(try coordinator.store.runs().isEmpty)
    }

    @Test("the lifetime budget is durable: a restart with another total is refused, no total takes the recorded one, a change is an admin ledger record")
    func durableBudget() async throws {
        let directory = try temporaryDirectory()
        let first = try makeCoordinator(directory, totalEpsilon: 16)
        #expect(try first.store.ledger.budget(for: Coordinator.allUsers)?.epsilon == 16)
        // A second process (or a restart) configured with another total: refused, saying how to change it.
        var settings = first.settings
        settings.totalEpsilon = 100
        do {
            _ = try Coordinator(store: first.store, keys: first.keys, settings: settings, metrics: CoordinatorMetrics(), logger: Logger(label: "test"))
            Issue.record("a start that disagrees with the recorded budget must be refused")
        } catch let error as CoordinatorError {
            #expect(error.description.contains("records a lifetime budget of ε = 16.0") && error.description.contains("fedseg privacy budget set"))
        }
        #expect(try first.store.ledger.budget(for: Coordinator.allUsers)?.epsilon == 16, "nothing changed")
        // No total configured: the recorded budget stands.
        settings.totalEpsilon = nil
        let restarted = try Coordinator(store: first.store, keys: first.keys, settings: settings, metrics: CoordinatorMetrics(), logger: Logger(label: "test"))
        #expect(try restarted.store.ledger.budget(for: Coordinator.allUsers)?.epsilon == 16)
        // The admin action: recorded with its reason, shown by the audit; refused during a run.
        let budget = try await restarted.setLifetimeBudget(epsilon: 24, delta: nil, reason: "board approved 2027 runs")
        #expect(budget.epsilon == 24 && budget.delta == 1e-5)
        let audit = try LedgerAudit.run(restarted.store.ledger)
        #expect(audit.verified && audit.budgetChanges.map(\.reason) == ["first start", "admin: board approved 2027 runs"])
        _ = try enroll(1, in: restarted)
        _ = try await restarted.start(try RunStart.prepare(smallRun(minParticipants: 1), settings: restarted.settings))
        await #expect(throws: CoordinatorError.self) { _ = try await restarted.setLifetimeBudget(epsilon: 30, delta: nil, reason: "mid-run") }
    }

    @Test("the daemon refuses to serve a state directory whose recorded budget its configuration contradicts")
    func daemonBudgetMismatch() async throws {
        let state = try temporaryDirectory().appendingPathComponent("state").path
        _ = try CoordinatorDaemon.initialize(stateDirectory: state, totalEpsilon: 4, totalDelta: 1e-6)
        var configuration = CoordinatorConfiguration()
        configuration.stateDirectory = state
        configuration.port = 0
        configuration.totalEpsilon = 100
        await #expect(throws: CoordinatorError.self) { _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test")) }
        configuration.totalEpsilon = nil
        _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test"))
        let ledger = try PrivacyLedger(path: URL(fileURLWithPath: state).appendingPathComponent(CoordinatorStore.fileName).path)
        #expect(try ledger.budget(for: Coordinator.allUsers) == .init(population: Coordinator.allUsers, epsilon: 4, delta: 1e-6))
        #expect(try ledger.budgetHistory().map(\.reason) == ["coordinator init"])
    }

    @Test("one coordinator per state directory: a second is refused naming the holder; the lock goes with the first")
    func stateDirectoryLock() async throws {
        let state = try temporaryDirectory().appendingPathComponent("state").path
        _ = try CoordinatorDaemon.initialize(stateDirectory: state)
        var configuration = CoordinatorConfiguration()
        configuration.stateDirectory = state
        configuration.port = 0
        var first: (any ApplicationProtocol)? = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test"))
        do {
            _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test"))
            Issue.record("a second coordinator on the same state directory must be refused")
        } catch let error as CoordinatorError {
            #expect(error.description.contains("in use by another process (pid \(getpid()): coordinator serve)"))
        }
        #expect(first != nil)
        first = nil
        _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test"))
        // Only `coordinator init` creates a state directory.
        configuration.stateDirectory = state + "-typo"
        await #expect(throws: CoordinatorError.self) { _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test")) }
        #expect(!FileManager.default.fileExists(atPath: state + "-typo"))
    }

    @Test("damaged state is refused at start, saying what is damaged: a ledger that fails its audit, an open round's plan whose signature does not verify")
    func damagedStateRefused() async throws {
        // The open round's stored plan, one byte flipped: recovery refuses it instead of resuming.
        let directory = try temporaryDirectory()
        let coordinator = try makeCoordinator(directory, clock: ManualWallClock())
        _ = try enroll(1, in: coordinator)
        _ = try await coordinator.start(try RunStart.prepare(smallRun(minParticipants: 1), settings: coordinator.settings))
        let round = try #require(await coordinator.snapshot())
        try await coordinator.store.database.write { db in
            try db.execute(sql: "UPDATE rounds SET publication = substr(publication, 1, 40) || X'FF' || substr(publication, 42) WHERE id = ?", arguments: [Int64(round.round)])
        }
        let restarted = try makeCoordinator(directory, clock: ManualWallClock())
        do {
            try await restarted.recover()
            Issue.record("a damaged plan must not be resumed")
        } catch let error as CoordinatorError {
            #expect(error.description.contains("round \(round.round)") && error.description.contains("damaged"), "\(error)")
        }

        // The run's stored centroids, one bit flipped: caught by the row's checksum when read,
        // at start and by every admin read, never served or built upon.
        let second = try temporaryDirectory()
        let healthy = try makeCoordinator(second, clock: ManualWallClock())
        _ = try enroll(1, in: healthy)
        let run = try await healthy.start(try RunStart.prepare(smallRun(minParticipants: 1), settings: healthy.settings))
        try await healthy.store.database.write { db in
            try db.execute(sql: "UPDATE runs SET centroids = X'01' || substr(centroids, 2) WHERE id = ?", arguments: [run.id])
        }
        for read in [{ _ = try healthy.store.runs() }, { _ = try healthy.store.run(run.id) }] {
            #expect { try read() } throws: { "\($0)".contains("run \(run.id)") && "\($0)".contains("does not match its checksum") }
        }
        do {
            try await makeCoordinator(second, clock: ManualWallClock()).recover()
            Issue.record("damaged centroids must not be resumed")
        } catch let error as CoordinatorError {
            #expect(error.description.contains("centroids") && error.description.contains("restore coordinator.sqlite"), "\(error)")
        }
        // A published model, one byte changed: not served.
        try await healthy.store.database.write { db in
            try CoordinatorStore.PublishedModel(runID: run.id, version: 9, publication: Data([1, 2, 3]), createdAt: 1).sealed().insert(db)
            try db.execute(sql: "UPDATE segment_models SET publication = X'010204' WHERE version = 9")
        }
        #expect { _ = try healthy.store.latestModel() } throws: { "\($0)".contains("segment model \(run.id) v9") }

        // A ledger whose budget record was altered: the daemon does not start.
        let state = try temporaryDirectory().appendingPathComponent("state").path
        _ = try CoordinatorDaemon.initialize(stateDirectory: state)
        let ledger = try PrivacyLedger(path: URL(fileURLWithPath: state).appendingPathComponent(CoordinatorStore.fileName).path)
        try await ledger.database.write { db in try db.execute(sql: "UPDATE privacy_budget_history SET reason = 'edited' WHERE sequence = 1") }
        var configuration = CoordinatorConfiguration()
        configuration.stateDirectory = state
        configuration.port = 0
        do {
            _ = try await CoordinatorDaemon.buildCoordinator(configuration, logger: Logger(label: "test"))
            Issue.record("a ledger that fails verification must not be served")
        } catch let error as CoordinatorError {
            #expect(error.description.contains("fails verification") && error.description.contains("budget change 1"))
        }
    }

    @Test("a run whose quorum cannot be met by the enrolled clients is refused before anything is charged")
    func quorumBeforeCharge() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        _ = try enroll(1, in: coordinator)
        await #expect(throws: CoordinatorError.self) {
            _ = try await coordinator.start(try RunStart.prepare(smallRun(minParticipants: 2), settings: coordinator.settings))
        }
        #expect(try coordinator.store.runs().isEmpty && coordinator.store.ledger.records().isEmpty)
    }

    @Test("a run's planned releases compose to its ε; a catalogue adds the recommendation release")
    func privacyPlan() throws {
        var parameters = RunParameters(k: 8, epsilon: 8, delta: 1e-6)
        parameters.seedPhrases = (0..<8).map { "phrase \($0)" }
        parameters.catalog = (0..<100).map { "item-\($0)" }
        let plan = try parameters.privacyPlan()
        #expect(plan.mechanisms.count == 4, "the start histogram, two Lloyd rounds, the recommendation release")
        #expect(plan.startMechanism?.kind == .discreteGaussian && plan.recommendationMechanism?.kind == .discreteGaussian)
        let epsilon = try PrivacyLedger.epsilon(of: plan.mechanisms, delta: 1e-6)
        #expect(epsilon <= 8 + 1e-9 && epsilon > 7.9, "ε = \(epsilon)")
        parameters.catalog = []
        parameters.clusteringShare = 1
        #expect(try parameters.privacyPlan().mechanisms.count == 3)
        parameters.startHistogramShare = 0
        #expect(try parameters.privacyPlan().mechanisms.count == 2, "no start histogram")
        parameters.k = 0
        #expect(throws: ProtocolError.invalidField("k", "must be in 1...1024")) { try parameters.validate() }
        parameters.k = 8
        parameters.seedPhrases = ["too few"]
        #expect(throws: ProtocolError.self) { try parameters.validate() }
    }

    @Test("run parameters decode from JSON with defaults for what is left out")
    func parametersJSON() throws {
        let json = #"{"k": 4, "epsilon": 2.5, "delta": 1e-6, "embedder_id": "hashing-v1-d8-s1", "dimension": 8, "initialization": "random"}"#
        let parameters = try JSONDecoder().decode(RunParameters.self, from: Data(json.utf8))
        #expect(parameters.k == 4 && parameters.epsilon == 2.5 && parameters.rounds == 2 && parameters.roundDeadlineSeconds == 30)
        #expect(parameters.embedderID == "hashing-v1-d8-s1")
        #expect(try JSONDecoder().decode(RunParameters.self, from: JSONEncoder().encode(parameters)) == parameters)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(RunParameters.self, from: Data(#"{"k": 4}"#.utf8)) }
        #expect(parameters.kSelection == .fixed && parameters.clusterer == .kmeans && parameters.minSegmentShare == 0.02)
        // Choosing segments needs the start histogram; the refusal names the field and why.
        let auto = try JSONDecoder().decode(RunParameters.self, from: Data(json.replacingOccurrences(of: "}", with: #", "k_selection": "auto", "clusterer": "density"}"#).utf8))
        #expect(auto.kSelection == .auto && auto.clusterer == .density)
        #expect(throws: ProtocolError.self) { try auto.validate() }
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(RunParameters.self, from: Data(json.replacingOccurrences(of: "}", with: #", "clusterer": "dbscan"}"#).utf8))
        }
        #expect(try RunParameters.segmentCount("auto", maxK: 24) == (24, .auto) && RunParameters.segmentCount("7", maxK: 24) == (7, .fixed))
        #expect(throws: ProtocolError.self) { try RunParameters.segmentCount("seven", maxK: 24) }
    }

    @Test("embedders are named exactly; a wrong dimension is refused")
    func embedderIdentifiers() throws {
        #expect(try RunStart.embedder(identifier: "hashing-v1-d16-s3", files: .defaultLocation()).dimension == 16)
        #expect(throws: CoordinatorError.self) { _ = try RunStart.embedder(identifier: "hashing-v2-d16-s3", files: .defaultLocation()) }
        var parameters = smallRun()
        parameters.initialization = .public
        parameters.seedPhrases = ["a b", "c d", "e f"]
        parameters.embedderID = "hashing-v1-d8-s0"
        #expect(throws: ProtocolError.invalidField("dimension", "is 4, but hashing-v1-d8-s0 embeds in 8 dimensions")) {
            _ = try RunStart.prepare(parameters, settings: Coordinator.Settings())
        }
        // Checked at every start, random starts included: ids no client runs, and wrong dimensions.
        var random = smallRun()
        random.initialization = .random
        for (id, dimension) in [("minilm", 384), ("../../etc/passwd", 4), ("hashing-v1-d64-s1", 384), ("all-MiniLM-L6-v2", 64), ("hashing-v1-d04-s0", 4)] {
            random.embedderID = id
            random.dimension = dimension
            #expect(throws: ProtocolError.self, "\(id) at d = \(dimension)") { try random.validate() }
        }
        random.embedderID = "all-MiniLM-L6-v2"
        random.dimension = 384
        try random.validate()
        parameters.embedderID = "hashing-v1-d4-s0"
        let prepared = try RunStart.prepare(parameters, settings: Coordinator.Settings())
        #expect(prepared.centroids.rows == 2 && prepared.centroids.cols == 4)
        #expect(prepared.variances.allSatisfy { $0.isFinite })
    }
}

@Suite("Coordinator configuration")
struct ConfigurationTests {
    func write(_ text: String) throws -> String {
        let path = try temporaryDirectory().appendingPathComponent("coordinator.toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("TOML sets every key; defaults serve on loopback")
    func load() throws {
        let path = try write("""
            state_dir = "/tmp/x"
            [listen]
            host = "127.0.0.1"
            port = 9000
            [privacy]
            total_epsilon = 12.5
            total_delta = 1e-7
            [limits]
            max_message_bytes = 2048
            [log]
            level = "debug"
            """)
        let c = try CoordinatorConfiguration.load(path: path)
        #expect(c.stateDirectory == "/tmp/x" && c.port == 9000 && c.totalEpsilon == 12.5 && c.totalDelta == 1e-7)
        #expect(c.maxMessageBytes == 2048 && c.logLevel == "debug")
        #expect(CoordinatorConfiguration().host == "127.0.0.1")
    }

    @Test("the sample configuration beside the executable loads")
    func sample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let c = try CoordinatorConfiguration.load(path: root.appendingPathComponent("coordinator/coordinator.toml").path)
        #expect(c.port == 7700 && c.host == "127.0.0.1" && c.totalEpsilon == nil, "the budget is the ledger's")
    }

    @Test("unknown keys and bad values are refused with the key named")
    func refused() throws {
        let typo = try write("[listen]\nprot = 1")
        #expect(throws: CoordinatorError.configuration("config \(typo): unknown key listen.prot")) {
            try CoordinatorConfiguration.load(path: typo)
        }
        // A value of the wrong type names its key and the type it takes.
        for (text, message) in [
            ("[listen]\nport = \"seventy\"", "listen.port must be an integer"), ("state_dir = 3", "state_dir must be a string"),
            ("[limits]\nbody_timeout_seconds = \"a\"", "limits.body_timeout_seconds must be a number"),
            ("[listen]\ninsecure_http = 1", "listen.insecure_http must be true or false"), ("listen = 5", "listen must be a table"),
        ] {
            let path = try write(text)
            #expect(throws: CoordinatorError.configuration("config \(path): \(message)")) { try CoordinatorConfiguration.load(path: path) }
        }
        let tls = try CoordinatorConfiguration.load(path: try write("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[limits]\nmax_connections = 50\nstale_after_seconds = 30\n[privacy]\ntotal_epsilon = 16"))
        #expect(tls.tls == TLSFiles(certificateChain: "c.pem", privateKey: "k.pem") && tls.connections.maximumConnections == 50 && tls.staleAfterSeconds == 30 && tls.totalEpsilon == 16)
        #expect(throws: CoordinatorError.self) { try CoordinatorConfiguration.load(path: try write("[tls]\ncert = \"c.pem\"")) }
        #expect(throws: CoordinatorError.self) { try CoordinatorConfiguration.load(path: try write("[listen]\nport = 70000")) }
        #expect(throws: CoordinatorError.self) { try CoordinatorConfiguration.load(path: try write("[privacy]\ntotal_delta = 2.0")) }
        #expect(throws: CoordinatorError.self) { try CoordinatorConfiguration.load(path: try write("this is not toml = = =")) }
    }

    @Test("init writes owner-only keys and admin token, and refuses to overwrite them")
    func initialize() throws {
        let directory = try temporaryDirectory().appendingPathComponent("state").path
        let result = try CoordinatorDaemon.initialize(stateDirectory: directory)
        let mode = try FileManager.default.attributesOfItem(atPath: result.adminTokenFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try CoordinatorDaemon.readAdminToken(path: result.adminTokenFile).count == 64)
        #expect(throws: CoordinatorError.self) { try CoordinatorDaemon.initialize(stateDirectory: directory) }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: result.adminTokenFile)
        #expect(throws: CoordinatorError.self) { try CoordinatorDaemon.readAdminToken(path: result.adminTokenFile) }
    }
}
