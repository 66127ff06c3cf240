import FedSegClustering
import FedSegMath
import FedSegRecommend
import FedSegNode
import Foundation

/// What the simulator reports about a finished run that no client could compute: recommendation
/// quality on held-out interactions against the strongest non-private baselines. Only the
/// evaluator knows everyone's data; it reads the run's published model like any node.
public enum Evaluation {
    public struct RecommendationRow: Codable, Sendable {
        public var model: String
        public var recallAt10: Double
        public var ndcgAt10: Double
        public var coverage: Double
        public var coldStartRecallAt10: Double
        /// Re-ranked rows: the content weight each client chose from its own users (client order).
        public var blends: [Double]?
        /// Re-ranked rows: the global list's weight beside the segment's each client chose.
        public var globalWeights: [Double]?

        enum CodingKeys: String, CodingKey {
            case model, coverage, blends
            case globalWeights = "global_weights"
            case recallAt10 = "recall_at_10"
            case ndcgAt10 = "ndcg_at_10"
            case coldStartRecallAt10 = "cold_start_recall_at_10"
        }
    }

    /// Recall@10, NDCG@10 and coverage for global popularity, non-private and private segment
    /// models, each also re-ranked on the node; cold-start users are placed by their text alone.
    static func evaluate(
        exact: SegmentHistogram, privateModel: SegmentModel, labels: [Int32], centroids: Matrix, prepared: PreparedDataset, members: [[Int]]
    ) -> [RecommendationRow] {
        let (points, textVectors, users) = (prepared.points, prepared.textVectors, prepared.dataset.users)
        let (training, heldOut, coldStart, itemRow, itemVectors) = (prepared.training, prepared.heldOut, prepared.coldStart, prepared.itemRow, prepared.itemVectors)
        // Global popularity from the exact training interactions: the strongest form of the baseline.
        var popularity = SegmentHistogram(segments: 1, items: exact.items)
        for s in 0..<exact.segments { for i in 0..<exact.items { popularity.counts[i] += exact.counts[s * exact.items + i] } }
        let popular = SegmentModel.build(from: popularity, runID: "eval", version: 1)
        let nonPrivate = SegmentModel.build(from: exact, runID: "eval", version: 1)
        let coldLabels = KMeans.assign(textVectors, to: centroids)
        var client = [Int](repeating: -1, count: users.count)
        for (c, list) in members.enumerated() { for u in list { client[u] = c } }
        // What each node does (*_reranked): the model's lists (each segment's mixed with the global
        // one) re-ranked with the user's own vector by the blend the node chose from its own users;
        // popularity_reranked is the same on exact popularity, the strongest non-private rival.
        // New users take the median client's weights.
        // (Nodes validate on up to 500 of their users; the simulator on 200 of each client's, to stay quick.)
        // A model released over the catalogue's first items only (the candidate items) is ranked
        // as a node ranks it: content reaches only the items of its catalogue.
        func reach(_ model: SegmentModel) -> Int { model.catalogSize > 0 ? min(model.catalogSize, itemVectors.rows) : itemVectors.rows }
        func blends(_ model: SegmentModel) -> [LocalRanker.Blend] {
            var withModel = model
            withModel.centroids = centroids.storage
            withModel.dimension = centroids.cols
            let items = reach(model)
            let reachable = items == itemVectors.rows ? itemVectors : itemVectors.rows(0..<items)
            let catalogIndex = items == itemVectors.rows ? itemRow : itemRow.filter { $0.value < items }
            return members.map { list in
                var texts = Matrix(rows: list.count, cols: textVectors.cols)
                for (row, u) in list.enumerated() { texts.setRow(row, to: textVectors.row(u)) }
                let validation = UserProfiles.validationUsers(
                    hasText: list.map { !users[$0].texts.isEmpty }, items: list.map { training[$0] }, textVectors: texts, itemVectors: itemVectors,
                    itemRow: itemRow, catalogIndex: catalogIndex, limit: 200
                )
                return LocalRanker.chooseBlend(model: withModel, itemVectors: reachable, users: validation)
            }
        }
        let rankers: [(String, SegmentModel, [LocalRanker.Blend]?, Bool)] = [
            ("popularity", popular, nil, false),
            ("segment_nonprivate", nonPrivate, nil, true),
            ("segment_private", privateModel, nil, true),
            ("private_reranked", privateModel, blends(privateModel), true),
            ("popularity_reranked", popular, blends(popular), false),
            ("nonprivate_reranked", nonPrivate, blends(nonPrivate), true),
        ]
        // Every evaluated user's cosines and nearest items, once for all models (one product).
        let evaluated = users.indices.filter { !heldOut[$0].isEmpty }
        let excludes = evaluated.map { coldStart[$0] ? Set<Int>() : Set(training[$0].compactMap { itemRow[$0] }) }
        var queries = Matrix(rows: evaluated.count, cols: points.cols)
        for (row, u) in evaluated.enumerated() { queries.setRow(row, to: coldStart[u] ? textVectors.row(u) : points.row(u)) }
        let cosines = itemVectors.rows > 0 && !evaluated.isEmpty ? BLAS.multiply(queries, itemVectors, transB: .transpose) : Matrix(rows: evaluated.count, cols: 0)
        let content = LocalRanker(model: popular, itemVectors: itemVectors, blend: 1)
        // Each user's nearest items within each reach a re-ranked model has (one pass per reach).
        var nearestWithin: [Int: [[Int]]] = [:]
        for (_, model, clientBlends, _) in rankers where clientBlends != nil && nearestWithin[reach(model)] == nil {
            let items = reach(model)
            nearestWithin[items] = evaluated.indices.map { row in
                let cosineRow = cosines.row(row)
                return content.nearest(items == cosineRow.count ? cosineRow : Array(cosineRow.prefix(items)), exclude: excludes[row])
            }
        }
        return rankers.map { name, model, clientBlends, segmented in
            let nearest = nearestWithin[reach(model)] ?? []
            let coldBlend = clientBlends.map { blends in
                LocalRanker.Blend(content: blends.map(\.content).sorted()[blends.count / 2], global: blends.map(\.global).sorted()[blends.count / 2])
            } ?? .modelOnly
            let ranker = LocalRanker(model: model, itemVectors: itemVectors, blend: 1)
            // Each segment's list as mixed with the global one by each weight in use (built once).
            var prepared: [Double: [LocalRanker.PreparedList]] = [:]
            for weight in Set((clientBlends ?? []).map(\.global) + [coldBlend.global, 0]) {
                let mixer = LocalRanker(model: model, blend: 1, globalWeight: weight)
                prepared[weight] = (0..<centroids.rows).map { mixer.prepared($0) }
            }
            let global = LocalRanker.PreparedList(model.global)
            func ranked(_ row: Int, segment: Int?, blend: LocalRanker.Blend, hasVector: Bool) -> [Int] {
                let lists = prepared[blend.global] ?? []
                let list = segment.flatMap { s in model.segments.contains { $0.id == s } && s < lists.count ? lists[s] : nil } ?? global
                guard blend.content > 0, hasVector, cosines.cols > 0 else { return Array(list.items.lazy.filter { !excludes[row].contains($0) }.prefix(10)) }
                return ranker.rank(list, cosines: cosines.row(row), nearest: nearest[row], exclude: excludes[row], blend: blend.content, k: 10)
            }
            var recall = 0.0, ndcg = 0.0, count = 0, coldRecall = 0.0, coldCount = 0
            var lists: [[Int]] = []
            for (row, u) in evaluated.enumerated() {
                if coldStart[u] {
                    let hasText = !users[u].texts.isEmpty
                    let segment: Int? = segmented && hasText ? Int(coldLabels[u]) : nil
                    let list = ranked(row, segment: segment, blend: coldBlend, hasVector: hasText)
                    coldRecall += RankingMetrics.recall(list, relevant: heldOut[u])
                    coldCount += 1
                } else {
                    let blend = clientBlends.flatMap { client[u] >= 0 ? $0[client[u]] : nil } ?? .modelOnly
                    let list = ranked(row, segment: segmented ? Int(labels[u]) : nil, blend: blend, hasVector: true)
                    recall += RankingMetrics.recall(list, relevant: heldOut[u])
                    ndcg += RankingMetrics.ndcg(list, relevant: heldOut[u])
                    count += 1
                    lists.append(list)
                }
            }
            return RecommendationRow(
                model: name, recallAt10: recall / Double(max(1, count)), ndcgAt10: ndcg / Double(max(1, count)),
                coverage: RankingMetrics.coverage(lists, catalogSize: exact.items),
                coldStartRecallAt10: coldRecall / Double(max(1, coldCount)), blends: clientBlends?.map(\.content),
                globalWeights: clientBlends?.map(\.global)
            )
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
