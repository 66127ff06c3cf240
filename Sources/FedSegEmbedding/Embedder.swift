import FedSegMath
import Foundation

/// Turns texts into unit-norm vectors, locally.
public protocol Embedder: Sendable {
    /// Names the model and its parameters; vectors from different identifiers are not comparable.
    var identifier: String { get }
    var dimension: Int { get }
    /// One unit-norm row per text, in input order.
    func embed(_ texts: [String]) throws -> Matrix
}

/// MiniLM-L6-v2 sentence embeddings, batched by token length.
public struct MiniLMEmbedder: Embedder {
    public let tokenizer: BertTokenizer
    public let encoder: MiniLMEncoder
    public var batchSize: Int

    public var identifier: String { "all-MiniLM-L6-v2" }
    public var dimension: Int { encoder.dimension }

    /// `progress(done, total)` while the weights load (`MiniLMEncoder.init`).
    public init(files: MiniLMModelFiles = .defaultLocation(), batchSize: Int = 32, progress: ((Int, Int) -> Void)? = nil) throws {
        tokenizer = try BertTokenizer(vocabularyFile: files.vocabulary, maximumLength: 256)
        encoder = try MiniLMEncoder(files: files, progress: progress)
        self.batchSize = max(1, batchSize)
    }

    /// Texts are sorted by token count and cut into batches of similar length. With several
    /// batches, whole batches run on separate cores (each single-threaded); a lone batch uses all
    /// cores inside itself. The result is in input order.
    public func embed(_ texts: [String]) throws -> Matrix {
        let sequences = tokenize(texts)
        let order = sequences.indices.sorted { (sequences[$0].count, $0) < (sequences[$1].count, $1) }
        let batches = stride(from: 0, to: order.count, by: batchSize).map { Array(order[$0..<min(order.count, $0 + batchSize)]) }
        var result = Matrix(rows: texts.count, cols: dimension)
        let cores = Parallel.workerCount
        if batches.count < 2 || cores < 2 {
            for batch in batches {
                let vectors = encoder.encode(batch.map { sequences[$0] }, workers: cores)
                for (row, index) in batch.enumerated() { result.setRow(index, to: vectors.row(row)) }
            }
            return result
        }
        let dimension = self.dimension
        let encoder = self.encoder
        result.storage.withUnsafeMutableBufferPointer { buffer in
            let output = SharedPointer(buffer.baseAddress!)
            // Batches are dealt round-robin; each row of the result is written by one worker only.
            Parallel.run(workers: min(cores, batches.count)) { w in
                var b = w
                while b < batches.count {
                    let batch = batches[b]
                    let vectors = encoder.encode(batch.map { sequences[$0] }, workers: 1)
                    vectors.storage.withUnsafeBufferPointer { source in
                        for (row, index) in batch.enumerated() {
                            (output.base + index * dimension).update(from: source.baseAddress! + row * dimension, count: dimension)
                        }
                    }
                    b += min(cores, batches.count)
                }
            }
        }
        return result
    }
}

extension MiniLMEmbedder {
    /// Tokenisation is a few percent of the work; done on every core it stays that way.
    func tokenize(_ texts: [String]) -> [[Int32]] {
        guard !texts.isEmpty else { return [] }
        var sequences = [[Int32]](repeating: [], count: texts.count)
        let tokenizer = self.tokenizer
        sequences.withUnsafeMutableBufferPointer { buffer in
            let slots = SharedPointer(buffer.baseAddress!)
            texts.withUnsafeBufferPointer { input in
                let source = SharedPointer(UnsafeMutablePointer(mutating: input.baseAddress!))
                Parallel.forRows(texts.count, minimumRowsPerWorker: 64) { range in
                    for i in range { slots.base[i] = tokenizer.encode(source.base[i]) }
                }
            }
        }
        return sequences
    }
}

/// Embeddings without a model: feature-hashed word unigrams and bigrams and character 3- to
/// 5-grams (of the lower-cased, accent-stripped tokens), weighted by sublinear term frequency
/// (1 + ln tf) and optionally by inverse document frequency fitted on local texts, projected to
/// `dimension` by a fixed seeded sparse random projection (each feature lands in 4 coordinates
/// with ±1 signs from SipHash), then L2-normalised.
///
/// It is the fallback when the MiniLM weights are missing, and a fast embedder for tests.
public struct HashingEmbedder: Embedder {
    public let dimension: Int
    public let seed: UInt64
    /// Document frequencies per hashed feature bucket, when fitted.
    public private(set) var inverseDocumentFrequency: [Float]?
    private let hasher: KeyedHash
    static let buckets = 1 << 18
    static let projections = 4

    public var identifier: String { "hashing-v1-d\(dimension)-s\(seed)\(inverseDocumentFrequency == nil ? "" : "-idf")" }

    public init(dimension: Int = 384, seed: UInt64 = 0) {
        precondition(dimension > 0, "dimension must be positive")
        self.dimension = dimension
        self.seed = seed
        self.hasher = KeyedHash(seed: seed)
    }

    /// Learns idf = ln((1 + N) / (1 + df)) + 1 over hashed feature buckets (scikit-learn's smooth idf).
    public mutating func fitInverseDocumentFrequency(_ texts: [String]) {
        var documentFrequency = [Int32](repeating: 0, count: Self.buckets)
        for text in texts {
            for bucket in Set(features(of: text).keys.map { Int($0 % UInt64(Self.buckets)) }) {
                documentFrequency[bucket] += 1
            }
        }
        let n = Float(texts.count)
        inverseDocumentFrequency = documentFrequency.map { log((1 + n) / (1 + Float($0))) + 1 }
    }

    public func embed(_ texts: [String]) throws -> Matrix {
        var result = Matrix(rows: texts.count, cols: dimension)
        let dimension = self.dimension
        // Rows are independent: each worker fills its own rows, the same vectors as one thread
        // (a 10,000-client simulation embedded 22,000 users for 15 s on one core).
        result.storage.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let output = SharedPointer(base)
            Parallel.forRows(texts.count, minimumRowsPerWorker: 64) { rows in
                for row in rows { self.project(texts[row], into: output.base + row * dimension) }
            }
        }
        result.normalizeRows()
        return result
    }

    /// Adds the text's weighted features into `row` (`dimension` floats, zero on entry).
    func project(_ text: String, into row: UnsafeMutablePointer<Float>) {
        // In key order: a dictionary's order differs between instances, and so would the float
        // sums' rounding (the same text gave vectors 1 ulp apart).
        for (feature, count) in features(of: text).sorted(by: { $0.key < $1.key }) {
            var weight = 1 + log(Float(count))
            if let idf = inverseDocumentFrequency { weight *= idf[Int(feature % UInt64(Self.buckets))] }
            // Each projection slot takes 16 bits of a second hash for index and one for sign.
            var mix = withUnsafeBytes(of: feature.littleEndian) { hasher.hash(bytes: $0) }
            for _ in 0..<Self.projections {
                let index = Int((mix & 0xFFFF_FFFF) % UInt64(dimension))
                let sign: Float = (mix >> 32) & 1 == 0 ? 1 : -1
                row[index] += sign * weight
                mix = mix &* 0x9E37_79B9_7F4A_7C15 &+ 0xBF58_476D_1CE4_E5B9
                mix ^= mix >> 29
            }
        }
    }

    /// Hashed feature → count. Word features and character n-grams share one hash space,
    /// distinguished by a prefix.
    func features(of text: String) -> [UInt64: Int] {
        let words = Self.words(text)
        var counts: [UInt64: Int] = [:]
        for (i, word) in words.enumerated() {
            counts[hasher.hash("w:" + word), default: 0] += 1
            if i + 1 < words.count { counts[hasher.hash("b:" + word + " " + words[i + 1]), default: 0] += 1 }
            let scalars = Array(("<" + word + ">").unicodeScalars)
            for n in 3...5 where scalars.count >= n {
                for start in 0...(scalars.count - n) {
                    var gram = "c:"
                    gram.unicodeScalars.append(contentsOf: scalars[start..<start + n])
                    counts[hasher.hash(gram), default: 0] += 1
                }
            }
        }
        return counts
    }

    static func words(_ text: String) -> [String] {
        let folded = text.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
        var words: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in folded.unicodeScalars {
            if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                current.append(scalar)
                // CJK ideographs are words on their own.
                if BertTokenizer.isCJK(scalar) {
                    words.append(String(current))
                    current = String.UnicodeScalarView()
                }
            } else if !current.isEmpty {
                words.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { words.append(String(current)) }
        return words
    }
}

/// Which embedder to use, falling back to hashing (and saying so) when the model is missing.
public enum EmbedderChoice: String, Sendable, CaseIterable {
    case minilm
    case hashing

    /// The embedder, and a warning when MiniLM was asked for but could not be loaded.
    /// `progress`: a line while MiniLM's weights load (`ProgressLine`); none for hashing.
    public func make(
        files: MiniLMModelFiles = .defaultLocation(), batchSize: Int = 32, hashingDimension: Int = 384, progress: ProgressLine? = nil
    ) -> (embedder: any Embedder, warning: String?) {
        switch self {
        case .hashing:
            return (HashingEmbedder(dimension: hashingDimension), nil)
        case .minilm:
            do {
                return (try MiniLMEmbedder(files: files, batchSize: batchSize, progress: progress.map { line in { line.update($0, of: $1) } }), nil)
            } catch {
                return (
                    HashingEmbedder(dimension: hashingDimension),
                    "MiniLM unavailable (\(error)); falling back to the hashing embedder, whose vectors are not comparable"
                )
            }
        }
    }
}
