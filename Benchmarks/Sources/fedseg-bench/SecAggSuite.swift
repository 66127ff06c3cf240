import ArgumentParser
import FedSegMath
import FedSegPrivacy
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

    @Option(name: .long, help: "σ of one client's discrete Gaussian noise share (a 1,000-client run at ε = 4 uses about 8,000).")
    var shareSigma = 8000.0

    struct Row: Codable {
        var clients: Int
        var length: Int
        var degree: Int
        var threshold: Int
        var survivors: Int
        /// One client's work in one round (all four protocol rounds), milliseconds.
        var clientMillisecondsPerClient: Double
        /// The same in CPU time of the thread it ran on, which other load disturbs less.
        var clientCPUMillisecondsPerClient: Double
        /// The server's work for the round (routing, summing, rebuilding secrets, removing masks), seconds.
        var serverSeconds: Double
        var serverCPUSeconds: Double
        var exact: Bool
    }

    struct NoiseShare: Codable {
        var sigma: Double
        var length: Int
        /// Drawing one client's discrete Gaussian share for the whole vector (exact CKS sampler,
        /// OS CSPRNG), milliseconds.
        var milliseconds: Double
        /// The same with the OS CSPRNG drawn 4 KiB at a time (`BufferedSecureRandom`).
        var bufferedMilliseconds: Double
    }

    struct Output: Codable {
        var suite = "secagg"
        var dropout: Double
        var rows: [Row]
        var noiseShare: NoiseShare
    }

    /// One round's fixed inputs: random words per client (seeded by the client's index), a
    /// fixed graph seed, and `dropout` of the clients vanishing after sharing keys.
    struct Workload {
        let parameters: SecAgg.Parameters
        let inputs: [[UInt32]]
        let dropouts: SecAggSession.Dropouts

        init(clients n: Int, length: Int, dropout: Double) {
            parameters = SecAgg.Parameters(clients: n, length: length, round: 1, graphSeed: 42)
            inputs = (0..<n).map { i -> [UInt32] in
                var rng = SeededRandom(seed: UInt64(i))
                return (0..<length).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            }
            dropouts = SecAggSession.Dropouts.random(fraction: dropout, clients: n, seed: 7)
        }

        /// The round, and whether its unmasked sum equals the survivors' plain sum.
        func run() throws -> (outcome: SecAggSession.Outcome, exact: Bool) {
            let inputs = self.inputs
            let outcome = try SecAggSession.run(parameters: parameters, input: { inputs[$0] }, dropouts: dropouts)
            var plain = [UInt32](repeating: 0, count: parameters.length)
            for i in outcome.survivors { for j in 0..<parameters.length { plain[j] &+= inputs[i][j] } }
            return (outcome, plain == outcome.sum)
        }
    }

    /// One round of `n` clients, measured.
    static func row(clients n: Int, length: Int, dropout: Double) throws -> Row {
        let workload = Workload(clients: n, length: length, dropout: dropout)
        let parameters = workload.parameters
        let (outcome, exact) = try workload.run()
        return Row(
            clients: n, length: length, degree: parameters.degree, threshold: parameters.threshold, survivors: outcome.survivors.count,
            clientMillisecondsPerClient: outcome.clientSeconds / Double(n) * 1000,
            clientCPUMillisecondsPerClient: outcome.clientCPUSeconds / Double(n) * 1000, serverSeconds: outcome.serverSeconds,
            serverCPUSeconds: outcome.serverCPUSeconds, exact: exact
        )
    }

    func run() throws {
        let rows = try clients.split(separator: ",").compactMap({ Int($0) }).map { try Self.row(clients: $0, length: length, dropout: dropout) }
        // The noise share each client adds before masking: the other half of a client's work.
        var sink: Int64 = 0
        func time<G: RandomNumberGenerator>(_ generator: G) throws -> Double {
            var sampler = try DiscreteGaussianSampler(sigma: shareSigma, generator: generator)
            let clock = ContinuousClock()
            var best = Double.infinity
            for _ in 0..<5 {
                let start = clock.now
                for _ in 0..<length { sink &+= sampler.next() }
                let elapsed = clock.now - start
                best = min(best, Double(elapsed.components.attoseconds) * 1e-15 + Double(elapsed.components.seconds) * 1e3)
            }
            return best
        }
        let share = NoiseShare(
            sigma: shareSigma, length: length + Int(sink & 0), milliseconds: try time(SecureRandom()), bufferedMilliseconds: try time(BufferedSecureRandom())
        )
        if json { try printJSON(Output(dropout: dropout, rows: rows, noiseShare: share)); return }
        print("SecAgg+ round, vector of \(length) words, \(Int(dropout * 100))% dropout after sharing keys")
        print("clients  degree  t  survivors  client ms/client (CPU)  server s (CPU)  exact")
        for r in rows {
            print(String(
                format: "%7d  %6d %2d  %9d  %9.2f (%6.2f)   %6.3f (%6.3f)  %@", r.clients, r.degree, r.threshold, r.survivors,
                r.clientMillisecondsPerClient, r.clientCPUMillisecondsPerClient, r.serverSeconds, r.serverCPUSeconds, r.exact ? "yes" : "NO"
            ))
        }
        print(String(format: "one client's discrete Gaussian share, %d words at σ = %.0f: %.2f ms (%.2f ms with the CSPRNG drawn 4 KiB at a time)", length, shareSigma, share.milliseconds, share.bufferedMilliseconds))
    }
}
