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

/// A command that ran and failed (not a usage error, so no usage block): what failed and what to
/// do. With `--json`, printed as `{"error": {"code": ..., "message": ...}}` on stdout.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    var code: String

    init(_ description: String, code: String = "failed") {
        self.description = description
        self.code = code
    }
}
