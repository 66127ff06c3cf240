import ArgumentParser
import FedSegCommandLine
import AsyncHTTPClient
import FedSegClient
import FedSegCoordinator
import FedSegMath
import FedSegProtocol
import Foundation

/// Where a live coordinator is and how to prove the right to administer it.
struct CoordinatorOptions: ParsableArguments {
    @Option(name: .long, help: "Coordinator base URL, e.g. http://127.0.0.1:7700 or https://coordinator.example:7700.")
    var coordinator: String?

    @Option(name: .long, help: "The admin token file (from `coordinator init`).")
    var adminTokenFile: String?

    @Option(name: .long, help: "PEM file of the CA (or the pinned self-signed certificate) an https:// coordinator must present.")
    var caCert: String?

    func validate() throws {
        if let coordinator {
            guard let url = URL(string: coordinator), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false else {
                throw ValidationError("--coordinator \(coordinator) is not a URL: write it as http://HOST:PORT or https://HOST:PORT")
            }
        }
    }

    func withAdmin<T: Sendable>(_ body: (AdminClient) async throws -> T) async throws -> T {
        guard let coordinator else { throw ValidationError("--coordinator is required") }
        guard let adminTokenFile else { throw ValidationError("--admin-token-file is required with --coordinator") }
        let token: String
        do {
            token = try CoordinatorDaemon.readAdminToken(path: adminTokenFile)
        } catch let error as CoordinatorError {
            throw CommandFailure("--admin-token-file \(adminTokenFile): \(error)")
        } catch {
            throw CommandFailure("cannot read --admin-token-file \(adminTokenFile): it is written by `coordinator init` into the state directory (admin.token)")
        }
        if let caCert, !FileManager.default.isReadableFile(atPath: caCert) {
            throw CommandFailure("cannot read --ca-cert \(caCert)")
        }
        let http = HTTPCoordinatorTransport.makeHTTPClient(connectionsPerHost: 4, caCertificate: caCert, readTimeoutSeconds: 600)
        do {
            let result = try await body(AdminClient(baseURL: coordinator, token: token, client: http))
            try await http.shutdown()
            return result
        } catch {
            try? await http.shutdown()
            if let failure = error as? AdminClient.Failure {
                throw CommandFailure(failure.description, code: failure.error?.code.rawValue ?? "http_\(failure.status)")
            }
            if error is CommandFailure || error is ValidationError { throw error }
            if let error = error as? CoordinatorError { throw CommandFailure(error.description) }
            if error is DecodingError { throw CommandFailure("the coordinator at \(coordinator) answered something this fedseg does not read: are both the same version?") }
            throw CommandFailure(HTTPCoordinatorTransport.explain(error, url: coordinator), code: "unreachable")
        }
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Training runs on a live coordinator: start one, watch it, stop it.",
        subcommands: [Start.self, Status.self, Stop.self]
    )

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a training run; the coordinator derives every noise multiplier from (ε, δ) before the first release."
        )

        @OptionGroup var remote: CoordinatorOptions

        @Option(name: .long, help: SegmentationOptions.kHelp)
        var k: String

        @OptionGroup var segmentation: SegmentationOptions

        @Option(name: .long, help: "ε of the whole run, for every user.")
        var epsilon: Double

        @Option(name: .long, help: "δ.")
        var delta = 1e-6

        @Option(name: .long, help: "Embedder the clients use: all-MiniLM-L6-v2 or hashing-v1-d<D>-s<S>.")
        var embedderID = "all-MiniLM-L6-v2"

        @Option(name: .long, help: "Embedding dimension.")
        var dimension = 384

        @Option(name: .long, help: "DP Lloyd rounds at most.")
        var rounds = 2

        @Option(name: .long, help: "Share of the budget for clustering (the rest for the recommendation release).")
        var clusteringShare = 0.7

        @Option(name: .long, help: "L2 clip norm of a user's vector.")
        var clipNorm = 1.0

        @Flag(name: .long, inversion: .prefixedNo, help: "Lloyd rounds after the first clip each user's offset from its centroid, to a bound derived from released values, so they need less noise.")
        var centeredClipping = true

        @Flag(name: .long, inversion: .prefixedNo, help: "The recommendation histogram carries a global row (each user's items counted twice), so new users' list carries less noise.")
        var globalRow = true

        @Option(name: .long, help: "Updates a round needs; fewer at the deadline abandon it.")
        var minParticipants = 1

        @Option(name: .long, help: "Seconds a round stays open.")
        var roundDeadline = 30.0

        @Option(name: .long, help: "Probability with which a client takes part in a round.")
        var samplingRate = 1.0

        @Option(name: .long, help: "File of public seed phrases, one per line (public start); without it, random directions.")
        var seedPhrases: String?

        @Option(name: .long, help: "Public starts: share of the clustering budget for the start histogram (0 skips it).")
        var startHistogramShare = 0.1

        @Option(name: .long, help: "File of catalogue item ids, one per line (enables the recommendation phase).")
        var catalog: String?

        @Option(name: .long, help: "Items a user contributes to the recommendation histogram at most.")
        var maxItemsPerUser = 20

        @Option(name: .long, help: "Release the recommendation histogram over the catalogue file's first N items only (the file's order must be a public ranking); default: every item.")
        var candidateItems: Int?

        @Option(name: .long, help: "local (every client adds full noise) or distributed (secure aggregation; each client adds a share of the noise).")
        var privacyMode: PrivacyMode = .local

        @Option(name: .long, help: "Distributed mode: at most this many users in the federation (sizes the quantisation so sums never wrap).")
        var maxUsers = 1_000_000

        @Option(name: .long, help: "Distributed mode: clients assumed to collude with the coordinator (noise shares are sized so the sum keeps its σ without theirs).")
        var assumedColluders = 1

        @Option(name: .long, help: "Seed for the start.")
        var seed: UInt64 = 1

        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() async throws {
            var parameters = RunParameters(k: 1, epsilon: epsilon, delta: delta)
            do {
                try segmentation.apply(k: k, to: &parameters)
            } catch {
                throw CommandFailure("\(error)")
            }
            parameters.embedderID = embedderID
            parameters.dimension = dimension
            parameters.rounds = rounds
            parameters.clusteringShare = catalog == nil ? 1 : clusteringShare
            parameters.clipNorm = clipNorm
            parameters.centeredClipping = centeredClipping
            parameters.globalRow = globalRow
            parameters.minParticipants = minParticipants
            parameters.roundDeadlineSeconds = roundDeadline
            parameters.samplingRate = samplingRate
            parameters.maxItemsPerUser = maxItemsPerUser
            parameters.seed = seed
            parameters.privacyMode = privacyMode
            parameters.maxUsers = maxUsers
            parameters.assumedColluders = assumedColluders
            parameters.startHistogramShare = startHistogramShare
            func lines(_ path: String) throws -> [String] {
                try String(contentsOfFile: path, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
            }
            if let seedPhrases { parameters.seedPhrases = try lines(seedPhrases) } else { parameters.initialization = .random }
            if let candidateItems {
                guard catalog != nil else { throw CommandFailure("--candidate-items needs --catalog: it keeps the catalogue file's first N items") }
                guard candidateItems >= 1 else { throw CommandFailure("--candidate-items must be at least 1") }
            }
            if let catalog { parameters.catalog = Array(try lines(catalog).prefix(candidateItems ?? .max)) }
            do {
                try parameters.validate()
            } catch {
                throw CommandFailure("\(error)")
            }
            let summary = try await remote.withAdmin { try await $0.startRun(parameters) }
            try RunCommand.show(summary, json: json)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The current (or last) run: rounds, participants, ε spent.")
        @OptionGroup var remote: CoordinatorOptions
        @Option(name: .long, help: "A run id (default: the current or last run).")
        var id: String?
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() async throws {
            let summary = try await remote.withAdmin { admin in
                if let id { try await admin.run(id) } else { try await admin.currentRun() }
            }
            try RunCommand.show(summary, json: json)
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the current run; its open round is abandoned and releases nothing.")
        @OptionGroup var remote: CoordinatorOptions
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() async throws {
            try RunCommand.show(try await remote.withAdmin { try await $0.stopRun() }, json: json)
        }
    }

    static func show(_ summary: RunSummary, json: Bool) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            return
        }
        print("run \(summary.id): \(summary.status)\(summary.reason.map { " (\($0))" } ?? ""), phase \(summary.phase)")
        if let segmentation = summary.segmentation {
            print("segments: \(segmentation.reason)")
            for dropped in segmentation.dropped {
                print(String(format: "  round %d dropped segment %d: %.2f%% of the released counts", dropped.round, dropped.segment, dropped.share * 100))
            }
        }
        print("k = \(summary.k), d = \(summary.dimension), embedder \(summary.embedderID), \(summary.privacyMode) noise, z = \(String(format: "%.4f", summary.noiseMultiplier)) per clustering round")
        print(String(format: "ε spent %.4f of %.4f (δ = %g); %d of %d clustering rounds committed", summary.epsilonSpent, summary.epsilon, summary.delta, summary.committedRounds, summary.plannedRounds))
        if let open = summary.openRound, let stage = open.secAggStage {
            let progress = open.secAggProgress ?? [:]
            print("open round \(open.id): secure aggregation, \(stage) stage; of \(open.expected) clients \(progress["advertised"] ?? 0) advertised keys, \(progress["shared"] ?? 0) shared them, \(progress["masked"] ?? 0) sent masked input, \(progress["revealed"] ?? 0) revealed")
        }
        if let stale = summary.staleClients, !stale.isEmpty {
            print("\(stale.count) stale client(s), not seen recently; rounds do not wait for them: \(stale.prefix(10).joined(separator: ", "))\(stale.count > 10 ? ", ..." : "")")
            print("  revoke them (fedseg clients revoke --id ID) or start their nodes")
        }
        for round in summary.rounds {
            print("  round \(round.id)  \(round.phase.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) \(round.status.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(round.participants) of \(round.expected) updates, \(round.declined) declined" + (round.centroidShift.map { String(format: ", centroid shift %.5f", $0) } ?? "")
                + (round.centered == true ? round.clipNorm.map { String(format: ", centred, clip norm %.3f", $0) } ?? "" : ""))
        }
    }
}

struct SegmentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "A run's segments: released sizes, centroid shift per round, nearest public seed phrases."
    )

    @Option(name: .long, help: "The coordinator's state directory.")
    var stateDir: String?

    @OptionGroup var remote: CoordinatorOptions

    @Option(name: .long, help: "A run id (default: the current or last run).")
    var run: String?

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func validate() throws {
        guard (stateDir == nil) != (remote.coordinator == nil) else { throw ValidationError("give one of --state-dir and --coordinator") }
    }

    func run() async throws {
        let report: SegmentsReport
        if let stateDir {
            do {
                try CoordinatorDaemon.requireInitialised(stateDir)
            } catch let error as CoordinatorError {
                throw CommandFailure(error.description.replacingOccurrences(of: "state: ", with: ""))
            }
            let store = try CoordinatorStore(path: URL(fileURLWithPath: stateDir).appendingPathComponent(CoordinatorStore.fileName).path)
            let runID = try run ?? store.runs().last?.id
            var vectors: Matrix?
            if let runID, let parameters = try store.run(runID)?.decodedParameters(), !parameters.seedPhrases.isEmpty {
                var settings = Coordinator.Settings()
                settings.embeddingCache = URL(fileURLWithPath: stateDir).appendingPathComponent("embeddings", isDirectory: true)
                vectors = try? RunStart.embedSeedPhrases(parameters, settings: settings)
            }
            do {
                report = try store.segments(runID: runID, seedVectors: vectors)
            } catch let error as CoordinatorError {
                throw CommandFailure(error.description)
            }
        } else {
            report = try await remote.withAdmin { try await $0.segments() }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("run \(report.runID) (\(report.status)): k = \(report.k), d = \(report.dimension)")
        print("centroid shift per committed round: " + report.shiftHistory.map { String(format: "%.5f", $0) }.joined(separator: ", "))
        print("segment   size*  spread  label / nearest public seed phrases / top items")
        for segment in report.segments {
            let phrases = segment.nearestSeedPhrases.map { $0.count > 48 ? String($0.prefix(47)) + "…" : $0 }
            let size = segment.size.map { "≈\($0)" } ?? "-"
            print(String(format: "%7d  ", segment.id) + String(repeating: " ", count: max(0, 6 - size.count)) + size + String(format: "  %6.3f  ", segment.spread)
                + (segment.label.isEmpty ? "" : "[\(segment.label)] ") + phrases.joined(separator: " | "))
            if !segment.topItems.isEmpty { print(String(repeating: " ", count: 25) + "top items: " + segment.topItems.joined(separator: ", ")) }
        }
        print("* sizes are the last clustering round's noisy released counts, rounded and clamped at 0; spread = 1 − ‖centroid‖², the mean squared distance of a member to it (unit-norm vectors), derived from released values")
    }
}
