import ArgumentParser
import FedSegMath

@main
struct FedSegMain {
    static func main() async {
        BLASKernel.selectForThisProcess()
        await FedSegCommand.main()
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
