import ArgumentParser
import FedSegMath
import Foundation

@main
struct FedSegMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try FedSegCommand.parseAsRoot(arguments)
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            // Help, version and usage errors go the usual way; a failure under --json is JSON.
            let exit = FedSegCommand.exitCode(for: error)
            if arguments.contains("--json"), exit != .success, !(error is ValidationError) {
                let message = (error as? CommandFailure)?.description ?? FedSegCommand.message(for: error)
                let code = (error as? CommandFailure)?.code ?? "failed"
                try? JSONOutput.print(["error": ["code": code, "message": message]])
                Foundation.exit(exit.rawValue)
            }
            FedSegCommand.exit(withError: error)
        }
    }
}

struct FedSegCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedseg",
        abstract: "Operate and inspect a FedSeg federation.",
        version: FedSegVersion.current,
        subcommands: [DoctorCommand.self, EmbedCommand.self, KMeansCommand.self, PrivacyCommand.self, ClientsCommand.self, RunCommand.self, SegmentsCommand.self]
    )
}

enum FedSegVersion {
    static let current = "0.1.0"
}
