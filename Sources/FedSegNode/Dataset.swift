import Foundation

/// A dataset directory in FedSeg's format: `users.jsonl` and `items.jsonl` (DESIGN.md, "Data formats").
public struct Dataset: Sendable {
    public struct User: Codable, Sendable, Equatable {
        public var user: String
        public var texts: [String]
        public var items: [String]
        public var client: String?
        public var segment: String?

        public init(user: String, texts: [String], items: [String], client: String? = nil, segment: String? = nil) {
            self.user = user
            self.texts = texts
            self.items = items
            self.client = client
            self.segment = segment
        }
    }

    public struct Item: Codable, Sendable, Equatable {
        public var item: String
        public var title: String
        public var text: String?
        public var tags: [String]?

        public init(item: String, title: String, text: String? = nil, tags: [String]? = nil) {
            self.item = item
            self.title = title
            self.text = text
            self.tags = tags
        }
    }

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var file: String
        public var line: Int?
        public var reason: String

        public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(reason)" }
    }

    public var users: [User]
    public var items: [Item]

    public init(users: [User], items: [Item]) {
        self.users = users
        self.items = items
    }

    public static func load(from directory: URL) throws -> Dataset {
        Dataset(
            users: try readLines(directory.appendingPathComponent("users.jsonl"), as: User.self),
            items: try readLines(directory.appendingPathComponent("items.jsonl"), as: Item.self)
        )
    }

    /// The catalogue alone (`items.jsonl`), for what needs no users.
    public static func loadItems(from directory: URL) throws -> [Item] {
        try readLines(directory.appendingPathComponent("items.jsonl"), as: Item.self)
    }

    public func write(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.writeLines(users, to: directory.appendingPathComponent("users.jsonl"))
        try Self.writeLines(items, to: directory.appendingPathComponent("items.jsonl"))
    }

    /// A user's profile text: their own texts, then the title, text and tags of the items they
    /// interacted with (the "behaviour data → language model" path for users without text).
    public func profileText(of user: User, itemIndex: [String: Item]) -> String {
        var parts = user.texts
        for id in user.items {
            guard let item = itemIndex[id] else { continue }
            var description = item.title
            if let text = item.text { description += " " + text }
            if let tags = item.tags, !tags.isEmpty { description += " (" + tags.joined(separator: ", ") + ")" }
            parts.append(description)
        }
        return parts.joined(separator: ". ")
    }

    public var itemIndex: [String: Item] { Dictionary(items.map { ($0.item, $0) }, uniquingKeysWith: { first, _ in first }) }

    static func readLines<T: Decodable>(_ url: URL, as type: T.Type) throws -> [T] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw Failure(file: url.path, line: nil, reason: "missing or unreadable")
        }
        let decoder = JSONDecoder()
        var values: [T] = []
        var number = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            do {
                values.append(try decoder.decode(T.self, from: Data(line)))
            } catch {
                throw Failure(file: url.lastPathComponent, line: number, reason: "not a valid record (\(error))")
            }
        }
        return values
    }

    static func writeLines<T: Encodable>(_ values: [T], to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = Data()
        for value in values {
            data.append(try encoder.encode(value))
            data.append(0x0A)
        }
        try data.write(to: url, options: .atomic)
    }
}
