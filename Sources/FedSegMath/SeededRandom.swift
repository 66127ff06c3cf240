internal import CSodium

/// A deterministic generator for simulations and tests: the ChaCha20 (IETF) key stream from
/// libsodium, so a seed gives the same numbers on every machine and platform.
///
/// Key = BLAKE2b-256("fedseg/seeded-rng/v1" ‖ seed as 8 little-endian bytes);
/// nonce = stream as 8 little-endian bytes ‖ 4 zero bytes; block counter from 0.
/// Output is the key stream read as little-endian `UInt64`s. Distinct `stream` values give
/// independent streams for the same seed (one per simulated client, say).
///
/// Never use it for privacy noise or keys: a seed is not a secret. Use `SecureRandom`.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private static let wordsPerRefill = 128  // 1 KiB, 16 ChaCha20 blocks
    private static let blocksPerRefill = UInt32(wordsPerRefill * 8 / 64)

    private var key: [UInt8]
    private var nonce: [UInt8]
    private var blockCounter: UInt32 = 0
    private var buffer: [UInt64]
    private var index: Int

    public let seed: UInt64
    public let stream: UInt64

    public init(seed: UInt64, stream: UInt64 = 0) {
        Sodium.ensureInitialized()
        self.seed = seed
        self.stream = stream
        var input = Array("fedseg/seeded-rng/v1".utf8)
        withUnsafeBytes(of: seed.littleEndian) { input.append(contentsOf: $0) }
        var key = [UInt8](repeating: 0, count: 32)
        _ = crypto_generichash(&key, 32, input, UInt64(input.count), nil, 0)
        self.key = key
        var nonce = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: stream.littleEndian) { bytes in
            for i in 0..<8 { nonce[i] = bytes[i] }
        }
        self.nonce = nonce
        self.buffer = [UInt64](repeating: 0, count: Self.wordsPerRefill)
        self.index = Self.wordsPerRefill
    }

    public mutating func next() -> UInt64 {
        if index == Self.wordsPerRefill { refill() }
        let value = UInt64(littleEndian: buffer[index])
        index += 1
        return value
    }

    private mutating func refill() {
        precondition(blockCounter <= UInt32.max - Self.blocksPerRefill, "SeededRandom stream exhausted (256 GiB)")
        let byteCount = Self.wordsPerRefill * 8
        let counter = blockCounter
        key.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in
                buffer.withUnsafeMutableBytes { out in
                    let bytes = out.bindMemory(to: UInt8.self).baseAddress!
                    for i in 0..<byteCount { bytes[i] = 0 }
                    _ = crypto_stream_chacha20_ietf_xor_ic(
                        bytes, bytes, UInt64(byteCount), n.baseAddress!, counter, k.baseAddress!
                    )
                }
            }
        }
        blockCounter += Self.blocksPerRefill
        index = 0
    }
}
