@testable import FedSegEmbedding
import FedSegMath
import Foundation
import Testing

@Suite("MiniLM encoder against sentence-transformers")
struct MiniLMTests {
    static let embedder: MiniLMEmbedder? = try? MiniLMEmbedder(files: ModelUnderTest.files, batchSize: 8)

    static func compare(_ vector: [Float], _ reference: [Float]) -> (cosine: Double, maxAbs: Double) {
        var dot = 0.0, a = 0.0, b = 0.0, worst = 0.0
        for (x, y) in zip(vector, reference) {
            dot += Double(x) * Double(y)
            a += Double(x) * Double(x)
            b += Double(y) * Double(y)
            worst = max(worst, abs(Double(x) - Double(y)))
        }
        return (dot / (a.squareRoot() * b.squareRoot()), worst)
    }

    @Test("the model loads from the cache dir")
    func loads() throws {
        let embedder = try #require(Self.embedder, "MiniLM files missing in \(ModelUnderTest.files.directory.path): run scripts/setup")
        #expect(embedder.dimension == 384)
    }

    @Test("every reference embedding within cosine 0.9999 and 1e-4, batched in any order")
    func embeddingsMatch() throws {
        let embedder = try #require(Self.embedder)
        let cases = MiniLMReference.all
        let vectors = try embedder.embed(cases.map(\.text))
        var worstCosine = 1.0
        var worstAbs = 0.0
        for (i, reference) in cases.enumerated() {
            #expect(reference.embedding.count == 384)
            let (cosine, maxAbs) = Self.compare(vectors.row(i), reference.embedding)
            #expect(cosine >= 0.9999, "\(reference.testDescription): cosine \(cosine)")
            #expect(maxAbs <= 1e-4, "\(reference.testDescription): max abs diff \(maxAbs)")
            worstCosine = min(worstCosine, cosine)
            worstAbs = max(worstAbs, maxAbs)
        }
        // One text alone gives the same vector as inside a batch.
        let single = try embedder.embed([cases[5].text])
        let (cosine, _) = Self.compare(single.row(0), vectors.row(5))
        #expect(cosine > 0.999999)
        print("MiniLM vs sentence-transformers: worst cosine \(worstCosine), worst max-abs \(worstAbs)")
    }

    @Test("a missing model is a clear error and the factory falls back to hashing, saying so")
    func fallback() {
        let missing = MiniLMModelFiles(directory: URL(fileURLWithPath: "/nonexistent/minilm"))
        #expect(throws: EmbeddingError.self) { try MiniLMEmbedder(files: missing) }
        let (embedder, warning) = EmbedderChoice.minilm.make(files: missing)
        #expect(embedder is HashingEmbedder)
        #expect(warning?.contains("falling back to the hashing embedder") == true)
    }
}

@Suite("Hashing embedder")
struct HashingEmbedderTests {
    @Test("unit norm, deterministic, seed-dependent, and similar texts are closer")
    func properties() throws {
        let embedder = HashingEmbedder(dimension: 128, seed: 7)
        let texts = ["hiking boots for muddy trails", "waterproof hiking boots and trails", "jazz piano at night", ""]
        let a = try embedder.embed(texts)
        let b = try HashingEmbedder(dimension: 128, seed: 7).embed(texts)
        #expect(a == b)
        let c = try HashingEmbedder(dimension: 128, seed: 8).embed(texts)
        #expect(a.row(0) != c.row(0))
        for (r, norm) in a.rowNorms().enumerated() {
            #expect(r == 3 ? norm == 0 : abs(norm - 1) < 1e-5)
        }
        #expect(BLAS.dot(a.row(0), a.row(1)) > BLAS.dot(a.row(0), a.row(2)) + 0.2)
    }

    @Test("fitted idf down-weights features every document shares")
    func idf() throws {
        var embedder = HashingEmbedder(dimension: 256, seed: 1)
        let corpus = (0..<50).map { "common words here plus topic\($0 % 5)" }
        let before = try embedder.embed(["common words here plus topic1", "common words here plus topic2"])
        embedder.fitInverseDocumentFrequency(corpus)
        let after = try embedder.embed(["common words here plus topic1", "common words here plus topic2"])
        #expect(BLAS.dot(after.row(0), after.row(1)) < BLAS.dot(before.row(0), before.row(1)))
        #expect(embedder.identifier.hasSuffix("-idf"))
    }
}

@Suite("Vectorised erf")
struct VectorErfTests {
    @Test("within 2e-6 of libm's erf over [-12, 12]")
    func accuracy() {
        var worst = 0.0
        var x = -12.0
        while x <= 12 {
            let approximate = Double(VectorErf.erf(Float(x)))
            worst = max(worst, abs(approximate - Foundation.erf(Double(Float(x)))))
            x += 0.0005
        }
        #expect(worst < 2e-6, "max error \(worst)")
    }
}

@Suite("Vectorised exp")
struct VectorExpTests {
    @Test("within 2 ulp of libm's exp over softmax's range [-87, 0], finite and ordered at the clamps")
    func accuracy() {
        var worstUlps: Float = 0
        var x: Float = -87
        while x <= 0.5 {
            let exact = Foundation.exp(Double(x))
            let approximate = VectorExp.exp(x)
            worstUlps = max(worstUlps, Float(abs(Double(approximate) - exact)) / Float(exact).ulp)
            x += 0.0007
        }
        #expect(worstUlps <= 2, "max error \(worstUlps) ulp")
        #expect(VectorExp.exp(0) == 1)
        #expect(VectorExp.exp(-1000) > 0 && VectorExp.exp(-1000) < 1.3e-38, "no zero and no subnormal below the clamp")
        #expect(VectorExp.exp(1000).isFinite)
        #expect(VectorExp.exp(-1) < VectorExp.exp(-0.999))
    }
}

@Suite("MiniLM embedder edge cases")
struct MiniLMEdgeCaseTests {
    @Test("no texts give an empty matrix")
    func empty() throws {
        let embedder = try #require(MiniLMTests.embedder)
        let result = try embedder.embed([])
        #expect(result.rows == 0 && result.cols == 384)
    }
}

/// Counts what reaches the wrapped embedder.
final class CountingEmbedder: Embedder, @unchecked Sendable {
    let inner = HashingEmbedder(dimension: 16, seed: 3)
    var calls = 0
    var texts = 0
    var identifier: String { inner.identifier }
    var dimension: Int { inner.dimension }
    func embed(_ texts: [String]) throws -> Matrix {
        calls += 1
        self.texts += texts.count
        return try inner.embed(texts)
    }
}

@Suite("Embedding cache")
struct CachingEmbedderTests {
    @Test("second embedding of the same texts is served from disk, across restarts, identical")
    func cache() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let counting = CountingEmbedder()
        let cache = try CachingEmbedder(base: counting, directory: dir)
        let first = try cache.embed(["a b c", "hiking boots", "a b c"])
        #expect(counting.texts == 2)  // the duplicate is embedded once
        let again = try cache.embed(["hiking boots", "a b c"])
        #expect(counting.calls == 1)
        #expect(again.row(0) == first.row(1) && again.row(1) == first.row(0))
        let restarted = try CachingEmbedder(base: counting, directory: dir)
        #expect(restarted.count == 2)
        _ = try restarted.embed(["a b c", "new text"])
        #expect(counting.texts == 3)
        #expect(try restarted.embed(["a b c"]).row(0) == first.row(0))
    }

    @Test("a torn last record is ignored and overwritten")
    func tornRecord() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let counting = CountingEmbedder()
        let cache = try CachingEmbedder(base: counting, directory: dir)
        _ = try cache.embed(["one", "two"])
        let handle = try FileHandle(forWritingTo: cache.file)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([1, 2, 3, 4, 5]))
        try handle.close()
        let reopened = try CachingEmbedder(base: counting, directory: dir)
        #expect(reopened.count == 2)
        _ = try reopened.embed(["three"])
        let size = try FileManager.default.attributesOfItem(atPath: cache.file.path)[.size] as? Int
        #expect(size == 3 * (16 + 4 * 16))
    }
}
