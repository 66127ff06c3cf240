import Dispatch
import Foundation

/// Row-parallel work on one worker per core.
public enum Parallel {
    /// One worker per active core (at least one).
    public static var workerCount: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Runs `body(worker)` for worker in 0..<count concurrently and waits for all.
    /// `body` must touch only state that is disjoint per worker.
    public static func run(workers count: Int, _ body: @Sendable (Int) -> Void) {
        if count <= 1 {
            body(0)
            return
        }
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
    }
}

extension BLAS {
    /// SGEMM with the rows of op(A) (and C) split across one worker per core, each worker calling
    /// single-threaded SGEMM on its block. The kernel is OpenBLAS's; this only partitions.
    public static func parallelGemm(
        _ a: Matrix, _ b: Matrix, transB: Transpose = .none, alpha: Float = 1, beta: Float = 0,
        into c: inout Matrix, workers: Int = Parallel.workerCount
    ) {
        let (kb, n) = transB == .none ? (b.rows, b.cols) : (b.cols, b.rows)
        precondition(a.cols == kb, "gemm: inner dimensions differ (\(a.cols) vs \(kb))")
        precondition(c.rows == a.rows && c.cols == n, "gemm: output is \(c.rows)x\(c.cols), expected \(a.rows)x\(n)")
        let m = a.rows
        let k = a.cols
        let ldb = b.cols
        let blocks = max(1, min(workers, m))
        let share = (m + blocks - 1) / blocks
        a.storage.withUnsafeBufferPointer { pa in
            b.storage.withUnsafeBufferPointer { pb in
                c.storage.withUnsafeMutableBufferPointer { pc in
                    let buffers = GEMMBuffers(a: pa.baseAddress, b: pb.baseAddress, c: pc.baseAddress)
                    Parallel.run(workers: blocks) { w in
                        let lo = w * share
                        let hi = min(m, lo + share)
                        guard lo < hi else { return }
                        gemm(
                            m: hi - lo, n: n, k: k, alpha: alpha,
                            a: buffers.a.map { $0 + lo * k }, lda: k, transA: .none,
                            b: buffers.b, ldb: ldb, transB: transB,
                            beta: beta, c: buffers.c.map { $0 + lo * n }, ldc: n
                        )
                    }
                }
            }
        }
    }
}

/// Buffers shared by workers that write disjoint rows of `c`.
private struct GEMMBuffers: @unchecked Sendable {
    let a: UnsafePointer<Float>?
    let b: UnsafePointer<Float>?
    let c: UnsafeMutablePointer<Float>?
}

/// A pointer handed to parallel workers that each touch a disjoint part of the buffer it points
/// into. The caller keeps the buffer alive for the parallel section.
public struct SharedPointer<Pointee>: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Pointee>

    public init(_ base: UnsafeMutablePointer<Pointee>) {
        self.base = base
    }
}

extension Parallel {
    /// Splits rows 0..<count into contiguous ranges, one per worker, and runs them concurrently.
    /// Small jobs (fewer than `minimumRowsPerWorker` rows per worker) stay on one thread.
    public static func forRows(
        _ count: Int, workers maximum: Int = Parallel.workerCount, minimumRowsPerWorker: Int = 16,
        _ body: @Sendable (Range<Int>) -> Void
    ) {
        let workers = max(1, min(maximum, count / max(1, minimumRowsPerWorker)))
        if workers == 1 {
            if count > 0 { body(0..<count) }
            return
        }
        let share = (count + workers - 1) / workers
        run(workers: workers) { w in
            let lo = w * share
            let hi = min(count, lo + share)
            if lo < hi { body(lo..<hi) }
        }
    }
}
