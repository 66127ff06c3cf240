import CPackedVarint
import SwiftProtobuf

/// How `PackedWordsDecoder` turns a packed body's varints into words (`CPackedVarint`).
public enum PackedVarintKernel: String, Sendable, CaseIterable {
    /// A map of the bytes that end a varint, 64 at a time, then each varint read from where it
    /// starts with masks and shifts, so that no load waits on the previous word's length: any CPU.
    case portable
    /// SSE4.1 and SSSE3, after Masked VByte (Plaisance, Kurz and Lemire, 2015): up to four varints
    /// of at most 4 bytes gathered per 16-byte load by one byte shuffle from a table of 4,096,
    /// their 7-bit groups joined in 32-bit lanes. Longer varints are read one at a time.
    case sse41

    /// The best this CPU runs, asked once.
    public static let current: PackedVarintKernel = fedseg_varint_best_kernel() == FEDSEG_VARINT_SSE41 ? .sse41 : .portable

    /// Whether this CPU runs the kernel.
    public var runsHere: Bool { fedseg_varint_kernel_runs(cValue) != 0 }

    var cValue: fedseg_varint_kernel {
        switch self {
        case .portable: FEDSEG_VARINT_PORTABLE
        case .sse41: FEDSEG_VARINT_SSE41
        }
    }
}

/// The intake's fast path for the messages it takes most of: `ClientUpdate`,
/// `RecommendationUpdate` and `StartHistogram` are each a `run_id` (field 1, string), a `round`
/// (field 2, uint64) and one packed `repeated sint64` field of thousands of words.
///
/// Why: SwiftProtobuf decodes a packed field one varint at a time through its generic decoder
/// (4.2–4.5 ns a word with swift-protobuf 1.39, 26 µs for an update of k = 16, d = 384: 6,160
/// words, more than authenticating and decrypting it). Here the words field goes to `CPackedVarint`
/// (`PackedVarintKernel`) into an array sized once; a body with a varint of 9 or 10 bytes (a word
/// of magnitude 2^55 or more, which no plan's grid produces) is read one varint at a time here.
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

    @inline(__always)
    static func zigzag(_ x: UInt64) -> Int64 { Int64(bitPattern: x >> 1) ^ (0 &- Int64(bitPattern: x & 1)) }

    /// A packed sint64 body (a words field's contents): every word, or nil when the body is not a
    /// whole number of varints.
    public static func packedSInt64(_ body: UnsafeRawBufferPointer, kernel: PackedVarintKernel = .current) -> [Int64]? {
        guard body.count > 0 else { return [] }
        // Each varint ends at the one byte of it with the top bit clear: the count, exactly, when
        // the last byte ends one.
        guard body[body.count - 1] & 0x80 == 0 else { return nil }
        let terminators = fedseg_varint_count(body.baseAddress!.assumingMemoryBound(to: UInt8.self), body.count)
        return kernelWords(body, count: terminators, kernel: kernel) ?? longVarints(body, count: terminators)
    }

    /// The kernel's reading of a body of `terminators` varints, nil when one is longer than 8 bytes.
    static func kernelWords(_ body: UnsafeRawBufferPointer, count terminators: Int, kernel: PackedVarintKernel) -> [Int64]? {
        guard let base = body.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return [] }
        var decoded = 0
        let words = [Int64](unsafeUninitializedCapacity: terminators) { out, initialized in
            decoded = fedseg_decode_packed_sint64(kernel.cValue, base, body.count, out.baseAddress, terminators)
            initialized = max(decoded, 0)
        }
        return decoded >= 0 ? words : nil
    }

    /// The general reading, for bodies with varints of 9 or 10 bytes: nil when one is longer.
    static func longVarints(_ body: UnsafeRawBufferPointer, count terminators: Int) -> [Int64]? {
        let base = body.baseAddress!
        var malformed = false
        let words = [Int64](unsafeUninitializedCapacity: terminators) { out, initialized in
            var position = 0
            var n = 0
            while position < body.count {
                guard let x = varint(base, &position, body.count) else {
                    malformed = true
                    break
                }
                out[n] = zigzag(x)
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
