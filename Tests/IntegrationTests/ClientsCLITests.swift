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
        #expect(duplicate.status == 64 && duplicate.stderr.contains("already enrolled"))
        let short = try Executables.run("fedseg", ["clients", "add", "--state-dir", dir.path, "--id", "c2", "--signing-key", "abcd", "--kx-key", key])
        #expect(short.status == 64)
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
}
