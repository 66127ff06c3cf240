import FedSegTestSupport
import Foundation
import Testing

@Suite("fedseg clients")
struct ClientsCLITests {
    @Test("token, add, list and revoke against a state directory")
    func lifecycle() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clients-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
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
}
