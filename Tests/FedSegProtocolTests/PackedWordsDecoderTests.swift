import FedSegMath
@testable import FedSegProtocol
import Foundation
import SwiftProtobuf
import Testing

/// The intake's fast decoder answers as SwiftProtobuf does, or not at all.
@Suite("Packed words decoder")
struct PackedWordsDecoderTests {
    /// Words of every varint length, 1 to 10 bytes, both signs, and the extremes.
    static func words(_ count: Int, rng: inout SeededRandom) -> [Int64] {
        (0..<count).map { i in
            switch i % 7 {
            case 0: Int64.min + Int64(rng.next() % 3)
            case 1: Int64.max - Int64(rng.next() % 3)
            case 2: 0
            default:
                // A magnitude of 0 to 63 bits, so that every encoded length occurs.
                Int64(bitPattern: rng.next() >> (rng.next() % 64)) >> 1 * (rng.next() % 2 == 0 ? 1 : -1)
            }
        }
    }

    /// Both decoders on the same bytes: where the fast one answers, SwiftProtobuf must agree.
    static func agree<M: PackedWordsMessage & Equatable>(_ type: M.Type, _ bytes: [UInt8]) -> (fast: Bool, reference: Bool) {
        let fast = PackedWordsDecoder.decode(bytes, wordsField: M.wordsFieldNumber).map(M.init)
        let reference = try? M(serializedBytes: bytes)
        if let fast {
            #expect(reference != nil, "the fast path accepted bytes SwiftProtobuf refuses: \(bytes.prefix(32))")
            if let reference { #expect(fast == reference) }
        }
        // Through the codec: the same message, or the same refusal, whichever path decodes.
        let codec = try? MessageCodec.decode(type, from: bytes)
        #expect(codec == reference)
        return (fast != nil, reference != nil)
    }

    @Test("messages as SwiftProtobuf writes them: every one read by the fast path, equal to SwiftProtobuf's reading")
    func canonical() throws {
        var rng = SeededRandom(seed: 41)
        for count in [0, 1, 2, 7, 8, 9, 63, 6_160] {
            let words = Self.words(count, rng: &rng)
            let update = Fedseg_V1_ClientUpdate.with {
                $0.runID = "run-é-\(count)"
                $0.round = rng.next()
                $0.words = words
            }
            let histogram = Fedseg_V1_StartHistogram.with {
                $0.runID = "r"
                $0.round = UInt64(count)
                $0.counts = words
            }
            let recommendation = Fedseg_V1_RecommendationUpdate.with {
                $0.round = 3
                $0.counts = words
            }
            #expect(Self.agree(Fedseg_V1_ClientUpdate.self, try update.serializedBytes()) == (true, true))
            #expect(Self.agree(Fedseg_V1_StartHistogram.self, try histogram.serializedBytes()) == (true, true))
            #expect(Self.agree(Fedseg_V1_RecommendationUpdate.self, try recommendation.serializedBytes()) == (true, true))
            let fast = try #require(PackedWordsDecoder.decode(try update.serializedBytes(), wordsField: 5))
            #expect(fast.words == words && fast.runID == update.runID && fast.round == update.round)
        }
    }

    @Test("other shapes: repeated fields concatenate or the last wins as in SwiftProtobuf; unknown fields, unpacked words, bad UTF-8 go to SwiftProtobuf")
    func shapes() throws {
        let a = try Fedseg_V1_ClientUpdate.with { $0.runID = "a"; $0.round = 1; $0.words = [1, -2, 3] }.serializedBytes() as [UInt8]
        let b = try Fedseg_V1_ClientUpdate.with { $0.runID = "b"; $0.round = 2; $0.words = [-4, 5] }.serializedBytes() as [UInt8]
        // Two messages back to back merge: run id and round from the second, words of both.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, a + b) == (true, true))
        #expect(PackedWordsDecoder.decode(a + b, wordsField: 5)?.words == [1, -2, 3, -4, 5])
        // Words unpacked (field 5 as single varints): SwiftProtobuf reads them, the fast path declines.
        let unpacked: [UInt8] = [5 << 3 | 0, 0x03, 5 << 3 | 0, 0x04]
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, unpacked) == (false, true))
        // An unknown field, kept by SwiftProtobuf: declined.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, a + [9 << 3 | 0, 0x01]) == (false, true))
        // A run id that is not UTF-8: refused by SwiftProtobuf, declined here.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, [1 << 3 | 2, 0x02, 0xC3, 0x28]) == (false, false))
        // A varint of 11 bytes in the words, a words field cut short, a round cut short: refused.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, [5 << 3 | 2, 11] + [UInt8](repeating: 0xFF, count: 10) + [0x01]) == (false, false))
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, [5 << 3 | 2, 3, 0x80, 0x80]) == (false, false))
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, [2 << 3 | 0, 0x80]) == (false, false))
        // A 10-byte varint whose last byte has bits past the 64th: both drop them.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, [5 << 3 | 2, 10] + [UInt8](repeating: 0xFF, count: 9) + [0x7F]) == (true, true))
        // The empty message.
        #expect(Self.agree(Fedseg_V1_ClientUpdate.self, []) == (true, true))
    }

    @Test("random damage (flipped bytes, cuts, splices) never makes the fast path disagree with SwiftProtobuf")
    func mutations() throws {
        var rng = SeededRandom(seed: 7)
        let base = try Fedseg_V1_ClientUpdate.with {
            $0.runID = "run-7"
            $0.round = 12
            $0.words = Self.words(200, rng: &rng)
        }.serializedBytes() as [UInt8]
        var fastAnswered = 0
        for trial in 0..<3_000 {
            var bytes = base
            switch trial % 3 {
            case 0:
                for _ in 0..<(1 + Int(rng.next() % 3)) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1:
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            default:
                let cut = Int(rng.next() % UInt64(bytes.count))
                bytes = Array(bytes[..<cut]) + Array(base[Int(rng.next() % UInt64(base.count))...])
            }
            if Self.agree(Fedseg_V1_ClientUpdate.self, bytes).fast { fastAnswered += 1 }
        }
        // The comparison means something only if the fast path answered often.
        #expect(fastAnswered > 300, "\(fastAnswered)")
    }

    /// Protocol Buffers' encoding of a packed sint64 body, written here independently of both
    /// decoders.
    static func encode(_ words: [Int64]) -> [UInt8] {
        var bytes: [UInt8] = []
        for word in words {
            var z = UInt64(bitPattern: (word << 1) ^ (word >> 63))
            while z >= 0x80 {
                bytes.append(UInt8(z & 0x7f) | 0x80)
                z >>= 7
            }
            bytes.append(UInt8(z))
        }
        return bytes
    }

    /// A word whose varint is `length` bytes (1 to 10), of either sign.
    static func word(encodedLength length: Int, rng: inout SeededRandom) -> Int64 {
        // Zigzag values of exactly `length` 7-bit groups: 2^(7(length−1)) ≤ z < 2^(7·length).
        let low = length == 1 ? UInt64(0) : UInt64(1) << (7 * (length - 1))
        let high = length >= 10 ? UInt64.max : (UInt64(1) << (7 * length)) - 1
        let z = low + rng.next() % (high - low == UInt64.max ? UInt64.max : high - low + 1)
        return Int64(bitPattern: z >> 1) ^ (0 &- Int64(bitPattern: z & 1))
    }

    static var kernels: [PackedVarintKernel] { PackedVarintKernel.allCases.filter(\.runsHere) }

    static func decoded(_ bytes: [UInt8], kernel: PackedVarintKernel) -> [Int64]? {
        bytes.withUnsafeBytes { PackedWordsDecoder.packedSInt64($0, kernel: kernel) }
    }

    /// The kernel alone, without the general path behind it: nil where it declines.
    static func kernelOnly(_ words: [Int64], kernel: PackedVarintKernel) -> [Int64]? {
        Self.encode(words).withUnsafeBytes { PackedWordsDecoder.kernelWords($0, count: words.count, kernel: kernel) }
    }

    @Test("every kernel this CPU runs reads words of every varint length at every offset of the 64-byte blocks and the body's tail")
    func kernelsAgree() throws {
        // The portable kernel runs everywhere; on x86-64 with SSE4.1 the other one too.
        #expect(Self.kernels.contains(.portable))
        #expect(Self.kernels.contains(PackedVarintKernel.current))
        var rng = SeededRandom(seed: 23)
        for kernel in Self.kernels {
            // One-byte words: bodies of every length from 1 to 200 end at every tail position.
            for count in 0...200 {
                let words = (0..<count).map { _ in Self.word(encodedLength: 1, rng: &rng) }
                #expect(Self.decoded(Self.encode(words), kernel: kernel) == words, "\(kernel), \(count) one-byte words")
                #expect(Self.kernelOnly(words, kernel: kernel) == words, "\(kernel) alone, \(count) one-byte words")
            }
            // Mixed lengths of 1 to 8 bytes (the kernels' own path), then with 9- and 10-byte
            // words among them (the general path), over many block boundaries.
            for maximum in [2, 3, 8, 10] {
                for count in [1, 5, 21, 22, 23, 64, 65, 300, 6_160] {
                    let words = (0..<count).map { _ in Self.word(encodedLength: 1 + Int(rng.next() % UInt64(maximum)), rng: &rng) }
                    #expect(Self.decoded(Self.encode(words), kernel: kernel) == words, "\(kernel), \(count) words of up to \(maximum) bytes")
                    if maximum <= 8 { #expect(Self.kernelOnly(words, kernel: kernel) == words, "\(kernel) alone, \(count) words of up to \(maximum) bytes") }
                }
            }
            // An 8-byte varint (the longest the kernels read) and a 9-byte one at every position
            // around the first block boundary.
            for length in [8, 9] {
                for position in 50...70 {
                    var words = (0..<position).map { _ in Self.word(encodedLength: 1, rng: &rng) }
                    words.append(Self.word(encodedLength: length, rng: &rng))
                    words += (0..<20).map { _ in Self.word(encodedLength: 2, rng: &rng) }
                    #expect(Self.decoded(Self.encode(words), kernel: kernel) == words, "\(kernel), a \(length)-byte word after \(position) bytes")
                    // The kernel reads the 8-byte word itself and declines the 9-byte one.
                    #expect(Self.kernelOnly(words, kernel: kernel) == (length == 8 ? words : nil), "\(kernel) alone, a \(length)-byte word after \(position) bytes")
                }
            }
            // Not a sequence of varints: a last byte that does not end one, a varint of 11 bytes.
            #expect(Self.decoded([0x01, 0x82], kernel: kernel) == nil)
            #expect(Self.decoded(Self.encode([1, 2]) + [UInt8](repeating: 0xFF, count: 10) + [0x01] + Self.encode([3]), kernel: kernel) == nil)
        }
    }
}
