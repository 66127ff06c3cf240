/// Everything that can go wrong loading or running an embedder, with what to do about it.
public enum EmbeddingError: Error, Equatable, CustomStringConvertible {
    case fileMissing(String)
    case unreadable(String, reason: String)
    case corruptSafetensors(String)
    case unsupportedDType(tensor: String, dtype: String)
    case missingTensor(String)
    case unexpectedTensor(String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case badConfig(String)
    case badVocabulary(String)

    public var description: String {
        switch self {
        case .fileMissing(let path): "\(path) does not exist (run scripts/setup to fetch the MiniLM weights)"
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .corruptSafetensors(let why): "corrupt safetensors file: \(why)"
        case .unsupportedDType(let tensor, let dtype): "tensor \(tensor) has dtype \(dtype); only F32 is supported"
        case .missingTensor(let name): "weights lack tensor \(name)"
        case .unexpectedTensor(let name): "weights hold unexpected tensor \(name)"
        case .shapeMismatch(let tensor, let expected, let found): "tensor \(tensor) has shape \(found), expected \(expected)"
        case .badConfig(let why): "bad model config: \(why)"
        case .badVocabulary(let why): "bad vocabulary: \(why)"
        }
    }
}
