@testable import FedSegClustering
import FedSegMath
import Testing

/// The fused assignment pass against a Double-precision reference, for every kernel this CPU runs.
@Suite("Nearest-centroid kernels")
struct NearestCentroidKernelTests {
    /// The kernels checked here: always the GEMM path and the one this process uses.
    static let kernels = NearestCentroidKernel.allCases.filter(\.runsHere)

    /// The kernels, and on an AVX2 CPU also AVX-512's tile logic compiled for AVX2: the AVX-512
    /// kernel is the same source with that tile shape, so this checks it where no AVX-512 CPU is
    /// at hand (CI's machines vary).
    static let variants: [Variant] =
        kernels.map { Variant(kernel: $0, wideTile: false) } + (NearestCentroidKernel.avx2.runsHere ? [Variant(kernel: .avx2, wideTile: true)] : [])

    struct Variant {
        let kernel: NearestCentroidKernel
        let wideTile: Bool

        var name: String { wideTile ? "avx512 tile on avx2" : kernel.rawValue }

        func statistics(
            _ points: Matrix, _ centroids: Matrix, clipNorm: Float? = nil, centered: Bool = false,
            labels: UnsafeMutableBufferPointer<Int32>? = nil
        ) -> LocalStatistics {
            NearestCentroidAssignment.run(
                points: points, centroids: centroids, clipNorm: clipNorm, centered: centered, labels: labels,
                kernel: kernel, avx512TileOnAVX2: wideTile
            )
        }
    }

    @Test("the kernels checked include the GEMM path and the one this process uses")
    func coverage() {
        #expect(Self.kernels.contains(.blas))
        #expect(Self.kernels.contains(NearestCentroidKernel.current))
    }

    @Test("the widest kernel a CPU supports is chosen, and none it does not")
    func choice() {
        let none = CPUFeatures.none
        var avx2 = CPUFeatures(sse2: true, avx: true, fma: true, avx2: true, avx512f: false, avx512dq: false, avx512bw: false, avx512vl: false)
        var avx512 = avx2
        avx512.avx512f = true
        #expect(NearestCentroidKernel.best(for: none) == .blas)
        #expect(NearestCentroidKernel.best(for: avx2) == .avx2)
        #expect(NearestCentroidKernel.best(for: avx512) == .avx512)
        #expect(!NearestCentroidKernel.avx512.runs(on: avx2))
        avx2.fma = false
        #expect(NearestCentroidKernel.best(for: avx2) == .blas)
    }

    @Test("FEDSEG_KMEANS_KERNEL overrides the choice with a kernel the CPU runs, and only then")
    func environmentOverride() {
        let avx2 = CPUFeatures(sse2: true, avx: true, fma: true, avx2: true, avx512f: false, avx512dq: false, avx512bw: false, avx512vl: false)
        let variable = NearestCentroidKernel.environmentVariable
        #expect(NearestCentroidKernel.chosen(for: avx2, environment: [:]) == .avx2)
        #expect(NearestCentroidKernel.chosen(for: avx2, environment: [variable: "BLAS"]) == .blas)
        #expect(NearestCentroidKernel.chosen(for: avx2, environment: [variable: "avx512"]) == .avx2)
        #expect(NearestCentroidKernel.chosen(for: avx2, environment: [variable: "fast"]) == .avx2)
        #expect(NearestCentroidKernel.chosen(for: .none, environment: [variable: "avx2"]) == .blas)
    }

    /// Shapes around the kernels' edges: k across the 16-centroid blocks and their pairs, d across
    /// the vector widths, n across the row tiles (6 and 8) and the 1,024-row chunks.
    @Test(
        "labels, counts, sums and inertia agree with a Double reference",
        arguments: [(n: 1, d: 1, k: 1), (n: 7, d: 3, k: 2), (n: 9, d: 16, k: 16), (n: 50, d: 17, k: 17),
                    (n: 1500, d: 48, k: 32), (n: 1031, d: 384, k: 33), (n: 300, d: 10, k: 100)]
    )
    func agreesWithReference(shape: (n: Int, d: Int, k: Int)) {
        let (points, _) = blobs(n: shape.n, d: shape.d, k: shape.k, spread: 0.4, seed: UInt64(shape.n * 31 + shape.k))
        var rng = SeededRandom(seed: UInt64(shape.d), stream: 3)
        let centroids = rng.normalMatrix(rows: shape.k, cols: shape.d)
        // Double reference: distances, nearest (ties low), and the margin to the runner-up.
        var reference = [Int32](repeating: 0, count: shape.n)
        var margin = [Double](repeating: .infinity, count: shape.n)
        var inertia = 0.0
        for i in 0..<shape.n {
            var distances = [Double](repeating: 0, count: shape.k)
            for j in 0..<shape.k {
                var s = 0.0
                for t in 0..<shape.d {
                    let e = Double(points[i, t]) - Double(centroids[j, t])
                    s += e * e
                }
                distances[j] = s
            }
            let best = distances.indices.min { distances[$0] < distances[$1] || distances[$0] == distances[$1] && $0 < $1 }!
            reference[i] = Int32(best)
            inertia += distances[best]
            for j in 0..<shape.k where j != best { margin[i] = min(margin[i], distances[j] - distances[best]) }
        }
        for variant in Self.variants {
            var labels = [Int32](repeating: -1, count: shape.n)
            let statistics = labels.withUnsafeMutableBufferPointer {
                variant.statistics(points, centroids, labels: $0)
            }
            for i in 0..<shape.n where labels[i] != reference[i] {
                // Only a near-tie, which Float products may resolve either way, may differ.
                #expect(margin[i] < 1e-4, "\(variant.name): row \(i) labelled \(labels[i]), reference \(reference[i]), margin \(margin[i])")
            }
            var counts = [Int](repeating: 0, count: shape.k)
            var sums = [Double](repeating: 0, count: shape.k * shape.d)
            for i in 0..<shape.n {
                let j = Int(labels[i])
                counts[j] += 1
                for t in 0..<shape.d { sums[j * shape.d + t] += Double(points[i, t]) }
            }
            #expect(statistics.counts == counts, "\(variant.name)")
            for i in sums.indices {
                #expect(abs(statistics.sums[i] - sums[i]) <= 1e-9 * max(1, abs(sums[i])), "\(variant.name): sum \(i)")
            }
            #expect(abs(statistics.inertia - inertia) <= 1e-4 * max(1, inertia), "\(variant.name): inertia \(statistics.inertia) against \(inertia)")
        }
    }

    @Test("exact ties go to the lowest centroid index, within a vector lane and across blocks")
    func ties() {
        // 40 centroids in three blocks of 16; copies of one centroid at 5, 21 (same lane, next
        // block) and 37, and of another at 30 and 31 (neighbouring lanes).
        var rng = SeededRandom(seed: 9)
        var centroids = rng.normalMatrix(rows: 40, cols: 24)
        for j in [21, 37] { centroids.setRow(j, to: centroids.row(5)) }
        centroids.setRow(31, to: centroids.row(30))
        let points = Matrix(rowVectors: [centroids.row(5), centroids.row(30), centroids.row(37), centroids.row(0)].map { Array($0) })
        for variant in Self.variants {
            var labels = [Int32](repeating: -1, count: points.rows)
            _ = labels.withUnsafeMutableBufferPointer {
                variant.statistics(points, centroids, labels: $0)
            }
            #expect(labels == [5, 30, 5, 0], "\(variant.name)")
        }
    }

    @Test("with a clip norm, rows over the bound are clipped exactly and the rest summed as they are", arguments: [Float(0.5), 2])
    func clippedRows(clip: Float) {
        let points = blobs(n: 900, d: 40, k: 5, spread: 0.6, seed: 4).points
        var rng = SeededRandom(seed: 12)
        let centroids = rng.normalMatrix(rows: 5, cols: 40)
        let reference = LocalStatistics.compute(points: points, centroids: centroids, clipNorm: clip, kernel: .blas)
        var expected = [Double](repeating: 0, count: 5 * 40)
        let labels = KMeans.assign(points, to: centroids, kernel: .blas)
        for i in 0..<points.rows {
            let row = (0..<40).map { Double(points[i, $0]) }
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let s = min(1, Double(clip) / norm)
            for t in 0..<40 { expected[Int(labels[i]) * 40 + t] += s * row[t] }
        }
        for variant in Self.variants {
            let statistics = variant.statistics(points, centroids, clipNorm: clip)
            #expect(statistics.counts == reference.counts, "\(variant.name)")
            for i in expected.indices {
                #expect(abs(statistics.sums[i] - expected[i]) <= 1e-5 * max(1, abs(expected[i])), "\(variant.name): sum \(i)")
            }
        }
    }

    @Test("centred offsets, clipped or not, agree with the per-row Double rule for every kernel", arguments: [Float(3.5), 5, 0])
    func centredOffsets(clip: Float) {
        let d = 40
        let points = blobs(n: 700, d: d, k: 6, spread: 0.5, seed: 31).points
        // Centroids among the points, so that offsets lie on both sides of the bounds.
        let centroids = points.rows(0..<6)
        let clipNorm: Float? = clip > 0 ? clip : nil
        let labels = KMeans.assign(points, to: centroids, kernel: .blas)
        var expected = [Double](repeating: 0, count: 6 * d)
        var clipped = 0
        for i in 0..<points.rows {
            let j = Int(labels[i])
            let offset = (0..<d).map { Double(points[i, $0]) - Double(centroids[j, $0]) }
            let squared = offset.reduce(0) { $0 + $1 * $1 }
            let factor = clipNorm.map { Clipping.factor(normSquared: squared, clipNorm: Double($0)) } ?? 1
            if factor < 1 { clipped += 1 }
            for t in 0..<d { expected[j * d + t] += factor * offset[t] }
        }
        if clipNorm != nil { #expect(clipped > 0 && clipped < points.rows, "the test must clip some rows and not others") }
        for variant in Self.variants {
            let statistics = variant.statistics(points, centroids, clipNorm: clipNorm, centered: true)
            for i in expected.indices {
                #expect(abs(statistics.sums[i] - expected[i]) <= 1e-9 * max(1, abs(expected[i])), "\(variant.name): sum \(i)")
            }
        }
    }

    @Test("a centred row at or just over the bound adds an offset of norm at most C, in Double, for every kernel")
    func centredContributionWithinBound() {
        var rng = SeededRandom(seed: 78)
        let d = 384
        let centroid = (0..<d).map { _ in Float(rng.nextUniform() - 0.5) }
        for variant in Self.variants {
            var above = 0
            for trial in 0..<200 {
                let clip: Float = [1, 0.3, 2.5][trial % 3]
                let direction = (0..<d).map { _ in rng.nextUniform() * 2 - 1 }
                let length = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
                let target = Double(clip) * (1 + rng.nextUniform() * 1e-4)
                let row = (0..<d).map { Float(Double(centroid[$0]) + direction[$0] * target / length) }
                let statistics = variant.statistics(
                    Matrix(rows: 1, cols: d, storage: row), Matrix(rows: 1, cols: d, storage: centroid), clipNorm: clip, centered: true
                )
                if statistics.sums.reduce(0, { $0 + $1 * $1 }).squareRoot() > Double(clip) { above += 1 }
            }
            #expect(above == 0, "\(variant.name): \(above) of 200 centred contributions ended above C")
        }
    }
}
