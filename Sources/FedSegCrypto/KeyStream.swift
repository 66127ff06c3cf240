internal import CSodium

/// libsodium's ChaCha20 (IETF) key stream: the PRG secure aggregation expands its mask seeds
/// with. The C call lives here, with the rest of the libsodium layer.
public enum KeyStream {
    public static let keyBytes = Int(crypto_stream_chacha20_ietf_KEYBYTES)
    public static let nonceBytes = Int(crypto_stream_chacha20_ietf_NONCEBYTES)

    /// Fills `output` with the key stream of `key` under `nonce` (`nonceBytes` long).
    public static func chacha20(key: borrowing SecureBytes, nonce: [UInt8], into output: UnsafeMutableRawBufferPointer) {
        precondition(key.count == keyBytes, "a ChaCha20 key is \(keyBytes) bytes")
        precondition(nonce.count == nonceBytes, "a ChaCha20 (IETF) nonce is \(nonceBytes) bytes")
        Sodium.ensureInitialized()
        guard let out = output.bindMemory(to: UInt8.self).baseAddress else { return }
        key.withUnsafeBytes { bytes in
            _ = crypto_stream_chacha20_ietf(out, UInt64(output.count), nonce, bytes.bindMemory(to: UInt8.self).baseAddress!)
        }
    }
}

extension Sodium {
    /// Zeroes memory in a way the compiler cannot elide (`sodium_memzero`).
    public static func memzero(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        sodium_memzero(base, buffer.count)
    }
}
