import FedSegMath
import Foundation

/// The all-MiniLM-L6-v2 encoder (BERT: embeddings, 6 post-LayerNorm transformer layers, exact erf
/// GELU), mean pooling over each sentence's tokens and L2 normalisation — sentence-transformers'
/// pipeline for this model.
///
/// Sentences of a batch are packed row after row with no padding: dense layers see one
/// `tokens x hidden` matrix (row-split SGEMM across the cores), and attention runs per sentence and
/// head on that sentence's rows only, so a padding mask is never needed and no work is wasted on
/// padding. Buffers are allocated per batch, never per token.
///
/// `workers` is the intra-batch parallelism: row blocks of each SGEMM, sentence-head pairs of
/// attention and rows of the element-wise steps. `MiniLMEmbedder` prefers running whole batches
/// on separate cores (workers = 1 each), which packs each weight matrix once per batch instead of
/// once per core and needs no synchronisation between layers.
public final class MiniLMEncoder: Sendable {
    public let configuration: MiniLMConfiguration

    struct Layer: Sendable {
        /// Weights are kept transposed (`in x out`) so each projection is a plain X·W: measured
        /// faster with OpenBLAS than X·Wᵀ on the stored `out x in` layout, whose per-call packing
        /// copy took a sixth of the encoder's time.
        /// Query, key and value projections side by side: `H x 3H`.
        var qkvWeight: Matrix
        var qkvBias: [Float]
        var outputWeight: Matrix
        var outputBias: [Float]
        var attentionNormGain: [Float]
        var attentionNormBias: [Float]
        var intermediateWeight: Matrix
        var intermediateBias: [Float]
        var ffnOutputWeight: Matrix
        var ffnOutputBias: [Float]
        var outputNormGain: [Float]
        var outputNormBias: [Float]
    }

    let wordEmbeddings: [Float]
    let positionEmbeddings: [Float]
    let tokenTypeEmbedding: [Float]
    let embeddingNormGain: [Float]
    let embeddingNormBias: [Float]
    let layers: [Layer]

    /// Tensors in the checkpoint that the sentence encoder does not use.
    static let unusedTensors: Set<String> = ["embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"]

    public convenience init(files: MiniLMModelFiles, progress: ((Int, Int) -> Void)? = nil) throws {
        let configuration = try MiniLMConfiguration.load(from: files.config)
        try self.init(configuration: configuration, weights: SafeTensorsFile(url: files.weights), progress: progress)
    }

    /// Loads every tensor the model needs, failing on any missing tensor, unexpected tensor or
    /// shape mismatch. `progress(done, total)` after the embeddings and after each layer.
    public init(configuration: MiniLMConfiguration, weights: SafeTensorsFile, progress: ((Int, Int) -> Void)? = nil) throws {
        try configuration.validate()
        self.configuration = configuration
        let h = configuration.hiddenSize
        let i = configuration.intermediateSize
        var expected = Self.unusedTensors
        func take(_ name: String, _ shape: [Int]) throws -> [Float] {
            expected.insert(name)
            return try weights.floats(name, shape: shape)
        }
        func transposed(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            Matrix(rows: rows, cols: cols, storage: try take(name, [rows, cols])).transposed()
        }
        wordEmbeddings = try take("embeddings.word_embeddings.weight", [configuration.vocabSize, h])
        positionEmbeddings = try take("embeddings.position_embeddings.weight", [configuration.maxPositionEmbeddings, h])
        tokenTypeEmbedding = Array(try take("embeddings.token_type_embeddings.weight", [configuration.typeVocabSize, h])[0..<h])
        embeddingNormGain = try take("embeddings.LayerNorm.weight", [h])
        embeddingNormBias = try take("embeddings.LayerNorm.bias", [h])
        let steps = 1 + configuration.numHiddenLayers
        progress?(1, steps)
        var layers: [Layer] = []
        for l in 0..<configuration.numHiddenLayers {
            let p = "encoder.layer.\(l)."
            let q = try take(p + "attention.self.query.weight", [h, h])
            let k = try take(p + "attention.self.key.weight", [h, h])
            let v = try take(p + "attention.self.value.weight", [h, h])
            let qb = try take(p + "attention.self.query.bias", [h])
            let kb = try take(p + "attention.self.key.bias", [h])
            let vb = try take(p + "attention.self.value.bias", [h])
            layers.append(
                Layer(
                    qkvWeight: Matrix(rows: 3 * h, cols: h, storage: q + k + v).transposed(),
                    qkvBias: qb + kb + vb,
                    outputWeight: try transposed(p + "attention.output.dense.weight", h, h),
                    outputBias: try take(p + "attention.output.dense.bias", [h]),
                    attentionNormGain: try take(p + "attention.output.LayerNorm.weight", [h]),
                    attentionNormBias: try take(p + "attention.output.LayerNorm.bias", [h]),
                    intermediateWeight: try transposed(p + "intermediate.dense.weight", i, h),
                    intermediateBias: try take(p + "intermediate.dense.bias", [i]),
                    ffnOutputWeight: try transposed(p + "output.dense.weight", h, i),
                    ffnOutputBias: try take(p + "output.dense.bias", [h]),
                    outputNormGain: try take(p + "output.LayerNorm.weight", [h]),
                    outputNormBias: try take(p + "output.LayerNorm.bias", [h])
                )
            )
            progress?(2 + l, steps)
        }
        self.layers = layers
        if let extra = Set(weights.tensors.keys).subtracting(expected).sorted().first {
            throw EmbeddingError.unexpectedTensor(extra)
        }
    }

    public var dimension: Int { configuration.hiddenSize }

    /// Sentence embeddings (one unit-norm row per sequence) for already tokenised sequences, each
    /// with `[CLS]`/`[SEP]` and at most `max_position_embeddings` ids.
    public func encode(_ sequences: [[Int32]], workers: Int = Parallel.workerCount) -> Matrix {
        let h = configuration.hiddenSize
        var offsets = [0]
        for sequence in sequences {
            precondition(!sequence.isEmpty && sequence.count <= configuration.maxPositionEmbeddings, "sequence length out of range")
            offsets.append(offsets.last! + sequence.count)
        }
        let tokens = offsets.last!
        guard tokens > 0 else { return Matrix(rows: 0, cols: h) }

        var hidden = Matrix(rows: tokens, cols: h)
        embed(sequences, offsets: offsets, into: &hidden, workers: workers)
        var qkv = Matrix(rows: tokens, cols: 3 * h)
        var context = Matrix(rows: tokens, cols: h)
        var projected = Matrix(rows: tokens, cols: h)
        var intermediate = Matrix(rows: tokens, cols: configuration.intermediateSize)
        for layer in layers {
            BLAS.parallelGemm(hidden, layer.qkvWeight, into: &qkv, workers: workers)
            Self.addBias(layer.qkvBias, to: &qkv, workers: workers)
            attention(qkv: qkv, offsets: offsets, into: &context, workers: workers)
            BLAS.parallelGemm(context, layer.outputWeight, into: &projected, workers: workers)
            Self.addBiasResidualNorm(
                bias: layer.outputBias, residual: &hidden, update: projected,
                gain: layer.attentionNormGain, shift: layer.attentionNormBias, epsilon: Float(configuration.layerNormEps),
                workers: workers
            )
            BLAS.parallelGemm(hidden, layer.intermediateWeight, into: &intermediate, workers: workers)
            Self.addBiasGELU(layer.intermediateBias, to: &intermediate, workers: workers)
            BLAS.parallelGemm(intermediate, layer.ffnOutputWeight, into: &projected, workers: workers)
            Self.addBiasResidualNorm(
                bias: layer.ffnOutputBias, residual: &hidden, update: projected,
                gain: layer.outputNormGain, shift: layer.outputNormBias, epsilon: Float(configuration.layerNormEps),
                workers: workers
            )
        }
        return Self.meanPoolAndNormalize(hidden, offsets: offsets)
    }

    // MARK: stages

    private func embed(_ sequences: [[Int32]], offsets: [Int], into hidden: inout Matrix, workers: Int) {
        let h = configuration.hiddenSize
        let vocabulary = configuration.vocabSize
        hidden.storage.withUnsafeMutableBufferPointer { out in
            wordEmbeddings.withUnsafeBufferPointer { words in
                positionEmbeddings.withUnsafeBufferPointer { positions in
                    for (s, sequence) in sequences.enumerated() {
                        for (p, id) in sequence.enumerated() {
                            let token = Int(id)
                            precondition(token >= 0 && token < vocabulary, "token id \(token) outside the vocabulary")
                            let row = out.baseAddress! + (offsets[s] + p) * h
                            let word = words.baseAddress! + token * h
                            let position = positions.baseAddress! + p * h
                            for t in 0..<h { row[t] = word[t] + position[t] + tokenTypeEmbedding[t] }
                        }
                    }
                }
            }
        }
        Self.layerNorm(&hidden, gain: embeddingNormGain, shift: embeddingNormBias, epsilon: Float(configuration.layerNormEps), workers: workers)
    }

    /// Scaled dot-product attention per sentence and head, on that sentence's rows of the packed
    /// Q, K, V; softmax in Float with the row maximum subtracted.
    private func attention(qkv: Matrix, offsets: [Int], into context: inout Matrix, workers: Int) {
        let h = configuration.hiddenSize
        let heads = configuration.numAttentionHeads
        let headSize = h / heads
        let scale = 1 / Float(headSize).squareRoot()
        let sequences = offsets.count - 1
        let longest = zip(offsets.dropFirst(), offsets).map { $0 - $1 }.max() ?? 0
        var scratch = [Float](repeating: 0, count: workers * longest * longest)
        let jobs = sequences * heads
        qkv.storage.withUnsafeBufferPointer { qkvBuffer in
            context.storage.withUnsafeMutableBufferPointer { contextBuffer in
                scratch.withUnsafeMutableBufferPointer { scratchBuffer in
                    let input = SharedPointer(UnsafeMutablePointer(mutating: qkvBuffer.baseAddress!))
                    let output = SharedPointer(contextBuffer.baseAddress!)
                    let scores = SharedPointer(scratchBuffer.baseAddress!)
                    Parallel.run(workers: max(1, min(workers, jobs))) { w in
                        let s = scores.base + w * longest * longest
                        var job = w
                        while job < jobs {
                            let sequence = job / heads
                            let head = job % heads
                            let start = offsets[sequence]
                            let n = offsets[sequence + 1] - start
                            let base = input.base + start * 3 * h + head * headSize
                            BLAS.gemm(
                                m: n, n: n, k: headSize, alpha: scale,
                                a: base, lda: 3 * h, transA: .none,
                                b: base + h, ldb: 3 * h, transB: .transpose,
                                beta: 0, c: s, ldc: n
                            )
                            for r in 0..<n {
                                let row = s + r * n
                                var maximum = row[0]
                                for c in 1..<n { maximum = max(maximum, row[c]) }
                                // Exponentials in a loop of their own, so it runs on vector lanes;
                                // the sum (in order, as before) is a separate, cheap pass.
                                for c in 0..<n { row[c] = VectorExp.exp(row[c] - maximum) }
                                var total: Float = 0
                                for c in 0..<n { total += row[c] }
                                let inverse = 1 / total
                                for c in 0..<n { row[c] *= inverse }
                            }
                            BLAS.gemm(
                                m: n, n: headSize, k: n, alpha: 1,
                                a: s, lda: n, transA: .none,
                                b: base + 2 * h, ldb: 3 * h, transB: .none,
                                beta: 0, c: output.base + start * h + head * headSize, ldc: h
                            )
                            job += workers
                        }
                    }
                }
            }
        }
    }

    /// Runs `body` on every row of `matrix` (a pointer to the row's values and its index), the
    /// rows split across `workers`. Each row is touched by one worker only.
    static func forEachRow(
        _ matrix: inout Matrix, workers: Int, _ body: @Sendable (UnsafeMutablePointer<Float>, Int) -> Void
    ) {
        let cols = matrix.cols
        let rows = matrix.rows
        matrix.storage.withUnsafeMutableBufferPointer { buffer in
            let out = SharedPointer(buffer.baseAddress!)
            Parallel.forRows(rows, workers: workers) { range in
                for r in range { body(out.base + r * cols, r) }
            }
        }
    }

    static func addBias(_ bias: [Float], to matrix: inout Matrix, workers: Int) {
        forEachRow(&matrix, workers: workers) { row, _ in
            bias.withUnsafeBufferPointer { b in
                for c in 0..<b.count { row[c] += b[c] }
            }
        }
    }

    /// GELU with the error function, as BERT's `gelu`: x/2 (1 + erf(x/√2)) (not the tanh
    /// approximation, which differs by up to 1e-3).
    static func addBiasGELU(_ bias: [Float], to matrix: inout Matrix, workers: Int) {
        forEachRow(&matrix, workers: workers) { row, _ in
            let inverseRoot2: Float = 0.70710678118654752
            bias.withUnsafeBufferPointer { b in
                for c in 0..<b.count {
                    let x = row[c] + b[c]
                    row[c] = 0.5 * x * (1 + VectorErf.erf(x * inverseRoot2))
                }
            }
        }
    }

    /// residual = LayerNorm(residual + update + bias), one pass per row while it is in cache.
    static func addBiasResidualNorm(
        bias: [Float], residual: inout Matrix, update: Matrix, gain: [Float], shift: [Float], epsilon: Float,
        workers: Int
    ) {
        let cols = residual.cols
        forEachRow(&residual, workers: workers) { row, r in
            update.storage.withUnsafeBufferPointer { u in
                bias.withUnsafeBufferPointer { b in
                    let y = u.baseAddress! + r * cols
                    for c in 0..<cols { row[c] += y[c] + b[c] }
                }
            }
            normalize(row, cols: cols, gain: gain, shift: shift, epsilon: epsilon)
        }
    }

    /// Row-wise LayerNorm.
    static func layerNorm(_ matrix: inout Matrix, gain: [Float], shift: [Float], epsilon: Float, workers: Int) {
        let cols = matrix.cols
        forEachRow(&matrix, workers: workers) { row, _ in
            normalize(row, cols: cols, gain: gain, shift: shift, epsilon: epsilon)
        }
    }

    /// LayerNorm of one row with population variance; statistics accumulated in Double.
    @inline(__always)
    static func normalize(_ x: UnsafeMutablePointer<Float>, cols: Int, gain: [Float], shift: [Float], epsilon: Float) {
        var sum = 0.0
        for c in 0..<cols { sum += Double(x[c]) }
        let mean = sum / Double(cols)
        var squares = 0.0
        for c in 0..<cols {
            let d = Double(x[c]) - mean
            squares += d * d
        }
        let inverse = Float(1 / (squares / Double(cols) + Double(epsilon)).squareRoot())
        let m = Float(mean)
        gain.withUnsafeBufferPointer { g in
            shift.withUnsafeBufferPointer { b in
                for c in 0..<cols { x[c] = (x[c] - m) * inverse * g[c] + b[c] }
            }
        }
    }

    static func meanPoolAndNormalize(_ hidden: Matrix, offsets: [Int]) -> Matrix {
        let h = hidden.cols
        var pooled = Matrix(rows: offsets.count - 1, cols: h)
        var sums = [Double](repeating: 0, count: h)
        hidden.storage.withUnsafeBufferPointer { source in
            pooled.storage.withUnsafeMutableBufferPointer { target in
                for s in 0..<(offsets.count - 1) {
                    for c in 0..<h { sums[c] = 0 }
                    for row in offsets[s]..<offsets[s + 1] {
                        let x = source.baseAddress! + row * h
                        for c in 0..<h { sums[c] += Double(x[c]) }
                    }
                    let count = Double(offsets[s + 1] - offsets[s])
                    var norm = 0.0
                    for c in 0..<h {
                        sums[c] /= count
                        norm += sums[c] * sums[c]
                    }
                    // sentence-transformers' Normalize divides by max(‖v‖, 1e-12).
                    let scale = 1 / max(norm.squareRoot(), 1e-12)
                    let out = target.baseAddress! + s * h
                    for c in 0..<h { out[c] = Float(sums[c] * scale) }
                }
            }
        }
        return pooled
    }
}
