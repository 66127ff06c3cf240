import ArgumentParser
import FedSegMath
import FedSegProtocol
import Foundation
import SwiftProtobuf

/// The intake's decoding of an update's packed words, kernel by kernel, against SwiftProtobuf.
struct VarintSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "varint",
        abstract: "Decoding an update's packed words (k = 16, d = 384: 6,160 words, as the intake reads them): each PackedVarintKernel this CPU runs and SwiftProtobuf, ns per word."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Decodes timed per kernel.")
    var repetitions = 20_000

    struct Row: Codable {
        var decoder: String
        var nanosecondsPerWord: Double
        var microsecondsPerUpdate: Double

        enum CodingKeys: String, CodingKey {
            case decoder
            case nanosecondsPerWord = "ns_per_word"
            case microsecondsPerUpdate = "us_per_update"
        }
    }

    struct Output: Codable {
        var suite = "varint"
        var words: Int
        var bodyBytes: Int
        var currentKernel: String
        var rows: [Row]

        enum CodingKeys: String, CodingKey {
            case suite, words, rows
            case bodyBytes = "body_bytes"
            case currentKernel = "current_kernel"
        }
    }

    func run() throws {
        // Noised words on a plan's grid, as the coordinator suite's clients send them (about 3 bytes a word).
        var rng = SeededRandom(seed: 5)
        let words = (0..<(16 * 384 + 16)).map { _ in Int64((rng.nextStandardNormal() * 100_000).rounded()) }
        let update = Fedseg_V1_ClientUpdate.with {
            $0.runID = "run"
            $0.round = 1
            $0.words = words
        }
        let message: [UInt8] = try update.serializedBytes()
        let body: [UInt8] = try Fedseg_V1_ClientUpdate.with { $0.words = words }.serializedBytes()
        // The words field's contents: past its tag (one byte) and its length (a varint).
        var position = 1
        while body[position] & 0x80 != 0 { position += 1 }
        let packed = Array(body[(position + 1)...])
        var rows: [Row] = []
        func time(_ name: String, _ decode: () -> [Int64]?) {
            precondition(decode() == words, "\(name) decoded other words")
            let clock = ContinuousClock()
            var best = Duration.seconds(1_000)
            // Best of five batches: the least disturbed by other load.
            for _ in 0..<5 {
                let start = clock.now
                for _ in 0..<(repetitions / 5) { _ = decode() }
                best = min(best, (clock.now - start) / (repetitions / 5))
            }
            let micros = Double(best.components.attoseconds) * 1e-12 + Double(best.components.seconds) * 1e6
            rows.append(Row(decoder: name, nanosecondsPerWord: micros * 1e3 / Double(words.count), microsecondsPerUpdate: micros))
        }
        for kernel in PackedVarintKernel.allCases where kernel.runsHere {
            time("\(kernel.rawValue) kernel") { packed.withUnsafeBytes { PackedWordsDecoder.packedSInt64($0, kernel: kernel) } }
        }
        time("SwiftProtobuf, whole message") { (try? Fedseg_V1_ClientUpdate(serializedBytes: message))?.words }
        let output = Output(words: words.count, bodyBytes: packed.count, currentKernel: PackedVarintKernel.current.rawValue, rows: rows)
        if json { try printJSON(output); return }
        print("packed words of one update: \(words.count) words in \(packed.count) bytes; the intake uses the \(output.currentKernel) kernel")
        for row in rows {
            print(row.decoder.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%6.2f ns/word  %7.1f µs/update", row.nanosecondsPerWord, row.microsecondsPerUpdate))
        }
    }
}
