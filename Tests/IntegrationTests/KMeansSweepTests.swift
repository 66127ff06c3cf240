import FedSegMath
import FedSegTestSupport
import Foundation
import Testing

@Suite("fedseg kmeans sweep")
struct KMeansSweepTests {
    @Test("finds the planted k in embeddings read from JSON Lines")
    func plantedK() throws {
        var rng = SeededRandom(seed: 77)
        let centres = rng.normalMatrix(rows: 4, cols: 16)
        var lines: [String] = []
        for i in 0..<600 {
            let c = i % 4
            let v = (0..<16).map { centres[c, $0] + Float(0.05 * rng.nextStandardNormal()) }
            lines.append("{\"embedding\": [\(v.map { String($0) }.joined(separator: ","))]}")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString).jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try Executables.run("fedseg", ["kmeans", "sweep", "--input", file.path, "--k-min", "2", "--k-max", "7", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["best_k_by_silhouette"] as? Int == 4)
        #expect((object["rows"] as? [Any])?.count == 6)
    }

    @Test("a malformed line is reported with its number, exit status 1 and no usage block")
    func badInput() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString).jsonl")
        try "{\"embedding\": [1, 2]}\n{\"embedding\": [1]}\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try Executables.run("fedseg", ["kmeans", "sweep", "--input", file.path, "--k-max", "2"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2") && !result.stderr.contains("Usage:"), "\(result.stderr)")
    }
}
