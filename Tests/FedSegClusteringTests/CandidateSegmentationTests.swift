import FedSegClustering
import FedSegMath
import Testing

/// Weighted candidates as a start histogram gives them: `perBlob` public candidates around each
/// of `shares.count` well separated centres, each weighted by its blob's users over `perBlob`
/// plus Gaussian noise of `noise` (negative counts included, as a DP release has them).
func weightedCandidates(shares: [Double], users: Double = 5000, perBlob: Int = 6, d: Int = 16, noise: Double = 3, seed: UInt64)
    -> (points: Matrix, weights: [Double], truth: [Int])
{
    var rng = SeededRandom(seed: seed)
    let centres = rng.normalMatrix(rows: shares.count, cols: d)
    var points = Matrix(rows: shares.count * perBlob, cols: d)
    var weights: [Double] = []
    var truth: [Int] = []
    for (b, share) in shares.enumerated() {
        for c in 0..<perBlob {
            for t in 0..<d { points[b * perBlob + c, t] = centres[b, t] + Float(0.08 * rng.nextStandardNormal()) }
            weights.append(share * users / Double(perBlob) + noise * rng.nextStandardNormal())
            truth.append(b)
        }
    }
    return (points, weights, truth)
}

@Suite("Segments chosen from the DP-weighted public candidates")
struct CandidateSegmentationTests {
    @Test("k auto picks the planted number of segments (8 and 16) by weighted silhouette", arguments: [8, 16])
    func autoPicksPlanted(planted: Int) {
        for seed in UInt64(1)...3 {
            let data = weightedCandidates(shares: [Double](repeating: 1 / Double(planted), count: planted), seed: seed)
            let choice = CandidateSegmentation.autoK(data.points, weights: data.weights, maxK: 24, minShare: 0.02, seed: seed)
            #expect(abs(choice.centroids.rows - planted) <= 1, "seed \(seed): chose \(choice.centroids.rows) for \(planted) planted")
            #expect(choice.scores.map(\.k) == Array(2...24))
            #expect(choice.reason.contains("k = \(choice.centroids.rows)"))
        }
    }

    @Test("merging centroids sums their counts, pools their variances and carries their users' spreads to the merged centroid")
    func mergeCarriesSpreads() throws {
        let points = Matrix(rows: 3, cols: 2, storage: [0, 0, 0.2, 0, 5, 5])
        let merged = Matrix(rows: 2, cols: 2, storage: [0.1, 0, 5, 5])
        let result = CandidateSegmentation.merge(points, counts: [100, 300, -2], variances: [0.01, 0.02, 0.03], spreads: [0.1, 0.2, 0.3], into: merged)
        #expect(result.counts == [400, -2])
        #expect(abs(result.variances[0] - (100 * 100 * 0.01 + 300 * 300 * 0.02) / (400 * 400)) < 1e-15)
        #expect(result.variances[1] == .infinity, "no released mass: nothing known")
        let spreads = try #require(result.spreads)
        // Each first segment's users lie 0.1² further from the merged centroid than from their own.
        #expect(abs(spreads[0] - (100 * (0.1 + 0.01) + 300 * (0.2 + 0.01)) / 400) < 1e-7)
        #expect(spreads[1] == 0.3, "without mass, the widest spread")
        #expect(CandidateSegmentation.merge(points, counts: [1, 1, 1], variances: [1, 1, 1], into: merged).spreads == nil)
    }

    @Test("a k that leaves a segment under the minimum share is not eligible")
    func minimumShare() {
        // Two heavy blobs and one holding 1% of the users: k = 3 separates best but is refused.
        let data = weightedCandidates(shares: [0.6, 0.39, 0.01], noise: 0, seed: 4)
        let strict = CandidateSegmentation.autoK(data.points, weights: data.weights, maxK: 6, minShare: 0.02, seed: 1)
        #expect(strict.centroids.rows == 2)
        #expect(strict.scores.first { $0.k == 3 }?.silhouette == nil)
        let lenient = CandidateSegmentation.autoK(data.points, weights: data.weights, maxK: 6, minShare: 0, seed: 1)
        #expect(lenient.centroids.rows == 3)
    }

    @Test("the weighted silhouette is 1 for points on their centroids and falls when a cluster is split")
    func silhouette() {
        let points = Matrix(rows: 4, cols: 2, storage: [0, 0, 0, 0, 10, 10, 10, 10])
        let distances = CandidateSegmentation.distances(points)
        let weights = [5.0, 5, 5, 5]
        #expect(CandidateSegmentation.weightedSilhouette(distances: distances, weights: weights, labels: [0, 0, 1, 1], k: 2) == 1)
        #expect(CandidateSegmentation.weightedSilhouette(distances: distances, weights: weights, labels: [0, 1, 2, 2], k: 3) < 1)
        // Weight 0 does not count: the odd point out changes nothing.
        #expect(CandidateSegmentation.weightedSilhouette(distances: distances, weights: [5, 5, 5, 0], labels: [0, 0, 1, 0], k: 2) == 1)
    }

    @Test("density finds dense regions of very different sizes and ignores the light ones")
    func densityRegions() throws {
        let shares = [0.40, 0.20, 0.10, 0.10, 0.08, 0.06, 0.03, 0.025]
        let data = weightedCandidates(shares: shares + [0.005], seed: 7)
        let choice = try #require(CandidateSegmentation.density(data.points, weights: data.weights, maxK: 24, minShare: 0.02))
        #expect(choice.centroids.rows == shares.count, "every region above 2% of the users, none below")
        // Each region's centroid is its blob's: the nearest candidates to it are all one blob's.
        let nearest = KMeans.assign(data.points, to: choice.centroids).map(Int.init)
        for region in 0..<choice.centroids.rows {
            let blobs = Set(data.truth.indices.filter { nearest[$0] == region && data.truth[$0] < shares.count }.map { data.truth[$0] })
            #expect(blobs.count == 1, "region \(region) covers blobs \(blobs)")
        }
        #expect(choice.reason.hasPrefix("density: \(shares.count) dense regions"))
        let capped = try #require(CandidateSegmentation.density(data.points, weights: data.weights, maxK: 3, minShare: 0.02))
        #expect(capped.centroids.rows == 3, "at most maxK regions, the heaviest")
    }

    @Test("density gives up (nil) where no ε finds two regions")
    func densityNeedsStructure() {
        let data = weightedCandidates(shares: [1], perBlob: 10, seed: 3)
        #expect(CandidateSegmentation.density(data.points, weights: data.weights, maxK: 8, minShare: 0.02) == nil)
    }
}
