import Foundation
internal import CSodium

/// SHA-256 from libsodium, one-shot or streaming.
public struct SHA256: ~Copyable {
    public static let byteCount = 32
    private var state = crypto_hash_sha256_state()

    public init() {
        Sodium.ensureInitialized()
        crypto_hash_sha256_init(&state)
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    public mutating func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    public consuming func finalize() -> Digest {
        var out = [UInt8](repeating: 0, count: Self.byteCount)
        crypto_hash_sha256_final(&state, &out)
        return Digest(bytes: out)
    }

    public static func hash(_ bytes: some ContiguousBytes) -> Digest {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// Hashes a file in 1 MiB chunks without loading it whole.
    public static func hash(fileAt url: URL) throws -> Digest {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(chunk)
        }
        return hasher.finalize()
    }

    public struct Digest: Sendable, Hashable, CustomStringConvertible {
        public let bytes: [UInt8]

        public var hex: String { bytes.hexString }
        public var description: String { hex }
    }
}
