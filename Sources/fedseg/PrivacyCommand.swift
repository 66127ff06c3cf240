import ArgumentParser
import FedSegClient
import FedSegCoordinator
import FedSegPostgres
import FedSegPrivacy
import FedSegProtocol
import FedSegSimulation
import Foundation

struct PrivacyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy",
        abstract: "Privacy accounting: ε for a plan, the noise a target ε needs, ledgers, budgets, and an empirical test.",
        subcommands: [Epsilon.self, Calibrate.self, Audit.self, Budget.self, PrivacyTestCommand.self]
    )

    struct Budget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every user's lifetime budget on a live coordinator.",
            subcommands: [Set.self]
        )

        struct Set: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Change the lifetime budget: an authenticated admin action, recorded in the ledger with its reason.",
                discussion: "Refused while a run is in progress. δ cannot change once anything has been charged. The audit lists every change."
            )

            @OptionGroup var remote: CoordinatorOptions

            @Option(name: .long, help: "The new lifetime ε for every user, across all runs.")
            var epsilon: Double

            @Option(name: .long, help: "The new δ (default: keep the recorded one).")
            var delta: Double?

            @Option(name: .long, help: "Why (recorded in the ledger).")
            var reason: String

            @Flag(name: .long, help: "One JSON object.")
            var json = false

            func run() async throws {
                let request = BudgetRequest(epsilon: epsilon, delta: delta, reason: reason)
                do {
                    try request.validate()
                } catch {
                    throw CommandFailure("\(error)")
                }
                let budget = try await remote.withAdmin { try await $0.setBudget(request) }
                if json {
                    try JSONOutput.print(budget)
                } else {
                    print("lifetime budget: ε = \(budget.epsilon), δ = \(budget.delta ?? 0) for every user (recorded in the ledger: \(reason))")
                }
            }
        }
    }

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

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a privacy ledger and show what each population has spent and has left.",
            discussion: "A coordinator's or client's state directory, a live coordinator through its admin API, or a PostgreSQL database that holds the ledger (--database postgres://USER@HOST:PORT/DATABASE). Exit status 1 when any record fails verification."
        )

        @Option(name: .long, help: "A coordinator's or a client's state directory.")
        var stateDir: String?

        @Option(name: .long, help: "A PostgreSQL database holding the ledger: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (?host=/socket/dir for a Unix socket).")
        var database: String?

        @OptionGroup var remote: CoordinatorOptions

        @Flag(name: .long, help: "One JSON object.")
        var json = false

        @Option(name: .long, help: "Also write an SVG chart of ε over releases to this file.")
        var svg: String?

        func validate() throws {
            guard [stateDir, remote.coordinator, database].compactMap({ $0 }).count == 1 else {
                throw ValidationError("give one of --state-dir, --coordinator and --database")
            }
        }

        func run() async throws {
            let audit: LedgerAudit
            let path: String
            if let stateDir {
                let candidates = [PrivacyLedger.fileName, CoordinatorStore.fileName, ClientNode.databaseFile]
                    .map { URL(fileURLWithPath: stateDir).appendingPathComponent($0).path }
                guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                    throw CommandFailure("no ledger in \(stateDir) (looked for \(candidates.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", ")))")
                }
                path = found
                audit = try LedgerAudit.run(PrivacyLedger(path: found))
            } else if let database {
                do {
                    let location = try PostgresLocation(url: database)
                    path = location.description
                    let connection = try await PostgresStore.open(location, maximumConnections: 1)
                    defer { connection.close() }
                    audit = try await PostgresPrivacyLedger(existingIn: connection).audit()
                } catch let error as PostgresStoreError {
                    throw CommandFailure(error.description)
                }
            } else {
                path = remote.coordinator ?? ""
                audit = try await remote.withAdmin { try await $0.ledger() }
            }
            if let svg {
                try audit.svg().write(toFile: svg, atomically: true, encoding: .utf8)
            }
            if json {
                try JSONOutput.print(audit)
            } else {
                print(audit.report(source: path), terminator: "")
            }
            if !audit.verified { throw ExitCode(1) }
        }
    }
}

struct PrivacyTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Empirical privacy test: run a release many times with and without a canary user and bound its ε from below.",
        discussion: """
            Runs the product's release code (clipping, fixed-point grid, exact discrete Gaussian; the histogram's noise) on \
            two neighbouring inputs, applies the best threshold test (chosen on half the trials, measured on the other half) \
            and reports a Clopper–Pearson lower bound on ε next to the accountant's claim. At --noise-scale 1 the bound must \
            stay below the claim; a bound above it is a broken mechanism (try --noise-scale 0.1 to see one caught).
            """
    )

    @Option(name: .long, help: "local-update, distributed-sum or histogram.")
    var release: EmpiricalPrivacyTest.Release

    @Option(name: .long, help: "The ε the release's noise is calibrated to (one release, by RDP).")
    var epsilon = 2.0

    @Option(name: .long, help: "δ.")
    var delta = 1e-5

    @Option(name: .long, help: "Trials with and without the canary each (at least 200).")
    var trials: Int

    @Option(name: .long, help: "Multiplies the noise (1: the product; below 1: a broken mechanism, the negative control).")
    var noiseScale = 1.0

    @Option(name: .long, help: "Confidence of the Clopper–Pearson bounds.")
    var confidence = 0.95

    @Flag(name: .long, help: "One JSON object.")
    var json = false

    func run() throws {
        var configuration = EmpiricalPrivacyTest.Configuration(release: release, trials: trials)
        configuration.epsilon = epsilon
        configuration.delta = delta
        configuration.noiseScale = noiseScale
        configuration.confidence = confidence
        let result: EmpiricalPrivacyTest.Result
        do {
            result = try EmpiricalPrivacyTest.run(configuration)
        } catch let failure as EmpiricalPrivacyTest.Failure {
            throw CommandFailure(failure.description)
        }
        if json {
            try JSONOutput.print(result)
        } else {
            let verdict = result.epsilonLowerBound <= result.epsilonClaimed ? "consistent with the claim" : "ABOVE THE CLAIM: the mechanism leaks more than it is charged"
            print(String(
                format: "%@: ε claimed %.4f (z = %.3f, δ = %g); empirical lower bound %.4f at %.0f%% confidence over %d trials each (noise ×%g): %@",
                result.release.rawValue, result.epsilonClaimed, result.noiseMultiplier, result.delta, result.epsilonLowerBound,
                result.confidence * 100, result.trials, result.noiseScale, verdict
            ))
        }
    }
}

extension EmpiricalPrivacyTest.Release: ExpressibleByArgument {}
