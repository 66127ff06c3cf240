import ArgumentParser
import FedSegClient
import FedSegCommandLine
import FedSegEmbedding
import FedSegMath
import FedSegNode
import FedSegProtocol
import FedSegSimulation
import Foundation

@main
struct ClientSimMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await ClientSimCommand.main()
    }
}

struct ClientSimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client-sim",
        abstract: "Generate datasets and run simulated FedSeg clients against a coordinator.",
        subcommands: [Generate.self, Run.self, Simulate.self]
    )

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a synthetic dataset with planted segments (users.jsonl, items.jsonl) to a directory."
        )

        @Option(name: .long, help: "Output directory (created if needed).")
        var out: String

        @Option(name: .long, help: "Number of users.")
        var users = 20_000

        @Option(name: .long, help: "Number of planted segments.")
        var segments = 8

        @Option(name: .long, help: "Items per segment.")
        var itemsPerSegment = 60

        @Option(name: .long, help: "Probability that a word or an item comes from outside the user's segment.")
        var noise = 0.15

        @Option(name: .long, help: "Seed: the same seed writes the same files.")
        var seed: UInt64 = 1

        func validate() throws {
            guard users >= 1, segments >= 1, itemsPerSegment >= 1 else { throw ValidationError("sizes must be positive") }
            guard (0...1).contains(noise) else { throw ValidationError("--noise must be in [0, 1]") }
        }

        func run() throws {
            let dataset = PlantedSegments(
                users: users, segments: segments, itemsPerSegment: itemsPerSegment, crossSegmentNoise: noise, seed: seed
            ).generate()
            try dataset.write(to: URL(fileURLWithPath: out, isDirectory: true))
            print("wrote \(dataset.users.count) users in \(segments) planted segments and \(dataset.items.count) items to \(out)")
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll N simulated clients with a running coordinator, run a training run over HTTP, and report.",
            discussion: """
                Each client has its own keys, state directory (under --work-dir), shard and privacy ledger. Prints the \
                report and writes it as JSON with --report (keys: clients, users, rounds, privacy_mode, epsilon_spent, delta, \
                segments, ari_truth, nmi_truth, ari_centralized, cost_ratio, recommendation, rejected_updates, wall_seconds, ...).
                """
        )

        @Option(name: .long, help: "Coordinator base URL, e.g. http://127.0.0.1:7700.")
        var coordinator: String

        @Option(name: .long, help: "The coordinator's admin token file (from `coordinator init`).")
        var adminTokenFile: String

        @Option(name: .long, help: "PEM file of the CA (or the pinned self-signed certificate) an https:// coordinator must present.")
        var caCert: String?

        @Option(name: .long, help: "Directory for the clients' state (default: a new temporary directory).")
        var workDir: String?

        @Flag(name: .long, help: "Take part in the run an operator starts with `fedseg run start` (beside real `fedseg-node`s) instead of starting one; the run's k, ε and mode apply, --epsilon is the clients' budget.")
        var join = false

        @Option(name: .long, help: "With --join: seconds to wait for the operator's run.")
        var joinTimeout = 600.0

        @OptionGroup var options: SimulationOptions

        func validate() throws { try options.check() }

        func run() async throws {
            let token: String
            do {
                token = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw ValidationError("cannot read --admin-token-file \(adminTokenFile): \(error.localizedDescription)")
            }
            let work = workDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-client-sim-\(UUID().uuidString)", isDirectory: true)
            var configuration = try options.configuration(coordinatorURL: coordinator, adminToken: token, workDirectory: work)
            configuration.caCertificate = caCert
            if join { configuration.joinWithinSeconds = joinTimeout }
            try await options.simulate(configuration)
        }
    }

    struct Simulate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the coordinator daemon inside this process and `client-sim run` against it: one command, the product path.",
            discussion: """
                The coordinator is the daemon's own application (the same routes, round engine and SQLite store as \
                `coordinator serve`) on a free loopback port; its state is under STATE-DIR/coordinator, the clients' under \
                STATE-DIR/clients. Audit the ledgers afterwards with `fedseg privacy audit --state-dir STATE-DIR/coordinator`.
                """
        )

        @Option(name: .long, help: "State directory for the coordinator and the clients (created; must not hold a previous run).")
        var stateDir: String

        @Option(name: .long, help: "The coordinator's lifetime budget for every user (default: the run's ε).")
        var totalEpsilon: Double?

        @Option(name: .long, help: "The coordinator's lifetime δ (default: 1e-5, or the run's δ when larger).")
        var totalDelta: Double?

        @OptionGroup var options: SimulationOptions

        @Option(name: .long, help: "How the simulated nodes reach the in-process coordinator: memory (its router, no sockets) or http (loopback).")
        var transport: SimulatedTransport = .memory

        func validate() throws {
            try options.check()
            let state = URL(fileURLWithPath: stateDir, isDirectory: true)
            if FileManager.default.fileExists(atPath: state.appendingPathComponent("coordinator").path) {
                throw ValidationError("\(stateDir) already holds a coordinator state from an earlier simulation; use a fresh --state-dir")
            }
        }

        func run() async throws {
            let state = URL(fileURLWithPath: stateDir, isDirectory: true)
            try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let options = options
            try await InProcessCoordinator.with(
                stateDirectory: state.appendingPathComponent("coordinator", isDirectory: true),
                totalEpsilon: totalEpsilon ?? options.epsilon, totalDelta: totalDelta ?? max(1e-5, options.delta),
                embeddingCache: options.cacheDirectory
            ) { [transport] coordinator in
                FileHandle.standardError.write(Data("client-sim: coordinator serving \(coordinator.url) in this process; nodes reach it over \(transport == .memory ? "its router in memory" : "HTTP")\n".utf8))
                var configuration = try options.configuration(
                    coordinatorURL: coordinator.url, adminToken: coordinator.adminToken, workDirectory: state
                )
                if transport == .memory { configuration.exchange = coordinator.exchange }
                try await options.simulate(configuration)
            }
        }
    }
}

/// How `client-sim simulate`'s nodes reach its in-process coordinator.
enum SimulatedTransport: String, ExpressibleByArgument, CaseIterable {
    case memory
    case http
}

/// What `client-sim run` and `client-sim simulate` share: the data, the federation and the run.
struct SimulationOptions: ParsableArguments {
    @Option(name: .long, help: "Dataset directory (users.jsonl, items.jsonl).")
    var data: String

    @Option(name: .long, help: "Number of clients.")
    var clients = 20

    @Option(name: .long, help: SegmentationOptions.kHelp)
    var k = "8"

    @OptionGroup var segmentation: SegmentationOptions

    @Option(name: .long, help: "iid, dirichlet:ALPHA or shards:SIZES (comma-separated relative sizes).")
    var partition = "iid"

    @Option(name: .long, help: "Probability that a client drops out of a round.")
    var dropout = 0.0

    @Option(name: .long, help: "P:SECONDS: with probability P a client answers SECONDS late.")
    var stragglers: String?

    @Option(name: .long, help: "DP Lloyd rounds at most.")
    var rounds = 2

    @Option(name: .long, help: "ε for the whole run (every user).")
    var epsilon = 8.0

    @Option(name: .long, help: "δ.")
    var delta = 1e-6

    @Option(name: .long, help: "local (every client adds full noise) or distributed (SecAgg+: each client adds a share of the noise; the coordinator sees only the sum).")
    var privacyMode: PrivacyMode = .local

    @Option(name: .long, help: "minilm or hashing.")
    var embedder = "minilm"

    @Option(name: .long, help: "Seed for partitioning, dropouts and K-means starts (noise comes from the OS CSPRNG).")
    var seed: UInt64 = 1

    @Option(name: .long, help: "replay, tamper, oversize, nan (10% of clients) or unenrolled:P (extra unenrolled clients).")
    var misbehave: String?

    @Option(name: .long, help: "Seconds each round stays open.")
    var roundDeadline = 30.0

    @Option(name: .long, help: "Embedding cache directory (default: $FEDSEG_CACHE/embeddings).")
    var cacheDir: String?

    @Flag(name: .long, help: "No progress lines (embedding, rounds); they are shown only on a terminal anyway.")
    var quiet = false

    @Flag(name: .long, help: "Embed everything again instead of using the cache.")
    var noCache = false

    @Option(name: .long, help: "Clients working at once.")
    var concurrency = 32

    @Option(name: .long, help: "Share of the clients whose update a round needs (distributed mode sizes each client's noise share for this many survivors).")
    var quorum = 0.5

    @Option(name: .long, help: "Distributed mode: a public upper bound on the users in a sum (never the data's size); sizes the quantisation so the sum cannot wrap.")
    var maxUsers = 1_000_000

    @Option(name: .long, help: "Distributed mode: clients assumed to collude with the coordinator; noise shares are sized so the sum keeps its σ without theirs.")
    var assumedColluders = 1

    @Option(name: .long, help: "Write the report as JSON to this file.")
    var report: String?

    @Option(name: .long, help: "Write an SVG chart of segment sizes and Recall@10 per model to this file.")
    var reportSvg: String?

    @Option(name: .long, help: "Share of ε for clustering; the rest goes to the recommendation release.")
    var clusteringShare = 0.7

    @Flag(name: .long, inversion: .prefixedNo, help: "Lloyd rounds after the first clip each user's offset from its centroid, not the vector (run parameter centered_clipping).")
    var centeredClipping = true

    @Flag(name: .long, inversion: .prefixedNo, help: "The recommendation histogram carries a global row, so new users' list carries less noise (run parameter global_row).")
    var globalRow = true

    @Option(name: .long, help: "Items a user contributes to the recommendation histogram at most (its sensitivity is √m).")
    var maxItemsPerUser = 20

    @Option(name: .long, help: "Release the recommendation histogram over the catalogue's first N items only (its file order must be a public ranking, e.g. goodbooks' Goodreads-wide ratings count); default: every item.")
    var candidateItems: Int?

    func check() throws {
        guard clients >= 1, rounds >= 1 else { throw ValidationError("--clients and --rounds must be positive") }
        do {
            _ = try segmentation.segmentCount(k)
        } catch {
            throw ValidationError("\(error)")
        }
        guard (0..<1).contains(dropout) else { throw ValidationError("--dropout must be in [0, 1)") }
        guard quorum > 0, quorum <= 1 else { throw ValidationError("--quorum must be in (0, 1]") }
        guard (1...100_000_000).contains(maxUsers) else { throw ValidationError("--max-users must be in 1...10^8") }
        guard assumedColluders >= 0 else { throw ValidationError("--assumed-colluders must not be negative") }
        guard EmbedderChoice(rawValue: embedder) != nil else { throw ValidationError("--embedder must be minilm or hashing") }
        guard epsilon > 0, delta > 0, delta < 1 else { throw ValidationError("need ε > 0 and δ in (0, 1)") }
        guard clusteringShare > 0, clusteringShare < 1 else { throw ValidationError("--clustering-share must be in (0, 1)") }
        guard maxItemsPerUser >= 1 else { throw ValidationError("--max-items-per-user must be at least 1") }
        if let candidateItems, candidateItems < 1 { throw ValidationError("--candidate-items must be at least 1") }
        _ = try parsedStragglers()
    }

    func parsedStragglers() throws -> (probability: Double, seconds: Double)? {
        guard let stragglers else { return nil }
        let parts = stragglers.split(separator: ":")
        guard parts.count == 2, let p = Double(parts[0]), let s = Double(parts[1]), (0...1).contains(p), s >= 0 else {
            throw ValidationError("--stragglers must be P:SECONDS")
        }
        return (p, s)
    }

    var cacheDirectory: URL? {
        noCache ? nil : cacheDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? Self.defaultCache
    }

    static var defaultCache: URL {
        MiniLMModelFiles.defaultLocation().directory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("embeddings", isDirectory: true)
    }

    func configuration(coordinatorURL: String, adminToken: String, workDirectory: URL) throws -> NetworkedSimulation.Configuration {
        var configuration = NetworkedSimulation.Configuration(
            coordinatorURL: coordinatorURL, adminToken: adminToken, clients: clients, workDirectory: workDirectory
        )
        do {
            configuration.partition = try Partition(parsing: partition)
            configuration.misbehave = try misbehave.map(Misbehaviour.init(parsing:))
        } catch let error as SimulationError {
            throw ValidationError(error.description)
        }
        do {
            (configuration.k, configuration.kSelection) = try segmentation.segmentCount(k)
        } catch {
            throw ValidationError("\(error)")
        }
        configuration.clusterer = segmentation.clusterer
        configuration.minSegmentShare = segmentation.minSegmentShare
        configuration.dropout = dropout
        configuration.privacyMode = privacyMode
        configuration.quorum = quorum
        configuration.maxUsers = maxUsers
        configuration.assumedColluders = assumedColluders
        configuration.stragglers = try parsedStragglers()
        configuration.rounds = rounds
        configuration.epsilon = epsilon
        configuration.delta = delta
        configuration.embedder = EmbedderChoice(rawValue: embedder)!
        configuration.seed = seed
        configuration.roundDeadlineSeconds = roundDeadline
        configuration.concurrency = concurrency
        configuration.clusteringShare = clusteringShare
        configuration.centeredClipping = centeredClipping
        configuration.globalRow = globalRow
        configuration.maxItemsPerUser = maxItemsPerUser
        configuration.candidateItems = candidateItems
        configuration.cacheDirectory = cacheDirectory
        configuration.showProgress = !quiet && isatty(STDERR_FILENO) != 0
        return configuration
    }

    /// Runs the simulation, prints the report (and writes it as JSON with --report).
    func simulate(_ configuration: NetworkedSimulation.Configuration) async throws {
        let dataset = try Dataset.load(from: URL(fileURLWithPath: data, isDirectory: true))
        let result: NetworkedSimulation.Report
        do {
            result = try await NetworkedSimulation(configuration: configuration).run(dataset: dataset) {
                FileHandle.standardError.write(Data(("client-sim: " + $0 + "\n").utf8))
            }
        } catch let error as SimulationError {
            FileHandle.standardError.write(Data("client-sim: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let failure as AdminClient.Failure {
            FileHandle.standardError.write(Data("client-sim: \(failure)\n".utf8))
            throw ExitCode(1)
        } catch where Retry.isRetryable(error) {
            // Retried until its deadline and still failing: said as a person can act on it.
            FileHandle.standardError.write(Data("client-sim: \(HTTPCoordinatorTransport.explain(error, url: configuration.coordinatorURL))\n".utf8))
            throw ExitCode(1)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let report { try encoder.encode(result).write(to: URL(fileURLWithPath: report)) }
        if let reportSvg { try result.svg().write(toFile: reportSvg, atomically: true, encoding: .utf8) }
        print("run \(result.runID): \(result.clients) clients, \(result.users) users, \(result.rounds) committed rounds (participants \(result.participantsPerRound.map(String.init).joined(separator: ", "))), \(result.privacyMode) noise, embedder \(result.embedder)")
        print(String(format: "ε spent %.4f of %.4f (δ = %g); ledgers verified: %@, client and coordinator ledgers agree: %@", result.epsilonSpent, result.epsilon, result.delta, result.ledgersVerified ? "yes" : "NO", result.ledgersAgree ? "yes" : "NO"))
        print(String(format: "cost ratio vs centralised non-private K-means: %.4f; ARI vs centralised: %.4f", result.costRatio, result.ariCentralized))
        if !result.clusteringClipNorms.isEmpty {
            print("Lloyd rounds' clip norms: " + result.clusteringClipNorms.map { String(format: "%.3f", $0) }.joined(separator: ", ") + " (a round under the run's clip norm is centred)")
        }
        if let ari = result.ariTruth, let nmi = result.nmiTruth { print(String(format: "against ground truth: ARI %.4f, NMI %.4f", ari, nmi)) }
        if let segmentation = result.segmentation {
            print("segments chosen: \(segmentation.reason)")
            for dropped in segmentation.dropped {
                print(String(format: "  round %d dropped segment %d: %.2f%% of the released counts", dropped.round, dropped.segment, dropped.share * 100))
            }
        }
        print("segments:")
        for segment in result.segments {
            print(String(format: "  %2d  %6d users  ", segment.id, segment.size) + (segment.label.isEmpty ? "" : "[\(segment.label)] ") + segment.nearestItems.joined(separator: " | "))
        }
        print("recommendation (held-out interactions; cold-start users placed by their text alone):")
        print("  model               recall@10  ndcg@10  coverage  cold-start recall@10")
        for row in result.recommendation {
            print("  " + row.model.padding(toLength: 18, withPad: " ", startingAt: 0)
                + String(format: " %9.4f %8.4f %9.4f %21.4f", row.recallAt10, row.ndcgAt10, row.coverage, row.coldStartRecallAt10))
        }
        if !result.rejectedUpdates.isEmpty {
            print("rejected by the coordinator: " + result.rejectedUpdates.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        print(String(format: "embedding %.1f s, total %.1f s", result.embedSeconds, result.wallSeconds))
        if !result.ledgersVerified || !result.ledgersAgree { throw ExitCode(1) }
    }
}

// Modes on the command line take the same raw values as the admin API and the database.
extension PrivacyMode: ExpressibleByArgument {}
