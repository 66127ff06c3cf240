import FedSegCrypto
import FedSegMath

/// Shamir secret sharing over GF(2^8) (AES polynomial x⁸+x⁴+x³+x+1), byte by byte: any
/// `threshold` shares rebuild the secret, fewer reveal nothing about it. x-coordinates are 1…255.
public enum Shamir {
    public struct Share: Sendable, Equatable, Codable {
        public var x: UInt8
        public var bytes: [UInt8]

        public init(x: UInt8, bytes: [UInt8]) {
            self.x = x
            self.bytes = bytes
        }
    }

    public enum Failure: Error, Equatable {
        case badThreshold
        case tooFewShares(needed: Int, have: Int)
        case inconsistentShares
    }

    static let tables: (exp: [UInt8], log: [UInt8]) = {
        var exp = [UInt8](repeating: 0, count: 512)
        var log = [UInt8](repeating: 0, count: 256)
        var value: UInt16 = 1
        for i in 0..<255 {
            exp[i] = UInt8(value)
            log[Int(value)] = UInt8(i)
            // multiply by the generator 3: v·2 ⊕ v, reduced by 0x11b
            var doubled = value << 1
            if doubled & 0x100 != 0 { doubled ^= 0x11B }
            value = doubled ^ value
        }
        for i in 255..<512 { exp[i] = exp[i - 255] }
        return (exp, log)
    }()

    @inline(__always) static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        if a == 0 || b == 0 { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + Int(tables.log[Int(b)])]
    }

    @inline(__always) static func divide(_ a: UInt8, _ b: UInt8) -> UInt8 {
        precondition(b != 0, "division by zero in GF(256)")
        if a == 0 { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + 255 - Int(tables.log[Int(b)])]
    }

    /// Shares of `secret` at the given x-coordinates (distinct, non-zero), with random polynomial
    /// coefficients from the OS CSPRNG.
    public static func split(_ secret: [UInt8], threshold: Int, at xs: [UInt8]) throws -> [Share] {
        guard threshold >= 1, threshold <= xs.count, !xs.contains(0), Set(xs).count == xs.count else { throw Failure.badThreshold }
        var coefficients = [UInt8](repeating: 0, count: (threshold - 1) * secret.count)
        coefficients.withUnsafeMutableBytes { SecureRandom.fill($0) }
        defer { coefficients.withUnsafeMutableBytes { Sodium.memzero($0) } }
        return xs.map { x in
            var bytes = secret
            // Horner from the highest coefficient: f(x) = s + a₁x + … + a_{t−1}x^{t−1}
            for (position, value) in secret.enumerated() {
                var y: UInt8 = 0
                for degree in stride(from: threshold - 1, through: 1, by: -1) {
                    y = multiply(y, x) ^ coefficients[(degree - 1) * secret.count + position]
                }
                bytes[position] = multiply(y, x) ^ value
            }
            return Share(x: x, bytes: bytes)
        }
    }

    /// The secret from at least `threshold` shares (Lagrange interpolation at 0).
    public static func combine(_ shares: [Share], threshold: Int) throws -> [UInt8] {
        guard shares.count >= threshold else { throw Failure.tooFewShares(needed: threshold, have: shares.count) }
        let used = Array(shares.prefix(threshold))
        guard let length = used.first?.bytes.count, used.allSatisfy({ $0.bytes.count == length }),
            Set(used.map(\.x)).count == used.count, !used.contains(where: { $0.x == 0 })
        else { throw Failure.inconsistentShares }
        var weights = [UInt8](repeating: 0, count: used.count)
        for (i, share) in used.enumerated() {
            var numerator: UInt8 = 1
            var denominator: UInt8 = 1
            for (j, other) in used.enumerated() where j != i {
                numerator = multiply(numerator, other.x)
                denominator = multiply(denominator, other.x ^ share.x)
            }
            weights[i] = divide(numerator, denominator)
        }
        var secret = [UInt8](repeating: 0, count: length)
        for (i, share) in used.enumerated() {
            for position in 0..<length { secret[position] ^= multiply(weights[i], share.bytes[position]) }
        }
        return secret
    }
}
