import ArgumentParser
import FedSegMath
import FedSegSimulation

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
        abstract: "Generate datasets and run simulated FedSeg clients against a coordinator."
    )
}
