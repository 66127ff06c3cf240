import ArgumentParser
import FedSegCoordinator
import FedSegMath

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
        abstract: "The FedSeg coordinator daemon (rounds, aggregation, privacy ledger, HTTP API)."
    )
}
