import FedSegMath
import Testing

/// op(A)·op(B) in double precision, the slow obvious way.
private func referenceProduct(
    _ a: Matrix, _ b: Matrix, transA: Bool, transB: Bool
) -> (values: [Double], magnitudes: [Double], m: Int, n: Int) {
    let m = transA ? a.cols : a.rows
    let k = transA ? a.rows : a.cols
    let n = transB ? b.rows : b.cols
    var values = [Double](repeating: 0, count: m * n)
    var magnitudes = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            var magnitude = 0.0
            for p in 0..<k {
                let x = Double(transA ? a[p, i] : a[i, p])
                let y = Double(transB ? b[j, p] : b[p, j])
                sum += x * y
                magnitude += abs(x * y)
            }
            values[i * n + j] = sum
            magnitudes[i * n + j] = magnitude
        }
    }
    return (values, magnitudes, m, n)
}

private func randomMatrix(_ rows: Int, _ cols: Int, _ rng: inout SeededRandom) -> Matrix {
    var m = Matrix(rows: rows, cols: cols)
    for i in 0..<m.count { m.storage[i] = Float(rng.nextUniform() * 2 - 1) }
    return m
}

@Suite("BLAS wrappers against a double-precision reference")
struct BLASTests {
    @Test(
        "sgemm matches the naive product for random shapes and transposes",
        arguments: [
            (1, 1, 1), (1, 7, 5), (9, 1, 4), (5, 6, 1), (33, 17, 65), (64, 64, 64), (130, 3, 257), (2, 384, 384),
        ]
    )
    func gemmMatchesReference(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        var rng = SeededRandom(seed: UInt64(m * 1_000_000 + n * 1000 + k))
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = transA ? randomMatrix(k, m, &rng) : randomMatrix(m, k, &rng)
            let b = transB ? randomMatrix(n, k, &rng) : randomMatrix(k, n, &rng)
            let c = BLAS.multiply(a, b, transA: transA ? .transpose : .none, transB: transB ? .transpose : .none)
            let reference = referenceProduct(a, b, transA: transA, transB: transB)
            #expect(c.rows == reference.m && c.cols == reference.n)
            var worst = 0.0
            for i in 0..<c.count {
                worst = max(worst, abs(Double(c.storage[i]) - reference.values[i]) / max(reference.magnitudes[i], 1e-12))
            }
            #expect(worst < 1e-5, "relative error \(worst) for \(shape) transA=\(transA) transB=\(transB)")
        }
    }

    @Test("gemm accumulates with alpha and beta")
    func gemmAlphaBeta() {
        var rng = SeededRandom(seed: 11)
        let a = randomMatrix(4, 3, &rng)
        let b = randomMatrix(3, 5, &rng)
        let start = randomMatrix(4, 5, &rng)
        var c = start
        BLAS.gemm(a, b, alpha: 2, beta: -0.5, into: &c)
        let product = referenceProduct(a, b, transA: false, transB: false)
        for i in 0..<c.count {
            let expected = 2 * product.values[i] - 0.5 * Double(start.storage[i])
            #expect(abs(Double(c.storage[i]) - expected) < 1e-5)
        }
    }

    @Test("an empty inner dimension scales C by beta")
    func gemmEmptyInnerDimension() {
        let a = Matrix(rows: 2, cols: 0)
        let b = Matrix(rows: 0, cols: 3)
        var c = Matrix(rows: 2, cols: 3, repeating: 4)
        BLAS.gemm(a, b, beta: 0.5, into: &c)
        #expect(c.storage == [Float](repeating: 2, count: 6))
    }

    @Test("gemv, axpy, dot and nrm2 agree with direct sums")
    func level1And2() {
        var rng = SeededRandom(seed: 5)
        let a = randomMatrix(7, 4, &rng)
        let x = (0..<4).map { _ in Float(rng.nextUniform() - 0.5) }
        var y = [Float](repeating: 1, count: 7)
        BLAS.gemv(a, x: x, alpha: 1, beta: 1, into: &y)
        for i in 0..<7 {
            let expected = 1 + (0..<4).reduce(0.0) { $0 + Double(a[i, $1]) * Double(x[$1]) }
            #expect(abs(Double(y[i]) - expected) < 1e-5)
        }
        var yt = [Float](repeating: 0, count: 4)
        let z = (0..<7).map { _ in Float(rng.nextUniform() - 0.5) }
        BLAS.gemv(a, x: z, trans: .transpose, into: &yt)
        for j in 0..<4 {
            let expected = (0..<7).reduce(0.0) { $0 + Double(a[$1, j]) * Double(z[$1]) }
            #expect(abs(Double(yt[j]) - expected) < 1e-5)
        }
        var acc: [Float] = [1, 2, 3]
        BLAS.axpy(2, x: [1, 1, -1], y: &acc)
        #expect(acc == [3, 4, 1])
        #expect(BLAS.dot([1, 2, 3], [4, 5, 6]) == 32)
        #expect(abs(BLAS.nrm2([3, 4]) - 5) < 1e-6)
        #expect(BLAS.nrm2([]) == 0)
    }

    @Test("row norms and row normalisation")
    func rowNorms() {
        var m = Matrix(rowVectors: [[3, 4], [0, 0], [1, 0]])
        #expect(m.rowNorms() == [5, 0, 1])
        #expect(m.squaredRowNorms() == [25, 0, 1])
        m.normalizeRows()
        #expect(abs(m[0, 0] - 0.6) < 1e-6 && abs(m[0, 1] - 0.8) < 1e-6)
        #expect(m.row(1) == [0, 0])
    }

    @Test("transposed swaps indices")
    func transpose() {
        let m = Matrix(rowVectors: [[1, 2, 3], [4, 5, 6]])
        let t = m.transposed()
        #expect(t.rows == 3 && t.cols == 2)
        #expect(t.storage == [1, 4, 2, 5, 3, 6])
    }

    @Test("the kernel in use passes its own SGEMM self-check")
    func selfCheck() {
        let check = BLASKernel.selfCheck()
        #expect(check.passed, "max relative error \(check.maxRelativeError) on core \(BLASKernel.coreName)")
    }
}
