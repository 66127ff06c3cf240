import FedSegClient
import FedSegEmbedding
import FedSegMath
import FedSegRecommend
import Foundation

/// A node's users, read from its data directory (`users.jsonl`, `items.jsonl`: the dataset format
/// in the README) and embedded here. Embeddings are cached by model and text in the state
/// directory, so a restart or a changed file embeds only what is new.
public struct NodeData: Sendable {
    public var data: ClientData
    /// Users in the file left out because they have neither text nor a known item.
    public var skipped: Int
    /// What the files looked like when read (size and modification time): a change reloads.
    public var version: FilesVersion
    /// What the profiles were built from, kept for choosing the re-ranking blend on the node.
    public var itemVectors: Matrix
    public var itemRow: [String: Int]
    public var textVectors: Matrix
    public var hasText: [Bool]

    public struct FilesVersion: Sendable, Equatable {
        var stamps: [String]
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String)
        case duplicateUser(String, file: String)

        public var description: String {
            switch self {
            case .unreadable(let why): why
            case .duplicateUser(let id, let file): "\(file): user \(id) appears more than once; user ids must be unique on a node"
            }
        }
    }

    public static func filesVersion(_ directory: URL) -> FilesVersion {
        FilesVersion(stamps: ["users.jsonl", "items.jsonl"].map { name in
            let path = directory.appendingPathComponent(name).path
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "\(name):missing" }
            let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(name):\(size):\(modified)"
        })
    }

    /// Reads and embeds the data directory.
    /// `showProgress`: a progress line per embedding job on a terminal.
    public static func load(directory: URL, embedder: any Embedder, showProgress: Bool = false) throws -> NodeData {
        let version = filesVersion(directory)
        let dataset: Dataset
        do {
            dataset = try Dataset.load(from: directory)
        } catch let failure as Dataset.Failure {
            throw Failure.unreadable("--data \(directory.path): \(failure)")
        }
        var seen = Set<String>()
        for user in dataset.users where !seen.insert(user.user).inserted {
            throw Failure.duplicateUser(user.user, file: directory.appendingPathComponent("users.jsonl").path)
        }
        let itemRow = Dictionary(dataset.items.enumerated().map { ($1.item, $0) }, uniquingKeysWith: { first, _ in first })
        let kept = dataset.users.filter { user in !user.texts.isEmpty || user.items.contains { itemRow[$0] != nil } }
        let itemVectors = dataset.items.isEmpty
            ? Matrix(rows: 0, cols: embedder.dimension)
            : try embedder.embed(dataset.items.map(UserProfiles.itemText), chunk: 512, progress: ProgressLine("embedding items", quiet: !showProgress).update)
        let withText = kept.filter { !$0.texts.isEmpty }
        let embeddedTexts = withText.isEmpty
            ? Matrix(rows: 0, cols: embedder.dimension)
            : try embedder.embed(withText.map { UserProfiles.userText($0.texts) }, chunk: 512, progress: ProgressLine("embedding user texts", quiet: !showProgress).update)
        // One text row per kept user (zero for users without text) for the shared profile formula.
        var textVectors = Matrix(rows: kept.count, cols: embedder.dimension)
        var next = 0
        for (u, user) in kept.enumerated() where !user.texts.isEmpty {
            textVectors.setRow(u, to: embeddedTexts.row(next))
            next += 1
        }
        let points = UserProfiles.vectors(
            hasText: kept.map { !$0.texts.isEmpty }, items: kept.map(\.items), textVectors: textVectors, itemVectors: itemVectors, itemRow: itemRow
        )
        return NodeData(
            data: ClientData(userIDs: kept.map(\.user), points: points, items: kept.map(\.items)), skipped: dataset.users.count - kept.count,
            version: version, itemVectors: itemVectors, itemRow: itemRow, textVectors: textVectors, hasText: kept.map { !$0.texts.isEmpty }
        )
    }

    /// The blend this node's own users bear out for `model` (`LocalRanker.chooseBlend`): the
    /// segment's list alone when the model has no catalogue, lives in another embedder, or the
    /// node has too few users.
    public func chooseBlend(for model: SegmentModel, embedderID: String) -> LocalRanker.Blend {
        guard !model.catalogItems.isEmpty, model.embedderID == embedderID, itemVectors.rows > 0 else { return .modelOnly }
        let catalogIndex = Dictionary(model.catalogItems.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var catalogueVectors = Matrix(rows: model.catalogItems.count, cols: itemVectors.cols)
        for (index, id) in model.catalogItems.enumerated() {
            if let row = itemRow[id] { catalogueVectors.setRow(index, to: itemVectors.row(row)) }
        }
        let users = UserProfiles.validationUsers(
            hasText: hasText, items: data.items, textVectors: textVectors, itemVectors: itemVectors, itemRow: itemRow, catalogIndex: catalogIndex
        )
        return LocalRanker.chooseBlend(model: model, itemVectors: catalogueVectors, users: users)
    }
}
