import FedSegEmbedding
import FedSegMath
import FedSegNode
import Foundation

/// A dataset embedded and split for a simulation: what each client computes on its own device
/// (profile vectors from its users' texts and liked items), done once for all simulated clients.
///
/// Items are public: each is embedded once. A user's profile is the unit-normalised sum of the
/// embedding of their own texts and of the items in their training interactions. Held-out items
/// and cold-start users (all interactions held out) never enter profiles, statistics or releases.
public struct PreparedDataset: Sendable {
    public let dataset: Dataset
    public let embedderID: String
    public let itemVectors: Matrix
    /// The text each item was embedded from (public seed phrases for the coordinator).
    public let itemTexts: [String]
    public let textVectors: Matrix
    public let points: Matrix
    public let training: [[String]]
    public let heldOut: [Set<Int>]
    public let coldStart: [Bool]
    public let itemRow: [String: Int]
    public let embedSeconds: Double

    public static func make(
        _ dataset: Dataset, embedder: any Embedder, seed: UInt64, holdoutFraction: Double = 0.2, coldStartFraction: Double = 0.1,
        showProgress: Bool = false
    ) throws -> PreparedDataset {
        let clock = ContinuousClock()
        let started = clock.now
        let itemTexts = dataset.items.map(UserProfiles.itemText)
        let itemProgress = ProgressLine("embedding items", quiet: !showProgress)
        let itemVectors = try embedder.embed(itemTexts, chunk: 512, progress: itemProgress.update)
        let itemRow = Dictionary(dataset.items.enumerated().map { ($1.item, $0) }, uniquingKeysWith: { a, _ in a })
        let textProgress = ProgressLine("embedding user texts", quiet: !showProgress)
        let textVectors = try embedder.embed(dataset.users.map { UserProfiles.userText($0.texts) }, chunk: 512, progress: textProgress.update)
        var split = SeededRandom(seed: seed, stream: 0x40)
        var training = [[String]](repeating: [], count: dataset.users.count)
        var heldOut = [Set<Int>](repeating: [], count: dataset.users.count)
        var coldStart = [Bool](repeating: false, count: dataset.users.count)
        for (u, user) in dataset.users.enumerated() {
            var items = user.items
            items.shuffle(using: &split)
            if split.nextUniform() < coldStartFraction {
                coldStart[u] = true
                heldOut[u] = Set(items.compactMap { itemRow[$0] })
                continue
            }
            let hold = items.count >= 2 ? max(1, Int((Double(items.count) * holdoutFraction).rounded())) : 0
            heldOut[u] = Set(items.prefix(hold).compactMap { itemRow[$0] })
            training[u] = Array(items.dropFirst(hold))
        }
        let points = UserProfiles.vectors(
            hasText: dataset.users.map { !$0.texts.isEmpty }, items: training, textVectors: textVectors, itemVectors: itemVectors, itemRow: itemRow
        )
        let elapsed = clock.now - started
        return PreparedDataset(
            dataset: dataset, embedderID: embedder.identifier, itemVectors: itemVectors, itemTexts: itemTexts, textVectors: textVectors,
            points: points, training: training, heldOut: heldOut, coldStart: coldStart, itemRow: itemRow,
            embedSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        )
    }

    /// Ground-truth segment ids of `users` when every one has a label.
    public func truth(for users: [Int]) -> [Int32]? {
        let names = users.map { dataset.users[$0].segment }
        guard names.allSatisfy({ $0 != nil }) else { return nil }
        var ids: [String: Int32] = [:]
        return names.map { name in ids[name!] ?? { ids[name!] = Int32(ids.count); return Int32(ids.count - 1) }() }
    }
}
