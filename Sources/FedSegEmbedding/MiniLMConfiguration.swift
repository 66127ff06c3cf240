import Foundation

/// The fields of Hugging Face's `config.json` this encoder uses, checked against what it supports.
public struct MiniLMConfiguration: Decodable, Sendable, Equatable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: String
    public var layerNormEps: Double
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var vocabSize: Int

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps"
        case maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size"
        case vocabSize = "vocab_size"
    }

    public static func load(from url: URL) throws -> MiniLMConfiguration {
        guard FileManager.default.fileExists(atPath: url.path) else { throw EmbeddingError.fileMissing(url.path) }
        let configuration: MiniLMConfiguration
        do {
            configuration = try JSONDecoder().decode(MiniLMConfiguration.self, from: Data(contentsOf: url))
        } catch {
            throw EmbeddingError.badConfig("\(url.lastPathComponent): \(error)")
        }
        try configuration.validate()
        return configuration
    }

    public func validate() throws {
        guard hiddenAct == "gelu" else { throw EmbeddingError.badConfig("hidden_act \(hiddenAct) is not supported (gelu only)") }
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw EmbeddingError.badConfig("hidden_size \(hiddenSize) is not divisible by \(numAttentionHeads) heads")
        }
        guard hiddenSize > 0, numHiddenLayers > 0, intermediateSize > 0, vocabSize > 0, maxPositionEmbeddings > 0, typeVocabSize > 0 else {
            throw EmbeddingError.badConfig("sizes must be positive")
        }
    }
}
