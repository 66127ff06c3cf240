internal import CSodium

/// SipHash-2-4 from libsodium (`crypto_shorthash`): a fast keyed 64-bit hash that is the same on
/// every machine, for feature hashing. Not a MAC for long-term secrets.
public struct KeyedHash: Sendable {
    private let key: [UInt8]

    /// A key derived from a seed (BLAKE2b of a fixed label and the seed).
    public init(seed: UInt64) {
        Sodium.ensureInitialized()
        var input = Array("fedseg/keyed-hash/v1".utf8)
        withUnsafeBytes(of: seed.littleEndian) { input.append(contentsOf: $0) }
        var key = [UInt8](repeating: 0, count: Int(crypto_shorthash_KEYBYTES))
        _ = crypto_generichash(&key, key.count, input, UInt64(input.count), nil, 0)
        self.key = key
    }

    public func hash(_ bytes: some Collection<UInt8>) -> UInt64 {
        if let value = bytes.withContiguousStorageIfAvailable({ hash(bytes: UnsafeRawBufferPointer($0)) }) { return value }
        return Array(bytes).withUnsafeBytes { hash(bytes: $0) }
    }

    public func hash(_ text: String) -> UInt64 {
        var text = text
        return text.withUTF8 { hash(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// SipHash-2-4 of the bytes, read as a little-endian integer; no copies (the hashing embedder
    /// hashes every feature of every text).
    public func hash(bytes: UnsafeRawBufferPointer) -> UInt64 {
        var out: UInt64 = 0
        withUnsafeMutableBytes(of: &out) { out in
            let hash = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
            key.withUnsafeBufferPointer { key in
                if let input = bytes.baseAddress, !bytes.isEmpty {
                    _ = crypto_shorthash(hash, input.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count), key.baseAddress!)
                } else {
                    // The empty input, from a valid pointer.
                    _ = withUnsafePointer(to: UInt8(0)) { crypto_shorthash(hash, $0, 0, key.baseAddress!) }
                }
            }
        }
        return UInt64(littleEndian: out)
    }
}
