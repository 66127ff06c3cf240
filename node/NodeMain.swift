import ArgumentParser
import FedSegCommandLine
import FedSegEmbedding
import FedSegMath
import FedSegNode
import FedSegPrivacy
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct NodeMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await NodeCommand.main()
    }
}

extension EmbedderChoice: ExpressibleByArgument {}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedseg-node",
        abstract: "A FedSeg client node on its own machine: enrol with a coordinator, take part in its runs, segment and recommend locally.",
        subcommands: [Init.self, Enroll.self, Serve.self, Segments.self, Recommend.self, Status.self, Privacy.self]
    )
}

/// Where the node's state lives, shared by every subcommand.
struct StateOptions: ParsableArguments {
    @Option(name: .long, help: "The node's state directory (keys, ledger, users, models).")
    var stateDir: String

    var url: URL { URL(fileURLWithPath: stateDir, isDirectory: true) }
}

/// A failure printed as one line (or one JSON object under --json), exit status 1, no usage block.
func fail(_ command: String, _ error: any Error, json: Bool) -> ExitCode {
    let message = "\(error)"
    if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(["error": ["code": "failed", "message": message]]) { print(String(decoding: data, as: UTF8.self)) }
    } else {
        FileHandle.standardError.write(Data("fedseg-node \(command): \(message)\n".utf8))
    }
    return ExitCode(1)
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension NodeCommand {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a state directory: the node's keys (mode 600) and its databases.")

        @OptionGroup var state: StateOptions
        @Flag(name: .long, help: "One JSON object: state_dir, signing_key, fingerprint.") var json = false

        func run() throws {
            do {
                let made = try NodeHome.initialize(directory: state.url)
                if json { return try printJSON(made) }
                print("initialised \(made.stateDirectory)")
                print("node signing key: \(made.signingKey)")
                print("fingerprint:      \(made.fingerprint)")
                print("next: fedseg-node enroll --state-dir \(made.stateDirectory) --coordinator URL --token TOKEN")
            } catch {
                throw fail("init", error, json: json)
            }
        }
    }

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enrol with a coordinator using a one-time token from its operator (`fedseg clients token`), and pin its keys."
        )

        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Coordinator base URL, e.g. https://coordinator.example:7700.") var coordinator: String
        @Option(name: .long, help: "One-time enrolment token.") var token: String
        @Option(name: .long, help: "The id to enrol as (default: node- and the key's first 8 hex digits).") var id: String?
        @Option(name: .long, help: "PEM file of the CA (or the pinned certificate) an https:// coordinator must present.") var caCert: String?
        @Flag(name: .long, help: "One JSON object: client_id, coordinator_url, coordinator_signing_key, coordinator_fingerprint.") var json = false

        func validate() throws {
            guard let url = URL(string: coordinator), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host?.isEmpty == false else {
                throw ValidationError("--coordinator \(coordinator) is not a URL: write it as http://HOST:PORT or https://HOST:PORT")
            }
        }

        func run() async throws {
            do {
                let home = try NodeHome(directory: state.url)
                let enrolled = try await home.enroll(coordinatorURL: coordinator, token: token, id: id, caCertificate: caCert)
                if json { return try printJSON(enrolled) }
                print("enrolled as \(enrolled.clientID) with \(enrolled.coordinatorURL)")
                print("coordinator signing key: \(enrolled.coordinatorSigningKey)")
                print("fingerprint:             \(enrolled.coordinatorFingerprint)")
                print("compare the key with the one `coordinator init` printed (or `fedseg status`); every plan and model is checked against it")
            } catch {
                throw fail("enroll", error, json: json)
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the node: load and embed its users, take part in every run it may, keep each run's model; stops on SIGTERM or SIGINT.",
            discussion: """
                The data directory holds users.jsonl and items.jsonl (the dataset format in the README); it is read again \
                when the files change. Nothing of a user leaves the node except clipped, noised statistics, charged to the \
                node's ledger before they are sent.
                """
        )

        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Data directory (users.jsonl, items.jsonl).") var data: String
        @Option(name: .long, help: "minilm or hashing (must match the runs' embedder).") var embedder: EmbedderChoice = .minilm
        @Option(name: .long, help: "Each user's lifetime ε on this node (default \(NodeService.defaultBudget.epsilon) when the ledger has none).") var budgetEpsilon: Double?
        @Option(name: .long, help: "δ of that budget (default \(NodeService.defaultBudget.delta)).") var budgetDelta: Double?
        @Option(name: .long, help: "Serve /healthz and /metrics on 127.0.0.1 at this port (0: any free port).") var httpPort: Int?
        @Option(name: .long, help: "Seconds between polls of the coordinator.") var pollSeconds = 1.0
        @Option(name: .long, help: "Embedding cache directory (default: STATE_DIR/embeddings); one writer at a time.") var cacheDir: String?
        @Option(name: .long, help: "trace, debug, info, notice, warning, error.") var logLevel = "info"
        @Option(name: .long, help: "text, or json: one JSON object per log line, for log shippers.") var logFormat: LogFormat = .text
        @Flag(name: .long, help: "No progress lines while embedding (they are shown only on a terminal anyway).") var quiet = false

        func validate() throws {
            if let budgetEpsilon, !(budgetEpsilon > 0 && budgetEpsilon.isFinite) { throw ValidationError("--budget-epsilon must be a positive number") }
            if let budgetDelta, !(budgetDelta > 0 && budgetDelta < 1) { throw ValidationError("--budget-delta must be in (0, 1)") }
            if let httpPort, !(0...65535).contains(httpPort) { throw ValidationError("--http-port must be in 0...65535") }
            guard pollSeconds >= 0.05, pollSeconds <= 60 else { throw ValidationError("--poll-seconds must be in [0.05, 60]") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error") }
        }

        func run() async throws {
            let level = Logger.Level(rawValue: logLevel) ?? .info
            LogOutput.bootstrap(format: logFormat, level: level)
            let logger = Logger(label: "fedseg.node")
            do {
                let home = try NodeHome(directory: state.url)
                var options = NodeService.Options(dataDirectory: URL(fileURLWithPath: data, isDirectory: true))
                options.embedder = embedder
                if budgetEpsilon != nil || budgetDelta != nil {
                    options.budget = (budgetEpsilon ?? NodeService.defaultBudget.epsilon, budgetDelta ?? NodeService.defaultBudget.delta)
                }
                options.pollSeconds = pollSeconds
                options.cacheDirectory = cacheDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
                options.showProgress = !quiet
                let service = try await NodeService(home: home, options: options, logger: logger)
                var services: [any Service] = [service]
                if let httpPort { services.append(NodeHTTP.application(host: "127.0.0.1", port: httpPort, metrics: service.metrics, logger: logger)) }
                let group = ServiceGroup(
                    configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
                )
                try await group.run()
            } catch {
                throw fail("serve", error, json: false)
            }
        }
    }

    struct Segments: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Each local user's segment under the latest kept model, and segment sizes on this node (computed here, sent nowhere)."
        )

        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Write one {\"user\", \"segment\"} JSON object per line to this file.") var export: String?
        @Flag(name: .long, help: "One JSON object: run_id, model_version, users, sizes, assignments.") var json = false

        func run() async throws {
            do {
                let report = try await NodeHome(directory: state.url).segments()
                if let export {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    var lines = Data()
                    for assignment in report.assignments {
                        lines.append(try encoder.encode(assignment))
                        lines.append(0x0A)
                    }
                    try lines.write(to: URL(fileURLWithPath: export), options: .atomic)
                }
                if json { return try printJSON(report) }
                print("model: run \(report.runID) v\(report.modelVersion); \(report.users) users on this node")
                for segment in report.segments {
                    print(String(format: "  segment %2d  %6d users  ", segment.id, segment.users) + (segment.label.isEmpty ? "" : "[\(segment.label)] ")
                        + segment.topItems.joined(separator: ", "))
                }
                if let export { print("wrote \(report.assignments.count) assignments to \(export)") }
            } catch {
                throw fail("segments", error, json: json)
            }
        }
    }

    struct Recommend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Top items for a local user, or for a new user's text (cold start), ranked on this node from the kept model."
        )

        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "A user in the node's data.") var user: String?
        @Option(name: .long, help: "A new user's text.") var text: String?
        @Option(name: .long, help: "How many items.") var k = 10
        @Flag(name: .long, help: "One JSON object: run_id, model_version, segment, user, items.") var json = false

        func validate() throws {
            guard (user == nil) != (text == nil) else { throw ValidationError("give exactly one of --user and --text") }
            guard (1...1000).contains(k) else { throw ValidationError("--k must be in 1...1000") }
        }

        func run() async throws {
            do {
                let subject: NodeHome.RecommendationSubject = user.map { .user($0) } ?? .text(text ?? "")
                let result = try await NodeHome(directory: state.url).recommend(subject, k: k)
                if json { return try printJSON(result) }
                print("model: run \(result.runID) v\(result.modelVersion); segment \(result.segment.map(String.init) ?? "none (global list)")")
                for item in result.items { print(String(format: "%3d  %@  %@", item.rank, item.item, item.title ?? "")) }
            } catch {
                throw fail("recommend", error, json: json)
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The node's enrolment, the runs it took part in and its privacy spend.")

        @OptionGroup var state: StateOptions
        @Flag(name: .long, help: "One JSON object.") var json = false

        func run() async throws {
            do {
                let status = try await NodeHome(directory: state.url).status()
                if json { return try printJSON(status) }
                print("node \(status.clientID ?? "(not enrolled)") in \(status.stateDirectory)")
                if status.enrolled, let url = status.coordinatorURL {
                    print("enrolled with \(url); coordinator key fingerprint \(status.coordinatorFingerprint ?? "?")")
                } else {
                    print("not enrolled: fedseg-node enroll --state-dir \(status.stateDirectory) --coordinator URL --token TOKEN")
                }
                print("users: \(status.users)")
                print(String(format: "privacy: ε spent %.4f of %@; ledger %@", status.epsilonSpent, status.epsilonBudget.map { String(format: "%g", $0) } ?? "?", status.ledgerVerified ? "verified" : "FAILS VERIFICATION"))
                for run in status.runs {
                    print("run \(run.runID): \(run.chargedRounds) release(s) charged, \(run.declined.count) declined\(run.modelVersion.map { ", model v\($0) kept" } ?? "")")
                }
            } catch {
                throw fail("status", error, json: json)
            }
        }
    }

    struct Privacy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The node's privacy ledger.", subcommands: [Audit.self])

        struct Audit: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Verify the node's ledger (hash chain, every ε recomputed) and print ε spent and left per population."
            )

            @OptionGroup var state: StateOptions
            @Flag(name: .long, help: "The audit as JSON (records, verified, problems, populations, budget_changes).") var json = false

            func run() async throws {
                let audit: LedgerAudit
                do {
                    audit = try await NodeHome(directory: state.url).audit()
                } catch {
                    throw fail("privacy audit", error, json: json)
                }
                if json { try printJSON(audit) } else { print(audit.report(source: state.url.appendingPathComponent("client.sqlite").path), terminator: "") }
                if !audit.verified { throw ExitCode(1) }
            }
        }
    }
}
