import Foundation

/// Texts as JSON Lines (`{"text": "…"}` per line), the input of `fedseg embed`.
public enum TextLines {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var line: Int
        public var reason: String

        public var description: String { "line \(line): \(reason)" }
    }

    private struct Line: Decodable {
        var text: String
    }

    /// Every non-blank line must be an object with a string `text`.
    public static func parse(_ data: Data) throws -> [String] {
        var texts: [String] = []
        let decoder = JSONDecoder()
        var number = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            do {
                texts.append(try decoder.decode(Line.self, from: Data(line)).text)
            } catch DecodingError.keyNotFound, DecodingError.typeMismatch, DecodingError.valueNotFound {
                throw Failure(line: number, reason: "expected an object with a string \"text\"")
            } catch {
                throw Failure(line: number, reason: "not valid JSON")
            }
        }
        return texts
    }

    /// One `{"embedding": [...]}` line per row, each Float printed in its shortest exact form.
    public static func embeddingLines(_ rows: some Sequence<[Float]>) -> String {
        var output = ""
        for row in rows {
            output += "{\"embedding\":["
            output += row.map { $0.description }.joined(separator: ",")
            output += "]}\n"
        }
        return output
    }
}
