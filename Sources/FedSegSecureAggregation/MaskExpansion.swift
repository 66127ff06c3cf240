import FedSegCrypto
import FedSegMath
import Foundation

/// Masks over Z_{2^32}: libsodium's ChaCha20 (IETF) key stream under a 32-byte seed, read as
/// little-endian 32-bit words. The nonce binds the mask to the round and to its purpose, so a
/// seed never yields the same mask twice.
public enum MaskExpansion {
    public enum Purpose: UInt32, Sendable {
        case selfMask = 1
        case pairwise = 2
    }

    /// Adds (`sign` = 1) or subtracts (`sign` = −1) the mask to `vector`, wrapping mod 2^32.
    public static func apply(
        seed: borrowing SecureBytes, round: UInt64, purpose: Purpose, sign: Int, to vector: inout [UInt32]
    ) {
        precondition(seed.count == KeyStream.keyBytes, "a mask seed is 32 bytes")
        var nonce = [UInt8](repeating: 0, count: KeyStream.nonceBytes)
        withUnsafeBytes(of: round.littleEndian) { for i in 0..<8 { nonce[i] = $0[i] } }
        withUnsafeBytes(of: purpose.rawValue.littleEndian) { for i in 0..<4 { nonce[8 + i] = $0[i] } }
        let count = vector.count
        var stream = [UInt32](repeating: 0, count: count)
        stream.withUnsafeMutableBytes { KeyStream.chacha20(key: seed, nonce: nonce, into: $0) }
        vector.withUnsafeMutableBufferPointer { v in
            stream.withUnsafeBufferPointer { s in
                if sign >= 0 {
                    for i in 0..<count { v[i] &+= UInt32(littleEndian: s[i]) }
                } else {
                    for i in 0..<count { v[i] &-= UInt32(littleEndian: s[i]) }
                }
            }
        }
    }
}

/// The sparse communication graph of SecAgg+ (Bell et al. 2020): a Harary graph over a random
/// permutation of the clients, each client linked to `degree` others (an even number, O(log n)).
/// Public: every party derives it from the round's seed.
public struct NeighborGraph: Sendable, Equatable {
    public let neighbors: [[Int]]

    /// degree 2⌈log₂ n⌉ + 2 (at most n − 1), as SecAgg+ suggests for security against a small
    /// fraction of corrupt clients and robustness to dropouts.
    public static func defaultDegree(clients n: Int) -> Int {
        guard n > 1 else { return 0 }
        let logarithm = Int(ceil(log2(Double(n))))
        let degree = 2 * logarithm + 2
        return min(n - 1, degree + degree % 2)
    }

    public init(clients n: Int, degree requested: Int? = nil, seed: UInt64) {
        let degree = min(n - 1, requested ?? Self.defaultDegree(clients: n))
        var order = Array(0..<n)
        var rng = SeededRandom(seed: seed, stream: 0x5EC)
        order.shuffle(using: &rng)
        var position = [Int](repeating: 0, count: n)
        for (p, client) in order.enumerated() { position[client] = p }
        var lists = [[Int]](repeating: [], count: n)
        for client in 0..<n {
            var set = Set<Int>()
            let p = position[client]
            var offset = 1
            while set.count < degree, offset < n {
                set.insert(order[(p + offset) % n])
                if set.count < degree { set.insert(order[(p - offset + n) % n]) }
                offset += 1
            }
            lists[client] = set.sorted()
        }
        // Symmetric by construction when degree is even; make it so for odd requests too.
        for client in 0..<n {
            for other in lists[client] where !lists[other].contains(client) { lists[other].append(client) }
        }
        neighbors = lists.map { $0.sorted() }
    }
}
