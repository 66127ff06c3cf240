import Foundation

/// The one JSON style of `fedseg --json`: snake_case keys, sorted, one object.
enum JSONOutput {
    static func print(_ value: some Encodable, pretty: Bool = false) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        Swift.print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}
