import SwiftProtobuf

/// The intake's fast path for the messages it takes most of: `ClientUpdate`,
/// `RecommendationUpdate` and `StartHistogram` are each a `run_id` (field 1, string), a `round`
/// (field 2, uint64) and one packed `repeated sint64` field of thousands of words.
///
/// Why: SwiftProtobuf decodes a packed field one varint at a time through its generic decoder,
/// about 9 ns a word, which made decoding an update (k = 16, d = 384: 6,160 words) take 2.5 times
/// as long as authenticating and decrypting it. Here words of up to 8 bytes are read two at a time
/// from one unaligned load, each a mask and three shifts with no branch on its length, into an
/// array sized once.
///
/// It only answers for bytes in exactly that shape: any other field or wire type, an unpacked
/// words field, invalid UTF-8, a truncated or over-long varint returns nil, and the caller decodes
/// with SwiftProtobuf, whose answer (a message or an error) is the reference. Where it answers, it
/// answers as SwiftProtobuf does (a test holds it to that on generated and mutated messages):
/// the last `run_id` and `round` win, repeated words fields concatenate.
public enum PackedWordsDecoder {
    public struct Fields: Equatable, Sendable {
        public var runID: String
        public var round: UInt64
        public var words: [Int64]
    }

    public static func decode(_ bytes: [UInt8], wordsField: Int) -> Fields? {
        bytes.withUnsafeBytes { decode($0, wordsField: wordsField) }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, wordsField: Int) -> Fields? {
        guard let base = bytes.baseAddress else { return Fields(runID: "", round: 0, words: []) }
        let lengthDelimited: UInt64 = 2
        let end = bytes.count
        var position = 0
        var runID = ""
        var round: UInt64 = 0
        var words: [Int64]? = nil
        while position < end {
            guard let key = varint(base, &position, end) else { return nil }
            switch (key >> 3, key & 7) {
            case (1, lengthDelimited):
                guard let length = varint(base, &position, end), length <= UInt64(end - position),
                    let text = String(validating: UnsafeRawBufferPointer(start: base + position, count: Int(length)), as: UTF8.self)
                else { return nil }
                runID = text
                position += Int(length)
            case (2, 0):
                guard let value = varint(base, &position, end) else { return nil }
                round = value
            case (UInt64(wordsField), lengthDelimited):
                guard let length = varint(base, &position, end), length <= UInt64(end - position) else { return nil }
                let body = UnsafeRawBufferPointer(start: base + position, count: Int(length))
                guard let decoded = packedSInt64(body) else { return nil }
                if words == nil { words = decoded } else { words!.append(contentsOf: decoded) }
                position += Int(length)
            default:
                return nil
            }
        }
        return Fields(runID: runID, round: round, words: words ?? [])
    }

    /// A varint as SwiftProtobuf reads one: at most 10 bytes, bits past the 64th dropped; nil when
    /// it runs past `end` or is longer.
    @inline(__always)
    static func varint(_ base: UnsafeRawPointer, _ position: inout Int, _ end: Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < end, shift <= 63 {
            let byte = base.load(fromByteOffset: position, as: UInt8.self)
            position += 1
            value |= UInt64(byte & 0x7f) &<< shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    /// The 7-bit groups of a varint's bytes (at most 8, continuation bits included), joined.
    @inline(__always)
    static func compact(_ bytes: UInt64) -> UInt64 {
        var x = bytes & 0x7f7f_7f7f_7f7f_7f7f
        x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f)
        x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff)
        return ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff)
    }

    @inline(__always)
    static func zigzag(_ x: UInt64) -> Int64 { Int64(bitPattern: x >> 1) ^ (0 &- Int64(bitPattern: x & 1)) }

    /// A packed sint64 body: every word, or nil when the body is not a whole number of varints.
    static func packedSInt64(_ body: UnsafeRawBufferPointer) -> [Int64]? {
        let count = body.count
        guard count > 0 else { return [] }
        let base = body.baseAddress!
        // Each varint ends at the one byte of it with the top bit clear: the count, exactly, when
        // the last byte ends one.
        guard base.load(fromByteOffset: count - 1, as: UInt8.self) & 0x80 == 0 else { return nil }
        var terminators = 0
        var i = 0
        while i + 8 <= count {
            terminators += (~base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080).nonzeroBitCount
            i += 8
        }
        while i < count {
            if base.load(fromByteOffset: i, as: UInt8.self) & 0x80 == 0 { terminators += 1 }
            i += 1
        }
        var malformed = false
        let words = [Int64](unsafeUninitializedCapacity: terminators) { out, initialized in
            let words = out.baseAddress!
            var position = 0
            var n = 0
            // One load for the (usually) two words that end within the next 8 bytes: where the
            // next load starts depends on this one, and that chain, not the arithmetic, is what
            // bounds the loop.
            while position + 8 <= count {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                let stops = ~word & 0x8080_8080_8080_8080
                guard stops != 0 else { break }  // 9 or 10 bytes: the loop below
                let first = UInt64(stops.trailingZeroBitCount + 1)  // 8 × its length
                words[n] = zigzag(compact(word & (UInt64.max >> (64 &- first))))
                let rest = stops & (stops &- 1)
                if rest != 0 {
                    let second = UInt64(rest.trailingZeroBitCount + 1)
                    words[n + 1] = zigzag(compact((word & (UInt64.max >> (64 &- second))) >> first))
                    n += 2
                    position += Int(second >> 3)
                } else {
                    n += 1
                    position += Int(first >> 3)
                }
            }
            while position < count {
                guard let x = varint(base, &position, count) else {
                    malformed = true
                    break
                }
                words[n] = zigzag(x)
                n += 1
            }
            initialized = n
        }
        // A varint of more than 10 bytes ends at a terminator too, but reads as malformed.
        guard !malformed, words.count == terminators else { return nil }
        return words
    }
}

/// A message `PackedWordsDecoder` reads: its words field, by number and by property.
public protocol PackedWordsMessage: SwiftProtobuf.Message {
    static var wordsFieldNumber: Int { get }
    static var words: WritableKeyPath<Self, [Int64]> { get }
    var runID: String { get set }
    var round: UInt64 { get set }
}

extension PackedWordsMessage {
    public init(_ fields: PackedWordsDecoder.Fields) {
        self.init()
        runID = fields.runID
        round = fields.round
        self[keyPath: Self.words] = fields.words
    }
}

extension Fedseg_V1_ClientUpdate: PackedWordsMessage {
    public static var wordsFieldNumber: Int { 5 }
    public static var words: WritableKeyPath<Self, [Int64]> { \.words }
}

extension Fedseg_V1_RecommendationUpdate: PackedWordsMessage {
    public static var wordsFieldNumber: Int { 3 }
    public static var words: WritableKeyPath<Self, [Int64]> { \.counts }
}

extension Fedseg_V1_StartHistogram: PackedWordsMessage {
    public static var wordsFieldNumber: Int { 3 }
    public static var words: WritableKeyPath<Self, [Int64]> { \.counts }
}

extension MessageCodec {
    /// `decode`, through `PackedWordsDecoder` for the bytes it reads (SwiftProtobuf for the rest).
    public static func decode<M: PackedWordsMessage>(_ type: M.Type, from bytes: [UInt8], limits: ProtocolLimits = .init()) throws -> M {
        if bytes.count <= limits.maximumMessageBytes, let fields = PackedWordsDecoder.decode(bytes, wordsField: M.wordsFieldNumber) { return M(fields) }
        return try decodeWithSwiftProtobuf(type, from: bytes, limits: limits)
    }
}
