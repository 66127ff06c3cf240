import ArgumentParser
import FedSegClustering
import FedSegEmbedding
import FedSegMath
import FedSegSecureAggregation
import Foundation

/// FedSeg beside the alternatives people compare it with, in one run and interleaved (FedSeg,
/// alternative, FedSeg, alternative, …), so that whatever else the machine does disturbs both
/// sides alike. Every figure is process CPU time of the timed section only (model loading and
/// interpreter start-up excluded on both sides), and every pair checks that the outputs agree.
struct CompareSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "CPU-time ratios against sentence-transformers, scikit-learn's Lloyd step and Flower's SecAgg+, side by side.",
        discussion: """
            The alternatives run in a Python environment that Benchmarks/compare/setup-venv creates once \
            (about 1 GB: torch, sentence-transformers, scikit-learn, flwr, the MiniLM weights), or the \
            python given with --python. Ratios are FedSeg ÷ alternative: below 1 means FedSeg used less CPU.
            """
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Python with torch, sentence-transformers, scikit-learn and flwr (default: the one setup-venv makes).")
    var python: String?

    @Option(name: .long, help: "Pairs of runs per job (FedSeg then the alternative, repeated).")
    var repetitions = 5

    enum Job: String, CaseIterable {
        case minilm, lloyd, secagg
    }

    @Option(name: .long, help: "Jobs to run, comma-separated: minilm, lloyd, secagg.")
    var jobs = "minilm,lloyd,secagg"

    @Option(name: .long, help: "Sentences for MiniLM (goodbooks items cut to 6-32 words).")
    var sentences = 2000

    @Option(name: .long, help: "Points for the Lloyd step.")
    var points = 100_000

    @Option(name: .long, help: "Cluster counts for the Lloyd step, comma-separated.")
    var lloydK = "8,32,256"

    @Option(name: .long, help: "Client counts for SecAgg+, comma-separated.")
    var secaggClients = "100,1000"

    @Option(name: .long, help: "Pairs of SecAgg+ runs at 1,000 clients or more (Flower takes about 15 minutes a run there).")
    var largeSecaggRepetitions = 1

    struct Spread: Codable {
        var min: Double
        var median: Double
        var max: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            min = sorted.first ?? .nan
            max = sorted.last ?? .nan
            median = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
        }
    }

    struct Row: Codable {
        var job: String
        var size: String
        /// CPU seconds of FedSeg's and the alternative's timed section, per run.
        var fedsegCPUSeconds: Spread
        var alternativeCPUSeconds: Spread
        /// FedSeg ÷ alternative, pair by pair.
        var ratio: Spread
        var outputsAgree: Bool
        var agreement: String
        /// FedSeg's median CPU seconds ÷ the CPU seconds of the job's matrix products alone at
        /// the SGEMM rate this process measures (`sgemm_gflops_per_core`): how far from the floor.
        var timesGEMMFloor: Double?

        /// From the paired runs; `floorSeconds` is the products' CPU time at the measured rate.
        init(job: Job, size: String, fedseg: [Double], alternative: [Double], outputsAgree: Bool, agreement: String, floorSeconds: Double? = nil) {
            self.job = job.rawValue
            self.size = size
            fedsegCPUSeconds = Spread(fedseg)
            alternativeCPUSeconds = Spread(alternative)
            ratio = Spread(zip(fedseg, alternative).map { $0 / $1 })
            self.outputsAgree = outputsAgree
            self.agreement = agreement
            timesGEMMFloor = floorSeconds.map { fedsegCPUSeconds.median / $0 }
        }
    }

    struct Output: Codable {
        var suite = "compare"
        var cpu: String
        var core: String
        var workers: Int
        var alternatives: [String: String]
        /// Single-threaded SGEMM at n = 1,024 with the kernel in use, per CPU-second.
        var sgemmGflopsPerCore: Double
        var rows: [Row]
        var notComparable: [String]
    }

    func run() throws {
        let names = jobs.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let unknown = names.filter { Job(rawValue: $0) == nil }
        guard unknown.isEmpty else {
            throw ValidationError("unknown job \(unknown.joined(separator: ", ")): choose from \(Job.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let selected = Set(names.compactMap(Job.init(rawValue:)))
        let worker = try PythonWorker(python: try python ?? Self.setupVenv())
        let sgemmRate = Self.sgemmRatePerCore()
        defer { worker.stop() }
        var alternatives = try worker.call(["job": "versions"]).compactMapValues { $0 as? String }
        var rows: [Row] = []
        var notes: [String] = []
        if selected.contains(.minilm) {
            let (row, versions) = try compareMiniLM(worker, sgemmRate: sgemmRate)
            rows.append(row)
            alternatives.merge(versions) { $1 }
            notes.append(
                "MiniLM: both sides run all-MiniLM-L6-v2 in Float32 with mean pooling and L2 normalisation at batch size 32 and \(Parallel.workerCount) threads; "
                    + "sentence-transformers pads each batch to its longest sentence, FedSeg packs batches without padding, so part of the difference is padding avoided."
            )
        }
        if selected.contains(.lloyd) {
            let (lloydRows, versions) = try compareLloyd(worker, sgemmRate: sgemmRate)
            rows += lloydRows
            alternatives.merge(versions) { $1 }
            notes.append(
                "Lloyd: one step each (assignment, per-cluster sums, new centres) from the same start; scikit-learn sums in Float32 with sample weights, "
                    + "FedSeg sums in Float64 (so clients' statistics add up exactly); both use their OpenBLAS SGEMM for the distances."
            )
        }
        if selected.contains(.secagg) {
            rows += try compareSecAgg(worker)
            notes.append(
                "SecAgg+: the same graph degree, threshold, vector length (6,144 words) and dropout. The cryptography differs: Flower uses P-384 ECDH, "
                    + "Fernet (AES-128-CBC + HMAC) and NumPy's MT19937 seeded with 32 bits as its mask PRG (not a cryptographic PRG); FedSeg uses X25519, "
                    + "XChaCha20-Poly1305 and ChaCha20. Flower's client time includes quantising its float vector; FedSeg's input is already fixed-point."
            )
        }
        let output = Output(
            cpu: Self.cpuName(), core: BLASKernel.coreName, workers: Parallel.workerCount, alternatives: alternatives,
            sgemmGflopsPerCore: sgemmRate / 1e9, rows: rows,
            notComparable: notes
        )
        if json {
            try printJSON(output)
            return
        }
        print("FedSeg beside the alternatives, \(output.cpu), \(output.workers) workers, OpenBLAS \(output.core)"
            + String(format: " (SGEMM %.1f GFLOP/s per core)", output.sgemmGflopsPerCore))
        print(alternatives.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("job      size                       FedSeg CPU s   other CPU s    ratio min / median / max   outputs")
        for row in rows {
            print(
                row.job.padding(toLength: 8, withPad: " ", startingAt: 0) + " "
                    + row.size.padding(toLength: 26, withPad: " ", startingAt: 0)
                    + String(format: " %12.4f  %12.4f    %.3f / %.3f / %.3f", row.fedsegCPUSeconds.median, row.alternativeCPUSeconds.median,
                             row.ratio.min, row.ratio.median, row.ratio.max)
                    + "   " + (row.outputsAgree ? "agree" : "DIFFER") + " (\(row.agreement))"
                    + (row.timesGEMMFloor.map { String(format: ", %.2fx the GEMM floor", $0) } ?? "")
            )
        }
        for note in notes { print("- " + note) }
    }

    // MARK: jobs

    func compareMiniLM(_ worker: PythonWorker, sgemmRate: Double) throws -> (Row, [String: String]) {
        let embedder = try MiniLMEmbedder(files: .defaultLocation(), batchSize: 32)
        let texts = try Self.goodbooksSentences(count: sentences)
        let directory = try Self.scratchDirectory()
        let textsPath = directory.appendingPathComponent("sentences.txt")
        try (texts.joined(separator: "\n") + "\n").write(to: textsPath, atomically: true, encoding: .utf8)
        let reply = try worker.call(["job": "minilm_load", "texts": textsPath.path, "threads": Parallel.workerCount, "batch": 32])
        let tokens = texts.map { embedder.tokenizer.encode($0).count }
        _ = try embedder.embed(Array(texts.prefix(64)))  // warm-up, as the Python side
        var ours: [Double] = []
        var theirs: [Double] = []
        var embeddings = Matrix(rows: 0, cols: 0)
        let referencePath = directory.appendingPathComponent("reference.f32")
        for repetition in 0..<repetitions {
            progress("minilm: pair \(repetition + 1) of \(repetitions)")
            ours.append(try processCPUSeconds { embeddings = try embedder.embed(texts) })
            var job: [String: Any] = ["job": "minilm"]
            if repetition == 0 { job["save"] = referencePath.path }
            theirs.append(try Self.seconds(worker.call(job)))
        }
        let reference = try Self.readFloats(referencePath, rows: texts.count, cols: embedder.dimension)
        var worst = 1.0
        for i in 0..<texts.count {
            var dot = 0.0
            for t in 0..<embedder.dimension { dot += Double(embeddings[i, t]) * Double(reference[i, t]) }
            worst = min(worst, dot)  // both sides are unit vectors
        }
        let meanTokens = Double(tokens.reduce(0, +)) / Double(tokens.count)
        let row = Row(
            job: .minilm, size: String(format: "%d sentences, %.0f tokens", texts.count, meanTokens), fedseg: ours, alternative: theirs,
            outputsAgree: worst >= 0.9999, agreement: String(format: "min cosine %.6f", worst),
            floorSeconds: EmbedSuite.flops(lengths: tokens, configuration: embedder.encoder.configuration) / sgemmRate
        )
        return (row, reply.compactMapValues { $0 as? String })
    }

    func compareLloyd(_ worker: PythonWorker, sgemmRate: Double) throws -> ([Row], [String: String]) {
        let d = 384
        var rows: [Row] = []
        var versions: [String: String] = [:]
        let directory = try Self.scratchDirectory()
        for k in lloydK.split(separator: ",").compactMap({ Int($0) }) {
            let data = KMeansSuite.unitVectorsAroundDirections(n: points, d: d, k: k, seed: 1)
            let pointsPath = directory.appendingPathComponent("points.f32")
            let startPath = directory.appendingPathComponent("start.f32")
            let resultPath = directory.appendingPathComponent("sklearn-centres.f32")
            try Self.writeFloats(data.points, to: pointsPath)
            try Self.writeFloats(data.start, to: startPath)
            let reply = try worker.call([
                "job": "lloyd_load", "points": pointsPath.path, "centroids": startPath.path, "n": points, "d": d, "k": k,
                "threads": Parallel.workerCount,
            ])
            versions.merge(reply.compactMapValues { $0 as? String }) { $1 }
            let update = GlobalUpdate()
            var next = data.start
            var counts: [Int] = []
            _ = LocalStatistics.compute(points: data.points, centroids: data.start)  // warm-up
            _ = try worker.call(["job": "lloyd"])
            var ours: [Double] = []
            var theirs: [Double] = []
            // FedSeg's GEMM path (what every CPU ran before the fused pass, and what CPUs without
            // AVX2 run), in the same rounds, so its ratio is measured under the same conditions.
            var oursGEMM: [Double] = []
            let fused = NearestCentroidKernel.current != .blas
            var nextGEMM = data.start
            let pairs = max(repetitions, 5)
            for repetition in 0..<pairs {
                progress("lloyd k=\(k): pair \(repetition + 1) of \(pairs)")
                ours.append(processCPUSeconds {
                    let statistics = LocalStatistics.compute(points: data.points, centroids: data.start)
                    next = update.apply(previous: data.start, statistics: statistics).centroids
                    counts = statistics.counts
                })
                var job: [String: Any] = ["job": "lloyd"]
                if repetition == 0 { job["save"] = resultPath.path }
                theirs.append(try Self.seconds(worker.call(job)))
                if fused {
                    oursGEMM.append(processCPUSeconds {
                        let statistics = LocalStatistics.compute(points: data.points, centroids: data.start, kernel: .blas)
                        nextGEMM = update.apply(previous: data.start, statistics: statistics).centroids
                    })
                }
            }
            let reference = try Self.readFloats(resultPath, rows: k, cols: d)
            // A cluster left empty keeps its centre in FedSeg; scikit-learn moves it to the point
            // farthest from its centre and takes that point out of its own cluster. A different
            // rule, not a different result: each empty cluster may leave two centres apart.
            let empty = counts.filter { $0 == 0 }.count
            var apart = [Float]()
            for j in 0..<k {
                var gap: Float = 0
                for t in 0..<d { gap = max(gap, abs(next[j, t] - reference[j, t])) }
                apart.append(gap)
            }
            apart.sort()
            let largest = apart[max(0, k - 1 - 2 * empty)]
            rows.append(Row(
                job: .lloyd, size: "n=\(points) d=\(d) k=\(k)", fedseg: ours, alternative: theirs, outputsAgree: largest <= 1e-4,
                agreement: String(format: "centres within %.1e", Double(largest))
                    + (empty > 0 ? " but \(2 * empty) (\(empty) empty: kept by FedSeg, relocated by scikit-learn)" : ""),
                floorSeconds: 2 * Double(points) * Double(k) * Double(d) / sgemmRate
            ))
            if fused {
                var gap: Float = 0
                for j in 0..<k where counts[j] > 0 {
                    for t in 0..<d { gap = max(gap, abs(nextGEMM[j, t] - next[j, t])) }
                }
                rows.append(Row(
                    job: .lloyd, size: "n=\(points) d=\(d) k=\(k), GEMM path", fedseg: oursGEMM, alternative: theirs,
                    outputsAgree: gap <= 1e-4, agreement: String(format: "centres within %.1e of the fused pass's", Double(gap)),
                    floorSeconds: 2 * Double(points) * Double(k) * Double(d) / sgemmRate
                ))
            }
        }
        return (rows, versions)
    }

    func compareSecAgg(_ worker: PythonWorker) throws -> [Row] {
        let length = 6144
        let dropout = 0.1
        var rows: [Row] = []
        for n in secaggClients.split(separator: ",").compactMap({ Int($0) }) {
            let workload = SecAggSuite.Workload(clients: n, length: length, dropout: dropout)
            let parameters = workload.parameters
            var ours: [Double] = []
            var theirs: [Double] = []
            var oursServer: [Double] = []
            var theirsServer: [Double] = []
            var exact = true
            var flowerAgrees = true
            let pairs = n >= 1000 ? largeSecaggRepetitions : repetitions
            for pair in 0..<max(1, pairs) {
                progress("secagg n=\(n): pair \(pair + 1) of \(max(1, pairs))")
                let (outcome, sumIsExact) = try workload.run()
                exact = exact && sumIsExact
                ours.append(outcome.clientCPUSeconds / Double(n))
                oursServer.append(outcome.serverCPUSeconds)
                // Flower's neighbourhoods include the client itself: degree + 1 shares.
                let reply = try worker.call([
                    "job": "secagg", "clients": n, "length": length, "dropout": dropout, "shares": parameters.degree + 1,
                    "threshold": parameters.threshold,
                ])
                guard let perClient = reply["client_cpu_seconds_per_client"] as? Double, let server = reply["server_cpu_seconds"] as? Double else {
                    throw ValidationError("the Flower job answered without timings: \(reply)")
                }
                flowerAgrees = flowerAgrees && (reply["sums_agree"] as? Bool ?? false)
                theirs.append(perClient)
                theirsServer.append(server)
            }
            let agreement = "FedSeg sum \(exact ? "exact" : "WRONG"), Flower's \(flowerAgrees ? "within its quantisation" : "WRONG")"
            rows.append(Row(
                job: .secagg, size: "client, n=\(n), degree \(parameters.degree)", fedseg: ours, alternative: theirs,
                outputsAgree: exact && flowerAgrees, agreement: agreement
            ))
            rows.append(Row(
                job: .secagg, size: "server, n=\(n), \(Int(dropout * 100))% dropout", fedseg: oursServer, alternative: theirsServer,
                outputsAgree: exact && flowerAgrees, agreement: agreement
            ))
        }
        return rows
    }

    // MARK: helpers

    /// FLOP per CPU-second of one single-threaded 1,024³ SGEMM with the kernel in use (best of 5).
    static func sgemmRatePerCore() -> Double {
        let n = 1024
        var rng = SeededRandom(seed: 5)
        let a = rng.normalMatrix(rows: n, cols: n)
        let b = rng.normalMatrix(rows: n, cols: n)
        var c = Matrix(rows: n, cols: n)
        var best = Double.infinity
        for _ in 0..<6 {
            let seconds = processCPUSeconds { BLAS.gemm(a, b, into: &c) }
            best = min(best, seconds)
        }
        return 2 * Double(n * n * n) / best
    }

    /// The python `setup-venv` prints (creating the environment the first time).
    static func setupVenv() throws -> String {
        let script = benchmarksDirectory.appendingPathComponent("compare/setup-venv")
        let (status, data) = try runCapturingOutput(script, arguments: [], environment: ProcessInfo.processInfo.environment)
        guard status == 0 else {
            throw ValidationError("\(script.path) could not make the Python environment (its message is above); or pass --python")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Goodbooks items (title, author line and tags) cut to 6-32 words (about 55 tokens: tags split
    /// into several word pieces): real, varied text.
    static func goodbooksSentences(count: Int) throws -> [String] {
        let path = benchmarksDirectory.deletingLastPathComponent().appendingPathComponent("data/goodbooks/items.jsonl")
        struct Item: Decodable {
            var title: String
            var text: String
            var tags: [String]
        }
        var rng = SeededRandom(seed: 23)
        var texts: [String] = []
        let decoder = JSONDecoder()
        for line in try String(contentsOf: path, encoding: .utf8).split(separator: "\n") where texts.count < count {
            let item = try decoder.decode(Item.self, from: Data(line.utf8))
            let words = "\(item.title). \(item.text). About \(item.tags.joined(separator: ", "))."
                .split(separator: " ")
            let length = 6 + Int(rng.next(upperBound: UInt64(27)))
            texts.append(words.prefix(length).joined(separator: " "))
        }
        return texts
    }

    static func scratchDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-bench-compare-\(getpid())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func writeFloats(_ matrix: Matrix, to url: URL) throws {
        try matrix.storage.withUnsafeBytes { try Data($0).write(to: url) }
    }

    static func readFloats(_ url: URL, rows: Int, cols: Int) throws -> Matrix {
        let data = try Data(contentsOf: url)
        guard data.count == rows * cols * 4 else { throw ValidationError("\(url.path): \(data.count) bytes, expected \(rows * cols * 4)") }
        var matrix = Matrix(rows: rows, cols: cols)
        matrix.storage.withUnsafeMutableBytes { _ = data.copyBytes(to: $0) }
        return matrix
    }

    static func seconds(_ reply: [String: Any]) throws -> Double {
        guard let value = reply["cpu_seconds"] as? Double else { throw ValidationError("the Python job answered without cpu_seconds: \(reply)") }
        return value
    }

    static func cpuName() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
            let name = line.split(separator: ":", maxSplits: 1).last
        else { return "unknown CPU" }
        return name.trimmingCharacters(in: .whitespaces)
    }
}

/// This nested package's directory (Benchmarks/), from this file's place in it.
let benchmarksDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A line on stderr, so a long comparison shows where it is without disturbing --json output.
func progress(_ line: String) {
    FileHandle.standardError.write(Data(("compare: " + line + "\n").utf8))
}

/// CPU time of this whole process (every thread) so far.
func processCPUNow() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) * 1e-9
}

/// CPU time of this whole process (every thread) spent in `body`.
func processCPUSeconds(_ body: () throws -> Void) rethrows -> Double {
    let start = processCPUNow()
    try body()
    return processCPUNow() - start
}

/// Benchmarks/compare/worker.py in a child process: one JSON request and one JSON reply per line.
final class PythonWorker {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffer = Data()

    init(python: String) throws {
        let script = benchmarksDirectory.appendingPathComponent("compare/worker.py")
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path]
        var environment = ProcessInfo.processInfo.environment
        environment["HF_HUB_OFFLINE"] = "1"
        environment["TOKENIZERS_PARALLELISM"] = "false"
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { throw ValidationError("could not start \(python): \(error.localizedDescription); pass --python with a working interpreter") }
    }

    func call(_ request: [String: Any]) throws -> [String: Any] {
        var line = try JSONSerialization.data(withJSONObject: request)
        line.append(0x0A)
        input.fileHandleForWriting.write(line)
        while !buffer.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw ValidationError("the Python worker stopped during \(request["job"] ?? "?") (its message is above)") }
            buffer.append(chunk)
        }
        let end = buffer.firstIndex(of: 0x0A)!
        let reply = buffer[buffer.startIndex..<end]
        buffer = Data(buffer[(end + 1)...])
        guard let object = try JSONSerialization.jsonObject(with: reply) as? [String: Any] else {
            throw ValidationError("the Python worker answered something other than a JSON object")
        }
        guard object["ok"] as? Bool == true else {
            throw ValidationError("the Python job \(request["job"] ?? "?") failed: \(object["error"] ?? "no message")")
        }
        return object
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}
