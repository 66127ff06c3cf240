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

        enum CodingKeys: String, CodingKey {
            case model, coverage
            case recallAt10 = "recall_at_10"
            case ndcgAt10 = "ndcg_at_10"
            case coldStartRecallAt10 = "cold_start_recall_at_10"
        }
    }

    /// Recall@10, NDCG@10 and coverage for global popularity, non-private and private segment
    /// models and the blended local ranking; cold-start users are placed by their text alone.
    static func evaluate(
        exact: SegmentHistogram, privateModel: SegmentModel, labels: [Int32], centroids: Matrix, prepared: PreparedDataset
    ) -> [RecommendationRow] {
        let (points, textVectors, users) = (prepared.points, prepared.textVectors, prepared.dataset.users)
        let (training, heldOut, coldStart, itemRow, itemVectors) = (prepared.training, prepared.heldOut, prepared.coldStart, prepared.itemRow, prepared.itemVectors)
        // Global popularity from the exact training interactions: the strongest form of the baseline.
        var popularity = SegmentHistogram(segments: 1, items: exact.items)
        for s in 0..<exact.segments { for i in 0..<exact.items { popularity.counts[i] += exact.counts[s * exact.items + i] } }
        let popular = SegmentModel.build(from: popularity, runID: "eval", version: 1)
        let nonPrivate = SegmentModel.build(from: exact, runID: "eval", version: 1)
        let coldLabels = KMeans.assign(textVectors, to: centroids)
        let rankers: [(String, LocalRanker, Bool)] = [
            ("popularity", LocalRanker(model: popular), false),
            ("segment_nonprivate", LocalRanker(model: nonPrivate), true),
            ("segment_private", LocalRanker(model: privateModel), true),
            ("blended", LocalRanker(model: privateModel, itemVectors: itemVectors, blend: 0.3), true),
        ]
        return rankers.map { name, ranker, segmented in
            var recall = 0.0, ndcg = 0.0, count = 0, coldRecall = 0.0, coldCount = 0
            var lists: [[Int]] = []
            for u in users.indices where !heldOut[u].isEmpty {
                if coldStart[u] {
                    let hasText = !users[u].texts.isEmpty
                    let segment: Int? = segmented && hasText ? Int(coldLabels[u]) : nil
                    let list = ranker.recommend(segment: segment, userVector: hasText ? textVectors.row(u) : nil, exclude: [])
                    coldRecall += RankingMetrics.recall(list, relevant: heldOut[u])
                    coldCount += 1
                } else {
                    let exclude = Set(training[u].compactMap { itemRow[$0] })
                    let list = ranker.recommend(segment: segmented ? Int(labels[u]) : nil, userVector: points.row(u), exclude: exclude)
                    recall += RankingMetrics.recall(list, relevant: heldOut[u])
                    ndcg += RankingMetrics.ndcg(list, relevant: heldOut[u])
                    count += 1
                    lists.append(list)
                }
            }
            return RecommendationRow(
                model: name, recallAt10: recall / Double(max(1, count)), ndcgAt10: ndcg / Double(max(1, count)),
                coverage: RankingMetrics.coverage(lists, catalogSize: exact.items),
                coldStartRecallAt10: coldRecall / Double(max(1, coldCount))
            )
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}
