import Foundation

/// BERT's uncased tokenizer, reproducing Hugging Face's fast `BertTokenizer` (the `tokenizers`
/// BertNormalizer, BertPreTokenizer and WordPiece) for the all-MiniLM-L6-v2 vocabulary.
///
/// Normalisation: drop NUL, U+FFFD and control/format characters (tab, newline and carriage return
/// are whitespace), map whitespace to spaces, put spaces around CJK ideographs, strip accents
/// (NFD, drop non-spacing marks), lower-case each scalar. Pre-tokenisation: split on whitespace and
/// isolate punctuation. WordPiece: greedy longest match with `##` continuations; a word longer than
/// 100 scalars, or one that cannot be covered, is `[UNK]`. All work is on Unicode scalars, as
/// Python and Rust iterate code points.
public struct BertTokenizer: Sendable {
    public let vocabulary: [String: Int32]
    public let maximumLength: Int
    public let unknownID: Int32
    public let classifierID: Int32
    public let separatorID: Int32
    public let paddingID: Int32
    static let maximumWordScalars = 100

    public init(vocabularyLines: [String], maximumLength: Int = 256) throws {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(vocabularyLines.count)
        for (index, token) in vocabularyLines.enumerated() where vocabulary[token] == nil {
            vocabulary[token] = Int32(index)
        }
        func id(_ token: String) throws -> Int32 {
            guard let id = vocabulary[token] else { throw EmbeddingError.badVocabulary("no \(token) token") }
            return id
        }
        guard maximumLength >= 2 else { throw EmbeddingError.badConfig("maximum length must be at least 2") }
        self.vocabulary = vocabulary
        self.maximumLength = maximumLength
        self.unknownID = try id("[UNK]")
        self.classifierID = try id("[CLS]")
        self.separatorID = try id("[SEP]")
        self.paddingID = try id("[PAD]")
    }

    /// Loads `vocab.txt` (one token per line).
    public init(vocabularyFile: URL, maximumLength: Int = 256) throws {
        guard FileManager.default.fileExists(atPath: vocabularyFile.path) else {
            throw EmbeddingError.fileMissing(vocabularyFile.path)
        }
        let text: String
        do {
            text = try String(contentsOf: vocabularyFile, encoding: .utf8)
        } catch {
            throw EmbeddingError.unreadable(vocabularyFile.path, reason: "\(error)")
        }
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        try self.init(vocabularyLines: lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }, maximumLength: maximumLength)
    }

    /// Token ids with `[CLS]` and `[SEP]`, truncated to `maximumLength`.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = [classifierID]
        let budget = maximumLength - 2
        for word in words(text) {
            appendWordPieces(word, to: &ids)
            if ids.count - 1 >= budget { break }
        }
        if ids.count - 1 > budget { ids.removeLast(ids.count - 1 - budget) }
        ids.append(separatorID)
        return ids
    }

    /// The word pieces as strings (for inspection and tests).
    public func tokenize(_ text: String) -> [String] {
        var reverse: [Int32: String] = [:]
        var ids: [Int32] = []
        for word in words(text) { appendWordPieces(word, to: &ids) }
        for (token, id) in vocabulary { reverse[id] = token }
        return ids.map { reverse[$0] ?? "[UNK]" }
    }

    // MARK: normalisation

    /// The normalised, pre-tokenised words of `text`.
    func words(_ text: String) -> [[Unicode.Scalar]] {
        asciiWords(text) ?? preTokenize(normalize(text))
    }

    /// `preTokenize(normalize(text))` for text that is all ASCII, from the bytes alone: no
    /// Unicode property lookups and no canonical decomposition, which were most of the
    /// tokeniser's time (about 5% of an embedding job's CPU). nil for any other text.
    func asciiWords(_ text: String) -> [[Unicode.Scalar]]? {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for byte in text.utf8 {
            switch byte {
            case 0x80...:
                return nil
            case 0x09, 0x0A, 0x0D, 0x20:
                if !current.isEmpty { words.append(current); current = [] }
            case 0x00...0x1F, 0x7F:
                continue  // control characters (U+000B and U+000C among them) are dropped first
            case 33...47, 58...64, 91...96, 123...126:
                if !current.isEmpty { words.append(current); current = [] }
                words.append([Unicode.Scalar(byte)])
            case 65...90:
                current.append(Unicode.Scalar(byte + 32))
            default:
                current.append(Unicode.Scalar(byte))
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    func normalize(_ text: String) -> String.UnicodeScalarView {
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) {
                cleaned.append(" ")
            } else if Self.isCJK(scalar) {
                cleaned.append(" ")
                cleaned.append(scalar)
                cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        // Strip accents: canonical decomposition, then drop non-spacing marks; then lower-case
        // each scalar on its own (no context-dependent rules), as the Rust normaliser does.
        let decomposed = String(cleaned).decomposedStringWithCanonicalMapping
        var output = String.UnicodeScalarView()
        for scalar in decomposed.unicodeScalars where scalar.properties.generalCategory != .nonspacingMark {
            output.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
        }
        return output
    }

    func preTokenize(_ scalars: String.UnicodeScalarView) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        for scalar in scalars {
            if scalar.properties.isWhitespace {
                if !current.isEmpty { words.append(current); current = [] }
            } else if Self.isPunctuation(scalar) {
                if !current.isEmpty { words.append(current); current = [] }
                words.append([scalar])
            } else {
                current.append(scalar)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    func appendWordPieces(_ word: [Unicode.Scalar], to ids: inout [Int32]) {
        if word.count > Self.maximumWordScalars {
            ids.append(unknownID)
            return
        }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                var candidate = start > 0 ? "##" : ""
                candidate.unicodeScalars.append(contentsOf: word[start..<end])
                if let id = vocabulary[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else {
                ids.append(unknownID)
                return
            }
            pieces.append(id)
            start = end
        }
        ids.append(contentsOf: pieces)
    }

    // MARK: character classes (as the `tokenizers` crate defines them)

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar.properties.isWhitespace
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) {
            return true
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
            0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}
