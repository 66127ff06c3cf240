import Foundation

/// docs/openapi.json as a contract answers are checked against: the operation, status and media
/// type must be documented, and a JSON body must validate against the documented schema. It
/// knows the part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the document uses:
/// `$ref`, `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`,
/// `enum`.
/// Immutable after init (a parsed JSON document), so safe to share.
public struct OpenAPIContract: @unchecked Sendable {
    public let document: [String: Any]

    /// The repository's docs/openapi.json.
    public static let documentURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/openapi.json")

    public init(document: [String: Any]) {
        self.document = document
    }

    public init(contentsOf url: URL = OpenAPIContract.documentURL) throws {
        guard let document = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw CocoaError(.propertyListReadCorrupt, userInfo: [NSFilePathErrorKey: url.path])
        }
        self.init(document: document)
    }

    /// Every documented operation, as `METHOD /path/{param}`.
    public var operations: Set<String> {
        let paths = document["paths"] as? [String: [String: Any]] ?? [:]
        return Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
    }

    public func resolve(_ schema: [String: Any]) -> [String: Any]? {
        guard let reference = schema["$ref"] as? String else { return schema }
        guard reference.hasPrefix("#/") else { return nil }
        var node: Any = document
        for part in reference.dropFirst(2).split(separator: "/") {
            guard let next = (node as? [String: Any])?[String(part)] else { return nil }
            node = next
        }
        return (node as? [String: Any]).flatMap(resolve)
    }

    /// Problems with one answer: its status not documented for the operation, its media type not
    /// the documented one, or its JSON body not valid against the documented schema.
    /// `body`: nil when the body was not kept (not JSON); then only its presence (`bytes`) is checked.
    public func check(method: String, path: String, status: Int, contentType: String?, body: Data?, bytes: Int) -> [String] {
        guard let paths = document["paths"] as? [String: Any], let operations = paths[path] as? [String: Any],
            let operation = operations[method.lowercased()] as? [String: Any], let responses = operation["responses"] as? [String: Any]
        else { return ["\(method) \(path) is not documented"] }
        guard let documented = responses["\(status)"] as? [String: Any] else {
            return ["status \(status) is not documented (documented: \(responses.keys.sorted()))"]
        }
        guard let content = documented["content"] as? [String: Any] else {
            return bytes == 0 ? [] : ["a body where none is documented"]
        }
        let mediaType = (contentType ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[mediaType] as? [String: Any] else { return ["media type \(mediaType) is not documented (\(content.keys.sorted()))"] }
        guard mediaType == "application/json", let schema = media["schema"] as? [String: Any] else { return [] }
        guard let body else { return ["the JSON body was not kept"] }
        guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) else {
            return ["the body is not JSON"]
        }
        var problems: [String] = []
        validate(value, schema, at: "$", into: &problems)
        return problems
    }

    public func validate(_ value: Any, _ schema: [String: Any], at location: String, into problems: inout [String]) {
        guard let schema = resolve(schema) else { return problems.append("\(location): unresolvable $ref") }
        let types: [String] = (schema["type"] as? String).map { [$0] } ?? (schema["type"] as? [String]) ?? []
        if !types.isEmpty, !types.contains(where: { Self.matches(value, $0) }) {
            return problems.append("\(location): \(Self.describe(value)) is not \(types.joined(separator: " or "))")
        }
        if let allowed = schema["enum"] as? [String], let string = value as? String, !allowed.contains(string) {
            problems.append("\(location): \(string) is not one of \(allowed)")
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                problems.append("\(location): \(key) is required")
            }
            for (key, member) in object {
                if let property = properties[key] as? [String: Any] {
                    validate(member, property, at: "\(location).\(key)", into: &problems)
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    validate(member, additional, at: "\(location).\(key)", into: &problems)
                } else if schema["additionalProperties"] as? Bool == false {
                    problems.append("\(location): \(key) is not in the schema")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (index, item) in array.enumerated() { validate(item, items, at: "\(location)[\(index)]", into: &problems) }
        }
    }

    static func matches(_ value: Any, _ type: String) -> Bool {
        switch type {
        case "object": value is [String: Any]
        case "array": value is [Any]
        case "string": value is String
        case "null": value is NSNull
        case "boolean": value is Bool && !(value is String)
        case "number": !(value is String) && (value as? Double) != nil
        case "integer": !(value is String) && (value as? Double).map { $0 == $0.rounded() } == true
        default: false
        }
    }

    static func describe(_ value: Any) -> String { "\(type(of: value)) \(String(describing: value).prefix(60))" }
}

/// The answers a daemon recorded with `--response-log` (the coordinator's `ResponseLog` lines),
/// checked against the contract.
public struct RecordedResponses: Sendable {
    public struct Entry: Decodable, Sendable {
        public var method: String
        public var route: String
        public var status: Int
        public var content_type: String?
        public var bytes: Int
        public var body: String?
    }

    public let entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    public init(path: String) throws {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let decoder = JSONDecoder()
        entries = try text.split(separator: "\n").map { try decoder.decode(Entry.self, from: Data($0.utf8)) }
    }

    /// `METHOD /route status` of every answer, each once.
    public var distinct: Set<String> { Set(entries.map { "\($0.method) \($0.route) \($0.status)" }) }

    /// One line per answer that breaks the contract (deduplicated by operation, status and problem).
    /// Answers to paths no route matches (404) are not operations of the document, so not checked.
    public func problems(against contract: OpenAPIContract) -> [String] {
        var seen = Set<String>()
        var lines: [String] = []
        for entry in entries where entry.route != "unmatched" {
            for problem in contract.check(
                method: entry.method, path: entry.route, status: entry.status, contentType: entry.content_type,
                body: entry.body.map { Data($0.utf8) }, bytes: entry.bytes
            ) {
                let line = "\(entry.method) \(entry.route) → \(entry.status): \(problem)"
                if seen.insert(line).inserted { lines.append(line) }
            }
        }
        return lines
    }
}
