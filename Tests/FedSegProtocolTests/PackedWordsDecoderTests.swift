import FedSegMath
import FedSegProtocol
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
}
