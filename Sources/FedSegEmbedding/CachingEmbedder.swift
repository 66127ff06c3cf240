import FedSegMath
import Foundation

/// Remembers embeddings on disk, keyed by the embedder's identifier and a 128-bit hash of the
/// text, so a restarted client does not embed its users again.
///
/// One append-only file per embedder identifier: records of a 16-byte key followed by
/// `dimension` little-endian Float32 values. A torn last record (a crash mid-append) is ignored
/// on load and overwritten by the next append.
public final class CachingEmbedder: Embedder, @unchecked Sendable {
    public let base: any Embedder
    public let file: URL
    private let lock = NSLock()
    private var vectors: [Key: [Float]] = [:]
    private var validLength: UInt64 = 0
    private static let first = KeyedHash(seed: 0x6361_6368_6531)
    private static let second = KeyedHash(seed: 0x6361_6368_6532)

    struct Key: Hashable {
        var high: UInt64
        var low: UInt64
    }

    public var identifier: String { base.identifier }
    public var dimension: Int { base.dimension }
    public var count: Int { lock.withLock { vectors.count } }

    public init(base: any Embedder, directory: URL) throws {
        self.base = base
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let safeName = base.identifier.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }
        file = directory.appendingPathComponent(String(safeName) + ".vectors")
        try load()
    }

    static func key(_ text: String) -> Key {
        let bytes = Array(text.utf8)
        return Key(high: first.hash(bytes), low: second.hash(bytes))
    }

    private var recordLength: Int { 16 + 4 * dimension }

    private func load() throws {
        guard let data = FileManager.default.contents(atPath: file.path) else { return }
        let length = recordLength
        let records = data.count / length
        data.withUnsafeBytes { raw in
            for r in 0..<records {
                let base = r * length
                let high = raw.loadUnaligned(fromByteOffset: base, as: UInt64.self).littleEndian
                let low = raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self).littleEndian
                var vector = [Float](repeating: 0, count: dimension)
                for t in 0..<dimension {
                    vector[t] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: base + 16 + 4 * t, as: UInt32.self).littleEndian)
                }
                vectors[Key(high: high, low: low)] = vector
            }
        }
        validLength = UInt64(records * length)
    }

    public func embed(_ texts: [String]) throws -> Matrix {
        let keys = texts.map(Self.key)
        var missing: [Int] = []
        var seen = Set<Key>()
        lock.withLock {
            for (i, key) in keys.enumerated() where vectors[key] == nil && seen.insert(key).inserted { missing.append(i) }
        }
        if !missing.isEmpty {
            let fresh = try base.embed(missing.map { texts[$0] })
            var bytes = Data()
            bytes.reserveCapacity(missing.count * recordLength)
            for (row, index) in missing.enumerated() {
                let key = keys[index]
                withUnsafeBytes(of: key.high.littleEndian) { bytes.append(contentsOf: $0) }
                withUnsafeBytes(of: key.low.littleEndian) { bytes.append(contentsOf: $0) }
                for value in fresh.row(row) { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
            }
            try lock.withLock {
                for (row, index) in missing.enumerated() { vectors[keys[index]] = fresh.row(row) }
                try append(bytes)
            }
        }
        var result = Matrix(rows: texts.count, cols: dimension)
        lock.withLock {
            for (i, key) in keys.enumerated() { result.setRow(i, to: vectors[key]!) }
        }
        return result
    }

    private func append(_ bytes: Data) throws {
        if !FileManager.default.fileExists(atPath: file.path) {
            _ = FileManager.default.createFile(atPath: file.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.truncate(atOffset: validLength)
        try handle.seek(toOffset: validLength)
        try handle.write(contentsOf: bytes)
        try handle.synchronize()
        validLength += UInt64(bytes.count)
    }
}
