import ArgumentParser
import FedSegClustering
import FedSegMath
import Foundation

struct KMeansCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kmeans",
        abstract: "Centralised, non-private K-means on embeddings: the baseline FedSeg is compared with.",
        subcommands: [Sweep.self]
    )

    struct Sweep: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inertia (for an elbow) and silhouette for each k, to see what k the data supports."
        )

        @Option(name: .long, help: "JSON Lines with {\"embedding\": [...]} per line (default: stdin).")
        var input: String?

        @Option(name: .long, help: "Smallest k.")
        var kMin = 2

        @Option(name: .long, help: "Largest k.")
        var kMax = 16

        @Flag(name: .long, help: "Cosine K-means on normalised vectors.")
        var spherical = false

        @Option(name: .long, help: "Points sampled for the silhouette.")
        var silhouetteSample = 2000

        @Option(name: .long, help: "Seed for k-means++ and the silhouette sample.")
        var seed: UInt64 = 0

        @Flag(name: .long, help: "One JSON object instead of a table.")
        var json = false

        func validate() throws {
            guard kMin >= 1, kMax >= kMin else { throw ValidationError("need 1 <= --k-min <= --k-max") }
        }

        func run() throws {
            let data = try input.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
                ?? FileHandle.standardInput.readDataToEndOfFile()
            let points: Matrix
            do {
                points = try VectorLines.parse(data)
            } catch let failure as VectorLines.Failure {
                throw CommandFailure("\(input ?? "stdin"): \(failure)")
            }
            guard points.rows >= kMax else {
                throw ValidationError("\(points.rows) vectors cannot make \(kMax) clusters")
            }
            let rows = KSweep.run(
                points, ks: kMin...kMax, spherical: spherical, seed: seed, silhouetteSample: silhouetteSample
            )
            let best = KSweep.bestBySilhouette(rows)
            if json {
                struct Output: Encodable {
                    var n: Int
                    var dimension: Int
                    var rows: [KSweep.Row]
                    var bestKBySilhouette: Int?
                }
                try JSONOutput.print(Output(n: points.rows, dimension: points.cols, rows: rows, bestKBySilhouette: best))
                return
            }
            print("n=\(points.rows) d=\(points.cols)\(spherical ? " (spherical)" : "")")
            print("   k        inertia  silhouette")
            for row in rows {
                let marker = row.k == best ? "  <- best silhouette" : ""
                print(String(format: "%4d %14.4f %11.4f", row.k, row.inertia, row.silhouette) + marker)
            }
        }
    }
}
