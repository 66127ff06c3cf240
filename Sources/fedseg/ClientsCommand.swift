import ArgumentParser
import FedSegCoordinator
import FedSegCrypto
import FedSegProtocol
import Foundation

struct ClientsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clients",
        abstract: "Enrollment: one-time tokens, clients added by key, list and revoke.",
        subcommands: [Token.self, Add.self, List.self, Revoke.self]
    )

    struct StateOptions: ParsableArguments {
        @Option(name: .long, help: "The coordinator's state directory.")
        var stateDir: String

        /// The registry in the coordinator's database (safe while the daemon runs: SQLite WAL).
        func registry() throws -> ClientRegistry {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return try CoordinatorStore(path: URL(fileURLWithPath: stateDir).appendingPathComponent(CoordinatorStore.fileName).path).registry
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a new one-time enrollment token (only its hash is stored).")
        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Seconds the token stays valid.")
        var ttl: Double = 3600

        func run() throws {
            guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
            print(try state.registry().createToken(lifetime: ttl))
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enroll a client by its public keys (hex), without a token.")
        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Client id.")
        var id: String
        @Option(name: .long, help: "Ed25519 public key, 64 hex digits.")
        var signingKey: String
        @Option(name: .long, help: "X25519 public key, 64 hex digits.")
        var kxKey: String

        func run() throws {
            guard let signing = Self.bytes(signingKey), let kx = Self.bytes(kxKey) else { throw ValidationError("keys must be hex") }
            do {
                try state.registry().add(id: id, signingKey: Signing.PublicKey(bytes: signing), kxKey: KeyAgreement.PublicKey(bytes: kx))
            } catch let failure as CryptoError {
                throw ValidationError(failure.description)
            } catch let failure as ClientRegistry.Failure {
                throw ValidationError(failure.description)
            }
            print("enrolled \(id)")
        }

        static func bytes(_ hex: String) -> [UInt8]? {
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0 else { return nil }
            var out: [UInt8] = []
            for i in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                out.append(byte)
            }
            return out
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enrolled clients and their status.")
        @OptionGroup var state: StateOptions
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() throws {
            let clients = try state.registry().clients()
            if json {
                struct Row: Encodable { var id: String; var status: ClientStatus; var signingKey: String; var kxKey: String }
                try JSONOutput.print(clients.map { Row(id: $0.id, status: $0.status, signingKey: $0.signingKey.hexString, kxKey: $0.kxKey.hexString) })
                return
            }
            for client in clients { print("\(client.id)\t\(client.status)\t\(client.signingKey.hexString)") }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a client; its next message is refused.")
        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Client id.")
        var id: String

        func run() throws {
            do {
                try state.registry().revoke(id: id)
            } catch let failure as ClientRegistry.Failure {
                throw ValidationError(failure.description)
            }
            print("revoked \(id)")
        }
    }
}
