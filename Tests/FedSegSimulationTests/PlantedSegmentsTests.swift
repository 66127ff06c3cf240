import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegNode
import FedSegSimulation
import Foundation
import Testing

@Suite("Planted-segment generator and dataset files")
struct PlantedSegmentsTests {
    @Test("the same seed gives the same dataset; files round-trip")
    func deterministicAndRoundTrip() throws {
        let a = PlantedSegments(users: 300, segments: 5, seed: 7).generate()
        let b = PlantedSegments(users: 300, segments: 5, seed: 7).generate()
        #expect(a.users == b.users && a.items == b.items)
        #expect(PlantedSegments(users: 300, segments: 5, seed: 8).generate().users != a.users)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("planted-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try a.write(to: dir)
        let loaded = try Dataset.load(from: dir)
        #expect(loaded.users == a.users && loaded.items == a.items)
    }

    @Test("every user has a segment, texts and 5-20 known, distinct items")
    func shape() {
        let data = PlantedSegments(users: 500, segments: 8, seed: 3).generate()
        let known = Set(data.items.map(\.item))
        #expect(data.items.count == 8 * 60)
        for user in data.users {
            #expect(user.segment != nil)
            #expect((2...4).contains(user.texts.count))
            #expect((5...20).contains(user.items.count))
            #expect(Set(user.items).count == user.items.count)
            #expect(user.items.allSatisfy(known.contains))
        }
        #expect(Set(data.users.compactMap(\.segment)).count == 8)
    }

    @Test("segments are recoverable from hashing embeddings of profile texts")
    func recoverable() throws {
        let data = PlantedSegments(users: 2000, segments: 8, seed: 5).generate()
        let index = data.itemIndex
        let embedder = HashingEmbedder(dimension: 256, seed: 1)
        let vectors = try embedder.embed(data.users.map { data.profileText(of: $0, itemIndex: index) })
        let truth = data.users.map { Int32($0.segment!.dropFirst())! }
        let fit = KMeans.fit(vectors, .init(k: 8, restarts: 3, seed: 2))
        #expect(Metrics.adjustedRandIndex(fit.labels, truth) > 0.9)
    }

    @Test("a corrupt line is reported with its file and line")
    func corrupt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("corrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "{\"user\": \"u1\", \"texts\": [], \"items\": []}\n{\"user\": 5}\n".write(to: dir.appendingPathComponent("users.jsonl"), atomically: true, encoding: .utf8)
        try "".write(to: dir.appendingPathComponent("items.jsonl"), atomically: true, encoding: .utf8)
        #expect { try Dataset.load(from: dir) } throws: { error in
            (error as? Dataset.Failure)?.line == 2 && (error as? Dataset.Failure)?.file == "users.jsonl"
        }
    }
}
