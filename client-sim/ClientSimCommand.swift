import ArgumentParser
import FedSegMath
import FedSegSimulation
import Foundation

@main
struct ClientSimMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await ClientSimCommand.main()
    }
}

struct ClientSimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client-sim",
        abstract: "Generate datasets and run simulated FedSeg clients against a coordinator.",
        subcommands: [Generate.self]
    )

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a synthetic dataset with planted segments (users.jsonl, items.jsonl) to a directory."
        )

        @Option(name: .long, help: "Output directory (created if needed).")
        var out: String

        @Option(name: .long, help: "Number of users.")
        var users = 20_000

        @Option(name: .long, help: "Number of planted segments.")
        var segments = 8

        @Option(name: .long, help: "Items per segment.")
        var itemsPerSegment = 60

        @Option(name: .long, help: "Probability that a word or an item comes from outside the user's segment.")
        var noise = 0.15

        @Option(name: .long, help: "Seed: the same seed writes the same files.")
        var seed: UInt64 = 1

        func validate() throws {
            guard users >= 1, segments >= 1, itemsPerSegment >= 1 else { throw ValidationError("sizes must be positive") }
            guard (0...1).contains(noise) else { throw ValidationError("--noise must be in [0, 1]") }
        }

        func run() throws {
            let dataset = PlantedSegments(
                users: users, segments: segments, itemsPerSegment: itemsPerSegment, crossSegmentNoise: noise, seed: seed
            ).generate()
            try dataset.write(to: URL(fileURLWithPath: out, isDirectory: true))
            print("wrote \(dataset.users.count) users in \(segments) planted segments and \(dataset.items.count) items to \(out)")
        }
    }
}
