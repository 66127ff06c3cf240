import Dispatch
import FedSegMath
import Foundation
internal import CNearestCentroid

/// How the assignment pass computes its distances (`NearestCentroidAssignment`).
public enum NearestCentroidKernel: String, Sendable, CaseIterable, Codable {
    /// One OpenBLAS SGEMM per chunk of rows, then argmin, norms and sums in Swift: any CPU.
    case blas
    /// The fused pass with AVX2 and FMA.
    case avx2
    /// The fused pass with AVX-512F.
    case avx512

    /// The fused pass for the widest vectors this CPU (and its OS) supports, else `blas`.
    public static func best(for cpu: CPUFeatures) -> NearestCentroidKernel {
        if cpu.avx512f { return .avx512 }
        if cpu.avx2 && cpu.fma { return .avx2 }
        return .blas
    }

    public func runs(on cpu: CPUFeatures) -> Bool {
        switch self {
        case .blas: return true
        case .avx2: return cpu.avx2 && cpu.fma
        case .avx512: return cpu.avx512f
        }
    }

    private static let host = CPUFeatures.current()

    /// The environment variable that overrides the choice: `blas`, `avx2` or `avx512`. A kernel
    /// this CPU cannot run, or an unknown name, is ignored (`fedseg doctor` says so).
    public static let environmentVariable = "FEDSEG_KMEANS_KERNEL"

    /// The kernel a process with this environment uses on this CPU.
    public static func chosen(for cpu: CPUFeatures, environment: [String: String]) -> NearestCentroidKernel {
        if let name = environment[environmentVariable], let requested = NearestCentroidKernel(rawValue: name.lowercased()),
           requested.runs(on: cpu) {
            return requested
        }
        return best(for: cpu)
    }

    /// The kernel this process uses.
    public static let current = chosen(for: host, environment: ProcessInfo.processInfo.environment)

    /// Whether this CPU runs the kernel.
    public var runsHere: Bool { runs(on: Self.host) }

    /// The fused pass's instruction set, nil for the GEMM path.
    var fusedLevel: fedseg_nearest_level? {
        switch self {
        case .blas: return nil
        case .avx2: return FEDSEG_NEAREST_AVX2
        case .avx512: return FEDSEG_NEAREST_AVX512
        }
    }
}

/// The hot loop of every K-means step: nearest centroid for each point, with sums and counts.
///
/// Distances use ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖². Where the CPU has AVX2 or AVX-512, one fused
/// pass per row (`CNearestCentroid`): the row's products with every centroid (the centroids packed
/// once, 16 per vector load, in cache), the nearest, the row's norm and its addition to its
/// cluster's Double sum, all while the row is in L1. A library GEMM copies (packs) every chunk of X
/// before multiplying it; at the k a segmentation uses (8–64) that copy cost about as much as the
/// products (README, "Measured against the alternatives"). Elsewhere (`blas`), one SGEMM per chunk
/// and the rest in Swift. Chunks are fixed row ranges handed round-robin to one worker per core;
/// each worker runs its own chunk (OpenBLAS single-threaded per call, see `BLASKernel`), so cores
/// never wait on each other. Ties go to the lowest centroid index.
enum NearestCentroidAssignment {
    static let chunkRows = 1024

    static func run(
        points: Matrix, centroids: Matrix, clipNorm: Float?, centered: Bool = false, labels: UnsafeMutableBufferPointer<Int32>?,
        kernel: NearestCentroidKernel = .current, avx512TileOnAVX2: Bool = false
    ) -> LocalStatistics {
        precondition(points.cols == centroids.cols, "points have dimension \(points.cols), centroids \(centroids.cols)")
        precondition(centroids.rows > 0, "at least one centroid is needed")
        precondition(centroids.rows <= Int(Int32.max), "too many centroids")
        precondition(kernel.runsHere, "the \(kernel) assignment kernel does not run on this CPU")
        if let labels { precondition(labels.count == points.rows, "labels buffer has the wrong length") }
        if let clipNorm { precondition(clipNorm > 0 && clipNorm.isFinite, "clip norm must be positive and finite") }
        let n = points.rows
        let d = points.cols
        let k = centroids.rows
        var statistics = LocalStatistics(k: k, dimension: d)
        guard n > 0 else { return statistics }

        let workers = max(1, min(Parallel.workerCount, (n + chunkRows - 1) / chunkRows))
        let chunk = min(chunkRows, n)
        let centroidNorms = centroids.squaredRowNorms()
        // `avx512TileOnAVX2` (tests only): AVX-512's tile logic, compiled for AVX2, where no AVX-512 CPU is at hand.
        let level = avx512TileOnAVX2 && kernel == .avx2 ? FEDSEG_NEAREST_AVX2_WIDE_TILE : kernel.fusedLevel
        let packed = level.map { PackedCentroids(centroids, norms: centroidNorms, level: $0) }
        // Per-worker scratch and accumulators (merged at the end, so workers never share a cache line).
        let products = zeroed(Float.self, packed == nil ? chunk * k * workers : 0)
        let rowLabels = zeroed(Int32.self, chunk * workers)
        let rowBest = zeroed(Float.self, chunk * workers)
        let rowNorms = zeroed(Float.self, chunk * workers)
        let workerSums = zeroed(Double.self, workers * k * d)
        let workerCounts = zeroed(Int.self, workers * k)
        let workerInertia = zeroed(Double.self, workers)
        defer {
            packed?.deallocate()
            products.deallocate()
            rowLabels.deallocate()
            rowBest.deallocate()
            rowNorms.deallocate()
            workerSums.deallocate()
            workerCounts.deallocate()
            workerInertia.deallocate()
        }

        points.storage.withUnsafeBufferPointer { x in
            centroids.storage.withUnsafeBufferPointer { c in
                centroidNorms.withUnsafeBufferPointer { cNorms in
                    let work = ChunkWork(
                        points: x.baseAddress!, centroids: c.baseAddress!, centroidNorms: cNorms.baseAddress!,
                        packed: packed, products: products.baseAddress!, rowLabels: rowLabels.baseAddress!,
                        rowBest: rowBest.baseAddress!, rowNorms: rowNorms.baseAddress!, sums: workerSums.baseAddress!,
                        counts: workerCounts.baseAddress!, inertia: workerInertia.baseAddress!,
                        labels: labels?.baseAddress, d: d, k: k, clipNorm: clipNorm, centered: centered, chunk: chunk
                    )
                    DispatchQueue.concurrentPerform(iterations: workers) { w in
                        work.run(worker: w, of: workers, n: n)
                    }
                }
            }
        }
        for w in 0..<workers {
            for i in 0..<(k * d) { statistics.sums[i] += workerSums[w * k * d + i] }
            for j in 0..<k { statistics.counts[j] += workerCounts[w * k + j] }
            statistics.inertia += workerInertia[w]
        }
        return statistics
    }

    /// A zero-filled buffer of `count` (at least one, so every base address exists).
    private static func zeroed<T: Numeric>(_: T.Type, _ count: Int) -> UnsafeMutableBufferPointer<T> {
        let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, count))
        buffer.initialize(repeating: 0)
        return buffer
    }
}

/// The centroids in the fused pass's layout (blocks of 16, dimension-major) and their squared
/// norms, +inf for the padding, in 64-byte aligned memory.
private struct PackedCentroids: @unchecked Sendable {
    let level: fedseg_nearest_level
    let values: UnsafeMutablePointer<Float>
    let norms: UnsafeMutablePointer<Float>
    let blocks: Int

    init(_ centroids: Matrix, norms centroidNorms: [Float], level: fedseg_nearest_level) {
        self.level = level
        let k = centroids.rows
        let d = centroids.cols
        blocks = fedseg_centroid_blocks(k)
        let lanes = blocks * Int(FEDSEG_CENTROID_BLOCK)
        values = UnsafeMutableRawPointer.allocate(byteCount: max(1, lanes * d) * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(1, lanes * d))
        norms = UnsafeMutableRawPointer.allocate(byteCount: lanes * 4, alignment: 64).bindMemory(to: Float.self, capacity: lanes)
        centroids.storage.withUnsafeBufferPointer { c in
            centroidNorms.withUnsafeBufferPointer { cn in
                fedseg_pack_centroids(c.baseAddress!, k, d, cn.baseAddress!, values, norms)
            }
        }
    }

    func deallocate() {
        values.deallocate()
        norms.deallocate()
    }
}

/// Everything one worker needs for its share of the rows. The pointers are into buffers that
/// outlive the parallel section, and each worker writes only its own slots and its own label
/// rows, hence `@unchecked Sendable`.
private struct ChunkWork: @unchecked Sendable {
    let points: UnsafePointer<Float>
    let centroids: UnsafePointer<Float>
    let centroidNorms: UnsafePointer<Float>
    /// The fused pass's centroids, or nil for the GEMM path.
    let packed: PackedCentroids?
    /// The GEMM path's chunk × k products, one block per worker (unused by the fused pass).
    let products: UnsafeMutablePointer<Float>
    let rowLabels: UnsafeMutablePointer<Int32>
    let rowBest: UnsafeMutablePointer<Float>
    let rowNorms: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Double>
    let counts: UnsafeMutablePointer<Int>
    let inertia: UnsafeMutablePointer<Double>
    let labels: UnsafeMutablePointer<Int32>?
    let d: Int
    let k: Int
    let clipNorm: Float?
    /// Sum each point's offset from its centroid, x − c, instead of x (clipped the same way).
    let centered: Bool
    let chunk: Int

    func run(worker w: Int, of workers: Int, n: Int) {
        let rowLabels = self.rowLabels + w * chunk
        let rowBest = self.rowBest + w * chunk
        let rowNorms = self.rowNorms + w * chunk
        let counts = self.counts + w * k
        let sums = self.sums + w * k * d
        // Rows at or under this squared norm need no clipping and are summed by the pass itself;
        // the others (near or over the bound) get the exact rule here, norm in Double (`Clipping`).
        let summedByPass: Float = clipNorm.map { $0 * $0 * 0.999 } ?? .infinity
        let clip = clipNorm.map(Double.init) ?? 0
        var localInertia = 0.0
        var start = w * chunk
        while start < n {
            let count = min(chunk, n - start)
            let summed: Bool
            if let packed {
                fedseg_nearest_centroid_pass(
                    packed.level, points + start * d, count, d, packed.values, packed.norms, packed.blocks,
                    rowLabels, rowBest, rowNorms, sums, summedByPass,
                    centered ? centroids : nil, clip, clip * (1 - Clipping.margin)
                )
                summed = true
            } else {
                nearestByGEMM(start: start, count: count, products: products + w * chunk * k,
                              rowLabels: rowLabels, rowBest: rowBest)
                summed = false
            }
            for r in 0..<count {
                let i = start + r
                let best = Int(rowLabels[r])
                let x = points + i * d
                let normSquared = packed == nil ? BLAS.dot(x, x, count: d) : rowNorms[r]
                localInertia += Double(max(0, normSquared + rowBest[r]))
                labels?[i] = Int32(best)
                counts[best] += 1
                // The fused pass has added every centred row and every uncentred row within its
                // threshold; the GEMM path adds none.
                if summed && (centered || normSquared <= summedByPass) { continue }
                let sum = sums + best * d
                if centered {
                    // The offset's norm in Double for every row: the Float distance above loses
                    // absolute precision ~1e-6, which a small centred bound cannot absorb.
                    let c = centroids + best * d
                    var s = 1.0
                    if let clipNorm {
                        var exact = 0.0
                        for t in 0..<d {
                            let offset = Double(x[t]) - Double(c[t])
                            exact += offset * offset
                        }
                        s = Clipping.factor(normSquared: exact, clipNorm: Double(clipNorm))
                    }
                    for t in 0..<d { sum[t] += s * (Double(x[t]) - Double(c[t])) }
                } else if let clipNorm, !(normSquared <= summedByPass) {
                    // Near or over the bound: the exact rule, norm in Double (`Clipping`).
                    let s = Clipping.factor(normSquared: Clipping.normSquared(x, count: d), clipNorm: Double(clipNorm))
                    for t in 0..<d { sum[t] += s * Double(x[t]) }
                } else {
                    for t in 0..<d { sum[t] += Double(x[t]) }
                }
            }
            start += workers * chunk
        }
        inertia[w] = localInertia
    }

    /// The GEMM path's nearest centroids for one chunk: −2 X Cᵀ by SGEMM, then ‖c‖² added and the
    /// argmin taken row by row.
    private func nearestByGEMM(
        start: Int, count: Int, products: UnsafeMutablePointer<Float>,
        rowLabels: UnsafeMutablePointer<Int32>, rowBest: UnsafeMutablePointer<Float>
    ) {
        BLAS.gemm(
            m: count, n: k, k: d, alpha: -2, a: points + start * d, lda: d, transA: .none,
            b: centroids, ldb: d, transB: .transpose, beta: 0, c: products, ldc: k
        )
        for r in 0..<count {
            let row = products + r * k
            var best = 0
            var bestValue = row[0] + centroidNorms[0]
            for j in 1..<k {
                let value = row[j] + centroidNorms[j]
                if value < bestValue {
                    bestValue = value
                    best = j
                }
            }
            rowLabels[r] = Int32(best)
            rowBest[r] = bestValue
        }
    }
}
