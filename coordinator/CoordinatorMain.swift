import ArgumentParser
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

        func run() throws {
            do {
                let initialized = try CoordinatorDaemon.initialize(stateDirectory: stateDir, totalEpsilon: totalEpsilon, totalDelta: totalDelta)
                print("initialised \(initialized.stateDirectory)")
                print("lifetime budget: ε = \(totalEpsilon), δ = \(totalDelta) for every user (recorded in the ledger)")
                print("coordinator signing key: \(initialized.signingKey)")
                print("admin token: \(initialized.adminTokenFile) (owner-only)")
            } catch let error as CoordinatorError {
                throw ValidationError(error.description)
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

        @Option(name: .long, help: "Write the port being listened on to this file.")
        var portFile: String?

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
                configuration.portFile = portFile
                try configuration.validate()
            } catch let error as CoordinatorError {
                throw ValidationError(error.description)
            }
            let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            do {
                try await CoordinatorDaemon.serve(configuration, logger: Logger(label: "fedseg.coordinator"))
            } catch let error as CoordinatorError {
                FileHandle.standardError.write(Data("coordinator: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
