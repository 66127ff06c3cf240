import ArgumentParser
import FedSegProtocol

// How a run's segments are chosen, on every command line that starts or simulates a run
// (`fedseg run start`, `client-sim run|simulate`): one option group, one set of help texts.

extension Clusterer: ExpressibleByArgument {}

public struct SegmentationOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: "With --k auto or --clusterer density: the most segments allowed.")
    public var maxK = 24

    @Option(name: .long, help: "kmeans, or density: DBSCAN on the DP-weighted public candidates picks the segments (no extra ε).")
    public var clusterer: Clusterer = .kmeans

    @Option(name: .long, help: "Drop a segment whose released count in the last Lloyd round falls under this share of all (0 keeps every segment).")
    public var minSegmentShare = 0.02

    public init() {}

    /// The help text of each command's `--k`.
    public static let kHelp: ArgumentHelp =
        "Number of segments (with --clusterer density: the most allowed), or auto: chosen in 2...--max-k from the first Lloyd round's released centroids (no extra ε)."

    /// `--k` as given (a number or `auto`): the run's k (the most allowed with auto) and how it is chosen.
    public func segmentCount(_ k: String) throws -> (k: Int, selection: SegmentCountSelection) {
        try RunParameters.segmentCount(k, maxK: maxK)
    }

    /// `--k` as given, applied with these options to the run's parameters.
    public func apply(k: String, to parameters: inout RunParameters) throws {
        (parameters.k, parameters.kSelection) = try segmentCount(k)
        parameters.clusterer = clusterer
        parameters.minSegmentShare = minSegmentShare
    }
}
