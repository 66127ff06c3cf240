import FedSegEmbedding
import FedSegMath
import FedSegRecommend
import Foundation

/// How a user becomes a profile vector, on whichever machine holds them: the unit-normalised sum
/// of the embedding of their own texts and of the items they interacted with. The simulator and
/// `fedseg-node` both call this, so a simulated node and a real one place a user identically.
public enum UserProfiles {
    /// The text an item is embedded from: title, description and up to eight tags (public).
    public static func itemText(_ item: Dataset.Item) -> String {
        ([item.title, item.text ?? ""] + [(item.tags ?? []).prefix(8).joined(separator: ", ")]).joined(separator: ". ")
    }

    /// The text of a user's own writing, embedded as one passage.
    public static func userText(_ texts: [String]) -> String { texts.joined(separator: " ") }

    /// Profile vectors, one row per user: `textVectors` row u (when user u has text) plus the
    /// vectors of their items found in `itemRow`, normalised. A user with neither stays zero.
    public static func vectors(hasText: [Bool], items: [[String]], textVectors: Matrix, itemVectors: Matrix, itemRow: [String: Int]) -> Matrix {
        precondition(hasText.count == items.count && textVectors.rows == items.count, "one text row and one item list per user")
        let dimension = itemVectors.cols > 0 ? itemVectors.cols : textVectors.cols
        var points = Matrix(rows: items.count, cols: dimension)
        var sum = [Float](repeating: 0, count: dimension)
        for u in items.indices {
            for t in sum.indices { sum[t] = 0 }
            if hasText[u] { BLAS.axpy(1, x: textVectors.row(u), y: &sum) }
            for id in items[u] { if let row = itemRow[id] { BLAS.axpy(1, x: itemVectors.row(row), y: &sum) } }
            points.setRow(u, to: sum)
        }
        points.normalizeRows()
        return points
    }

    /// Held-out users for choosing a node's blend (`LocalRanker.chooseBlend`): each user with at
    /// least three known items holds out a seeded fifth of them (at least one), their profile
    /// rebuilt from the rest (the same formula). Several items per user, not one: a node's choice
    /// among the blends is then much less a matter of chance. Item indices are `catalogIndex`'s
    /// (the model's catalogue); at most `limit` users, the first ones.
    public static func validationUsers(
        hasText: [Bool], items: [[String]], textVectors: Matrix, itemVectors: Matrix, itemRow: [String: Int], catalogIndex: [String: Int], limit: Int = 500
    ) -> [LocalRanker.ValidationUser] {
        var chosen: [(user: Int, kept: [String], heldOut: [String])] = []
        for u in items.indices where chosen.count < limit {
            var known = items[u].filter { itemRow[$0] != nil && catalogIndex[$0] != nil }
            guard known.count >= 3 else { continue }
            // A seeded pick, not the last ones: item lists are often sorted (by id, by popularity).
            var pick = SeededRandom(seed: 0x5EED, stream: UInt64(u))
            known.shuffle(using: &pick)
            let held = max(1, Int((Double(known.count) * 0.2).rounded()))
            chosen.append((u, Array(known.dropFirst(held)), Array(known.prefix(held))))
        }
        guard !chosen.isEmpty else { return [] }
        var texts = Matrix(rows: chosen.count, cols: textVectors.cols)
        for (row, entry) in chosen.enumerated() { texts.setRow(row, to: textVectors.row(entry.user)) }
        let points = vectors(hasText: chosen.map { hasText[$0.user] }, items: chosen.map(\.kept), textVectors: texts, itemVectors: itemVectors, itemRow: itemRow)
        return chosen.enumerated().map { row, entry in
            LocalRanker.ValidationUser(
                vector: points.row(row), kept: Set(entry.kept.compactMap { catalogIndex[$0] }), heldOut: Set(entry.heldOut.compactMap { catalogIndex[$0] })
            )
        }
    }

    /// A new user's vector from their text alone (the cold-start path), normalised.
    public static func vector(ofText text: String, embedder: any Embedder) throws -> [Float] {
        var matrix = try embedder.embed([text])
        matrix.normalizeRows()
        return matrix.row(0)
    }
}
