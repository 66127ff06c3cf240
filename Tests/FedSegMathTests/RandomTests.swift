import Foundation
import FedSegMath
import Testing

@Suite("Random generators")
struct RandomTests {
    /// Words of the ChaCha20 key stream for seed 42, computed independently with Python's
    /// `cryptography` (OpenSSL's ChaCha20) from the construction documented on `SeededRandom`.
    @Test("the seeded generator reproduces the committed stream, across refills")
    func seededStream() {
        var rng = SeededRandom(seed: 42)
        let words = (0..<200).map { _ in rng.next() }
        #expect(words[0] == 0xf7d1_ce0a_7eec_178b)
        #expect(words[1] == 0x270a_ed53_fad8_f732)
        #expect(words[2] == 0xa4a8_0eca_6b9f_9533)
        #expect(words[3] == 0x405b_4f76_e136_4e85)
        #expect(words[127] == 0x366f_192c_34c7_f672)
        #expect(words[128] == 0x5e13_fd99_bcac_6e50)
        #expect(words[199] == 0xa072_a015_4b76_0169)

        var other = SeededRandom(seed: 42, stream: 7)
        #expect([other.next(), other.next(), other.next()] == [0x08d9_e60c_cb6d_c4ee, 0x468d_b30a_ee42_a723, 0x56a1_6e7b_4f9a_8a86])
        var zero = SeededRandom(seed: 0)
        #expect([zero.next(), zero.next()] == [0x9028_033b_0a97_3b2e, 0x74a6_6e17_5bf2_48d9])
    }

    @Test("the same seed repeats, different seeds differ")
    func seededDeterminism() {
        var a = SeededRandom(seed: 9)
        var b = SeededRandom(seed: 9)
        var c = SeededRandom(seed: 10)
        let sa = (0..<1000).map { _ in a.next() }
        #expect(sa == (0..<1000).map { _ in b.next() })
        #expect(sa != (0..<1000).map { _ in c.next() })
    }

    /// Each check below fails a correct generator with probability well under 1e-6 (bounds at
    /// more than 5 standard deviations, or chi-square beyond its 1 - 1e-7 quantile).
    @Test("the secure generator passes simple statistical checks", arguments: ["direct", "buffered"])
    func secureStatistics(_ kind: String) {
        var rng: any RandomNumberGenerator = kind == "direct" ? SecureRandom() : BufferedSecureRandom(words: 97)
        let n = 200_000
        var bitCounts = [Int](repeating: 0, count: 64)
        var byteCounts = [Int](repeating: 0, count: 256)
        var sum = 0.0
        var sumSquares = 0.0
        for _ in 0..<n {
            let word = rng.next()
            for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 { bitCounts[bit] += 1 }
            for byte in 0..<8 { byteCounts[Int((word >> UInt64(8 * byte)) & 0xff)] += 1 }
            let u = Double(word >> 11) * 0x1.0p-53
            sum += u
            sumSquares += u * u
        }
        // Each bit: Binomial(n, 1/2), sd = sqrt(n)/2 ≈ 224; 64 bits at 5.5 sd.
        let bitBound = 5.5 * Double(n).squareRoot() / 2
        for count in bitCounts { #expect(abs(Double(count) - Double(n) / 2) < bitBound) }
        // Bytes: chi-square with 255 degrees of freedom; P(X > 400) ≈ 1e-8.
        let expected = Double(8 * n) / 256
        let chiSquare = byteCounts.reduce(0.0) { $0 + pow(Double($1) - expected, 2) / expected }
        #expect(chiSquare < 400, "chi-square \(chiSquare)")
        // Uniform mean 1/2 (sd of the mean = sqrt(1/12/n)) and variance 1/12.
        let mean = sum / Double(n)
        #expect(abs(mean - 0.5) < 6 * (1.0 / 12 / Double(n)).squareRoot())
        let variance = sumSquares / Double(n) - mean * mean
        #expect(abs(variance - 1.0 / 12) < 0.002)
    }

    @Test("secure bulk fill is not constant and copies do not repeat")
    func secureFill() {
        var bytes = [UInt8](repeating: 0, count: 4096)
        bytes.withUnsafeMutableBytes { SecureRandom.fill($0) }
        #expect(Set(bytes).count > 200)
        var a = SecureRandom()
        var b = a
        #expect((0..<16).map { _ in a.next() } != (0..<16).map { _ in b.next() })
        // A copy of the buffered generator is the same buffer: it never hands out a word twice.
        let buffered = BufferedSecureRandom(words: 8)
        let c = buffered
        let d = buffered
        let words = (0..<40).flatMap { _ in [c.next(), d.next()] }
        #expect(Set(words).count == words.count)
    }

    @Test("standard normal draws have mean 0 and variance 1")
    func normalMoments() {
        var rng = SeededRandom(seed: 3)
        let n = 100_000
        let draws = (0..<n).map { _ in rng.nextStandardNormal() }
        let mean = draws.reduce(0, +) / Double(n)
        let variance = draws.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        #expect(abs(mean) < 6 / Double(n).squareRoot())
        #expect(abs(variance - 1) < 6 * (2 / Double(n)).squareRoot())
    }
}
