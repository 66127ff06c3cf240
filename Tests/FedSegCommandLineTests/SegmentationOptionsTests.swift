import ArgumentParser
import FedSegCommandLine
import FedSegProtocol
import Testing

@Suite("Segmentation options on the command line")
struct SegmentationOptionsTests {
    @Test("--k auto, --max-k, --clusterer and --min-segment-share reach the run's parameters; defaults are K-means with a 2% floor")
    func applied() throws {
        var parameters = RunParameters(k: 1, epsilon: 1, delta: 1e-6)
        try SegmentationOptions.parse(["--max-k", "12", "--clusterer", "density", "--min-segment-share", "0"]).apply(k: "auto", to: &parameters)
        #expect(parameters.k == 12 && parameters.kSelection == .auto && parameters.clusterer == .density && parameters.minSegmentShare == 0)
        try SegmentationOptions.parse([]).apply(k: "7", to: &parameters)
        #expect(parameters.k == 7 && parameters.kSelection == .fixed && parameters.clusterer == .kmeans && parameters.minSegmentShare == 0.02)
    }

    @Test("a wrong clusterer or k is refused, naming what would work")
    func refused() {
        #expect(throws: (any Error).self) { try SegmentationOptions.parse(["--clusterer", "dbscan"]) }
        var parameters = RunParameters(k: 1, epsilon: 1, delta: 1e-6)
        #expect(throws: ProtocolError.invalidField("k", "must be a positive number of segments or auto (got \"eight\")")) {
            try SegmentationOptions.parse([]).apply(k: "eight", to: &parameters)
        }
    }
}
