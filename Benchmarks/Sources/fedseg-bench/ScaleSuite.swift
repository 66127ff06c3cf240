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
        abstract: "The scale table: coordinator intake against the AEAD floor and over HTTP, a SecAgg+ round's server work at 10,000 clients, and a federation of many clients through the real coordinator and real nodes in this process (planted data, hashing embedder): wall time and peak memory."
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

    @Option(name: .long, help: "Seconds each round stays open: long enough that no node is late, so that the wall time measures the work (on this machine 30 s left thousands of 10,000 nodes late from the second round on).")
    var roundDeadline = 180.0

    @Flag(name: .long, help: "Nodes reach the coordinator over loopback HTTP instead of its router in memory.")
    var http = false

    @Option(name: .long, help: "Clients of the SecAgg+ round whose server work is timed (0: skip it).")
    var secaggClients = 10_000

    @Flag(name: .long, help: "Skip the intake figures (`fedseg-bench coordinator`, 1,000 clients, k = 16, d = 384).")
    var skipIntake = false

    @Flag(name: .long, help: "Skip the simulation (only the intake and SecAgg figures).")
    var skipSimulation = false

    struct Intake: Codable {
        var aeadOpenMicroseconds: Double
        var intakeMicroseconds: Double
        var intakeCPUMicroseconds: Double
        var intakeOverAEAD: Double
        var updatesPerSecondHTTP: Double
        /// The same from `LeanHTTPLoad` instead of async-http-client.
        var updatesPerSecondHTTPLeanClient: Double

        enum CodingKeys: String, CodingKey {
            case aeadOpenMicroseconds = "aead_open_us"
            case intakeMicroseconds = "intake_us"
            case intakeCPUMicroseconds = "intake_cpu_us"
            case intakeOverAEAD = "intake_over_aead"
            case updatesPerSecondHTTP = "updates_per_second_http"
            case updatesPerSecondHTTPLeanClient = "updates_per_second_http_lean_client"
        }
    }

    /// The SecAgg+ round's shape: the `secagg` suite's defaults.
    static let secaggLength = 6144
    static let secaggDropout = 0.1

    struct Simulation: Codable {
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
            case clients, users, transport
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

    struct Output: Codable {
        var suite = "scale"
        var intake: Intake?
        /// The `secagg` suite's row for one round of `--secagg-clients`.
        var secagg: SecAggSuite.Row?
        var simulation: Simulation?
        /// Why the simulation did not complete (the run failed), when it did not.
        var simulationError: String?
        /// Also at the top level, the keys the scale issue names.
        var wallSeconds10000Clients: Double?
        var peakRSSBytes: Int

        enum CodingKeys: String, CodingKey {
            case suite, intake, secagg, simulation
            case simulationError = "simulation_error"
            case wallSeconds10000Clients = "wall_seconds_10000_clients"
            case peakRSSBytes = "peak_rss_bytes"
        }
    }

    func run() async throws {
        var output = Output(peakRSSBytes: 0)
        // Intake and SecAgg first: their figures are per update and per round, and the
        // simulation's thousands of nodes would otherwise still be in memory.
        if !skipIntake {
            let figures = try await CoordinatorSuite.parse(["--clients", "1000", "--k", "16", "--d", "384"]).measure()
            output.intake = Intake(
                aeadOpenMicroseconds: figures.aeadOpenMicroseconds, intakeMicroseconds: figures.intakeMicroseconds,
                intakeCPUMicroseconds: figures.intakeCPUMicroseconds, intakeOverAEAD: figures.intakeOverAEAD, updatesPerSecondHTTP: figures.updatesPerSecond,
                updatesPerSecondHTTPLeanClient: figures.updatesPerSecondLeanClient
            )
        }
        if secaggClients > 0 {
            output.secagg = try SecAggSuite.row(clients: secaggClients, length: Self.secaggLength, dropout: Self.secaggDropout)
        }
        if !skipSimulation {
            // A run that fails (too many late updates, say) is a result too: the other parts
            // are still reported.
            do {
                output.simulation = try await simulate()
                output.wallSeconds10000Clients = output.simulation?.wallSeconds10000Clients
            } catch {
                output.simulationError = "\(error)"
            }
        }
        output.peakRSSBytes = Self.peakRSS()
        if json { try printJSON(output); if output.simulationError != nil { throw ExitCode(1) }; return }
        print("scale, on this machine (\(ProcessInfo.processInfo.activeProcessorCount) cores); targets from the scale issue")
        print("figure                                              measured          target")
        if let intake = output.intake {
            print(String(format: "intake CPU per update ÷ AEAD open (k 16, d 384)       %6.1fx            ≤ 3x   (%.1f µs ÷ %.1f µs)",
                         intake.intakeOverAEAD, intake.intakeCPUMicroseconds, intake.aeadOpenMicroseconds))
            print(String(format: "updates accepted per second, HTTP on loopback        %6.0f            ≥ 5000   (posted by async-http-client)", intake.updatesPerSecondHTTP))
            print(String(format: "  the same, posted by a lean client (one NIO thread)  %6.0f            ≥ 5000", intake.updatesPerSecondHTTPLeanClient))
        }
        if let secagg = output.secagg {
            print(String(format: "SecAgg+ server work, %d clients, %d words, %.0f%%  %6.2f s (CPU %.2f)  ≤ 5 s  exact: %@; client CPU %.1f ms each",
                         secagg.clients, secagg.length, Self.secaggDropout * 100, secagg.serverSeconds, secagg.serverCPUSeconds, secagg.exact ? "yes" : "NO",
                         secagg.clientCPUMillisecondsPerClient))
        }
        if let simulation = output.simulation {
            let target = simulation.transport == "http" ? "≤ 180 s" : "≤ 60 s"
            print(String(format: "%d clients, %@ mode, over %@, %d releases   %6.1f s           %@ (at 10,000)",
                         simulation.clients, simulation.privacyMode, simulation.transport, simulation.releasesPerClient, simulation.wallSeconds, target))
            print("  accepted per round: \(simulation.acceptedPerRound.map(String.init).joined(separator: ", ")); ledgers verified: \(simulation.ledgersVerified), agree: \(simulation.ledgersAgree); ARI vs truth \(simulation.ariTruth.map { String(format: "%.4f", $0) } ?? "n/a")")
        }
        if let failure = output.simulationError { print("\(clients) clients: the run did not complete: \(failure)") }
        print(String(format: "peak RSS of this process (coordinator and every node)  %.2f GB", Double(output.peakRSSBytes) / 1e9))
        if output.simulationError != nil { throw ExitCode(1) }
    }

    static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss * 1024
    }

    func simulate() async throws -> Simulation {
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
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18
        return Simulation(
            clients: clients, users: users, releasesPerClient: report.participantsPerRound.count, privacyMode: privacyMode.rawValue,
            transport: http ? "http" : "memory", wallSeconds: seconds, wallSeconds10000Clients: clients == 10_000 ? seconds : nil,
            peakRSSBytes: Self.peakRSS(), acceptedPerRound: report.participantsPerRound, ledgersVerified: report.ledgersVerified,
            ledgersAgree: report.ledgersAgree, ariTruth: report.ariTruth
        )
    }
}
