import ArgumentParser
import FedSegEmbedding
import FedSegMath
import Foundation

struct EmbedSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "MiniLM throughput on fixed review-like corpora at batch sizes 1 and 32."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Seed of the generated corpora.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Short texts (20-60 tokens).")
    var shortCount = 2000

    @Option(name: .long, help: "Long texts (200-256 tokens).")
    var longCount = 200

    struct Row: Codable {
        var corpus: String
        var batchSize: Int
        var sentences: Int
        var tokens: Int
        var seconds: Double
        var sentencesPerSecond: Double
        var tokensPerSecond: Double
        var gflops: Double
    }

    struct Output: Codable {
        var suite = "embed"
        var model: String
        var core: String
        var workers: Int
        var sentencesPerSecond: Double
        var rows: [Row]
    }

    static let words = """
        the a this my our product item quality price delivery shipping battery screen sound camera fabric \
        size color taste smell service staff room hotel trip flight book story author plot characters song \
        album beat playlist game level graphics controls recipe flavor kitchen garden plant soil shoes boots \
        trail jacket coat phone laptop keyboard mouse headphones speaker charger cable was is were really very \
        quite too not never always great good bad terrible excellent amazing poor decent fine okay cheap \
        expensive fast slow late early broken perfect comfortable noisy quiet bright dark heavy light and but \
        because so although while after before with without for on in at from to of I we they it loved hated \
        liked returned bought ordered recommend would will again definitely maybe works stopped lasted arrived
        """.split(separator: " ").map(String.init)

    /// Texts whose token counts fall in `tokens` (checked with the real tokenizer).
    static func corpus(count: Int, tokens: ClosedRange<Int>, tokenizer: BertTokenizer, rng: inout SeededRandom) -> [String] {
        (0..<count).map { _ in
            let target = tokens.lowerBound + Int(rng.next(upperBound: UInt64(tokens.count)))
            var words: [String] = []
            while tokenizer.encode(words.joined(separator: " ")).count < target {
                words.append(Self.words[Int(rng.next(upperBound: UInt64(Self.words.count)))])
                if rng.next(upperBound: UInt64(9)) == 0 { words[words.count - 1] += "." }
            }
            return words.joined(separator: " ")
        }
    }

    /// FLOPs of one forward pass over sequences of these lengths (dense layers and attention).
    static func flops(lengths: [Int], configuration c: MiniLMConfiguration) -> Double {
        let h = Double(c.hiddenSize)
        let i = Double(c.intermediateSize)
        let perTokenDense = 2 * (4 * h * h + 2 * h * i)
        return lengths.reduce(0.0) { total, n in
            let tokens = Double(n)
            return total + Double(c.numHiddenLayers) * (tokens * perTokenDense + 4 * tokens * tokens * h)
        }
    }

    func run() throws {
        let files = MiniLMModelFiles.defaultLocation()
        let embedder = try MiniLMEmbedder(files: files)
        var rng = SeededRandom(seed: seed)
        let corpora: [(String, [String])] = [
            ("short_20_60", Self.corpus(count: shortCount, tokens: 20...60, tokenizer: embedder.tokenizer, rng: &rng)),
            ("reference_25", Self.corpus(count: 1000, tokens: 25...25, tokenizer: embedder.tokenizer, rng: &rng)),
            ("long_200_256", Self.corpus(count: longCount, tokens: 200...256, tokenizer: embedder.tokenizer, rng: &rng)),
        ]
        var rows: [Row] = []
        for (name, texts) in corpora {
            let lengths = texts.map { embedder.tokenizer.encode($0).count }
            let tokens = lengths.reduce(0, +)
            let work = Self.flops(lengths: lengths, configuration: embedder.encoder.configuration)
            for batchSize in [1, 32] {
                var model = embedder
                model.batchSize = batchSize
                // Batch size 1 on the whole short corpus takes long; a fixed slice keeps it bounded.
                let subset = batchSize == 1 ? Array(texts.prefix(300)) : texts
                let subsetLengths = Array(lengths.prefix(subset.count))
                let subsetTokens = subsetLengths.reduce(0, +)
                let subsetWork = batchSize == 1 ? Self.flops(lengths: subsetLengths, configuration: embedder.encoder.configuration) : work
                _ = try model.embed(Array(subset.prefix(64)))  // warm-up
                let clock = ContinuousClock()
                let start = clock.now
                _ = try model.embed(subset)
                let elapsed = clock.now - start
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                rows.append(Row(
                    corpus: name, batchSize: batchSize, sentences: subset.count,
                    tokens: batchSize == 1 ? subsetTokens : tokens, seconds: seconds,
                    sentencesPerSecond: Double(subset.count) / seconds,
                    tokensPerSecond: Double(batchSize == 1 ? subsetTokens : tokens) / seconds,
                    gflops: subsetWork / seconds / 1e9
                ))
            }
        }
        let headline = rows.first { $0.corpus == "short_20_60" && $0.batchSize == 32 }?.sentencesPerSecond ?? 0
        let output = Output(
            model: embedder.identifier, core: BLASKernel.coreName, workers: Parallel.workerCount,
            sentencesPerSecond: headline, rows: rows
        )
        if json {
            try printJSON(output)
            return
        }
        print("\(output.model) on \(output.core), \(output.workers) workers")
        print("corpus         batch  sentences   tokens   sent/s    tok/s  GFLOP/s")
        for row in rows {
            print(
                row.corpus.padding(toLength: 14, withPad: " ", startingAt: 0)
                    + String(format: " %5d %10d %8d %8.1f %8.0f %8.1f", row.batchSize, row.sentences, row.tokens, row.sentencesPerSecond, row.tokensPerSecond, row.gflops)
            )
        }
    }
}
