internal import CSodium

/// Cryptographically secure randomness from libsodium (`randombytes_buf`, the OS CSPRNG).
///
/// Stateless, so copies never share or repeat a stream; use it for privacy noise and keys.
public struct SecureRandom: RandomNumberGenerator, Sendable {
    public init() {
        Sodium.ensureInitialized()
    }

    public mutating func next() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { randombytes_buf($0.baseAddress!, 8) }
        return value
    }

    /// Fills a buffer in one call, for bulk draws.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        Sodium.ensureInitialized()
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }
}

/// libsodium must be initialised once before use; `sodium_init` is idempotent and thread-safe.
enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialise")
    }
}
