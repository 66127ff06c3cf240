import Foundation
internal import CSodium

/// Secret bytes in libsodium's guarded memory (guard pages, locked against swapping), zeroed
/// when the value goes away. Non-copyable, so a secret exists once.
///
/// Secrets of up to `SecretArena.slotBytes` (every key and seed FedSeg holds) take a slot of a
/// pooled guarded slab, so making and dropping one costs no system call; longer ones get their
/// own `sodium_malloc`.
///
/// Each guarded allocation (a slab, or a long secret) costs the process several memory mappings,
/// and the kernel allows 65,530 per process by default (`vm.max_map_count`); exhausting them
/// makes every later `mmap` — thread stacks, large `malloc`s — fail. So at most `guardedLimit`
/// such allocations exist at once; beyond that the bytes live in ordinary memory, still zeroed
/// when released (`isGuarded` says which).
public struct SecureBytes: ~Copyable, @unchecked Sendable {
    private enum Storage {
        /// A slot of a `SecretArena` slab.
        case slot
        /// Its own `sodium_malloc`.
        case guarded
        /// `malloc`, past the guarded budget.
        case ordinary
    }

    private let pointer: UnsafeMutableRawPointer
    public let count: Int
    private let storage: Storage

    /// Whether the bytes sit between guard pages rather than in ordinary memory.
    public var isGuarded: Bool { storage != .ordinary }

    /// Guarded allocations (slabs and long secrets) alive at once, at most: about a quarter of
    /// the default mapping limit.
    public static let guardedLimit = 4096

    public init(count: Int) {
        Sodium.ensureInitialized()
        precondition(count > 0, "secret of no bytes")
        if count <= SecretArena.slotBytes, let slot = SecretArena.shared.take() {
            pointer = slot
            storage = .slot
        } else if let memory = GuardedMemory.shared.allocate(count) {
            pointer = memory
            storage = .guarded
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
            storage = .ordinary
        }
        self.count = count
        sodium_memzero(pointer, count)
    }

    /// `count` bytes from the OS CSPRNG, written straight into guarded memory.
    public static func random(count: Int) -> SecureBytes {
        let bytes = SecureBytes(count: count)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return bytes
    }

    public init(copying bytes: some Collection<UInt8>) {
        self.init(count: bytes.count)
        var offset = 0
        for byte in bytes {
            pointer.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    deinit {
        switch storage {
        case .slot:
            SecretArena.shared.give(pointer)  // zeroes the whole slot
        case .guarded:
            GuardedMemory.shared.free(pointer)
        case .ordinary:
            sodium_memzero(pointer, count)
            pointer.deallocate()
        }
    }

    public func withUnsafeBytes<R: ~Copyable>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time equality.
    public func isEqual(to other: borrowing SecureBytes) -> Bool {
        count == other.count && other.withUnsafeBytes { sodium_memcmp(pointer, $0.baseAddress!, count) == 0 }
    }
}

/// Constant-time comparison of two byte strings (`sodium_memcmp`); differing lengths are unequal.
public func constantTimeEqual(_ a: some ContiguousBytes, _ b: some ContiguousBytes) -> Bool {
    Sodium.ensureInitialized()
    return a.withUnsafeBytes { x in
        b.withUnsafeBytes { y in
            x.count == y.count && (x.count == 0 || sodium_memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
        }
    }
}

extension Sequence<UInt8> {
    /// Lower-case hexadecimal, two digits a byte.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Guarded allocations (slabs and long secrets), at most `SecureBytes.guardedLimit` alive.
final class GuardedMemory: @unchecked Sendable {
    static let shared = GuardedMemory()
    private let lock = NSLock()
    private var live = 0

    /// `sodium_malloc(bytes)` within the budget; nil when the budget is spent or it fails.
    func allocate(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard reserve() else { return nil }
        guard let memory = sodium_malloc(bytes) else {
            release()
            return nil
        }
        return memory
    }

    /// `sodium_free` (which zeroes first) of what `allocate` returned.
    func free(_ memory: UnsafeMutableRawPointer) {
        sodium_free(memory)
        release()
    }

    private func reserve() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard live < SecureBytes.guardedLimit else { return false }
        live += 1
        return true
    }

    private func release() {
        lock.lock()
        live -= 1
        lock.unlock()
    }
}
