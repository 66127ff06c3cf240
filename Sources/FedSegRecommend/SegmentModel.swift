import FedSegClustering
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
/// between the user's own embedding and each item's, minus what the user already has. The blend
/// costs no privacy (the user's vector never leaves the node; items are public) and reaches past
/// the segment's list: the items nearest the user in content are candidates too.
public struct LocalRanker: Sendable {
    /// The two weights a node chooses from its own users (`chooseBlend`): `content`, the cosine
    /// similarity's weight against the model's list; `global`, the global list's weight within
    /// that list beside the user's segment's (0: the segment's list alone).
    public struct Blend: Sendable, Equatable, Codable {
        public var content: Double
        public var global: Double

        public init(content: Double, global: Double = 0) {
            self.content = content
            self.global = global
        }

        /// The segment's list alone, no content.
        public static let modelOnly = Blend(content: 0)
    }

    public let model: SegmentModel
    public let itemVectors: Matrix?
    /// Weight of the cosine similarity in the blend (0: the model's scores only; nodes choose it with `chooseBlend`).
    public var blend: Double
    /// Weight of the global list beside the segment's (0: the segment's list alone).
    public var globalWeight: Double
    /// How many of the items nearest the user in content join the segment's list as candidates.
    public var contentCandidates: Int

    public init(model: SegmentModel, itemVectors: Matrix? = nil, blend: Double = 0, globalWeight: Double = 0, contentCandidates: Int = 200) {
        self.model = model
        self.itemVectors = itemVectors
        self.blend = blend
        self.globalWeight = globalWeight
        self.contentCandidates = contentCandidates
    }

    public init(model: SegmentModel, itemVectors: Matrix? = nil, blend: Blend, contentCandidates: Int = 200) {
        self.init(model: model, itemVectors: itemVectors, blend: blend.content, globalWeight: blend.global, contentCandidates: contentCandidates)
    }

    /// Top `k` catalogue indices for a user in `segment` (nil: no segment, the global list).
    public func recommend(segment: Int?, userVector: [Float]?, exclude: Set<Int>, k: Int = 10) -> [Int] {
        let list = prepared(segment)
        guard blend > 0, let itemVectors, let userVector, itemVectors.cols == userVector.count, itemVectors.rows > 0 else {
            return Array(list.items.lazy.filter { !exclude.contains($0) }.prefix(k))
        }
        var cosines = [Float](repeating: 0, count: itemVectors.rows)
        BLAS.gemv(itemVectors, x: userVector, into: &cosines)
        return rank(list, cosines: cosines, nearest: nearest(cosines, exclude: exclude), exclude: exclude, blend: blend, k: k)
    }

    /// The segment's list (the global one for nil or an unknown segment).
    public func list(_ segment: Int?) -> SegmentModel.Segment {
        segment.flatMap { s in model.segments.first { $0.id == s } } ?? model.global
    }

    /// The list this ranker ranks for `segment`: the segment's, mixed with the global list by
    /// `globalWeight` (the global list alone for nil or an unknown segment).
    public func prepared(_ segment: Int?) -> PreparedList {
        let own = list(segment)
        guard globalWeight > 0, segment.flatMap({ s in model.segments.first { $0.id == s } }) != nil else { return PreparedList(own) }
        return PreparedList(mixing: own, with: model.global, weight: globalWeight)
    }

    /// The `contentCandidates` items nearest the user (highest cosine, ties to the lower index),
    /// without excluded ones: one pass with a bounded heap, no sort of the whole catalogue.
    public func nearest(_ cosines: [Float], exclude: Set<Int>) -> [Int] {
        let count = contentCandidates
        guard count > 0 else { return [] }
        // `worse(a, b)`: a ranks below b. The heap's root is the worst item kept so far.
        func worse(_ a: Int, _ b: Int) -> Bool { cosines[a] != cosines[b] ? cosines[a] < cosines[b] : a > b }
        var heap: [Int] = []
        heap.reserveCapacity(count)
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1, right = left + 1
                var worst = parent
                if left < heap.count, worse(heap[left], heap[worst]) { worst = left }
                if right < heap.count, worse(heap[right], heap[worst]) { worst = right }
                if worst == parent { return }
                heap.swapAt(parent, worst)
                parent = worst
            }
        }
        for item in cosines.indices where !exclude.contains(item) {
            if heap.count < count {
                heap.append(item)
                var child = heap.count - 1
                while child > 0, worse(heap[child], heap[(child - 1) / 2]) {
                    heap.swapAt(child, (child - 1) / 2)
                    child = (child - 1) / 2
                }
            } else if worse(heap[0], item) {
                heap[0] = item
                siftDown(0)
            }
        }
        return heap.sorted { worse($1, $0) }
    }

    /// A segment's list prepared for ranking many users: its scores normalised to [0, 1] and an
    /// index of its items (built once, not per user).
    public struct PreparedList: Sendable {
        public let items: [Int]
        let normalized: [Double]
        let position: [Int: Int]

        public init(_ list: SegmentModel.Segment) {
            let best = max(list.scores.first ?? 1, 1e-12)
            self.init(items: list.items, normalized: list.scores.map { $0 / best })
        }

        /// Two lists as one: each item scored (1 − weight)·(its score in `list` / best) +
        /// weight·(its score in `other` / best), 0 where a list lacks it, best first (ties to the
        /// lower index), normalised again to a best of 1.
        public init(mixing list: SegmentModel.Segment, with other: SegmentModel.Segment, weight: Double) {
            var scores: [Int: Double] = [:]
            for (source, share) in [(list, 1 - weight), (other, weight)] where share > 0 {
                let best = max(source.scores.first ?? 1, 1e-12)
                for (item, score) in zip(source.items, source.scores) { scores[item, default: 0] += share * score / best }
            }
            let order = scores.keys.sorted { scores[$0]! != scores[$1]! ? scores[$0]! > scores[$1]! : $0 < $1 }
            let best = max(order.first.flatMap { scores[$0] } ?? 1, 1e-12)
            self.init(items: order, normalized: order.map { scores[$0]! / best })
        }

        init(items: [Int], normalized: [Double]) {
            self.items = items
            self.normalized = normalized
            var position = [Int: Int](minimumCapacity: items.count)
            for (p, item) in items.enumerated() where position[item] == nil { position[item] = p }
            self.position = position
        }
    }

    /// The list's items and the nearest ones, scored (1 − blend)·(segment score / best) + blend·cosine;
    /// the top `k`, kept in a small sorted buffer (no sort of every candidate).
    public func rank(_ list: PreparedList, cosines: [Float], nearest: [Int], exclude: Set<Int>, blend: Double, k: Int) -> [Int] {
        var top: [(item: Int, score: Double)] = []
        top.reserveCapacity(k + 1)
        func offer(_ item: Int, _ score: Double) {
            if top.count == k, let last = top.last, !(score > last.score || (score == last.score && item < last.item)) { return }
            var at = top.count
            while at > 0, score > top[at - 1].score || (score == top[at - 1].score && item < top[at - 1].item) { at -= 1 }
            top.insert((item, score), at: at)
            if top.count > k { top.removeLast() }
        }
        for (p, item) in list.items.enumerated() where item < cosines.count && !exclude.contains(item) && list.position[item] == p {
            offer(item, (1 - blend) * list.normalized[p] + blend * Double(cosines[item]))
        }
        for item in nearest where list.position[item] == nil && !exclude.contains(item) {
            offer(item, blend * Double(cosines[item]))
        }
        return top.map(\.item)
    }

    /// The content weights a node tries on its own users (`chooseBlend`).
    public static let blendCandidates: [Double] = [0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9]
    /// The global list's weights it tries beside each (1: the global list alone).
    public static let globalCandidates: [Double] = [0, 0.25, 0.5, 0.75, 1]

    /// One of a node's users held out for choosing the blend: their vector without some of their
    /// items, the items they keep (excluded from ranking) and those held out.
    public struct ValidationUser: Sendable {
        public var vector: [Float]
        public var kept: Set<Int>
        public var heldOut: Set<Int>

        public init(vector: [Float], kept: Set<Int>, heldOut: Set<Int>) {
            self.vector = vector
            self.kept = kept
            self.heldOut = heldOut
        }
    }

    /// The blend that ranks this node's own held-out items best (Recall@10 summed over its users), from the
    /// node's own data only: no privacy cost, and each tenant weighs content against the model,
    /// and its segments' lists against the global one, as its users bear out. Fewer than
    /// `minimumUsers` users (an edge device): the segment's list alone.
    public static func chooseBlend(model: SegmentModel, itemVectors: Matrix, users: [ValidationUser], minimumUsers: Int = 20) -> Blend {
        guard users.count >= minimumUsers, let centroids = model.centroidMatrix, centroids.cols == itemVectors.cols, itemVectors.rows > 0 else { return .modelOnly }
        var points = Matrix(rows: users.count, cols: centroids.cols)
        for (u, user) in users.enumerated() { points.setRow(u, to: user.vector) }
        let segments = KMeans.assign(points, to: centroids)
        // One product for every user's cosines; each user's nearest items do not depend on the blend.
        let cosines = BLAS.multiply(points, itemVectors, transB: .transpose)
        // Candidates in order of preference: ties go to the smaller global weight, then the smaller
        // content weight (the model's own segment lists first).
        let candidates = globalCandidates.flatMap { global in blendCandidates.map { Blend(content: $0, global: global) } }
        let lists = globalCandidates.map { global in
            let ranker = LocalRanker(model: model, itemVectors: itemVectors, blend: 1, globalWeight: global)
            return (0..<centroids.rows).map { ranker.prepared($0) }
        }
        let ranker = LocalRanker(model: model, itemVectors: itemVectors, blend: 1)
        var hits = [Double](repeating: 0, count: candidates.count)
        for (u, user) in users.enumerated() {
            let row = cosines.row(u)
            let nearest = ranker.nearest(row, exclude: user.kept)
            for (c, candidate) in candidates.enumerated() {
                let list = lists[c / blendCandidates.count][Int(segments[u])]
                let top = ranker.rank(list, cosines: row, nearest: candidate.content > 0 ? nearest : [], exclude: user.kept, blend: candidate.content, k: 10)
                hits[c] += Double(top.count { user.heldOut.contains($0) }) / Double(max(1, user.heldOut.count))
            }
        }
        let best = hits.indices.max { hits[$0] != hits[$1] ? hits[$0] < hits[$1] : $0 > $1 } ?? 0
        return candidates[best]
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

/// Short readable names for segments, from public text only: for each segment, the words that
/// recur among the seed phrases (or item texts) nearest its centroid and are rare in the other
/// segments' (count × log(segments / segments using the word)), e.g. "fantasy · magic · epic".
public enum SegmentLabel {
    static let stopwords: Set<String> = [
        "the", "and", "for", "with", "from", "that", "this", "into", "your", "you", "are", "was", "its", "his", "her", "our", "their",
        "all", "about", "book", "books", "series", "vol", "volume", "edition", "novel",
    ]

    /// One label per segment; `phrases[j]` are the public texts nearest segment j.
    public static func make(segments phrases: [[String]], words: Int = 3) -> [String] {
        let counted = phrases.map(counts)
        var segmentsUsing: [String: Int] = [:]
        for (segmentCounts, _) in counted { for word in segmentCounts.keys { segmentsUsing[word, default: 0] += 1 } }
        let total = Double(max(1, phrases.count))
        return counted.map { segmentCounts, order in
            let score = { (word: String) in Double(segmentCounts[word] ?? 0) * (log(total / Double(segmentsUsing[word] ?? 1)) + 0.1) }
            let ranked = order.enumerated().sorted { a, b in
                let (sa, sb) = (score(a.element), score(b.element))
                return sa != sb ? sa > sb : a.offset < b.offset
            }
            return ranked.prefix(words).map(\.element).joined(separator: " · ")
        }
    }

    /// Each word's count over the phrases (once per phrase), and the words in first-seen order.
    static func counts(_ phrases: [String]) -> ([String: Int], [String]) {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for phrase in phrases {
            var seen = Set<String>()
            // Author credits ("by …" sentences) name people, not what a segment is about.
            let described = phrase.lowercased().components(separatedBy: ". ").filter { !$0.hasPrefix("by ") }.joined(separator: " ")
            let tokens = described.split { !($0.isLetter || $0.isNumber || $0 == "-") }.map(String.init)
            for token in tokens where token.count >= 3 && !stopwords.contains(token) && !token.allSatisfy(\.isNumber) && seen.insert(token).inserted {
                if counts[token] == nil { order.append(token) }
                counts[token, default: 0] += 1
            }
        }
        return (counts, order)
    }
}
