import ArgumentParser
import FedSegCommandLine
import FedSegCoordinator
import FedSegMath
import Foundation
import Logging

@main
struct CoordinatorMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await CoordinatorCommand.main()
    }
}

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "The FedSeg coordinator daemon (rounds, aggregation, privacy ledger, HTTP API).",
        subcommands: [Init.self, Serve.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a state directory: keys, an admin token file (mode 600) and the database."
        )

        @Option(name: .long, help: "State directory to create.")
        var stateDir: String

        @Option(name: .long, help: "Every user's lifetime ε across all runs, recorded in the ledger (change it later with `fedseg privacy budget set`).")
        var totalEpsilon = Coordinator.defaultTotalEpsilon

        @Option(name: .long, help: "δ of that budget (fixed once anything is charged).")
        var totalDelta = Coordinator.defaultTotalDelta

        @Flag(name: .long, help: "One JSON object: state_dir, signing_key, admin_token_file, total_epsilon, total_delta.")
        var json = false

        func run() throws {
            do {
                let initialized = try CoordinatorDaemon.initialize(stateDirectory: stateDir, totalEpsilon: totalEpsilon, totalDelta: totalDelta)
                if json {
                    let object: [String: String] = [
                        "state_dir": initialized.stateDirectory, "signing_key": initialized.signingKey,
                        "admin_token_file": initialized.adminTokenFile, "total_epsilon": "\(totalEpsilon)", "total_delta": "\(totalDelta)",
                    ]
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    print(String(decoding: try encoder.encode(object), as: UTF8.self))
                    return
                }
                print("initialised \(initialized.stateDirectory)")
                print("lifetime budget: ε = \(totalEpsilon), δ = \(totalDelta) for every user (recorded in the ledger)")
                print("coordinator signing key: \(initialized.signingKey)")
                print("admin token: \(initialized.adminTokenFile) (owner-only)")
            } catch let error as CoordinatorError {
                FileHandle.standardError.write(Data("coordinator init: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the HTTP API until SIGTERM or SIGINT.",
            discussion: "Settings come from --config (TOML), then from flags, which win. See README for the keys."
        )

        @Option(name: .long, help: "TOML configuration file.")
        var config: String?

        @Option(name: .long, help: "State directory (state_dir).")
        var stateDir: String?

        @Option(name: .long, help: "Listen address (listen.host).")
        var host: String?

        @Option(name: .long, help: "Listen port, 0 for any free port (listen.port).")
        var port: Int?

        @Option(name: .long, help: "Every user's ε across all runs (privacy.total_epsilon): must agree with the budget the ledger records; omit it to use that.")
        var totalEpsilon: Double?

        @Option(name: .long, help: "δ of that budget (privacy.total_delta), likewise.")
        var totalDelta: Double?

        @Option(name: .long, help: "Largest request body accepted (limits.max_message_bytes).")
        var maxMessageBytes: Int?

        @Option(name: .long, help: "trace, debug, info, notice, warning, error (log.level).")
        var logLevel: String?

        @Option(name: .long, help: "text, or json: one JSON object per log line, for log shippers (log.format).")
        var logFormat: LogFormat?

        @Option(name: .long, help: "Record every answer (method, route, status, JSON body) as JSON lines in this file, for debugging a client (log.responses). It holds admin answers: keep it private.")
        var responseLog: String?

        @Option(name: .long, help: "Write the port being listened on to this file.")
        var portFile: String?

        @Option(name: .long, help: "TLS certificate chain, PEM, leaf first (tls.cert). Needs --tls-key.")
        var tlsCert: String?

        @Option(name: .long, help: "TLS private key, PEM (tls.key).")
        var tlsKey: String?

        @Flag(name: .long, help: "Serve plain HTTP on a non-loopback address (listen.insecure_http), e.g. behind a TLS-terminating proxy.")
        var insecureHTTP = false

        @Option(name: .long, help: "Open connections at once (limits.max_connections).")
        var maxConnections: Int?

        @Option(name: .long, help: "Seconds without a poll or message after which a client is stale (limits.stale_after_seconds).")
        var staleAfterSeconds: Double?

        func run() async throws {
            var configuration: CoordinatorConfiguration
            do {
                configuration = try config.map(CoordinatorConfiguration.load(path:)) ?? CoordinatorConfiguration()
                if let stateDir { configuration.stateDirectory = stateDir }
                if let host { configuration.host = host }
                if let port { configuration.port = port }
                if let totalEpsilon { configuration.totalEpsilon = totalEpsilon }
                if let totalDelta { configuration.totalDelta = totalDelta }
                if let maxMessageBytes { configuration.maxMessageBytes = maxMessageBytes }
                if let logLevel { configuration.logLevel = logLevel }
                if let logFormat { configuration.logFormat = logFormat.rawValue }
                if let responseLog { configuration.responseLog = responseLog }
                configuration.portFile = portFile
                switch (tlsCert, tlsKey) {
                case (let cert?, let key?): configuration.tls = TLSFiles(certificateChain: cert, privateKey: key)
                case (nil, nil): break
                default: throw CoordinatorError.configuration("--tls-cert and --tls-key go together")
                }
                if insecureHTTP { configuration.insecureHTTP = true }
                if let maxConnections { configuration.connections.maximumConnections = maxConnections }
                if let staleAfterSeconds { configuration.staleAfterSeconds = staleAfterSeconds }
                try configuration.validate()
            } catch let error as CoordinatorError {
                FileHandle.standardError.write(Data("coordinator serve: \(error)\n".utf8))
                throw ExitCode(1)
            }
            let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
            LogOutput.bootstrap(format: LogFormat(rawValue: configuration.logFormat) ?? .text, level: level)
            do {
                try await CoordinatorDaemon.serve(configuration, logger: Logger(label: "fedseg.coordinator"))
            } catch let error as CoordinatorError {
                FileHandle.standardError.write(Data("coordinator: \(error)\n".utf8))
                throw ExitCode(1)
            } catch {
                FileHandle.standardError.write(Data("coordinator: \(CoordinatorDaemon.explainServeFailure(error, configuration))\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
