import ArgumentParser
import FedSegMath
import FedSegSecureAggregation
import Foundation

struct SecAggSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secagg",
        abstract: "Secure aggregation (SecAgg+): client and server time per round, 10% dropout."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Comma-separated client counts.")
    var clients = "100,1000,5000"

    @Option(name: .long, help: "Vector length (words of 32 bits).")
    var length = 6144

    @Option(name: .long, help: "Share of clients dropping out after sharing keys.")
    var dropout = 0.1

    struct Row: Codable {
        var clients: Int
        var length: Int
        var degree: Int
        var threshold: Int
        var survivors: Int
        /// One client's work in one round (all four protocol rounds), milliseconds.
        var clientMillisecondsPerClient: Double
        /// The server's work for the round (routing, summing, rebuilding secrets, removing masks), seconds.
        var serverSeconds: Double
        var exact: Bool
    }

    struct Output: Codable {
        var suite = "secagg"
        var dropout: Double
        var rows: [Row]
    }

    func run() throws {
        var rows: [Row] = []
        for n in clients.split(separator: ",").compactMap({ Int($0) }) {
            let parameters = SecAgg.Parameters(clients: n, length: length, round: 1, graphSeed: 42)
            let inputs = (0..<n).map { i -> [UInt32] in
                var rng = SeededRandom(seed: UInt64(i))
                return (0..<length).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            }
            let dropouts = SecAggSession.Dropouts.random(fraction: dropout, clients: n, seed: 7)
            let outcome = try SecAggSession.run(parameters: parameters, input: { inputs[$0] }, dropouts: dropouts)
            var plain = [UInt32](repeating: 0, count: length)
            for i in outcome.survivors { for j in 0..<length { plain[j] &+= inputs[i][j] } }
            rows.append(Row(
                clients: n, length: length, degree: parameters.degree, threshold: parameters.threshold, survivors: outcome.survivors.count,
                clientMillisecondsPerClient: outcome.clientSeconds / Double(n) * 1000, serverSeconds: outcome.serverSeconds, exact: plain == outcome.sum
            ))
        }
        if json { try printJSON(Output(dropout: dropout, rows: rows)); return }
        print("SecAgg+ round, vector of \(length) words, \(Int(dropout * 100))% dropout after sharing keys")
        print("clients  degree  t  survivors  client ms/client  server s  exact")
        for r in rows {
            print(String(format: "%7d  %6d %2d  %9d  %16.2f  %8.3f  %@", r.clients, r.degree, r.threshold, r.survivors, r.clientMillisecondsPerClient, r.serverSeconds, r.exact ? "yes" : "NO"))
        }
    }
}
