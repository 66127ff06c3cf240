import FedSegEmbedding
import Foundation
import Testing

/// Builds a safetensors file from a header object and a data section.
private func safetensors(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    let headerBytes = Array(header.utf8)
    var bytes: [UInt8] = []
    let length = declaredLength ?? UInt64(headerBytes.count)
    for i in 0..<8 { bytes.append(UInt8((length >> (8 * UInt64(i))) & 0xff)) }
    bytes += headerBytes + data
    return Data(bytes)
}

private func floatBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
}

@Suite("safetensors reader")
struct SafeTensorsTests {
    @Test("reads a valid file")
    func valid() throws {
        let file = try SafeTensorsFile(data: safetensors(
            header: #"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
            data: floatBytes([1, 2, 3, 4])
        ))
        #expect(try file.floats("w", shape: [2, 2]) == [1, 2, 3, 4])
        #expect(file.metadata["format"] == "pt")
        #expect(throws: EmbeddingError.shapeMismatch(tensor: "w", expected: [4], found: [2, 2])) { try file.floats("w", shape: [4]) }
        #expect(throws: EmbeddingError.missingTensor("v")) { try file.floats("v") }
    }

    @Test(
        "corrupt inputs are clear errors",
        arguments: [
            ("truncated before the length", Data([1, 2, 3])),
            ("header length past the end", safetensors(header: "{}", declaredLength: 1 << 40)),
            ("bad JSON", safetensors(header: "{not json")),
            ("JSON that is not an object", safetensors(header: "[1,2]")),
            ("offsets past the data", safetensors(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0])),
            ("size disagrees with shape", safetensors(header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, data: floatBytes([1, 2, 3, 4]))),
            ("negative shape", safetensors(header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: floatBytes([1]))),
            ("missing fields", safetensors(header: #"{"w":{"dtype":"F32"}}"#)),
        ]
    )
    func corrupt(label: String, data: Data) {
        #expect(throws: EmbeddingError.self, "\(label)") { try SafeTensorsFile(data: data) }
    }

    @Test("an unsupported dtype is refused when read")
    func wrongDType() throws {
        let f16 = try? SafeTensorsFile(data: safetensors(header: #"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        let file = try #require(f16)
        #expect(throws: EmbeddingError.unsupportedDType(tensor: "w", dtype: "F16")) { try file.floats("w") }
        #expect(throws: EmbeddingError.unsupportedDType(tensor: "w", dtype: "Q4")) {
            try SafeTensorsFile(data: safetensors(header: #"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}"#, data: [0]))
        }
    }

    @Test("a missing file names its path and the fix")
    func missingFile() {
        #expect(throws: EmbeddingError.fileMissing("/nonexistent/model.safetensors")) {
            try SafeTensorsFile(url: URL(fileURLWithPath: "/nonexistent/model.safetensors"))
        }
    }

    @Test("the encoder refuses weights with a missing tensor")
    func encoderChecksTensors() throws {
        let configuration = try MiniLMConfiguration.load(from: ModelUnderTest.files.config)
        let tiny = try SafeTensorsFile(data: safetensors(header: #"{"embeddings.LayerNorm.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: floatBytes([0])))
        #expect(throws: EmbeddingError.missingTensor("embeddings.word_embeddings.weight")) {
            try MiniLMEncoder(configuration: configuration, weights: tiny)
        }
    }
}
