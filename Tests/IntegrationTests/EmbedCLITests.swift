import FedSegTestSupport
import Foundation
import Testing

@Suite("fedseg embed")
struct EmbedCLITests {
    private func write(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("embed-\(UUID().uuidString).jsonl")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test("writes one unit vector per line in input order, the same as embedding one by one")
    func embeds() throws {
        let file = try write("{\"text\": \"jazz piano at night\"}\n{\"text\": \"\"}\n{\"text\": \"hiking boots\"}\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let all = try Executables.run("fedseg", ["embed", "--input", file.path, "--batch-size", "2"])
        #expect(all.status == 0, "\(all.stderr)")
        let lines = all.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        let vectors = try lines.map { line -> [Double] in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return try #require(object?["embedding"] as? [Double])
        }
        for vector in vectors {
            #expect(vector.count == 384)
            #expect(abs(vector.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
        }
        let lastAlone = try write("{\"text\": \"hiking boots\"}\n")
        defer { try? FileManager.default.removeItem(at: lastAlone) }
        let single = try Executables.run("fedseg", ["embed", "--input", lastAlone.path])
        let object = try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as? [String: Any]
        let alone = try #require(object?["embedding"] as? [Double])
        let cosine = zip(alone, vectors[2]).reduce(0) { $0 + $1.0 * $1.1 }
        #expect(cosine > 0.99999)
    }

    @Test("a bad line is reported by number, without a usage block (the data is wrong, not the command)")
    func badLine() throws {
        let file = try write("{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try Executables.run("fedseg", ["embed", "--input", file.path, "--embedder", "hashing"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2") && !result.stderr.contains("Usage:"), "\(result.stderr)")
    }

    @Test("--json prints one object with the embedder, the dimension and every embedding; a missing input file is named")
    func jsonOutput() throws {
        let file = try write("{\"text\": \"first\"}\n{\"text\": \"second\"}\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try Executables.run("fedseg", ["embed", "--input", file.path, "--embedder", "hashing", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let embeddings = try #require(object?["embeddings"] as? [[Double]])
        #expect(result.status == 0 && embeddings.count == 2 && embeddings[0].count == object?["dimension"] as? Int)
        #expect((object?["embedder"] as? String)?.hasPrefix("hashing-v1-") == true)
        let missing = try Executables.run("fedseg", ["embed", "--input", "/nonexistent/texts.jsonl", "--embedder", "hashing", "--json"])
        let error = (try JSONSerialization.jsonObject(with: Data(missing.stdout.utf8)) as? [String: Any])?["error"] as? [String: Any]
        #expect(missing.status == 1 && (error?["message"] as? String)?.contains("cannot read --input /nonexistent/texts.jsonl") == true, "\(missing.stdout)")
    }

    @Test("a missing model falls back to hashing and says so on stderr")
    func fallback() throws {
        let file = try write("{\"text\": \"hello\"}\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try Executables.run("fedseg", ["embed", "--input", file.path, "--model-dir", "/nonexistent"])
        #expect(result.status == 0)
        #expect(result.stderr.contains("falling back to the hashing embedder"))
        #expect(result.stdout.hasPrefix("{\"embedding\":["))
    }
}
