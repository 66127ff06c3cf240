import ArgumentParser
import FedSegPrivacy
import Foundation

struct PrivacyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy",
        abstract: "Privacy accounting: ε for a plan, and the noise a target ε needs.",
        subcommands: [Epsilon.self, Calibrate.self]
    )

    struct Epsilon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "ε after T Gaussian releases (Poisson-sampled when --sampling-rate < 1), by RDP."
        )

        @Option(name: .long, help: "Noise std divided by the release's L2 sensitivity.")
        var noiseMultiplier: Double

        @Option(name: .long, help: "Probability that a user takes part in a release.")
        var samplingRate = 1.0

        @Option(name: .long, help: "Number of releases.")
        var rounds: Int

        @Option(name: .long, help: "δ.")
        var delta: Double

        @Option(name: .long, help: "Accountant (rdp).")
        var accountant = "rdp"

        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() throws {
            guard accountant == "rdp" else {
                throw ValidationError("accountant \(accountant) is not available; use rdp")
            }
            let epsilon: Double
            do {
                epsilon = try Calibration.epsilon(
                    noiseMultiplier: noiseMultiplier, samplingRate: samplingRate, rounds: rounds, delta: delta
                )
            } catch let failure as RDPAccountant.Failure {
                throw ValidationError(failure.description)
            }
            if json {
                print(#"{"accountant":"rdp","delta":\#(delta),"epsilon":\#(epsilon)}"#)
            } else {
                print("ε = \(epsilon) at δ = \(delta) (RDP, \(rounds) releases, z = \(noiseMultiplier), q = \(samplingRate))")
            }
        }
    }

    struct Calibrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The smallest noise multiplier whose T releases stay within (ε, δ)."
        )

        @Option(name: .long, help: "Target ε.")
        var epsilon: Double

        @Option(name: .long, help: "δ.")
        var delta: Double

        @Option(name: .long, help: "Number of releases.")
        var rounds: Int

        @Option(name: .long, help: "Probability that a user takes part in a release.")
        var samplingRate = 1.0

        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() throws {
            let z: Double
            do {
                z = try Calibration.noiseMultiplier(epsilon: epsilon, delta: delta, rounds: rounds, samplingRate: samplingRate)
            } catch let failure as Calibration.Failure {
                throw ValidationError(failure.description)
            }
            if json {
                print(#"{"accountant":"rdp","noise_multiplier":\#(z)}"#)
            } else {
                print("noise multiplier z = \(z) keeps \(rounds) releases within ε = \(epsilon), δ = \(delta)")
            }
        }
    }
}
