import FedSegTestSupport
import Foundation
import Testing

/// The dashboard in a real browser: a `coordinator serve` process after a federated run and with a
/// second run waiting for clients, headless Chromium (Debian's package, which `make test`
/// installs) signing in through the form, opening every page, watching the live section refresh
/// and pressing Stop. Screenshots go to `.build/dashboard-screenshots/`.
@Suite("Dashboard in headless Chromium", .serialized)
struct DashboardBrowserTests {
    static var chromium: String? {
        let candidates = [ProcessInfo.processInfo.environment["FEDSEG_CHROMIUM"], "/usr/bin/chromium", "/usr/bin/chromium-browser"]
        return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test("sign in, every page with its content, the live refresh, an HttpOnly cookie, Stop through the form")
    func browser() throws {
        guard let chromium = Self.chromium else {
            Issue.record("Chromium is missing, so the dashboard was not checked in a browser: `scripts/setup --browser` (part of `make test`) installs Debian's chromium package; FEDSEG_CHROMIUM names another binary")
            return
        }
        let data = try FederationTests.generate(users: 1_200)
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        defer { _ = coordinator.stop() }
        let token = try String(contentsOfFile: coordinator.adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let chart = coordinator.stateDirectory.appendingPathComponent("report.svg")
        let (_, report) = try FederationTests.simulate(coordinator, data: data, clients: 4, extra: ["--report-svg", chart.path])
        // The simulator's chart: every segment's size and every model's recall, labelled.
        let svg = try String(contentsOf: chart, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("Segment sizes") && svg.contains("Recall@10 per model"))
        for row in report["recommendation"] as? [[String: Any]] ?? [] { #expect(svg.contains(">\(row["model"] as? String ?? "?")</text>"), "\(row)") }
        #expect(svg.components(separatedBy: "<text").count - 1 >= 3 + 3 * ((report["segments"] as? [Any])?.count ?? 0))
        let finished = try #require(report["run_id"] as? String)

        // A second run that waits for a node which enrols (so the run has a live client to plan
        // for) but never serves: its first round stays open.
        let node = coordinator.stateDirectory.appendingPathComponent("idle-node", isDirectory: true)
        #expect(try Executables.run("fedseg-node", ["init", "--state-dir", node.path]).status == 0)
        let enrolment = try Executables.run("fedseg", ["clients", "token", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile])
        let enrolled = try Executables.run(
            "fedseg-node", ["enroll", "--state-dir", node.path, "--coordinator", coordinator.url, "--token", enrolment.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "--id", "idle-node"]
        )
        try #require(enrolled.status == 0, "\(enrolled.stderr)")
        let last = try #require(try JSONSerialization.jsonObject(with: Data(RunningCoordinator.get(coordinator.url + "/admin/v1/runs/current", token: token).utf8)) as? [String: Any])
        let parameters: [String: Any] = [
            "k": 3, "epsilon": 1, "delta": 1e-6, "embedder_id": last["embedder_id"] as Any, "dimension": last["dimension"] as Any,
            "initialization": "random", "min_participants": 1, "round_deadline_seconds": 600,
        ]
        let started = try RunningCoordinator.request(
            coordinator.url + "/admin/v1/runs", method: "POST", token: token, body: try JSONSerialization.data(withJSONObject: parameters)
        )
        #expect(started.status == 201, "\(started.body)")

        let screenshots = Fixtures.repositoryRoot.appendingPathComponent(".build/dashboard-screenshots", isDirectory: true)
        try? FileManager.default.removeItem(at: screenshots)
        let result = try Executables.runCommand(
            "/usr/bin/env", ["python3", Fixtures.repositoryRoot.appendingPathComponent("scripts/dashboard-browser").path,
                             "--base", coordinator.url, "--token-file", coordinator.adminTokenFile, "--out", screenshots.path,
                             "--chromium", chromium, "--stop-run"]
        )
        try #require(result.status == 0, "dashboard-browser failed: \(result.stderr)\n\(coordinator.log().suffix(2000))")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(seen["redirected_to"] as? String == "/dashboard/login", "a browser without a session is sent to the sign-in form")
        #expect(seen["after_login"] as? String == "/dashboard")
        #expect(seen["cookie_visible_to_scripts"] as? String == "", "the session cookie is HttpOnly")
        #expect((seen["console_problems"] as? [String])?.isEmpty == true, "console errors (a CSP violation?): \(seen["console_problems"] ?? "")")
        let pages = try #require(seen["pages"] as? [String: [String: Any]])
        func text(_ path: String) -> String { pages[path]?["text"] as? String ?? "" }

        let runs = text("/dashboard")
        #expect(runs.contains(finished) && runs.contains("completed"), "the finished run is listed:\n\(runs)")
        #expect(runs.contains(try Regex("Round [0-9]+ open")) && runs.contains("expected clients answered") && runs.contains("closes in"), "the waiting run's open round:\n\(runs)")
        #expect(pages["/dashboard"]?["live_refreshed"] as? Bool == true, "the live section refreshed itself")

        let privacy = text("/dashboard/privacy")
        #expect(privacy.contains("Ledger verified") && privacy.contains("all-users") && privacy.contains("run:\(finished)"), "\(privacy)")
        #expect(privacy.contains("budget all-users"), "the chart's budget line is labelled")
        #expect(pages["/dashboard/privacy"]?["svg_charts"] as? Int == 1)

        let segments = text("/dashboard/segments")
        #expect(segments.contains("these are the segments of run \(finished)") && segments.contains("(noisy)"), "the waiting run has none yet, so the finished run's:\n\(segments)")
        #expect(!segments.contains("≈ -"), "no negative size on screen")

        let clients = text("/dashboard/clients")
        #expect(clients.contains("idle-node") && clients.contains("revoked"), "the simulation's clients (revoked when it ended) and the idle node:\n\(clients)")
        #expect(clients.contains("Rejected updates by reason"))

        #expect(seen["stop_button"] as? Bool == true)
        #expect((seen["after_stop"] as? String)?.contains("stopped") == true, "\(seen["after_stop"] ?? "")")
        let current = try RunningCoordinator.get(coordinator.url + "/admin/v1/runs/current", token: token)
        #expect(current.contains(#""status" : "stopped""#) && current.contains("stopped from the dashboard"), "\(current)")
        for name in ["login", "dashboard", "dashboard-privacy", "dashboard-segments", "dashboard-clients", "dashboard-stopped"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: screenshots.appendingPathComponent("\(name).png").path)[.size] as? Int) ?? 0
            #expect(size > 10_000, "screenshot \(name).png (\(size) bytes)")
        }
        try expectAnswersDocumented(coordinator, including: [
            "POST /dashboard/login 303", "GET /dashboard 200", "GET /dashboard/privacy 200", "GET /dashboard/segments 200",
            "GET /dashboard/clients 200", "GET /dashboard/live/run 200", "POST /dashboard/runs/stop 303",
        ])
    }
}
