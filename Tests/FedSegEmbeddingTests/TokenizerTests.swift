@testable import FedSegEmbedding
import FedSegMath
import Foundation
import Testing

@Suite("WordPiece tokenizer against sentence-transformers")
struct TokenizerTests {
    static let tokenizer: BertTokenizer? = try? BertTokenizer(vocabularyFile: ModelUnderTest.files.vocabulary)

    @Test("all 51 reference cases load")
    func fixture() throws {
        #expect(MiniLMReference.all.count == 51)
        _ = try #require(Self.tokenizer, "vocab.txt missing in \(ModelUnderTest.files.directory.path): run scripts/setup")
    }

    @Test("token ids are identical for every reference case", arguments: MiniLMReference.all)
    func tokenIDs(reference: MiniLMReference.Case) throws {
        let tokenizer = try #require(Self.tokenizer)
        #expect(tokenizer.encode(reference.text) == reference.inputIds)
    }

    @Test("a word over 100 characters is [UNK]; an unknown symbol is [UNK]")
    func unknown() throws {
        let tokenizer = try #require(Self.tokenizer)
        #expect(tokenizer.tokenize(String(repeating: "a", count: 101)) == ["[UNK]"])
        #expect(tokenizer.tokenize(String(repeating: "a", count: 100)).allSatisfy { $0 != "[UNK]" })
        #expect(tokenizer.tokenize("hello \u{1F600}") == ["hello", "[UNK]"])
    }

    @Test("the ASCII fast path gives the same words as the Unicode path on every byte 0-127, and declines other text")
    func asciiFastPath() throws {
        let tokenizer = try #require(Self.tokenizer)
        var rng = SeededRandom(seed: 11)
        // Every ASCII byte on its own and between letters, then random mixes weighted to letters,
        // spaces, controls and punctuation.
        var texts = (0..<128).map { "Ab\(Character(Unicode.Scalar(UInt8($0))))cD" }
        let alphabet = Array((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }) + Array("  aZ.,'-\t\n")
        for _ in 0..<2000 {
            let length = Int(rng.next(upperBound: UInt64(60)))
            texts.append(String((0..<length).map { _ in alphabet[Int(rng.next(upperBound: UInt64(alphabet.count)))] }))
        }
        for text in texts {
            let fast = try #require(tokenizer.asciiWords(text))
            #expect(fast == tokenizer.preTokenize(tokenizer.normalize(text)), "\(Array(text.utf8))")
        }
        #expect(tokenizer.asciiWords("café au lait") == nil)
        #expect(tokenizer.encode("Café, au LAIT!") == tokenizer.encode("cafe, au lait!"), "the Unicode path strips the accent")
    }

    @Test("truncation keeps [CLS] and [SEP] within the maximum length")
    func truncation() throws {
        let tokenizer = try #require(Self.tokenizer)
        let ids = tokenizer.encode(String(repeating: "word ", count: 1000))
        #expect(ids.count == 256)
        #expect(ids.first == tokenizer.classifierID && ids.last == tokenizer.separatorID)
    }
}

@Suite("Text preparation")
struct TextPreparationTests {
    @Test("normalises, removes controls and collapses whitespace")
    func prepare() {
        let prep = TextPreparation()
        #expect(prep.prepare("  ﬁne\u{200B}  text\u{0007}\n\twith\u{00A0}spaces ") == "fine text with spaces")
        #expect(prep.prepare("Ｆｕｌｌｗｉｄｔｈ") == "Fullwidth")
        #expect(prep.prepare("") == "")
        #expect(TextPreparation(maximumScalars: 3).prepare("abcdef") == "abc")
    }
}
