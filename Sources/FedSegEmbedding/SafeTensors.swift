import Foundation

/// A safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the data. The file is memory-mapped; every offset, length and
/// shape is checked against the file before anything is read.
public struct SafeTensorsFile: Sendable {
    public struct TensorInfo: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>
    }

    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    static let byteWidth: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    ]

    public init(url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { throw EmbeddingError.fileMissing(url.path) }
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw EmbeddingError.unreadable(url.path, reason: "\(error)")
        }
        try self.init(data: data)
    }

    public init(data: Data) throws {
        guard data.count >= 8 else { throw EmbeddingError.corruptSafetensors("file is \(data.count) bytes, shorter than its 8-byte header length") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw EmbeddingError.corruptSafetensors("header length \(headerLength) runs past the end of the \(data.count)-byte file")
        }
        guard headerLength <= 100_000_000 else { throw EmbeddingError.corruptSafetensors("header length \(headerLength) is implausibly large") }
        let headerStart = data.startIndex + 8
        let header = data[headerStart..<headerStart + Int(headerLength)]
        guard let object = try? JSONSerialization.jsonObject(with: header), let entries = object as? [String: Any] else {
            throw EmbeddingError.corruptSafetensors("header is not a JSON object")
        }
        let dataStart = headerStart + Int(headerLength)
        let dataLength = data.endIndex - dataStart
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let dictionary = value as? [String: Any] else { throw EmbeddingError.corruptSafetensors("__metadata__ is not an object") }
                for (key, item) in dictionary {
                    guard let text = item as? String else { throw EmbeddingError.corruptSafetensors("__metadata__.\(key) is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard let entry = value as? [String: Any],
                let dtype = entry["dtype"] as? String,
                let shapeValues = entry["shape"] as? [Any],
                let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2
            else {
                throw EmbeddingError.corruptSafetensors("tensor \(name) lacks dtype, shape or data_offsets")
            }
            let shape = try shapeValues.map { item -> Int in
                guard let number = item as? NSNumber, let dimension = Int(exactly: number.doubleValue), dimension >= 0 else {
                    throw EmbeddingError.corruptSafetensors("tensor \(name) has a bad shape")
                }
                return dimension
            }
            let offsets = try offsetValues.map { item -> Int in
                guard let number = item as? NSNumber, let offset = Int(exactly: number.doubleValue), offset >= 0 else {
                    throw EmbeddingError.corruptSafetensors("tensor \(name) has bad data_offsets")
                }
                return offset
            }
            guard let width = Self.byteWidth[dtype] else { throw EmbeddingError.unsupportedDType(tensor: name, dtype: dtype) }
            let (elements, overflow) = shape.reduce((1, false)) { partial, dimension in
                let (product, o) = partial.0.multipliedReportingOverflow(by: dimension)
                return (product, partial.1 || o)
            }
            guard !overflow, offsets[0] <= offsets[1], offsets[1] <= dataLength else {
                throw EmbeddingError.corruptSafetensors("tensor \(name) data_offsets \(offsets) lie outside the \(dataLength)-byte data section")
            }
            guard offsets[1] - offsets[0] == elements * width else {
                throw EmbeddingError.corruptSafetensors("tensor \(name) holds \(offsets[1] - offsets[0]) bytes, its shape \(shape) needs \(elements * width)")
            }
            tensors[name] = TensorInfo(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.tensors = tensors
        self.metadata = metadata
        self.data = data
        self.dataStart = dataStart
    }

    /// A copy of an F32 tensor's values, checking its shape when one is given.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws -> [Float] {
        guard let info = tensors[name] else { throw EmbeddingError.missingTensor(name) }
        guard info.dtype == "F32" else { throw EmbeddingError.unsupportedDType(tensor: name, dtype: info.dtype) }
        if let expected, expected != info.shape {
            throw EmbeddingError.shapeMismatch(tensor: name, expected: expected, found: info.shape)
        }
        let count = info.range.count / 4
        var values = [Float](repeating: 0, count: count)
        let start = dataStart + info.range.lowerBound
        values.withUnsafeMutableBytes { out in
            data.copyBytes(to: out.bindMemory(to: UInt8.self), from: start..<start + info.range.count)
        }
        #if _endian(big)
        for i in values.indices { values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern)) }
        #endif
        return values
    }
}
