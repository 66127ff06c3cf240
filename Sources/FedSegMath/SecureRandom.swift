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

/// Bulk randomness for samplers that take many words per draw (the exact discrete Gaussian takes
/// dozens): each refill of the buffer is libsodium's `randombytes_buf_deterministic` (the
/// ChaCha20 keystream, SIMD in user space) under a fresh 32-byte key from the OS CSPRNG, which is
/// then erased. One system call per buffer instead of the kernel generating every byte: a local
/// update's noise drew 15% of a simulation's CPU from `getrandom`. A class, so that copies share one buffer and can never
/// hand out the same bytes twice; each word is erased once used, the rest when released.
public final class BufferedSecureRandom: RandomNumberGenerator {
    @usableFromInline let buffer: UnsafeMutableBufferPointer<UInt64>
    /// The next unused word, behind a pointer: every use of a class's stored `var` is checked
    /// for exclusive access at run time (`swift_beginAccess` had been a tenth of a simulated
    /// round's CPU).
    @usableFromInline let position: UnsafeMutablePointer<Int>

    public init(words: Int = 2048) {
        precondition(words > 0, "a buffer of at least one word")
        buffer = .allocate(capacity: words)
        buffer.initialize(repeating: 0)
        position = .allocate(capacity: 1)
        position.initialize(to: words)
    }

    deinit {
        sodium_memzero(buffer.baseAddress!, buffer.count * MemoryLayout<UInt64>.size)
        buffer.deallocate()
        position.deallocate()
    }

    /// Inlinable: samplers draw dozens of words per sample.
    @inlinable
    public func next() -> UInt64 {
        var index = position.pointee
        if index == buffer.count {
            refill()
            index = 0
        }
        let value = buffer[index]
        buffer[index] = 0
        position.pointee = index + 1
        return value
    }

    @usableFromInline func refill() {
        var key = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &key) { key in
            SecureRandom.fill(key)
            randombytes_buf_deterministic(buffer.baseAddress!, buffer.count * MemoryLayout<UInt64>.size, key.bindMemory(to: UInt8.self).baseAddress!)
            sodium_memzero(key.baseAddress!, key.count)
        }
        position.pointee = 0
    }
}
