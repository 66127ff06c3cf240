import ArgumentParser
import FedSegEmbedding
import FedSegNode
import FedSegProtocol
import FedSegSimulation
import Foundation

extension PrivacyMode: @retroactive ExpressibleByArgument {}

struct ScaleSuite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "A federation of many clients through the real coordinator and real nodes in this process (planted data, hashing embedder): wall time and peak memory."
    )

    @Flag(name: .long, help: "One JSON object on stdout.")
    var json = false

    @Option(name: .long, help: "Client nodes, each a real ClientNode with its own state directory and ledger.")
    var clients = 10_000

    @Option(name: .long, help: "Users per client on average (after the simulator's hold-outs).")
    var usersPerClient = 2.0

    @Option(name: .long, help: "DP Lloyd rounds (the start histogram and the recommendation release come on top).")
    var rounds = 3

    @Option(name: .long, help: "local or distributed.")
    var privacyMode: PrivacyMode = .local

    @Option(name: .long, help: "Seconds each round stays open.")
    var roundDeadline = 30.0

    @Flag(name: .long, help: "Nodes reach the coordinator over loopback HTTP instead of its router in memory.")
    var http = false

    struct Output: Codable {
        var suite = "scale"
        var clients: Int
        var users: Int
        var releasesPerClient: Int
        var privacyMode: String
        var transport: String
        /// The whole simulation: nodes made and enrolled, every release, the model, evaluation.
        var wallSeconds: Double
        /// The same, under the key the scale issue names, when `clients` is 10,000.
        var wallSeconds10000Clients: Double?
        /// This process: the coordinator and every node.
        var peakRSSBytes: Int
        var acceptedPerRound: [Int]
        var ledgersVerified: Bool
        var ledgersAgree: Bool
        var ariTruth: Double?

        enum CodingKeys: String, CodingKey {
            case suite, clients, users, transport
            case releasesPerClient = "releases_per_client"
            case privacyMode = "privacy_mode"
            case wallSeconds = "wall_seconds"
            case wallSeconds10000Clients = "wall_seconds_10000_clients"
            case peakRSSBytes = "peak_rss_bytes"
            case acceptedPerRound = "accepted_per_round"
            case ledgersVerified = "ledgers_verified"
            case ledgersAgree = "ledgers_agree"
            case ariTruth = "ari_truth"
        }
    }

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-bench-scale-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The simulator holds out a tenth of the users (cold start): generate enough for the
        // requested users per client among the rest.
        let users = Int((Double(clients) * usersPerClient / 0.9).rounded(.up))
        let dataset = PlantedSegments(users: users, segments: 8, seed: 1).generate()
        let http = http
        let (clients, rounds, privacyMode, roundDeadline) = (clients, rounds, privacyMode, roundDeadline)
        let started = ContinuousClock.now
        let report = try await InProcessCoordinator.with(
            stateDirectory: directory.appendingPathComponent("coordinator", isDirectory: true), totalEpsilon: 8, totalDelta: 1e-5, embeddingCache: nil
        ) { coordinator in
            var configuration = NetworkedSimulation.Configuration(
                coordinatorURL: coordinator.url, adminToken: coordinator.adminToken, clients: clients, workDirectory: directory
            )
            if !http { configuration.exchange = coordinator.exchange }
            configuration.embedder = .hashing
            configuration.k = 8
            configuration.rounds = rounds
            configuration.epsilon = 8
            configuration.delta = 1e-6
            configuration.privacyMode = privacyMode
            configuration.roundDeadlineSeconds = roundDeadline
            return try await NetworkedSimulation(configuration: configuration).run(dataset: dataset) { line in
                FileHandle.standardError.write(Data("scale: \(line)\n".utf8))
            }
        }
        let wall = ContinuousClock.now - started
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18
        let output = Output(
            clients: clients, users: users, releasesPerClient: report.participantsPerRound.count, privacyMode: privacyMode.rawValue,
            transport: http ? "http" : "memory", wallSeconds: seconds, wallSeconds10000Clients: clients == 10_000 ? seconds : nil,
            peakRSSBytes: usage.ru_maxrss * 1024, acceptedPerRound: report.participantsPerRound, ledgersVerified: report.ledgersVerified,
            ledgersAgree: report.ledgersAgree, ariTruth: report.ariTruth
        )
        if json { try printJSON(output); return }
        print("scale: \(clients) clients (\(users) users), \(privacyMode) mode, nodes over \(output.transport), \(output.releasesPerClient) releases each")
        print(String(format: "wall %.1f s (nodes made and enrolled, every release, the model, evaluation); peak RSS %.2f GB (coordinator and all nodes, one process)",
                     seconds, Double(output.peakRSSBytes) / 1e9))
        print("accepted per round: \(report.participantsPerRound.map(String.init).joined(separator: ", ")); ledgers verified: \(report.ledgersVerified), agree: \(report.ledgersAgree); ARI vs truth \(report.ariTruth.map { String(format: "%.4f", $0) } ?? "n/a")")
    }
}
