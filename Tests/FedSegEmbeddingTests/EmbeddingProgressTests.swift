import FedSegEmbedding
import FedSegMath
import Synchronization
import Testing

@Suite("Embedding progress")
struct EmbeddingProgressTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    @Test("embedding in chunks gives the same rows as one call, and reports every chunk up to the total")
    func chunks() throws {
        let embedder = HashingEmbedder(dimension: 16, seed: 3)
        let texts = (0..<1_000).map { "text number \($0) about topic \($0 % 7)" }
        let whole = try embedder.embed(texts)
        let reports = Mutex<[Int]>([])
        let chunked = try embedder.embed(texts, chunk: 300, progress: { done, total in
            #expect(total == 1_000)
            reports.withLock { $0.append(done) }
        })
        let differing = (0..<whole.rows).filter { Array(chunked.row($0)) != Array(whole.row($0)) }
        #expect(differing.isEmpty, "rows differ: \(differing.prefix(5)) of \(differing.count); \(Array(whole.row(differing.first ?? 0))) vs \(Array(chunked.row(differing.first ?? 0)))")
        #expect(reports.withLock { $0 } == [300, 600, 900, 1_000])
        let small = try embedder.embed(Array(texts.prefix(5)), chunk: 300, progress: { done, total in reports.withLock { $0.append(done * 10_000 + total) } })
        #expect(small.rows == 5 && reports.withLock { $0.last } == 50_005)
    }

    @Test("loading MiniLM reports the embeddings and then each layer, up to the total; hashing loads nothing")
    func loading() throws {
        let reports = Mutex<[String]>([])
        let progress = ProgressLine("loading", enabled: true, write: { line in reports.withLock { $0.append(line) } })
        let (embedder, warning) = EmbedderChoice.minilm.make(files: ModelUnderTest.files, progress: progress)
        #expect(warning == nil, "the MiniLM weights are missing: run scripts/setup (make test does)")
        #expect(embedder.identifier == "all-MiniLM-L6-v2")
        let shown = reports.withLock { $0 }
        #expect(shown.first?.contains("loading: 1 / 7") == true, "\(shown)")
        #expect(shown.last?.contains("loading: 7 / 7") == true && shown.last?.hasSuffix("\n") == true, "\(shown)")
        reports.withLock { $0 = [] }
        _ = EmbedderChoice.hashing.make(progress: progress)
        #expect(reports.withLock { $0 }.isEmpty)
    }

    @Test("a progress line shows count, rate and time left, redraws in place, ends with a newline, and is silent off a terminal or with --quiet")
    func line() {
        #expect(ProgressLine.text(label: "embedding", done: 0, total: 10, elapsed: 0) == "embedding: 0 / 10")
        #expect(ProgressLine.text(label: "embedding", done: 250, total: 1_000, elapsed: 0.5) == "embedding: 250 / 1000 (500/s, 2 s left)")
        #expect(ProgressLine.text(label: "embedding", done: 1_000, total: 1_000, elapsed: 2) == "embedding: 1000 / 1000 (500/s, 2.0 s)")

        let shown = Lines()
        let progress = ProgressLine("embedding", enabled: true, write: { shown.append($0) })
        progress.update(1, of: 3)
        progress.update(2, of: 3)  // within 0.2 s of the first: not redrawn
        progress.update(3, of: 3)  // the end is always drawn
        #expect(shown.all.count == 2)
        #expect(shown.all.allSatisfy { $0.hasPrefix("\r\u{1B}[K") })
        #expect(shown.all.last?.hasSuffix("\n") == true && shown.all.first?.hasSuffix("\n") == false)

        for progress in [ProgressLine("x", enabled: false, write: { shown.append($0) }), ProgressLine("x", quiet: true, enabled: true, write: { shown.append($0) })] {
            progress.update(3, of: 3)
        }
        #expect(shown.all.count == 2, "off a terminal, or quiet: nothing")
    }
}
