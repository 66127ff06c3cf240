import FedSegTestSupport
import Foundation
import Testing

@Suite("fedseg clients")
struct ClientsCLITests {
    @Test("token, add, list and revoke against a state directory")
    func lifecycle() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clients-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Only `coordinator init` makes a state directory: a mistyped path is refused, not created.
        let typo = try Executables.run("fedseg", ["clients", "token", "--state-dir", dir.path, "--ttl", "60"])
        #expect(typo.status != 0 && typo.stderr.contains("not a coordinator state directory") && typo.stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.path), "nothing was created")
        #expect(try Executables.run("coordinator", ["init", "--state-dir", dir.path]).status == 0)
        let token = try Executables.run("fedseg", ["clients", "token", "--state-dir", dir.path, "--ttl", "60"])
        #expect(token.status == 0)
        #expect(token.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 64)
        let key = String(repeating: "ab", count: 32)
        #expect(try Executables.run("fedseg", ["clients", "add", "--state-dir", dir.path, "--id", "c1", "--signing-key", key, "--kx-key", key]).status == 0)
        let duplicate = try Executables.run("fedseg", ["clients", "add", "--state-dir", dir.path, "--id", "c1", "--signing-key", key, "--kx-key", key])
        #expect(duplicate.status == 1 && duplicate.stderr.contains("already enrolled") && !duplicate.stderr.contains("Usage:"))
        let short = try Executables.run("fedseg", ["clients", "add", "--state-dir", dir.path, "--id", "c2", "--signing-key", "abcd", "--kx-key", key])
        #expect(short.status != 0 && !short.stderr.contains("Usage:"))
        #expect(try Executables.run("fedseg", ["clients", "revoke", "--state-dir", dir.path, "--id", "c1"]).status == 0)
        let list = try Executables.run("fedseg", ["clients", "list", "--state-dir", dir.path, "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(rows?.count == 1 && rows?.first?["status"] as? String == "revoked")
        let mode = try FileManager.default.attributesOfItem(atPath: dir.path)[.posixPermissions] as? Int
        #expect(mode == 0o700)
    }

    @Test("while a daemon serves a state directory, a second daemon and offline writes are refused, naming it; the admin API still works")
    func lockedWhileServed() throws {
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        defer { _ = coordinator.stop() }
        let state = coordinator.stateDirectory.path
        let second = try Executables.run("coordinator", ["serve", "--state-dir", state, "--port", "0"])
        #expect(second.status != 0 && second.stderr.contains("in use by another process") && second.stderr.contains("coordinator serve"), "\(second.stderr)")
        let offline = try Executables.run("fedseg", ["clients", "token", "--state-dir", state])
        #expect(offline.status != 0 && offline.stderr.contains("--coordinator URL"), "\(offline.stderr)")
        let remote = try Executables.run("fedseg", ["clients", "token", "--coordinator", coordinator.url, "--admin-token-file", coordinator.adminTokenFile])
        #expect(remote.status == 0 && remote.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 64, "\(remote.stderr)")
        // Reading is fine while it runs.
        #expect(try Executables.run("fedseg", ["clients", "list", "--state-dir", state]).status == 0)
    }

    @Test("errors a person can act on: a coordinator that is down, a URL without a scheme, a missing token file, a port in use, a TOML value of the wrong type; --json errors are JSON; no usage block after failures")
    func actionableErrors() throws {
        let coordinator = try RunningCoordinator()
        try coordinator.start()
        defer { _ = coordinator.stop() }
        let token = coordinator.adminTokenFile
        let down = "http://127.0.0.1:\(try RunningCoordinator.freePort())"

        let unreachable = try Executables.run("fedseg", ["clients", "list", "--coordinator", down, "--admin-token-file", token])
        #expect(unreachable.status == 1 && unreachable.stderr.contains("cannot connect to the coordinator at \(down)"), "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("Usage:") && !unreachable.stderr.contains("NIO") && !unreachable.stderr.contains("HTTPClientError"))

        let asJSON = try Executables.run("fedseg", ["clients", "list", "--coordinator", down, "--admin-token-file", token, "--json"])
        let error = (try JSONSerialization.jsonObject(with: Data(asJSON.stdout.utf8)) as? [String: Any])?["error"] as? [String: Any]
        #expect(asJSON.status == 1 && error?["code"] as? String == "unreachable" && (error?["message"] as? String)?.contains("cannot connect") == true, "\(asJSON.stdout)")

        let schemeless = try Executables.run("fedseg", ["run", "status", "--coordinator", "127.0.0.1:7700", "--admin-token-file", token])
        #expect(schemeless.status != 0 && schemeless.stderr.contains("http://HOST:PORT"), "\(schemeless.stderr)")

        let noToken = try Executables.run("fedseg", ["clients", "list", "--coordinator", coordinator.url, "--admin-token-file", "/nonexistent/admin.token"])
        #expect(noToken.status == 1 && noToken.stderr.contains("cannot read --admin-token-file /nonexistent/admin.token") && !noToken.stderr.contains("Usage:"), "\(noToken.stderr)")

        // A refusal by the coordinator names the rule, as JSON under --json.
        let refused = try Executables.run("fedseg", ["run", "start", "--coordinator", coordinator.url, "--admin-token-file", token, "--k", "2", "--epsilon", "4", "--json"])
        let refusal = (try JSONSerialization.jsonObject(with: Data(refused.stdout.utf8)) as? [String: Any])?["error"] as? [String: Any]
        #expect(refused.status == 1 && refusal?["code"] as? String == "invalid_field", "\(refused.stdout) \(refused.stderr)")

        // The daemon: a port in use is named; a TOML value of the wrong type names its key and type.
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("cli-errors-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: other) }
        let initialised = try Executables.run("coordinator", ["init", "--state-dir", other.path, "--json"])
        let created = try JSONSerialization.jsonObject(with: Data(initialised.stdout.utf8)) as? [String: String]
        #expect(initialised.status == 0 && created?["signing_key"]?.count == 64 && created?["state_dir"] == other.path, "\(initialised.stdout)")
        let inUse = try Executables.run("coordinator", ["serve", "--state-dir", other.path, "--port", "\(coordinator.port)"])
        #expect(inUse.status == 1 && inUse.stderr.contains("cannot listen on 127.0.0.1:\(coordinator.port): the address is in use"), "\(inUse.stderr)")
        let config = other.appendingPathComponent("bad.toml")
        try "[listen]\nport = \"seventy\"\n".write(to: config, atomically: true, encoding: .utf8)
        let badType = try Executables.run("coordinator", ["serve", "--config", config.path, "--state-dir", other.path])
        #expect(badType.status != 0 && badType.stderr.contains("listen.port must be an integer"), "\(badType.stderr)")

        // Token and revoke print JSON when asked.
        let issued = try Executables.run("fedseg", ["clients", "token", "--coordinator", coordinator.url, "--admin-token-file", token, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any]
        #expect((object?["token"] as? String)?.count == 64 && object?["expires_at"] is Double, "\(issued.stdout)")
        try expectAnswersDocumented(coordinator, including: ["POST /admin/v1/runs 422", "POST /admin/v1/clients/tokens 200"])
    }
}
