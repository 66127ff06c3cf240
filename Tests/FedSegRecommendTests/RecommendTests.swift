import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import FedSegRecommend
import Foundation
import Testing

private let catalog = ItemCatalog(ids: (0..<2000).map { "i\($0)" })

@Suite("Recommendation statistics and models")
struct RecommendTests {
    @Test("a user with 1,000 items contributes at most m, distinct, and unknown items are dropped")
    func sensitivityBound() {
        var rng = SeededRandom(seed: 1)
        for m in [1, 5, 20] {
            var histogram = SegmentHistogram(segments: 3, items: catalog.count)
            let items = (0..<1000).map { "i\($0)" } + ["i5", "i5", "unknown-1", "unknown-2"]
            histogram.add(userItems: items, segment: 2, catalog: catalog, maxItemsPerUser: m, using: &rng)
            #expect(histogram.counts.reduce(0, +) == Double(m))
            #expect(histogram.counts.allSatisfy { $0 == 0 || $0 == 1 })
            #expect(histogram.counts[0..<(2 * catalog.count)].allSatisfy { $0 == 0 })
            // L2 change of the whole release is √m: the sensitivity used for the noise.
            #expect(abs(histogram.counts.reduce(0) { $0 + $1 * $1 }.squareRoot() - SegmentHistogram.sensitivity(maxItemsPerUser: m)) < 1e-12)
        }
    }

    @Test("with a global row a user's items count in its segment's row and again in the global row: sensitivity √(2m)")
    func globalRowSensitivity() throws {
        var rng = SeededRandom(seed: 4)
        var histogram = SegmentHistogram(segments: 3, items: catalog.count, globalRow: true)
        #expect(histogram.rows == 4 && histogram.counts.count == 4 * catalog.count)
        histogram.add(userItems: (0..<100).map { "i\($0)" }, segment: 1, catalog: catalog, maxItemsPerUser: 20, using: &rng)
        let segmentRow = histogram.counts[catalog.count..<(2 * catalog.count)]
        let globalRow = histogram.counts[(3 * catalog.count)...]
        #expect(Array(segmentRow) == Array(globalRow) && segmentRow.reduce(0, +) == 20)
        #expect(abs(histogram.counts.reduce(0) { $0 + $1 * $1 }.squareRoot() - SegmentHistogram.sensitivity(maxItemsPerUser: 20, globalRow: true)) < 1e-12)
        #expect(SegmentHistogram.sensitivity(maxItemsPerUser: 20, globalRow: true) == 40.0.squareRoot())
        // Noise is sized for it: z·√(2m) on every count, the global row's included.
        var noisy = SegmentHistogram(segments: 3, items: catalog.count, globalRow: true)
        try noisy.addNoise(noiseMultiplier: 2, maxItemsPerUser: 8, generator: SeededRandom(seed: 5))
        let n = Double(noisy.counts.count)
        #expect(abs(noisy.counts.reduce(0) { $0 + $1 * $1 } / n - 64) < 6 * 64 * (2 / n).squareRoot())
    }

    @Test("the combined estimate gives each segment its share of what the global row adds, and cuts the global list's noise to kσ²/(k + 1)")
    func combinedGlobalRow() throws {
        var histogram = SegmentHistogram(segments: 2, items: 1, globalRow: true)
        histogram.counts = [1, 2, 6]  // S = (1, 2), G = 6: G − ΣS = 3, a third to each segment
        let (combined, factor) = histogram.combined()
        #expect(combined.counts == [2, 3] && !combined.globalRow && combined.segments == 2)
        #expect(abs(factor - (2.0 / 3).squareRoot()) < 1e-12)
        var plain = SegmentHistogram(segments: 2, items: 1)
        plain.counts = [1, 2]
        #expect(plain.combined().histogram.counts == [1, 2] && plain.combined().noiseFactor == 1)
        // Pure noise of σ = 10 on k = 4 rows and the global row: the combined global list's variance
        // is 4·100/5 = 80 (400 from the rows alone), each segment's 80 too (100 alone).
        let k = 4, items = 4_000
        var noise = SegmentHistogram(segments: k, items: items, globalRow: true)
        try noise.addNoise(noiseMultiplier: 10, maxItemsPerUser: 1, generator: SeededRandom(seed: 6))
        noise.counts = noise.counts.map { $0 / 2.0.squareRoot() }  // σ√2 → σ
        let estimate = noise.combined().histogram
        var globalSquares = 0.0, segmentSquares = 0.0
        for i in 0..<items {
            var total = 0.0
            for s in 0..<k { total += estimate.counts[s * items + i] }
            globalSquares += total * total
            segmentSquares += estimate.counts[i] * estimate.counts[i]
        }
        #expect(abs(globalSquares / Double(items) - 80) < 6 * 80 * (2 / Double(items)).squareRoot())
        #expect(abs(segmentSquares / Double(items) - 80) < 6 * 80 * (2 / Double(items)).squareRoot())
    }

    @Test("sampling without replacement is unbiased across a user's items")
    func unbiasedSampling() {
        var rng = SeededRandom(seed: 2)
        var histogram = SegmentHistogram(segments: 1, items: catalog.count)
        let items = (0..<10).map { "i\($0)" }
        for _ in 0..<20_000 { histogram.add(userItems: items, segment: 0, catalog: catalog, maxItemsPerUser: 2, using: &rng) }
        // Each of 10 items is kept with probability 1/5: 4,000 expected, sd ≈ 57.
        for i in 0..<10 { #expect(abs(histogram.counts[i] - 4000) < 6 * 57) }
    }

    @Test("noise is integer with variance z²m")
    func noiseCalibration() throws {
        var histogram = SegmentHistogram(segments: 4, items: catalog.count)
        try histogram.addNoise(noiseMultiplier: 2, maxItemsPerUser: 9, generator: SeededRandom(seed: 3))
        #expect(histogram.counts.allSatisfy { $0 == $0.rounded() })
        let n = Double(histogram.counts.count)
        let variance = histogram.counts.reduce(0) { $0 + $1 * $1 } / n
        #expect(abs(variance - 36) < 6 * 36 * (2 / n).squareRoot())
    }

    @Test("the recommendation release is charged like any other, and the ledger refuses it past the budget")
    func ledgerCharge() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ledger = try PrivacyLedger(path: dir.appendingPathComponent(PrivacyLedger.fileName).path)
        try ledger.setBudget(.init(population: "users", epsilon: 2, delta: 1e-6))
        let z = try Calibration.noiseMultiplier(epsilon: 2, delta: 1e-6, rounds: 1)
        try ledger.charge(releaseID: "recommend", round: 9, mechanism: .init(kind: .discreteGaussian, noiseMultiplier: z), populations: ["users"])
        #expect(abs(try ledger.spent(by: "users") - 2) < 1e-3)
        #expect(throws: PrivacyLedger.Failure.self) {
            try ledger.charge(releaseID: "again", round: 10, mechanism: .init(kind: .discreteGaussian, noiseMultiplier: z), populations: ["users"])
        }
    }

    @Test("models clamp negative counts, shrink small segments towards the global list, and rank")
    func build() {
        var histogram = SegmentHistogram(segments: 2, items: 4)
        histogram.counts = [10, 5, -3, 0, /* segment 1, tiny */ 0, 0, 0, 1]
        let model = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 3, shrinkage: 10)
        #expect(model.segments[0].items == [0, 1, 3])
        #expect(model.segments[0].scores.allSatisfy { $0 >= 0 })
        // Segment 1 has one count: the global order (0, 1, …) dominates after its own item.
        #expect(model.segments[1].items.first == 0)
        #expect(model.global.items == [0, 1, 3])
    }

    @Test("clients accept only correctly signed, newer models of their run and catalogue")
    func signingAndVersions() throws {
        let coordinator = Signing.PrivateKey()
        let mallory = Signing.PrivateKey()
        var histogram = SegmentHistogram(segments: 1, items: 3)
        histogram.counts = [1, 2, 3]
        let model = SegmentModel.build(from: histogram, runID: "run-1", version: 2)
        let signed = try model.signed(with: coordinator)
        #expect(try SegmentModel.verify(signed, coordinatorKey: coordinator.publicKey, runID: "run-1", latestVersion: 1, catalogSize: 3) == model)
        #expect(throws: SegmentModel.VerificationError.badSignature) {
            try SegmentModel.verify(signed, coordinatorKey: mallory.publicKey, runID: "run-1", latestVersion: nil, catalogSize: 3)
        }
        var tampered = signed
        tampered.payload[tampered.payload.startIndex + 5] ^= 1
        #expect(throws: SegmentModel.VerificationError.badSignature) {
            try SegmentModel.verify(tampered, coordinatorKey: coordinator.publicKey, runID: "run-1", latestVersion: nil, catalogSize: 3)
        }
        #expect(throws: SegmentModel.VerificationError.stale(version: 2, latest: 2)) {
            try SegmentModel.verify(signed, coordinatorKey: coordinator.publicKey, runID: "run-1", latestVersion: 2, catalogSize: 3)
        }
        #expect(throws: SegmentModel.VerificationError.wrongRun(expected: "run-2", found: "run-1")) {
            try SegmentModel.verify(signed, coordinatorKey: coordinator.publicKey, runID: "run-2", latestVersion: nil, catalogSize: 3)
        }
        #expect(throws: SegmentModel.VerificationError.catalogMismatch(expected: 4, found: 3)) {
            try SegmentModel.verify(signed, coordinatorKey: coordinator.publicKey, runID: "run-1", latestVersion: nil, catalogSize: 4)
        }
    }

    @Test("ranking drops owned items; blending reorders by similarity; metrics are right")
    func rankingAndMetrics() {
        var histogram = SegmentHistogram(segments: 1, items: 4)
        histogram.counts = [40, 30, 20, 10]
        let model = SegmentModel.build(from: histogram, runID: "r", version: 1, shrinkage: 0)
        #expect(LocalRanker(model: model).recommend(segment: 0, userVector: nil, exclude: [0], k: 2) == [1, 2])
        let items = Matrix(rowVectors: [[1, 0], [1, 0], [0, 1], [1, 0]])
        let blended = LocalRanker(model: model, itemVectors: items, blend: 0.9)
        #expect(blended.recommend(segment: 0, userVector: [0, 1], exclude: [], k: 1) == [2])
        #expect(LocalRanker(model: model).recommend(segment: nil, userVector: nil, exclude: [], k: 1) == [0])
        #expect(RankingMetrics.recall([1, 2, 3], relevant: [2, 9], k: 3) == 0.5)
        #expect(abs(RankingMetrics.ndcg([2, 1], relevant: [2], k: 2) - 1) < 1e-12)
        #expect(abs(RankingMetrics.ndcg([1, 2], relevant: [2], k: 2) - 1 / log2(3)) < 1e-12)
        #expect(RankingMetrics.coverage([[0, 1], [1, 2]], catalogSize: 4) == 0.75)
    }

    @Test("the node's re-ranking reaches items off the segment's list that are nearest the user in content, never owned ones")
    func contentCandidates() {
        var histogram = SegmentHistogram(segments: 1, items: 6)
        histogram.counts = [40, 30, 20, 0, 0, 0]
        // The list keeps the top 3 only; items 4 and 5 are off it, item 5 is the user's own direction.
        let model = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 3, shrinkage: 0)
        let items = Matrix(rowVectors: [[1, 0], [1, 0], [1, 0], [1, 0], [0.6, 0.8], [0, 1]])
        let user: [Float] = [0, 1]
        #expect(LocalRanker(model: model, itemVectors: items, blend: 0.8, contentCandidates: 0).recommend(segment: 0, userVector: user, exclude: [], k: 1) == [0])
        let ranker = LocalRanker(model: model, itemVectors: items, blend: 0.8, contentCandidates: 2)
        #expect(ranker.recommend(segment: 0, userVector: user, exclude: [], k: 2) == [5, 4])
        #expect(ranker.recommend(segment: 0, userVector: user, exclude: [5], k: 1) == [4])
        #expect(!ranker.recommend(segment: 0, userVector: user, exclude: [5, 4], k: 6).contains(5))
    }

    @Test("a node chooses its blend from its own held-out users: content where content predicts, the model's list where the list does, 0 for an edge device")
    func chooseBlend() {
        var histogram = SegmentHistogram(segments: 1, items: 6)
        histogram.counts = [40, 30, 20, 0, 0, 0]
        var model = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 3, shrinkage: 0)
        model.centroids = [1, 0]
        model.dimension = 2
        let items = Matrix(rowVectors: [[1, 0], [1, 0], [1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]])
        let contentUsers = (0..<30).map { _ in LocalRanker.ValidationUser(vector: [0, 1], kept: [0, 1, 2, 3], heldOut: [5]) }
        #expect(LocalRanker.chooseBlend(model: model, itemVectors: items, users: contentUsers).content > 0)
        let listUsers = (0..<30).map { _ in LocalRanker.ValidationUser(vector: [0, 1], kept: [1, 2, 3, 4, 5], heldOut: [0]) }
        // Every blend finds item 0 here (it is all that is left): ties go to the model's own list.
        #expect(LocalRanker.chooseBlend(model: model, itemVectors: items, users: listUsers) == .modelOnly)
        #expect(LocalRanker.chooseBlend(model: model, itemVectors: items, users: Array(contentUsers.prefix(3))) == .modelOnly, "too few users to tell")
    }

    @Test("a segment's list mixed with the global one scores each item by both, best first, and reaches items only the global list has")
    func mixedLists() {
        let segment = SegmentModel.Segment(id: 0, items: [3, 1], scores: [10, 5])
        let global = SegmentModel.Segment(id: -1, items: [0, 1, 3], scores: [4, 3, 1])
        // weight 0.5: item 0 0.5·1 = 0.5; item 1 0.5·0.5 + 0.5·0.75 = 0.625; item 3 0.5·1 + 0.5·0.25 = 0.625 (tie: lower index first).
        let mixed = LocalRanker.PreparedList(mixing: segment, with: global, weight: 0.5)
        #expect(mixed.items == [1, 3, 0])
        #expect(LocalRanker.PreparedList(mixing: segment, with: global, weight: 0).items == [3, 1])
        #expect(LocalRanker.PreparedList(mixing: segment, with: global, weight: 1).items == [0, 1, 3])
        let model = SegmentModel(runID: "r", version: 1, catalogSize: 4, segments: [segment], global: global)
        #expect(LocalRanker(model: model, globalWeight: 0.5).recommend(segment: 0, userVector: nil, exclude: [1], k: 2) == [3, 0])
        #expect(LocalRanker(model: model).recommend(segment: 0, userVector: nil, exclude: [], k: 2) == [3, 1])
        #expect(LocalRanker(model: model, globalWeight: 0.5).recommend(segment: nil, userVector: nil, exclude: [], k: 2) == [0, 1], "no segment: the global list")
    }

    @Test("a node mixes in the global list when its users' held-out items are the globally popular ones, not its segment's")
    func chooseGlobalWeight() {
        var histogram = SegmentHistogram(segments: 2, items: 24)
        // Segment 0 reads items 0–9; segment 1, ten times larger, items 12–21: the global list leads with those.
        for i in 0..<10 {
            histogram.counts[i] = Double(30 - i)
            histogram.counts[24 + 12 + i] = Double(300 - 10 * i)
        }
        var model = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 10, shrinkage: 0)
        model.centroids = [1, 0, 0, 1]
        model.dimension = 2
        // Every item points the user's way: content cannot tell them apart.
        let items = Matrix(rowVectors: Array(repeating: [1, 0], count: 24))
        // Users placed in segment 0 who hold out the global favourite: only the global list reaches it.
        let users = (0..<30).map { _ in LocalRanker.ValidationUser(vector: [1, 0], kept: [], heldOut: [12]) }
        let chosen = LocalRanker.chooseBlend(model: model, itemVectors: items, users: users)
        #expect(chosen.global > 0 && chosen.content == 0)
        #expect(LocalRanker(model: model, blend: chosen).recommend(segment: 0, userVector: [1, 0], exclude: [], k: 10).contains(12))
        #expect(!LocalRanker(model: model).recommend(segment: 0, userVector: [1, 0], exclude: [], k: 10).contains(12))
        // Users who hold out their own segment's items keep the segment's list alone.
        let segmentUsers = (0..<30).map { _ in LocalRanker.ValidationUser(vector: [1, 0], kept: [], heldOut: [0, 1]) }
        #expect(LocalRanker.chooseBlend(model: model, itemVectors: items, users: segmentUsers) == .modelOnly)
    }

    @Test("segment labels are the words that recur among the nearest public texts; released sizes are never negative")
    func labelsAndSizes() {
        let labels = SegmentLabel.make(segments: [
            [
                "The Way of Kings. by Brandon Sanderson. epic-fantasy, fantasy, magic, fiction",
                "Mistborn. by Brandon Sanderson. fantasy, magic, young-adult, fiction",
                "The Name of the Wind. by Patrick Rothfuss. fantasy, epic-fantasy, fiction",
            ],
            ["Gone Girl. by Gillian Flynn. thriller, mystery, fiction", "The Girl on the Train. by Paula Hawkins. thriller, fiction"],
        ])
        // Words every segment shares ("fiction") say nothing; author credits are left out.
        #expect(labels == ["fantasy · epic-fantasy · magic", "girl · thriller · gone"], "\(labels)")
        #expect(SegmentLabel.make(segments: [[]]) == [""])
        let noisy = SegmentsReport.Segment(id: 4, norm: 0.6, releasedCount: -9.4, nearestSeedPhrases: [])
        #expect(noisy.size == 0 && abs(noisy.spread - 0.64) < 1e-12)
        #expect(SegmentsReport.Segment(id: 0, norm: 0.9, releasedCount: 41.6, nearestSeedPhrases: []).size == 42)
        #expect(SegmentsReport.Segment(id: 0, norm: 0.9, releasedCount: nil, nearestSeedPhrases: []).size == nil)
    }
}

@Suite("Noise-aware segment models")
struct NoiseAwareModelTests {
    @Test("when noise swamps a segment's signal the model falls back to the global ranking")
    func fallback() throws {
        // Two segments with the same true preferences (no segment signal), heavy noise.
        let items = 500
        var histogram = SegmentHistogram(segments: 2, items: items)
        for s in 0..<2 { for i in 0..<items { histogram.counts[s * items + i] = Double(max(0, 60 - i)) } }
        try histogram.addNoise(noiseMultiplier: 4, maxItemsPerUser: 16, generator: SeededRandom(seed: 8))  // σ = 16
        let aware = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 10, noiseStd: 16)
        let naive = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 10)
        let truth = Set(0..<10)
        let awareHits = aware.segments.map { Set($0.items).intersection(truth).count }.reduce(0, +)
        let naiveHits = naive.segments.map { Set($0.items).intersection(truth).count }.reduce(0, +)
        #expect(awareHits >= naiveHits)
        #expect(aware.segments[0].items == aware.global.items)
    }

    @Test("with exact counts and strong segment signal the model keeps each segment's own ranking")
    func keepsSignal() {
        var histogram = SegmentHistogram(segments: 2, items: 4)
        histogram.counts = [100, 0, 0, 0, 0, 0, 0, 100]
        let model = SegmentModel.build(from: histogram, runID: "r", version: 1, topN: 1, shrinkage: 0, noiseStd: 1)
        #expect(model.segments[0].items == [0])
        #expect(model.segments[1].items == [3])
    }
}
