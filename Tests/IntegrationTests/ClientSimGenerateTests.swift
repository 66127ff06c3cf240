import FedSegTestSupport
import Foundation
import Testing

@Suite("client-sim generate")
struct ClientSimGenerateTests {
    @Test("writes users.jsonl and items.jsonl with planted segments, the same for the same seed")
    func generate() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gen-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let a = base.appendingPathComponent("a"), b = base.appendingPathComponent("b")
        for dir in [a, b] {
            let result = try Executables.run("client-sim", ["generate", "--out", dir.path, "--users", "200", "--segments", "4", "--seed", "9"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let users = try String(contentsOf: a.appendingPathComponent("users.jsonl"), encoding: .utf8)
        #expect(users.split(separator: "\n").count == 200)
        #expect(users == (try String(contentsOf: b.appendingPathComponent("users.jsonl"), encoding: .utf8)))
        let first = try JSONSerialization.jsonObject(with: Data(users.split(separator: "\n")[0].utf8)) as? [String: Any]
        #expect((first?["segment"] as? String)?.hasPrefix("s") == true)
        let bad = try Executables.run("client-sim", ["generate", "--out", a.path, "--noise", "2"])
        #expect(bad.status == 64)
    }
}
