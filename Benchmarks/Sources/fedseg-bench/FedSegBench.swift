import ArgumentParser
import FedSegMath
import Foundation

@main
struct FedSegBenchMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await FedSegBench.main()
    }
}

struct FedSegBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedseg-bench",
        abstract: "FedSeg benchmark suites. Each prints a table, or one JSON object with --json.",
        subcommands: [GEMMSuite.self, KMeansSuite.self, EmbedSuite.self, CoordinatorSuite.self, VarintSuite.self, SecAggSuite.self, CompareSuite.self, ScaleSuite.self, DurableSuite.self]
    )
}

/// Prints a value as one line of sorted JSON.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Median wall time of `body` over enough repetitions to fill `budget` seconds (at least 3).
func medianSeconds(budget: Double = 0.5, minimumRuns: Int = 3, _ body: () -> Void) -> Double {
    body()  // warm-up: thread pool start, page faults
    var times: [Double] = []
    let clock = ContinuousClock()
    let start = clock.now
    while times.count < minimumRuns || (clock.now - start) < .seconds(budget) {
        let t0 = clock.now
        body()
        let elapsed = clock.now - t0
        times.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        if times.count >= 200 { break }
    }
    times.sort()
    return times[times.count / 2]
}

/// Runs this benchmark binary again with a different environment and decodes its JSON.
func runChild<T: Decodable>(_ type: T.Type, arguments: [String], environment: [String: String]) throws -> T {
    var env = ProcessInfo.processInfo.environment
    for key in [
        BLASKernel.Variable.coreType, BLASKernel.Variable.mode, BLASKernel.Variable.selectedBy,
        BLASKernel.Variable.detected, BLASKernel.Variable.fallback,
    ] {
        env.removeValue(forKey: key)
    }
    env.merge(environment) { $1 }
    let (status, data) = try runCapturingOutput(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath(), arguments: arguments, environment: env)
    guard status == 0 else { throw ExitCode(status) }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(T.self, from: data)
}

/// Runs `executable` to completion; its stdout, and stderr left on ours so its messages show.
func runCapturingOutput(_ executable: URL, arguments: [String], environment: [String: String]) throws -> (status: Int32, output: Data) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, data)
}
