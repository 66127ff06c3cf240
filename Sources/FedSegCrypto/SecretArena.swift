import Foundation
internal import CSodium

/// Guarded, locked memory for short secrets, handed out in fixed slots from large
/// `sodium_malloc` slabs.
///
/// A `sodium_malloc` per secret costs two `mprotect`s, an `mlock` and an `munmap` on release:
/// measured, the kernel work under those calls was 41% (Intel Xeon) to 80% (AMD EPYC, with TLB
/// shootdowns between cores) of a SecAgg+ client's CPU time, which creates and drops a few
/// session keys per neighbour. A slab of `slotsPerSlab` slots costs
/// that once. Each slab sits between guard pages and is locked against swapping, as a single
/// `sodium_malloc` is; what a slab does not give is a guard page between two slots of the same
/// slab. A slot is wiped with `sodium_memzero` when its secret is released, before it can be
/// handed out again.
///
/// Slabs are kept once made (the process's high-water mark of short secrets, 64 KiB each) and
/// count towards the mapping budget `SecureBytes.guardedLimit` describes, as one secret each.
final class SecretArena: @unchecked Sendable {
    static let shared = SecretArena()

    /// Every key, seed and share FedSeg holds fits: X25519 and session keys are 32 bytes,
    /// Ed25519 secret keys 64.
    static let slotBytes = 64
    static let slotsPerSlab = 1024

    private let lock = NSLock()
    private var free: [UnsafeMutableRawPointer] = []
    private(set) var slabCount = 0

    /// A zeroed slot, or nil when no slab can be made (the guarded budget is spent, or
    /// `sodium_malloc` failed): the caller then falls back as it would for any secret.
    func take() -> UnsafeMutableRawPointer? {
        lock.lock()
        defer { lock.unlock() }
        if free.isEmpty && !grow() { return nil }
        return free.removeLast()
    }

    /// Wipes the slot and returns it to the pool.
    func give(_ slot: UnsafeMutableRawPointer) {
        sodium_memzero(slot, Self.slotBytes)
        lock.lock()
        free.append(slot)
        lock.unlock()
    }

    private func grow() -> Bool {
        let bytes = Self.slotBytes * Self.slotsPerSlab
        guard let slab = GuardedMemory.shared.allocate(bytes) else { return false }
        sodium_memzero(slab, bytes)
        free.reserveCapacity(free.count + Self.slotsPerSlab)
        // Handed out from the slab's start, so a process with few secrets touches few pages.
        for slot in (0..<Self.slotsPerSlab).reversed() { free.append(slab + slot * Self.slotBytes) }
        slabCount += 1
        return true
    }
}
