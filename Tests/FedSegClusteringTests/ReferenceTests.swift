import FedSegClustering
import FedSegMath
import FedSegTestSupport
import Testing

/// scikit-learn's Lloyd run and metric cases from Tests/Fixtures/kmeans_reference.json.
struct KMeansReference: Decodable {
    struct Run: Decodable {
        var points: [[Double]]
        var initialCentroids: [[Double]]
        var finalCentroids: [[Double]]
        var labels: [Int32]
        var inertia: Double
        var iterations: Int
        var silhouette: Double

        enum CodingKeys: String, CodingKey {
            case points, labels, inertia, iterations, silhouette
            case initialCentroids = "initial_centroids"
            case finalCentroids = "final_centroids"
        }
    }

    struct MetricCase: Decodable {
        var labelsA: [Int32]
        var labelsB: [Int32]
        var ari: Double
        var nmi: Double

        enum CodingKeys: String, CodingKey {
            case ari, nmi
            case labelsA = "labels_a"
            case labelsB = "labels_b"
        }
    }

    var kmeans: Run
    var metricCases: [MetricCase]

    enum CodingKeys: String, CodingKey {
        case kmeans
        case metricCases = "metric_cases"
    }

    static func load() throws -> KMeansReference {
        try Fixtures.decode(KMeansReference.self, from: "kmeans_reference.json")
    }
}

func matrix(_ rows: [[Double]]) -> Matrix {
    Matrix(rowVectors: rows.map { $0.map(Float.init) })
}

@Suite("K-means against scikit-learn")
struct ReferenceTests {
    @Test("Lloyd from the given centroids reaches sklearn's labels, centroids, inertia and iteration count")
    func lloydMatchesSklearn() throws {
        let reference = try KMeansReference.load().kmeans
        let points = matrix(reference.points)
        let configuration = KMeans.Configuration(
            k: reference.initialCentroids.count, maxIterations: 300, tolerance: 0,
            initialization: .centroids(matrix(reference.initialCentroids))
        )
        let result = KMeans.fit(points, configuration)
        #expect(result.labels == reference.labels)
        #expect(result.converged)
        #expect(result.iterations == reference.iterations)
        var worst = 0.0
        for (j, row) in reference.finalCentroids.enumerated() {
            for (t, value) in row.enumerated() { worst = max(worst, abs(Double(result.centroids[j, t]) - value)) }
        }
        #expect(worst < 1e-6, "max centroid difference \(worst)")
        #expect(abs(result.inertia - reference.inertia) / reference.inertia < 1e-6)
    }

    @Test("ARI and NMI match every sklearn case to 1e-9")
    func metricsMatchSklearn() throws {
        for (index, c) in try KMeansReference.load().metricCases.enumerated() {
            let ari = Metrics.adjustedRandIndex(c.labelsA, c.labelsB)
            let nmi = Metrics.normalizedMutualInformation(c.labelsA, c.labelsB)
            #expect(abs(ari - c.ari) < 1e-9, "case \(index): ARI \(ari) vs \(c.ari)")
            #expect(abs(nmi - c.nmi) < 1e-9, "case \(index): NMI \(nmi) vs \(c.nmi)")
        }
    }

    @Test("exact silhouette matches sklearn to 1e-6")
    func silhouetteMatchesSklearn() throws {
        let reference = try KMeansReference.load().kmeans
        let value = Metrics.silhouette(points: matrix(reference.points), labels: reference.labels)
        #expect(abs(value - reference.silhouette) < 1e-6, "silhouette \(value) vs \(reference.silhouette)")
    }

    @Test("a sampled silhouette is close to the exact one")
    func sampledSilhouette() throws {
        let reference = try KMeansReference.load().kmeans
        let value = Metrics.silhouette(points: matrix(reference.points), labels: reference.labels, sampleSize: 600, seed: 4)
        #expect(abs(value - reference.silhouette) < 0.03)
    }
}
