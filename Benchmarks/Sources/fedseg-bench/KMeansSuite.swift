import ArgumentParser
import FedSegClustering
import FedSegMath
import Foundation

extension NearestCentroidKernel: @retroactive ExpressibleByArgument {}

struct KMeansSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kmeans",
        abstract: "Milliseconds per Lloyd iteration (assignment, sums and counts, centroid update)."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Number of points.")
    var n = 100_000

    @Option(name: .long, help: "Dimension.")
    var d = 384

    @Option(name: .long, help: "Number of clusters.")
    var k = 32

    @Option(name: .long, help: "Seed for the data and the initial centroids.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Assignment kernel: blas, avx2 or avx512 (default: the widest this CPU runs).")
    var kernel: NearestCentroidKernel = .current

    @Flag(name: .long, help: "Sum each point's offset from its centroid, as a client's private round does.")
    var centered = false

    @Option(name: .long, help: "Clip each summed vector (or offset) to this L2 norm, as a client's private round does.")
    var clipNorm: Float?

    struct Output: Codable {
        var suite = "kmeans"
        var n: Int
        var d: Int
        var k: Int
        var core: String
        var kernel: NearestCentroidKernel
        var centered: Bool
        var clipNorm: Float?
        var threads: Int
        var msPerIteration: Double
        var gemmGflop: Double
        var gflops: Double
        var gbPerSecondReadingX: Double
    }

    /// Unit vectors around k directions, like normalised sentence embeddings, and k of them
    /// drawn as the starting centroids.
    static func unitVectorsAroundDirections(n: Int, d: Int, k: Int, seed: UInt64) -> (points: Matrix, start: Matrix) {
        var rng = SeededRandom(seed: seed)
        var directions = rng.normalMatrix(rows: k, cols: d)
        directions.normalizeRows()
        var points = Matrix(rows: n, cols: d)
        let noise = 1.0 / Double(d).squareRoot()
        for i in 0..<n {
            let c = Int(rng.next(upperBound: UInt64(k)))
            for t in 0..<d { points[i, t] = directions[c, t] + Float(noise * rng.nextStandardNormal()) }
        }
        points.normalizeRows()
        var initRNG = SeededRandom(seed: seed, stream: 1)
        let start = KMeans.gatherRows(points, (0..<k).map { _ in Int(initRNG.next(upperBound: UInt64(n))) })
        return (points, start)
    }

    func run() throws {
        guard kernel.runsHere else { throw ValidationError("this CPU does not run the \(kernel.rawValue) kernel") }
        let (points, start) = Self.unitVectorsAroundDirections(n: n, d: d, k: k, seed: seed)
        var centroids = start
        let update = GlobalUpdate()
        let seconds = medianSeconds(budget: 3, minimumRuns: 10) {
            let statistics = LocalStatistics.compute(points: points, centroids: centroids, clipNorm: clipNorm, centered: centered, kernel: kernel)
            // Centred sums are offsets: the step moves each centroid by their mean.
            let next = update.apply(previous: centered ? Matrix(rows: k, cols: d) : centroids, statistics: statistics).centroids
            if centered {
                for j in 0..<k where statistics.counts[j] > 0 {
                    for t in 0..<d { centroids[j, t] += next[j, t] }
                }
            } else {
                centroids = next
            }
        }
        let gflop = 2 * Double(n) * Double(k) * Double(d) / 1e9
        let output = Output(
            n: n, d: d, k: k, core: BLASKernel.coreName, kernel: kernel, centered: centered, clipNorm: clipNorm, threads: Parallel.workerCount,
            msPerIteration: seconds * 1000, gemmGflop: gflop, gflops: gflop / seconds,
            gbPerSecondReadingX: Double(n * d * 4) / seconds / 1e9
        )
        if json {
            try printJSON(output)
        } else {
            let mode = (centered ? ", centred" : "") + (clipNorm.map { ", clip \($0)" } ?? "")
            print("Lloyd iteration, n=\(n) d=\(d) k=\(k)\(mode), \(kernel.rawValue) kernel, OpenBLAS \(output.core), \(output.threads) workers")
            print(String(format: "%.2f ms/iteration, %.1f GFLOP/s on the %.2f GFLOP distance GEMM, X read at %.1f GB/s",
                         output.msPerIteration, output.gflops, gflop, output.gbPerSecondReadingX))
        }
    }
}
