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
        var out = [UInt8](repeating: 0, count: 8)
        let input = Array(bytes)
        _ = crypto_shorthash(&out, input, UInt64(input.count), key)
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(out[i]) << (8 * UInt64(i)) }
        return value
    }

    public func hash(_ text: String) -> UInt64 {
        hash(Array(text.utf8))
    }
}
