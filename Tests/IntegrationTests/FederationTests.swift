import FedSegPrivacy
import FedSegTestSupport
import Foundation
import GRDB
import Testing

/// The whole federation as an operator runs it: a real `coordinator serve` process on loopback,
/// `client-sim run` driving real client nodes over HTTP, and the CLIs reading the results.
@Suite("Federation over HTTP", .serialized)
struct FederationTests {
    static func generate(users: Int, seed: Int = 3) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-data-\(UUID().uuidString)", isDirectory: true)
        let result = try Executables.run("client-sim", ["generate", "--out", directory.path, "--users", "\(users)", "--segments", "8", "--seed", "\(seed)"])
        #expect(result.status == 0, "\(result.stderr)")
        return directory
    }

    static func report(_ path: URL) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(contentsOf: path)) as? [String: Any])
    }

    static func simulate(_ coordinator: RunningCoordinator, data: URL, clients: Int, epsilon: Double = 8, extra: [String] = []) throws -> (Executables.Result, [String: Any]) {
        let reportFile = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-report-\(UUID().uuidString).json")
        let result = try Executables.run("client-sim", [
            "run", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile, "--data", data.path,
            "--clients", "\(clients)", "--embedder", "hashing", "--epsilon", "\(epsilon)", "--delta", "1e-6", "--no-cache",
            "--work-dir", coordinator.stateDirectory.appendingPathComponent("sim-\(UUID().uuidString)").path, "--report", reportFile.path,
        ] + extra)
        #expect(result.status == 0, "client-sim failed: \(result.stdout)\n\(result.stderr)\n\(coordinator.log().suffix(3000))")
        return (result, try report(reportFile))
    }

    @Test("20 tenant shards, 20,000 users, 8 planted segments, local mode at ε = 8: segments recovered, ledgers agree")
    func twentyShards() throws {
        let data = try Self.generate(users: 20_000)
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        let (_, report) = try Self.simulate(coordinator, data: data, clients: 20)
        let ari = try #require(report["ari_truth"] as? Double)
        let cost = try #require(report["cost_ratio"] as? Double)
        #expect(ari >= 0.8, "ARI against ground truth \(ari)")
        #expect(cost <= 1.15, "cost ratio \(cost)")
        #expect(report["clients"] as? Int == 20)
        #expect(report["users"] as? Int == 20_000)
        #expect(report["rounds"] as? Int == 4, "the start histogram, two clustering rounds and the recommendation round")
        #expect(report["privacy_mode"] as? String == "local")
        #expect(report["ledgers_verified"] as? Bool == true)
        #expect(report["ledgers_agree"] as? Bool == true)
        let spent = try #require(report["epsilon_spent"] as? Double)
        #expect(spent <= 8 + 1e-9 && spent > 7, "ε spent \(spent)")
        #expect((report["participants_per_round"] as? [Int]) == [20, 20, 20, 20])
        #expect((report["segments"] as? [[String: Any]])?.count == 8)
        let rows = try #require(report["recommendation"] as? [[String: Any]])
        let recall = Dictionary(uniqueKeysWithValues: rows.compactMap { row in (row["model"] as? String).map { ($0, row["recall_at_10"] as? Double ?? -1) } })
        #expect(Set(recall.keys) == ["popularity", "segment_nonprivate", "segment_private", "private_reranked", "popularity_reranked", "nonprivate_reranked"])
        #expect(recall["segment_private"]! > 2 * recall["popularity"]!, "private segment models beat popularity: \(recall)")
        #expect((report["rejected_updates"] as? [String: Int])?.isEmpty == true)

        // What the daemon exposes.
        #expect(try RunningCoordinator.get(coordinator.url + "/healthz") == "ok\n")
        let metrics = try RunningCoordinator.get(coordinator.url + "/metrics")
        #expect(metrics.contains("fedseg_rounds_committed_total 4"))
        #expect(metrics.contains("fedseg_updates_accepted_total 80"))
        #expect(metrics.contains("fedseg_round_duration_seconds_bucket"))
        #expect(metrics.contains("fedseg_epsilon_spent"))
        let token = try String(contentsOfFile: coordinator.adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try RunningCoordinator.request(coordinator.url + "/admin/v1/status").status == 401)
        #expect(try RunningCoordinator.request(coordinator.url + "/admin/v1/status", token: "wrong").status == 401)
        #expect(try RunningCoordinator.request(coordinator.url + "/admin/v1/status", token: token).status == 200)

        // The CLIs against the live daemon and against its state directory.
        let remote = ["--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile]
        let audit = try Executables.run("fedseg", ["privacy", "audit"] + remote)
        #expect(audit.status == 0, "\(audit.stderr)")
        #expect(audit.stdout.contains("chain verified"))
        let segments = try Executables.run("fedseg", ["segments", "--json"] + remote)
        #expect(segments.status == 0, "\(segments.stderr)")
        let parsed = try #require(JSONSerialization.jsonObject(with: Data(segments.stdout.utf8)) as? [String: Any])
        #expect((parsed["segments"] as? [[String: Any]])?.count == 8)
        #expect((parsed["shift_history"] as? [Double])?.count == 2)
        #expect(((parsed["segments"] as? [[String: Any]])?.first?["nearest_seed_phrases"] as? [String])?.count == 3)
        let status = try Executables.run("fedseg", ["run", "status", "--json"] + remote)
        #expect(status.stdout.contains("\"status\":\"completed\""), "\(status.stdout)\(status.stderr)")

        // SIGTERM: graceful stop, exit 0; then the state directory still reads.
        #expect(coordinator.stop() == 0)
        #expect(coordinator.log().contains("stopped"))
        try expectAnswersDocumented(coordinator, including: [
            "POST /v1/enroll 200", "GET /v1/rounds/current 200", "POST /v1/rounds/{round}/updates 202", "GET /v1/models/latest 200",
            "POST /admin/v1/runs 201", "GET /admin/v1/runs/current 200", "GET /admin/v1/segments 200", "GET /admin/v1/ledger 200",
        ])
        let offline = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", coordinator.stateDirectory.path, "--json"])
        #expect(offline.status == 0, "\(offline.stderr)")
        #expect(offline.stdout.contains("\"verified\":true"))
    }

    @Test("distributed mode (secure aggregation) with 10% dropout beside local mode on the same data and ε: exact, charged as distributed, less noise")
    func distributedBesideLocal() throws {
        let data = try Self.generate(users: 4_000, seed: 5)
        let coordinator = try RunningCoordinator(totalEpsilon: 100)
        try coordinator.start()
        let (_, distributed) = try Self.simulate(
            coordinator, data: data, clients: 40, epsilon: 4, extra: ["--privacy-mode", "distributed", "--dropout", "0.1", "--round-deadline", "24"]
        )
        let (_, local) = try Self.simulate(coordinator, data: data, clients: 40, epsilon: 4)
        #expect(distributed["privacy_mode"] as? String == "distributed")
        #expect(local["privacy_mode"] as? String == "local")
        for report in [distributed, local] {
            #expect(report["ledgers_verified"] as? Bool == true)
            #expect(report["ledgers_agree"] as? Bool == true)
            #expect(report["rounds"] as? Int == 4)
            let spent = try #require(report["epsilon_spent"] as? Double)
            #expect(spent <= 4 + 1e-9 && spent > 3.5, "ε spent \(spent)")
        }
        // Dropouts before masking leave fewer survivors than clients, never fewer than the quorum.
        let survivors = try #require(distributed["participants_per_round"] as? [Int])
        #expect(survivors.count == 4 && survivors.allSatisfy { $0 >= 20 && $0 <= 40 }, "survivors per round \(survivors)")
        #expect(survivors.contains { $0 < 40 }, "10% dropout removed someone: \(survivors)")
        let distributedARI = try #require(distributed["ari_truth"] as? Double)
        let distributedCost = try #require(distributed["cost_ratio"] as? Double)
        let localCost = try #require(local["cost_ratio"] as? Double)
        #expect(distributedARI >= 0.85, "ARI against ground truth \(distributedARI)")
        #expect(distributedCost < localCost, "the sum carries one noise draw, not 40: cost \(distributedCost) vs local \(localCost)")
        let recall = { (report: [String: Any]) -> Double in
            let rows = report["recommendation"] as? [[String: Any]] ?? []
            return rows.first { $0["model"] as? String == "segment_private" }?["recall_at_10"] as? Double ?? -1
        }
        #expect(recall(distributed) > recall(local), "private segment models: distributed \(recall(distributed)) vs local \(recall(local))")

        // The audit shows which mode each release used.
        let audit = try Executables.run("fedseg", ["privacy", "audit", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile])
        #expect(audit.status == 0, "\(audit.stderr)")
        let runID = try #require(distributed["run_id"] as? String)
        let lines = audit.stdout.split(separator: "\n").filter { $0.contains("\(runID)/round-") }
        #expect(lines.count == 8 && lines.allSatisfy { $0.contains("distributed") }, "\(audit.stdout)")
        #expect(coordinator.stop() == 0)
        try expectAnswersDocumented(coordinator, including: ["GET /v1/rounds/{round}/secagg 200", "POST /v1/rounds/{round}/updates 202"])
    }

    @Test("distributed mode: kill -9 between secure-aggregation stages and at aggregation; the open stage resumes and the run completes")
    func distributedCrashes() throws {
        let data = try Self.generate(users: 2000, seed: 9)
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        let reportFile = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-report-\(UUID().uuidString).json")
        let simulation = try Executables.start("client-sim", [
            "run", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile, "--data", data.path,
            "--clients", "12", "--embedder", "hashing", "--epsilon", "8", "--delta", "1e-6", "--no-cache", "--concurrency", "4",
            "--privacy-mode", "distributed", "--round-deadline", "120", "--report", reportFile.path,
            "--work-dir", coordinator.stateDirectory.appendingPathComponent("sim").path,
        ])
        // 1: SIGKILL as soon as the first round reaches its mask stage (keys advertised and shared).
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !coordinator.log().contains("stage=mask") { Thread.sleep(forTimeInterval: 0.01) }
        coordinator.kill()
        #expect(coordinator.log().contains("stage=mask"))
        // 2: restart with the crash hook at aggregation (after the sum is unmasked, before commit).
        try coordinator.start(environment: ["FEDSEG_TEST_CRASH_AT": "aggregate"])
        #expect(coordinator.waitForExit(seconds: 120) != nil, "the aggregate hook fired")
        #expect(coordinator.log().contains("SIGKILL at aggregate"))
        // Then a clean restart: the round resumes where it was and the run finishes.
        try coordinator.start()
        let result = simulation.wait()
        #expect(result.status == 0, "client-sim: \(result.stdout)\n\(result.stderr.suffix(2000))\n\(coordinator.log().suffix(3000))")
        let report = try Self.report(reportFile)
        #expect(report["privacy_mode"] as? String == "distributed")
        #expect(report["rounds"] as? Int == 4)
        #expect(report["ledgers_verified"] as? Bool == true)
        #expect(report["ledgers_agree"] as? Bool == true, "no client charged a round twice")
        #expect((report["ari_truth"] as? Double ?? 0) >= 0.8)
        coordinator.stop()
        // Across the kills and restarts (each start's answers).
        try expectAnswersDocumented(coordinator, including: ["POST /v1/rounds/{round}/updates 202"])

        let queue = try DatabaseQueue(path: coordinator.stateDirectory.appendingPathComponent("coordinator.sqlite").path)
        let abandoned = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE status = 'abandoned'") ?? 0 }
        #expect(abandoned == 0, "the interrupted rounds were resumed, not abandoned")
        let ledger = try PrivacyLedger(path: coordinator.stateDirectory.appendingPathComponent("coordinator.sqlite").path)
        let records = try ledger.records()
        #expect(records.count == 8 && records.allSatisfy { $0.mode == "distributed" })
    }

    @Test("20% dropout and misbehaving clients: every misbehaviour is refused and counted, and the run completes")
    func misbehaviour() throws {
        let data = try Self.generate(users: 4000, seed: 5)
        let coordinator = try RunningCoordinator(totalEpsilon: 100)
        try coordinator.start()
        let expected: [(mode: String, reason: String, extra: [String])] = [
            ("tamper", "tampered", ["--dropout", "0.2", "--round-deadline", "4"]),
            ("replay", "replay", []),
            ("nan", "invalid", []),
            ("oversize", "oversized", []),
            ("unenrolled:0.1", "unknown_sender", []),
        ]
        for (mode, reason, extra) in expected {
            let (_, report) = try Self.simulate(coordinator, data: data, clients: 20, extra: ["--misbehave", mode] + extra)
            let attempts = try #require(report["misbehaviour_attempts"] as? [String: Int])
            let rejected = try #require(report["rejected_updates"] as? [String: Int])
            let tried = attempts.values.reduce(0, +)
            #expect(tried > 0, "\(mode) was never tried")
            // Oversized bodies may also be cut off by the server before the client finishes writing
            // them; every one that got an answer was refused as oversized.
            if mode == "oversize" {
                #expect((rejected[reason] ?? 0) >= 1 && (rejected[reason] ?? 0) <= tried, "\(mode): \(rejected) for \(attempts)")
            } else {
                #expect(rejected == [reason: tried], "\(mode): \(rejected) for \(attempts)")
            }
            #expect(report["rounds"] as? Int == 4, "\(mode): the run completed")
            #expect((report["ari_truth"] as? Double ?? 0) >= 0.8, "\(mode): ARI \(report["ari_truth"] ?? "-")")
            #expect(report["ledgers_verified"] as? Bool == true)
        }
        let metrics = try RunningCoordinator.get(coordinator.url + "/metrics")
        for reason in ["tampered", "replay", "invalid", "oversized", "unknown_sender"] {
            #expect(metrics.contains("fedseg_updates_rejected_total{reason=\"\(reason)\"}"), "\(reason) in /metrics")
        }
        coordinator.stop()
        // The refusals' error bodies included.
        try expectAnswersDocumented(coordinator, including: ["POST /v1/rounds/{round}/updates 403", "POST /v1/rounds/{round}/updates 409"])
    }

    @Test("kill -9 while collecting, mid-aggregation and mid-commit: nothing committed is lost, the run completes as planned")
    func crashes() throws {
        let data = try Self.generate(users: 3000, seed: 7)
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        let token = try String(contentsOfFile: coordinator.adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let reportFile = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-report-\(UUID().uuidString).json")
        let simulation = try Executables.start("client-sim", [
            "run", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile, "--data", data.path,
            "--clients", "10", "--embedder", "hashing", "--epsilon", "8", "--delta", "1e-6", "--no-cache", "--concurrency", "2",
            "--stragglers", "0.5:1.5", "--round-deadline", "60", "--report", reportFile.path,
            "--work-dir", coordinator.stateDirectory.appendingPathComponent("sim").path,
        ])
        // 1: SIGKILL once the first round has accepted some updates but not all.
        var killedWhileCollecting = false
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !killedWhileCollecting {
            if let status = try? RunningCoordinator.get(coordinator.url + "/admin/v1/status", token: token),
                let json = try? JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any],
                let run = json["run"] as? [String: Any], let open = run["open_round"] as? [String: Any],
                let participants = open["participants"] as? Int, participants >= 1, participants < 10
            {
                coordinator.kill()
                killedWhileCollecting = true
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(killedWhileCollecting)
        // 2 and 3: restart with the crash hook at aggregation, then inside the commit transaction.
        for point in ["aggregate", "commit"] {
            try coordinator.start(environment: ["FEDSEG_TEST_CRASH_AT": point])
            #expect(coordinator.waitForExit(seconds: 120) != nil, "the \(point) hook fired")
            #expect(coordinator.log().contains("SIGKILL at \(point)"))
        }
        // Then a clean restart: the interrupted round resumes and the run finishes.
        try coordinator.start()
        let result = simulation.wait()
        #expect(result.status == 0, "client-sim: \(result.stdout)\n\(coordinator.log().suffix(3000))")
        let report = try Self.report(reportFile)
        #expect(report["rounds"] as? Int == 4)
        #expect(report["ledgers_verified"] as? Bool == true)
        #expect(report["ledgers_agree"] as? Bool == true, "no client charged a round twice")
        #expect((report["ari_truth"] as? Double ?? 0) >= 0.8)
        coordinator.stop()
        // Across the kills and restarts (each start's answers).
        try expectAnswersDocumented(coordinator, including: ["POST /v1/rounds/{round}/updates 202"])

        // The database: the chain verifies; one charge per committed round, per population.
        let ledger = try PrivacyLedger(path: coordinator.stateDirectory.appendingPathComponent("coordinator.sqlite").path)
        let audit = try LedgerAudit.run(ledger)
        #expect(audit.verified)
        let records = try ledger.records()
        let queue = try DatabaseQueue(path: coordinator.stateDirectory.appendingPathComponent("coordinator.sqlite").path)
        let committed = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE status = 'committed'") ?? 0 }
        let abandoned = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM rounds WHERE status = 'abandoned'") ?? 0 }
        let pending = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM accepted_messages WHERE envelope IS NOT NULL") ?? 0 }
        #expect(committed == 4)
        #expect(abandoned == 0, "the interrupted round was resumed, not abandoned")
        #expect(pending == 0, "no envelope is kept after its round commits")
        #expect(records.count == 2 * committed, "one charge per committed round to the run and to all users: \(records.map(\.releaseID))")
        #expect(Set(records.map(\.releaseID)).count == committed)
    }
}
