import FedSegTestSupport
import Foundation
import Testing

/// `fedseg-node serve` processes, one per host, against the coordinator daemon on its own host,
/// over TLS: what a tenant runs, started and crashed the way an operator would see it.
@Suite("fedseg-node processes", .serialized)
struct NodeProcessTests {
    /// One `fedseg-node serve` process, restartable, its output in a log file.
    final class NodeProcess: @unchecked Sendable {
        let state: URL
        let data: URL
        let launcher: [String]
        var process: Process?
        var starts = 0
        var logs: [URL] = []

        init(state: URL, data: URL, launcher: [String]) {
            self.state = state
            self.data = data
            self.launcher = launcher
        }

        func start(crashAt: String? = nil, extra: [String] = []) throws {
            starts += 1
            let log = state.deletingLastPathComponent().appendingPathComponent("node-\(starts).log")
            logs.append(log)
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            let process = Process()
            let arguments = [
                "serve", "--state-dir", state.path, "--data", data.path, "--embedder", "hashing", "--budget-epsilon", "100", "--poll-seconds", "0.3",
            ] + extra
            try Executables.configure(process, "fedseg-node", arguments, launcher: launcher)
            var environment = ProcessInfo.processInfo.environment
            environment["FEDSEG_TEST_NODE_CRASH_AT"] = crashAt
            process.environment = environment
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            self.process = process
        }

        var isRunning: Bool { process?.isRunning ?? false }

        /// All output of every start, oldest first.
        func log() -> String { logs.map { (try? String(contentsOf: $0, encoding: .utf8)) ?? "" }.joined() }
        func currentLog() -> String { logs.last.flatMap { try? String(contentsOf: $0, encoding: .utf8) } ?? "" }

        func kill9() {
            guard let process, process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        @discardableResult
        func stop() -> Int32? {
            guard let process else { return nil }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            return process.terminationStatus
        }
    }

    static func waitFor(_ what: String, seconds: Double = 60, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }

    @Test("three nodes on their own hosts take part in a local and a distributed run, through a node and a coordinator kill -9")
    func threeNodesTwoRuns() throws {
        let network = TestNetwork.make(nodes: 3)
        defer { network.tearDown() }
        print("NodeProcessTests: \(network.note)")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-nodes-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        // FEDSEG_KEEP_TEST_DIRS=1 keeps the logs and state for a look afterwards.
        defer { if ProcessInfo.processInfo.environment["FEDSEG_KEEP_TEST_DIRS"] == nil { try? FileManager.default.removeItem(at: work) } else { print("kept \(work.path)") } }

        // A dataset cut into three shards; every node holds the public catalogue.
        let generated = try Executables.run("client-sim", ["generate", "--out", work.appendingPathComponent("all").path, "--users", "450", "--segments", "3", "--seed", "4"])
        try #require(generated.status == 0, "\(generated.stderr)")
        let users = try String(contentsOf: work.appendingPathComponent("all/users.jsonl"), encoding: .utf8).split(separator: "\n")
        let items = try String(contentsOf: work.appendingPathComponent("all/items.jsonl"), encoding: .utf8)
        var shards: [URL] = []
        for n in 0..<3 {
            let shard = work.appendingPathComponent("node-\(n)/data", isDirectory: true)
            try FileManager.default.createDirectory(at: shard, withIntermediateDirectories: true)
            let mine = users.enumerated().filter { $0.offset % 3 == n }.map { String($0.element) }
            try (mine.joined(separator: "\n") + "\n").write(to: shard.appendingPathComponent("users.jsonl"), atomically: true, encoding: .utf8)
            try items.write(to: shard.appendingPathComponent("items.jsonl"), atomically: true, encoding: .utf8)
            shards.append(shard)
        }
        let itemRows = try items.split(separator: "\n").map { try Self.json(String($0)) }
        let catalog = work.appendingPathComponent("catalog.txt").path
        let phrases = work.appendingPathComponent("phrases.txt").path
        try itemRows.compactMap { $0["item"] as? String }.joined(separator: "\n").write(toFile: catalog, atomically: true, encoding: .utf8)
        try itemRows.compactMap { $0["title"] as? String }.joined(separator: "\n").write(toFile: phrases, atomically: true, encoding: .utf8)

        // The coordinator on its host, over TLS with a certificate for its address.
        let (cert, key) = try TestNetwork.certificate(in: work, addresses: [network.coordinatorHost, "127.0.0.1"])
        let coordinator = try RunningCoordinator(stateDirectory: work.appendingPathComponent("coordinator", isDirectory: true), totalEpsilon: 100)
        let serveArguments = ["--host", network.coordinatorHost, "--tls-cert", cert, "--tls-key", key]
        try coordinator.start(arguments: serveArguments, tls: true, launcher: network.coordinatorLauncher)
        defer { coordinator.stop() }
        let url = "https://\(network.coordinatorHost):\(coordinator.port)"
        let admin = ["--coordinator", url, "--admin-token-file", coordinator.adminTokenFile, "--ca-cert", cert]
        func fedseg(_ arguments: [String]) throws -> String {
            let result = try Executables.run("fedseg", arguments, launcher: network.coordinatorLauncher)
            try #require(result.status == 0, "fedseg \(arguments.prefix(2).joined(separator: " ")): \(result.stderr)")
            return result.stdout
        }

        // Each tenant: init, a token from the operator, enrol from its own host, serve.
        var nodes: [NodeProcess] = []
        defer { for node in nodes { node.stop() } }
        for n in 0..<3 {
            let state = work.appendingPathComponent("node-\(n)/state", isDirectory: true)
            let made = try Executables.run("fedseg-node", ["init", "--state-dir", state.path, "--json"])
            try #require(made.status == 0, "\(made.stderr)")
            let token = try fedseg(["clients", "token"] + admin).trimmingCharacters(in: .whitespacesAndNewlines)
            let enrolled = try Executables.run(
                "fedseg-node", ["enroll", "--state-dir", state.path, "--coordinator", url, "--token", token, "--id", "tenant-\(n)", "--ca-cert", cert, "--json"],
                launcher: network.nodeLauncher(n)
            )
            try #require(enrolled.status == 0, "enroll: \(enrolled.stdout) \(enrolled.stderr)")
            let pinned = try Self.json(enrolled.stdout)
            #expect(coordinator.log().contains(pinned["coordinator_signing_key"] as? String ?? "-"), "the pinned key is the one the coordinator logs")
            let node = NodeProcess(state: state, data: shards[n], launcher: network.nodeLauncher(n))
            // Node 2 dies the worst way in the distributed run: its masked input charged and stored, not sent.
            try node.start(crashAt: n == 2 ? "before-masked-input" : nil)
            nodes.append(node)
        }
        try Self.waitFor("three nodes ready") { nodes.allSatisfy { $0.log().contains("node ready") } }
        try Self.waitFor("three live clients") {
            let list = try JSONSerialization.jsonObject(with: Data(try fedseg(["clients", "list", "--json"] + admin).utf8)) as? [[String: Any]] ?? []
            return list.filter { $0["stale"] as? Bool == false && ($0["last_seen_at"] as? Double ?? 0) > 0 }.count == 3
        }

        // Distributed rounds give each stage a fifth of the deadline: 8 s leaves a restarted node time to come back.
        func startRun(_ mode: String, minimum: Int, deadline: Int) throws -> String {
            let started = try Self.json(try fedseg(
                ["run", "start", "--k", "3", "--epsilon", "4", "--embedder-id", "hashing-v1-d384-s0", "--dimension", "384", "--rounds", "2",
                 "--min-participants", "\(minimum)", "--round-deadline", "\(deadline)", "--privacy-mode", mode, "--catalog", catalog, "--seed-phrases", phrases, "--json"]
                    + admin
            ))
            return try #require(started["id"] as? String)
        }
        func waitForRun(_ id: String) throws {
            try Self.waitFor("run \(id) to finish", seconds: 240) {
                (try Self.json(try fedseg(["run", "status", "--id", id, "--json"] + admin))["status"] as? String) != "running"
            }
            let status = try Self.json(try fedseg(["run", "status", "--id", id, "--json"] + admin))
            #expect(status["status"] as? String == "completed", "run \(id): \(status)")
        }

        // Run 1, local: node 0 is killed (SIGKILL) once it sees the first round, and restarted;
        // node 1 kills itself after charging and storing its first answer, before sending it.
        nodes[1].stop()
        try nodes[1].start(crashAt: "before-send")
        let local = try startRun("local", minimum: 3, deadline: 30)
        try Self.waitFor("node 0 to see the first round") { nodes[0].log().contains("run=\(local)") }
        nodes[0].kill9()
        try nodes[0].start()
        try Self.waitFor("node 1 to crash before sending") { !nodes[1].isRunning }
        try nodes[1].start()
        try waitForRun(local)
        #expect(nodes[1].currentLog().contains("resent=true"), "the restarted node sends the stored answer: \(nodes[1].currentLog())")

        // Run 2, distributed: the coordinator is killed mid-round and restarted on the same port.
        let distributed = try startRun("distributed", minimum: 2, deadline: 40)
        try Self.waitFor("node 2 to crash before sending its masked input") { !nodes[2].isRunning }
        try nodes[2].start()
        try Self.waitFor("node 2 back") { nodes[2].currentLog().contains("node ready") }
        try Self.waitFor("a distributed round under way") { nodes[0].currentLog().contains("message=secaggShares") }
        coordinator.kill()
        Thread.sleep(forTimeInterval: 1)
        try coordinator.start(arguments: serveArguments, tls: true, launcher: network.coordinatorLauncher)
        try waitForRun(distributed)
        // Restarted inside the round it had charged: it sat the round out and resent the stored masked input.
        #expect(nodes[2].currentLog().contains("restarted mid-round") && nodes[2].currentLog().contains("message=secaggMaskedInput outcome=accepted resent=true"), "\(nodes[2].currentLog())")
        // The run's k: 3, or fewer where a segment under 2% of the released counts was dropped (450
        // users at ε = 4 through two restarts sometimes settle in one segment); what matters here is
        // that every node keeps the model the coordinator published.
        let k = try #require(try Self.json(try fedseg(["run", "status", "--id", distributed, "--json"] + admin))["k"] as? Int)
        #expect((1...3).contains(k))
        try Self.waitFor("every node to keep the distributed run's model") { nodes.allSatisfy { $0.log().contains("run=\(distributed) segments=\(k)") } }

        // On each node: its users' segments, a cold-start recommendation, a verified ledger.
        let audit = try Self.json(try fedseg(["privacy", "audit", "--json"] + admin))
        let populations = try #require(audit["populations"] as? [[String: Any]])
        func releases(_ run: String, in populations: [[String: Any]]) -> [String] {
            populations.flatMap { ($0["series"] as? [[String: Any]] ?? []).compactMap { $0["release_id"] as? String } }.filter { $0.hasPrefix(run + "/") }
        }
        let coordinatorReleases = Set(releases(local, in: populations.filter { $0["population"] as? String == "run:\(local)" }))
            .union(releases(distributed, in: populations.filter { $0["population"] as? String == "run:\(distributed)" }))
        #expect(audit["verified"] as? Bool == true && coordinatorReleases.count >= 6, "\(coordinatorReleases)")
        var charged: [String: Int] = [:]
        for (n, node) in nodes.enumerated() {
            let export = work.appendingPathComponent("node-\(n)/segments.jsonl").path
            let segments = try Executables.run("fedseg-node", ["segments", "--state-dir", node.state.path, "--export", export, "--json"])
            try #require(segments.status == 0, "\(segments.stderr)")
            let report = try Self.json(segments.stdout)
            #expect(report["run_id"] as? String == distributed && (report["sizes"] as? [Int])?.reduce(0, +) == 150)
            #expect(try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n").count == 150)
            let cold = try Executables.run("fedseg-node", ["recommend", "--state-dir", node.state.path, "--text", "a new reader", "--k", "5", "--json"])
            try #require(cold.status == 0, "\(cold.stderr)")
            #expect((try Self.json(cold.stdout)["items"] as? [[String: Any]])?.count == 5)

            let nodeAudit = try Executables.run("fedseg-node", ["privacy", "audit", "--state-dir", node.state.path, "--json"])
            let nodeLedger = try Self.json(nodeAudit.stdout)
            #expect(nodeAudit.status == 0 && nodeLedger["verified"] as? Bool == true, "node \(n): \(nodeAudit.stdout)")
            let mine = releases(local, in: nodeLedger["populations"] as? [[String: Any]] ?? [])
                + releases(distributed, in: nodeLedger["populations"] as? [[String: Any]] ?? [])
            // Charged once per release however often the node or the coordinator restarted, and
            // only for releases of these two runs.
            #expect(Set(mine).count == mine.count, "node \(n) charged a release twice: \(mine)")
            #expect((nodeLedger["records"] as? Int) == mine.count, "node \(n) charged something outside the two runs")
            for release in mine { charged[release, default: 0] += 1 }
            #expect(node.stop() == 0, "SIGTERM stops node \(n) cleanly")
            #expect(node.currentLog().contains("node stopped"))
        }
        // Every release the coordinator charged was charged by the nodes whose answers made it.
        for release in coordinatorReleases {
            #expect((charged[release] ?? 0) >= 2, "\(release) charged by \(charged[release] ?? 0) node(s)")
        }
        try expectAnswersDocumented(coordinator, including: [
            "POST /v1/enroll 200", "POST /v1/rounds/{round}/updates 202", "GET /v1/rounds/{round}/secagg 200", "GET /v1/models/latest 200",
        ])
    }

    @Test("client-sim --join and a real node share one run an operator starts")
    func simulatorJoinsOperatorRun() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-join-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("data", isDirectory: true)
        let generated = try Executables.run("client-sim", ["generate", "--out", data.path, "--users", "240", "--segments", "3", "--seed", "5"])
        try #require(generated.status == 0, "\(generated.stderr)")
        let coordinator = try RunningCoordinator(stateDirectory: work.appendingPathComponent("coordinator", isDirectory: true), totalEpsilon: 100)
        try coordinator.start()
        defer { coordinator.stop() }
        let admin = ["--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile]

        let state = work.appendingPathComponent("node/state", isDirectory: true)
        #expect(try Executables.run("fedseg-node", ["init", "--state-dir", state.path]).status == 0)
        let token = try Executables.run("fedseg", ["clients", "token"] + admin).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let enrolled = try Executables.run("fedseg-node", ["enroll", "--state-dir", state.path, "--coordinator", coordinator.url, "--token", token])
        try #require(enrolled.status == 0, "\(enrolled.stderr)")
        let node = NodeProcess(state: state, data: data, launcher: [])
        try node.start(extra: ["--http-port", "0"])
        defer { node.stop() }
        try Self.waitFor("the node's health port") { node.log().contains("health and metrics") }
        let address = try #require(node.log().split(separator: "\n").first { $0.contains("health and metrics") }?
            .split(separator: " ").first { $0.hasPrefix("address=") }?.dropFirst("address=".count))
        #expect(try RunningCoordinator.get("\(address)/healthz") == "ok\n")
        // A second serve on the same state directory is refused, naming the first, before it
        // loads anything.
        let second = try Executables.run("fedseg-node", ["serve", "--state-dir", state.path, "--data", data.path, "--embedder", "hashing"])
        #expect(second.status == 1 && second.stderr.contains("is in use by another process (pid") && second.stderr.contains("fedseg-node serve"), "\(second.stderr)")
        #expect(!second.stderr.contains("Usage:"))

        let report = work.appendingPathComponent("report.json").path
        let simulator = try Executables.start("client-sim", [
            "run", "--join", "--join-timeout", "120", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile,
            "--data", data.path, "--clients", "3", "--embedder", "hashing", "--epsilon", "4", "--work-dir", work.appendingPathComponent("sim").path,
            "--report", report,
        ])
        try Self.waitFor("the node and three simulated clients enrolled and live") {
            node.log().contains("node ready")
                && ((try? JSONSerialization.jsonObject(with: Data(try Executables.run("fedseg", ["clients", "list", "--json"] + admin).stdout.utf8))) as? [[String: Any]])?
                    .filter { $0["status"] as? String == "active" }.count == 4
        }
        let started = try Executables.run("fedseg", [
            "run", "start", "--k", "3", "--epsilon", "4", "--embedder-id", "hashing-v1-d384-s0", "--min-participants", "4", "--round-deadline", "20", "--json",
        ] + admin)
        try #require(started.status == 0, "\(started.stderr)")
        let runID = try #require(try Self.json(started.stdout)["id"] as? String)
        let finished = simulator.wait()
        #expect(finished.status == 0, "\(finished.stdout)")
        let joined = try Self.json(try String(contentsOfFile: report, encoding: .utf8))
        #expect(joined["run_id"] as? String == runID && joined["ledgers_agree"] as? Bool == true, "\(joined)")
        // Every committed round had the node's answer and the three simulated clients'.
        #expect((joined["participants_per_round"] as? [Int])?.allSatisfy { $0 == 4 } == true, "\(joined["participants_per_round"] ?? "-")")
        let status = try Self.json(try Executables.run("fedseg", ["run", "status", "--id", runID, "--json"] + admin).stdout)
        let k = try #require(status["k"] as? Int, "\(status)")
        #expect((1...3).contains(k), "3 segments, or fewer where one under 2% was dropped: \(status)")
        try Self.waitFor("the node to keep the run's model") { node.log().contains("run=\(runID) segments=\(k)") }
        let metrics = try RunningCoordinator.get("\(address)/metrics")
        #expect(metrics.contains(#"fedseg_node_answers_total{outcome="accepted"}"#) && metrics.contains("fedseg_node_users 240"), "\(metrics)")

        // New users in the data directory are loaded (and embedded) by the running node.
        let users = data.appendingPathComponent("users.jsonl")
        let handle = try FileHandle(forWritingTo: users)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"user": "newcomer", "texts": ["a brand new reader"], "items": []}"#.utf8 + [0x0A]))
        try handle.close()
        try Self.waitFor("the node to reload its data") { node.log().contains("users=241") && node.log().contains("data reloaded") }
        let segments = try Executables.run("fedseg-node", ["segments", "--state-dir", state.path, "--json"])
        #expect((try Self.json(segments.stdout)["users"] as? Int) == 241, "\(segments.stdout) \(segments.stderr)")
        #expect(try Executables.run("fedseg-node", ["recommend", "--state-dir", state.path, "--user", "newcomer"]).stderr.contains("no catalogue"))
    }
}
