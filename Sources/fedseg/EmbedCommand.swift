import ArgumentParser
import FedSegEmbedding
import FedSegMath
import Foundation

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed texts locally: JSON Lines {\"text\": …} in, {\"embedding\": […]} out, in input order."
    )

    @Option(name: .long, help: "minilm or hashing.")
    var embedder: String = EmbedderChoice.minilm.rawValue

    @Option(name: .long, help: "Directory with the MiniLM files (default: $FEDSEG_CACHE/models/all-MiniLM-L6-v2).")
    var modelDir: String?

    @Option(name: .long, help: "Input file (default: stdin).")
    var input: String?

    @Option(name: .long, help: "Texts per encoder batch.")
    var batchSize = 32

    @Flag(name: .long, help: "One JSON object {embedder, dimension, embeddings: [[...]]} instead of JSON Lines.")
    var json = false

    @Flag(name: .long, help: "No progress line (it is shown only when standard error is a terminal).")
    var quiet = false

    func validate() throws {
        guard EmbedderChoice(rawValue: embedder) != nil else {
            throw ValidationError("--embedder must be one of \(EmbedderChoice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let data: Data
        if let input {
            guard let read = FileManager.default.contents(atPath: input) else {
                throw CommandFailure("cannot read --input \(input): no such file, or not readable")
            }
            data = read
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        let texts: [String]
        do {
            texts = try TextLines.parse(data)
        } catch let failure as TextLines.Failure {
            throw CommandFailure("\(input ?? "stdin"): \(failure)")
        }
        let files = modelDir.map { MiniLMModelFiles(directory: URL(fileURLWithPath: $0, isDirectory: true)) }
            ?? .defaultLocation()
        let choice = EmbedderChoice(rawValue: embedder)!
        let (model, warning) = choice.make(files: files, batchSize: batchSize, progress: ProgressLine("loading MiniLM (layers)", quiet: quiet))
        if let warning { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        let vectors = try model.embed(texts, chunk: 256, progress: ProgressLine("embedding", quiet: quiet).update)
        if json {
            struct Embedded: Encodable { var embedder: String; var dimension: Int; var embeddings: [[Float]] }
            return try JSONOutput.print(Embedded(
                embedder: model.identifier, dimension: vectors.cols, embeddings: (0..<vectors.rows).map { Array(vectors.row($0)) }
            ))
        }
        let rows = (0..<vectors.rows).lazy.map { vectors.row($0) }
        FileHandle.standardOutput.write(Data(TextLines.embeddingLines(rows).utf8))
    }
}
