internal import COpenBLAS

/// Thin, safe wrappers over OpenBLAS's CBLAS interface.
///
/// FedSeg never multiplies matrices itself: every product goes through `cblas_sgemm` so it runs
/// on the kernel `BLASKernel` selected for this CPU. The pointer-based entry points exist for hot
/// loops that work on slices of larger buffers; the `Matrix` ones check shapes.
public enum BLAS {
    public enum Transpose: Sendable {
        case none
        case transpose

        var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    }

    /// C = alpha * op(A) * op(B) + beta * C, all row-major.
    public static func gemm(
        _ a: Matrix, _ b: Matrix,
        transA: Transpose = .none, transB: Transpose = .none,
        alpha: Float = 1, beta: Float = 0,
        into c: inout Matrix
    ) {
        let (m, ka) = transA == .none ? (a.rows, a.cols) : (a.cols, a.rows)
        let (kb, n) = transB == .none ? (b.rows, b.cols) : (b.cols, b.rows)
        precondition(ka == kb, "gemm: inner dimensions differ (\(ka) vs \(kb))")
        precondition(c.rows == m && c.cols == n, "gemm: output is \(c.rows)x\(c.cols), expected \(m)x\(n)")
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    gemm(
                        m: m, n: n, k: ka, alpha: alpha,
                        a: pa.baseAddress, lda: a.cols, transA: transA,
                        b: pb.baseAddress, ldb: b.cols, transB: transB,
                        beta: beta, c: pc.baseAddress, ldc: n
                    )
                }
            }
        }
    }

    /// op(A) * op(B) as a new matrix.
    public static func multiply(_ a: Matrix, _ b: Matrix, transA: Transpose = .none, transB: Transpose = .none)
        -> Matrix
    {
        let m = transA == .none ? a.rows : a.cols
        let n = transB == .none ? b.cols : b.rows
        var c = Matrix(rows: m, cols: n)
        gemm(a, b, transA: transA, transB: transB, into: &c)
        return c
    }

    /// Row-major SGEMM on raw buffers. `lda`, `ldb`, `ldc` are the row strides of the stored
    /// (untransposed) matrices.
    public static func gemm(
        m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>?, lda: Int, transA: Transpose,
        b: UnsafePointer<Float>?, ldb: Int, transB: Transpose,
        beta: Float, c: UnsafeMutablePointer<Float>?, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            // BLAS leaves C untouched only when beta == 1; make k == 0 mean "scale C by beta".
            if let c { for row in 0..<m { scale(beta, c + row * ldc, count: n) } }
            return
        }
        precondition(a != nil && b != nil && c != nil, "gemm: empty buffer for non-empty product")
        cblas_sgemm(
            CblasRowMajor, transA.cblas, transB.cblas,
            blasint(m), blasint(n), blasint(k), alpha,
            a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc)
        )
    }

    /// y = alpha * op(A) * x + beta * y.
    public static func gemv(
        _ a: Matrix, x: [Float], trans: Transpose = .none, alpha: Float = 1, beta: Float = 0, into y: inout [Float]
    ) {
        let (outCount, inCount) = trans == .none ? (a.rows, a.cols) : (a.cols, a.rows)
        precondition(x.count == inCount, "gemv: x has \(x.count) values, expected \(inCount)")
        precondition(y.count == outCount, "gemv: y has \(y.count) values, expected \(outCount)")
        guard a.rows > 0, a.cols > 0 else {
            for i in y.indices { y[i] *= beta }
            return
        }
        a.storage.withUnsafeBufferPointer { pa in
            x.withUnsafeBufferPointer { px in
                y.withUnsafeMutableBufferPointer { py in
                    cblas_sgemv(
                        CblasRowMajor, trans.cblas, blasint(a.rows), blasint(a.cols), alpha,
                        pa.baseAddress, blasint(a.cols), px.baseAddress, 1, beta, py.baseAddress, 1
                    )
                }
            }
        }
    }

    /// y += alpha * x.
    public static func axpy(_ alpha: Float, x: [Float], y: inout [Float]) {
        precondition(x.count == y.count, "axpy: lengths differ (\(x.count) vs \(y.count))")
        x.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                axpy(alpha, x: px.baseAddress!, y: py.baseAddress!, count: x.count)
            }
        }
    }

    public static func axpy(_ alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        cblas_saxpy(blasint(count), alpha, x, 1, y, 1)
    }

    /// Euclidean norm, computed by BLAS without overflow for large components.
    public static func nrm2(_ x: [Float]) -> Float {
        x.withUnsafeBufferPointer { nrm2($0.baseAddress, count: x.count) }
    }

    public static func nrm2(_ x: UnsafePointer<Float>?, count: Int) -> Float {
        guard count > 0, let x else { return 0 }
        return cblas_snrm2(blasint(count), x, 1)
    }

    public static func dot(_ x: [Float], _ y: [Float]) -> Float {
        precondition(x.count == y.count, "dot: lengths differ (\(x.count) vs \(y.count))")
        return x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in dot(px.baseAddress, py.baseAddress, count: x.count) }
        }
    }

    public static func dot(_ x: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?, count: Int) -> Float {
        guard count > 0, let x, let y else { return 0 }
        return cblas_sdot(blasint(count), x, 1, y, 1)
    }

    public static func scale(_ alpha: Float, _ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        cblas_sscal(blasint(count), alpha, x, 1)
    }

    /// ‖row‖² for each row of a row-major `rows x cols` buffer.
    public static func squaredRowNorms(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let row = x + r * cols
            out[r] = dot(row, row, count: cols)
        }
    }
}
