import Foundation

/// Vectors as JSON Lines: one object per line with an array of numbers under a key
/// (`{"embedding": [0.1, …]}`, what `fedseg embed` writes).
public enum VectorLines {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case badLine(Int, String)
        case dimensionMismatch(line: Int, expected: Int, found: Int)
        case empty

        public var description: String {
            switch self {
            case .badLine(let line, let why): "line \(line): \(why)"
            case .dimensionMismatch(let line, let expected, let found):
                "line \(line): vector has \(found) values, earlier lines have \(expected)"
            case .empty: "no vectors in the input"
            }
        }
    }

    /// Parses every non-blank line; all vectors must have the same length and finite values.
    public static func parse(_ data: Data, key: String = "embedding") throws -> Matrix {
        var storage: [Float] = []
        var dimension: Int?
        var rows = 0
        var lineNumber = 0
        let decoder = JSONDecoder()
        decoder.userInfo[Line.keyInfo] = key
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) {
                continue
            }
            let vector: [Float]
            do {
                vector = try decoder.decode(Line.self, from: Data(line)).values
            } catch DecodingError.keyNotFound(_, _) {
                throw Failure.badLine(lineNumber, "expected an object with an array \"\(key)\"")
            } catch DecodingError.typeMismatch(_, _), DecodingError.valueNotFound(_, _) {
                throw Failure.badLine(lineNumber, "\"\(key)\" must be an array of finite numbers")
            } catch {
                throw Failure.badLine(lineNumber, "not valid JSON")
            }
            if let dimension, dimension != vector.count {
                throw Failure.dimensionMismatch(line: lineNumber, expected: dimension, found: vector.count)
            }
            guard vector.allSatisfy(\.isFinite) else {
                throw Failure.badLine(lineNumber, "\"\(key)\" must be an array of finite numbers")
            }
            guard !vector.isEmpty else { throw Failure.badLine(lineNumber, "\"\(key)\" is empty") }
            dimension = vector.count
            storage.append(contentsOf: vector)
            rows += 1
        }
        guard let dimension else { throw Failure.empty }
        return Matrix(rows: rows, cols: dimension, storage: storage)
    }

    /// One line: only the array under the configured key is read.
    private struct Line: Decodable {
        static let keyInfo = CodingUserInfoKey(rawValue: "fedseg.vector-key")!
        var values: [Float]

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let key = decoder.userInfo[Self.keyInfo] as? String ?? "embedding"
            let container = try decoder.container(keyedBy: Key.self)
            values = try container.decode([Float].self, forKey: Key(stringValue: key))
        }
    }
}
