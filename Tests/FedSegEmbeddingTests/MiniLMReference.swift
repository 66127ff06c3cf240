import FedSegEmbedding
import FedSegTestSupport
import Foundation
import Testing

/// Token ids and embeddings from sentence-transformers 6.2 (Tests/Fixtures/minilm_reference.json).
struct MiniLMReference: Decodable {
    struct Case: Decodable, CustomTestStringConvertible {
        var text: String
        var inputIds: [Int32]
        var embedding: [Float]

        var testDescription: String { String(text.prefix(40)) }
    }

    var cases: [Case]

    static let all: [Case] = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return (try? decoder.decode(MiniLMReference.self, from: Fixtures.data("minilm_reference.json")).cases) ?? []
    }()
}

/// The model files from the cache dir that scripts/setup fills (make test runs it first).
enum ModelUnderTest {
    static let files = MiniLMModelFiles.defaultLocation()
}
