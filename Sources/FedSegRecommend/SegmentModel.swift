import FedSegCrypto
import FedSegMath
import FedSegProtocol
import Foundation
import SwiftProtobuf

/// One recommendation model per segment, built from (noisy) aggregated counts: negative counts
/// clamped to zero, each segment's distribution shrunk towards the global one in proportion to
/// how little the segment has (score = (c_s(i) + λ·p(i)) / (n_s + λ)), top-N kept. Published
/// signed and versioned; clients check both.
public struct SegmentModel: Codable, Sendable, Equatable {
    public struct Segment: Codable, Sendable, Equatable {
        public var id: Int
        /// Catalogue indices, best first.
        public var items: [Int]
        public var scores: [Double]

        public init(id: Int, items: [Int], scores: [Double]) {
            self.id = id
            self.items = items
            self.scores = scores
        }
    }

    public var runID: String
    public var version: Int
    public var catalogSize: Int
    public var segments: [Segment]
    /// The global ranking (for users without a segment).
    public var global: Segment
    /// The segments' centroids (k × dimension, row-major) and the embedder they live in, so a
    /// client places its users, new ones included, without asking anyone. Empty in models built
    /// only for evaluation.
    public var centroids: [Float] = []
    public var dimension: Int = 0
    public var embedderID: String = ""
    /// The catalogue's item ids in index order (empty, or `catalogSize` of them).
    public var catalogItems: [String] = []

    public init(runID: String, version: Int, catalogSize: Int, segments: [Segment], global: Segment) {
        self.runID = runID
        self.version = version
        self.catalogSize = catalogSize
        self.segments = segments
        self.global = global
    }

    /// The centroids as a matrix (nil when the model carries none).
    public var centroidMatrix: Matrix? {
        guard dimension > 0, !centroids.isEmpty, centroids.count % dimension == 0 else { return nil }
        return Matrix(rows: centroids.count / dimension, cols: dimension, storage: centroids)
    }

    /// Builds the model from a histogram whose counts carry Gaussian noise of standard deviation
    /// `noiseStd` each (0 for exact counts).
    ///
    /// Each segment's counts are shrunk towards what the global distribution predicts for it,
    /// n_s·p(i), by an empirical-Bayes weight w_s = V_s / (V_s + σ²), where V_s is the segment's
    /// excess variance around that prediction (its signal): where noise swamps a segment's
    /// signal the model falls back to global popularity instead of ranking noise. `shrinkage` (λ)
    /// additionally pulls small segments towards the global list: score = (ĉ + λp)/(n + λ).
    public static func build(
        from histogram: SegmentHistogram, runID: String, version: Int, topN: Int = 100, shrinkage: Double = 50,
        noiseStd: Double = 0
    ) -> SegmentModel {
        let items = histogram.items
        var global = [Double](repeating: 0, count: items)
        for s in 0..<histogram.segments {
            for i in 0..<items { global[i] += histogram.counts[s * items + i] }
        }
        global = global.map { max(0, $0) }
        let globalTotal = max(global.reduce(0, +), 1e-12)
        let globalShare = global.map { $0 / globalTotal }
        func top(_ scores: [Double], id: Int) -> Segment {
            let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(topN)
            return Segment(id: id, items: Array(order), scores: order.map { scores[$0] })
        }
        var segments: [Segment] = []
        let noiseVariance = noiseStd * noiseStd
        for s in 0..<histogram.segments {
            let row = Array(histogram.counts[s * items..<(s + 1) * items])
            let total = max(0, row.reduce(0, +))
            var residualVariance = 0.0
            for i in 0..<items {
                let diff = row[i] - total * globalShare[i]
                residualVariance += diff * diff
            }
            residualVariance /= Double(max(1, items))
            let signal = max(0, residualVariance - noiseVariance)
            let weight = signal + noiseVariance > 0 ? signal / (signal + noiseVariance) : 1
            var scores = [Double](repeating: 0, count: items)
            for i in 0..<items {
                let predicted = total * globalShare[i]
                let estimate = max(0, predicted + weight * (row[i] - predicted))
                scores[i] = (estimate + shrinkage * globalShare[i]) / (total + shrinkage)
            }
            segments.append(top(scores, id: s))
        }
        return SegmentModel(runID: runID, version: version, catalogSize: items, segments: segments, global: top(globalShare, id: -1))
    }

    /// The wire form (`fedseg.v1.SegmentModel`); its serialized bytes are what is signed.
    public var message: Fedseg_V1_SegmentModel {
        func wire(_ segment: Segment) -> Fedseg_V1_Segment {
            .with {
                $0.id = Int32(segment.id)
                $0.items = segment.items.map { UInt32($0) }
                $0.scores = segment.scores
            }
        }
        return .with {
            $0.runID = runID
            $0.version = UInt32(version)
            $0.catalogSize = UInt32(catalogSize)
            $0.segments = segments.map(wire)
            $0.global = wire(global)
            $0.dimension = UInt32(dimension)
            $0.k = UInt32(dimension > 0 ? centroids.count / dimension : 0)
            $0.centroids = centroids
            $0.embedderID = embedderID
            $0.catalogItems = catalogItems
        }
    }

    /// Reads the wire form, refusing item indices outside the catalogue or mismatched lists.
    public init(message: Fedseg_V1_SegmentModel) throws {
        func segment(_ wire: Fedseg_V1_Segment) throws -> Segment {
            guard wire.items.count == wire.scores.count, wire.items.allSatisfy({ $0 < message.catalogSize }),
                wire.scores.allSatisfy(\.isFinite)
            else { throw VerificationError.malformed }
            return Segment(id: Int(wire.id), items: wire.items.map(Int.init), scores: wire.scores)
        }
        runID = message.runID
        version = Int(message.version)
        catalogSize = Int(message.catalogSize)
        segments = try message.segments.map(segment)
        global = try segment(message.global)
        guard message.centroids.count == Int(message.k) * Int(message.dimension), message.centroids.allSatisfy(\.isFinite),
            message.dimension <= 4096, message.k <= 1024
        else { throw VerificationError.malformed }
        centroids = message.centroids
        dimension = Int(message.dimension)
        embedderID = message.embedderID
        guard message.catalogItems.isEmpty || message.catalogItems.count == catalogSize else { throw VerificationError.malformed }
        catalogItems = message.catalogItems
    }

    /// The bytes that are signed: the serialized wire message.
    public func payloadBytes() throws -> Data {
        try message.serializedBytes()
    }

    public struct Signed: Codable, Sendable, Equatable {
        public var payload: Data
        public var signature: [UInt8]

        public init(payload: Data, signature: [UInt8]) {
            self.payload = payload
            self.signature = signature
        }
    }

    public func signed(with key: borrowing Signing.PrivateKey) throws -> Signed {
        let payload = try payloadBytes()
        return Signed(payload: payload, signature: key.signature(for: payload))
    }

    public enum VerificationError: Error, Equatable {
        case badSignature
        case stale(version: Int, latest: Int)
        case wrongRun(expected: String, found: String)
        case malformed
        case catalogMismatch(expected: Int, found: Int)
    }

    /// What a client does with a published model: verify the signature against the pinned
    /// coordinator key, then refuse an older version, another run or another catalogue.
    public static func verify(
        _ signed: Signed, coordinatorKey: Signing.PublicKey, runID: String?, latestVersion: Int?, catalogSize: Int?
    ) throws -> SegmentModel {
        guard coordinatorKey.isValidSignature(signed.signature, for: signed.payload) else { throw VerificationError.badSignature }
        guard let message = try? Fedseg_V1_SegmentModel(serializedBytes: signed.payload),
            let model = try? SegmentModel(message: message)
        else { throw VerificationError.malformed }
        if let runID, model.runID != runID { throw VerificationError.wrongRun(expected: runID, found: model.runID) }
        if let latestVersion, model.version <= latestVersion { throw VerificationError.stale(version: model.version, latest: latestVersion) }
        if let catalogSize, model.catalogSize != catalogSize {
            throw VerificationError.catalogMismatch(expected: catalogSize, found: model.catalogSize)
        }
        return model
    }
}

/// Ranking on the client: the user's segment list, optionally blended with the cosine similarity
/// between the user's embedding and each item's, minus what the user already has.
public struct LocalRanker: Sendable {
    public let model: SegmentModel
    public let itemVectors: Matrix?
    /// Weight of the cosine similarity in the blend (0: segment scores only).
    public var blend: Double

    public init(model: SegmentModel, itemVectors: Matrix? = nil, blend: Double = 0) {
        self.model = model
        self.itemVectors = itemVectors
        self.blend = blend
    }

    /// Top `k` catalogue indices for a user in `segment` (nil: no segment, the global list).
    public func recommend(segment: Int?, userVector: [Float]?, exclude: Set<Int>, k: Int = 10) -> [Int] {
        let list = segment.flatMap { s in model.segments.first { $0.id == s } } ?? model.global
        guard blend > 0, let itemVectors, let userVector else {
            return Array(list.items.lazy.filter { !exclude.contains($0) }.prefix(k))
        }
        // Normalise segment scores to [0, 1] over the list, then blend with cosine.
        let best = list.scores.first ?? 1
        var scored: [(Int, Double)] = []
        for (position, item) in list.items.enumerated() where !exclude.contains(item) {
            let cosine = Double(BLAS.dot(userVector, itemVectors.row(item)))
            scored.append((item, (1 - blend) * list.scores[position] / max(best, 1e-12) + blend * cosine))
        }
        return scored.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(k).map(\.0)
    }
}

/// Recall@K, NDCG@K (binary relevance) and catalogue coverage.
public enum RankingMetrics {
    public static func recall(_ recommended: [Int], relevant: Set<Int>, k: Int = 10) -> Double {
        guard !relevant.isEmpty else { return 0 }
        return Double(recommended.prefix(k).filter(relevant.contains).count) / Double(relevant.count)
    }

    public static func ndcg(_ recommended: [Int], relevant: Set<Int>, k: Int = 10) -> Double {
        guard !relevant.isEmpty else { return 0 }
        var dcg = 0.0
        for (rank, item) in recommended.prefix(k).enumerated() where relevant.contains(item) { dcg += 1 / log2(Double(rank + 2)) }
        let ideal = (0..<min(k, relevant.count)).reduce(0.0) { $0 + 1 / log2(Double($1 + 2)) }
        return dcg / ideal
    }

    public static func coverage(_ lists: [[Int]], catalogSize: Int) -> Double {
        guard catalogSize > 0 else { return 0 }
        return Double(Set(lists.joined()).count) / Double(catalogSize)
    }
}
