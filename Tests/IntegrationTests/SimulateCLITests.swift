import FedSegPrivacy
import FedSegTestSupport
import Foundation
import Testing

@Suite("client-sim simulate", .serialized)
struct SimulateCLITests {
    @Test("runs a private segmentation in process, writes a report, and every ledger audits clean")
    func simulate() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("sim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let data = base.appendingPathComponent("data"), state = base.appendingPathComponent("state")
        let report = base.appendingPathComponent("report.json")
        #expect(try Executables.run("client-sim", ["generate", "--out", data.path, "--users", "1500", "--segments", "4", "--seed", "3"]).status == 0)
        let run = try Executables.run("client-sim", [
            "simulate", "--data", data.path, "--clients", "5", "--k", "4", "--epsilon", "8", "--privacy-mode", "local",
            "--embedder", "hashing", "--state-dir", state.path, "--report", report.path,
            "--cache-dir", base.appendingPathComponent("cache").path,
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
        #expect(object["clients"] as? Int == 5)
        #expect(object["users"] as? Int == 1500)
        #expect(object["ledgers_verified"] as? Bool == true)
        let spent = try #require(object["epsilon_spent"] as? Double)
        #expect(spent <= 8 && spent > 7.99)  // clustering and the recommendation release together
        #expect((object["ari_truth"] as? Double ?? 0) > 0.9)
        #expect((object["segments"] as? [Any])?.count == 4)
        // All four recommendation rows; the private segment model beats global popularity by ≥ 20%.
        let rows = try #require(object["recommendation"] as? [[String: Any]])
        #expect(rows.compactMap { $0["model"] as? String } == ["popularity", "segment_nonprivate", "segment_private", "private_reranked", "popularity_reranked", "nonprivate_reranked"])
        let recall = Dictionary(uniqueKeysWithValues: rows.map { ($0["model"] as! String, $0["recall_at_10"] as! Double) })
        #expect(recall["segment_private"]! >= 1.2 * recall["popularity"]!)
        #expect(rows.allSatisfy { ($0["cold_start_recall_at_10"] as? Double) != nil && ($0["coverage"] as? Double ?? 0) > 0 })
        let coordinator = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", state.appendingPathComponent("coordinator").path, "--json"])
        #expect(coordinator.status == 0)
        let client = try Executables.run("fedseg", ["privacy", "audit", "--state-dir", state.appendingPathComponent("clients/client-0").path, "--json"])
        #expect(client.status == 0)
        // Client and coordinator ledgers agree on what was spent.
        let a = try JSONSerialization.jsonObject(with: Data(coordinator.stdout.utf8)) as? [String: Any]
        let b = try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any]
        // The run's population, at the run's δ (all-users is at the coordinator's lifetime δ).
        let spentA = ((a?["populations"] as? [[String: Any]])?.first { ($0["population"] as? String)?.hasPrefix("run:") == true }?["epsilon_spent"] as? Double)
        let spentB = ((b?["populations"] as? [[String: Any]])?.first?["epsilon_spent"] as? Double)
        #expect(spentA != nil && spentA == spentB)
        // A second run into the same state directory is refused rather than double-charging.
        let again = try Executables.run("client-sim", ["simulate", "--data", data.path, "--embedder", "hashing", "--state-dir", state.path, "--no-cache"])
        #expect(again.status == 64)
        // The embedding cache was written and serves a rerun into a fresh state directory.
        let cached = try FileManager.default.contentsOfDirectory(atPath: base.appendingPathComponent("cache").path)
        #expect(cached.count == 1 && cached[0].hasSuffix(".vectors"))
    }

    @Test("--k auto through the daemon's application: the first round at max-k chooses the planted 8 segments (±1) from its release, and the report records why")
    func chosenSegmentCount() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("sim-auto-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let data = base.appendingPathComponent("data"), report = base.appendingPathComponent("report.json")
        #expect(try Executables.run("client-sim", ["generate", "--out", data.path, "--users", "10000", "--segments", "8", "--seed", "2"]).status == 0)
        let run = try Executables.run("client-sim", [
            "simulate", "--data", data.path, "--clients", "10", "--k", "auto", "--max-k", "16", "--epsilon", "8", "--embedder", "hashing",
            "--state-dir", base.appendingPathComponent("state").path, "--report", report.path, "--no-cache",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("segments chosen: round "), "\(run.stdout)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
        let segmentation = try #require(object["segmentation"] as? [String: Any], "\(object)")
        #expect(segmentation["requested_k"] as? Int == 16 && segmentation["selection"] as? String == "auto")
        let chosen = try #require(segmentation["chosen_k"] as? Int)
        #expect((7...9).contains(chosen), "chose \(chosen): \(segmentation["reason"] ?? "")")
        let kept = try #require((object["segments"] as? [Any])?.count)
        #expect((7...9).contains(kept) && segmentation["current_k"] as? Int == kept)
        #expect((segmentation["scores"] as? [[String: Any]])?.first?["k"] as? Int == 2)
        #expect((object["ari_truth"] as? Double ?? 0) > 0.95, "\(object["ari_truth"] ?? "-")")
        #expect(object["ledgers_agree"] as? Bool == true)
    }

    /// What a ledger released, without the run's random id: release (round), population kind,
    /// mechanism, noise multiplier, mode and ε after each, in order.
    static func releases(_ path: URL) throws -> [String] {
        let records = try PrivacyLedger(path: path.path).records()
        let runID = try #require(records.first { $0.population.hasPrefix("run:") }?.population.dropFirst(4))
        return records.map { record in
            [
                record.releaseID.replacingOccurrences(of: runID, with: "RUN"), record.population.replacingOccurrences(of: runID, with: "RUN"),
                record.mechanism, String(record.noiseMultiplier.bitPattern), record.mode, String(format: "%.12f", record.epsilonAfter),
            ].joined(separator: " ")
        }
    }

    @Test("simulate and the daemon run the same engine: the same releases, noise and ε after each, the start histogram included", arguments: ["local", "distributed"])
    func sameReleases(mode: String) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("same-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let data = base.appendingPathComponent("data")
        #expect(try Executables.run("client-sim", ["generate", "--out", data.path, "--users", "1200", "--segments", "4", "--seed", "5"]).status == 0)
        let common = [
            "--data", data.path, "--clients", "4", "--k", "4", "--epsilon", "6", "--delta", "1e-6", "--privacy-mode", mode,
            "--embedder", "hashing", "--no-cache", "--seed", "9",
        ]
        let state = base.appendingPathComponent("simulated")
        let simulated = try Executables.run("client-sim", ["simulate", "--state-dir", state.path, "--total-epsilon", "16"] + common)
        #expect(simulated.status == 0, "\(simulated.stderr)")

        let coordinator = try RunningCoordinator(stateDirectory: base.appendingPathComponent("daemon"))
        try coordinator.start()
        let run = try Executables.run("client-sim", [
            "run", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile,
            "--work-dir", base.appendingPathComponent("daemon-clients").path,
        ] + common)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(coordinator.stop() == 0)
        try expectAnswersDocumented(coordinator, including: ["POST /v1/rounds/{round}/updates 202", "GET /admin/v1/runs/{id} 200", "GET /admin/v1/ledger 200"])

        let a = try Self.releases(state.appendingPathComponent("coordinator/coordinator.sqlite"))
        let b = try Self.releases(coordinator.stateDirectory.appendingPathComponent("coordinator.sqlite"))
        #expect(a.count == 8, "start histogram, two Lloyd rounds, recommendation; to the run and to all users: \(a)")
        #expect(a.filter { $0.hasPrefix("RUN/round-1 ") }.allSatisfy { $0.contains("discrete_gaussian") }, "round 1 is the start histogram")
        #expect(a == b, "simulate:\n\(a.joined(separator: "\n"))\ndaemon:\n\(b.joined(separator: "\n"))")
    }
}
