import ArgumentParser
import FedSegClient
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

    /// Where the registry is: a state directory made by `coordinator init` (offline), or a live
    /// coordinator's admin API.
    struct StateOptions: ParsableArguments {
        @Option(name: .long, help: "The coordinator's state directory (made by `coordinator init`; offline, while no daemon serves it).")
        var stateDir: String?

        @OptionGroup var remote: CoordinatorOptions

        func validate() throws {
            guard (stateDir == nil) != (remote.coordinator == nil) else { throw ValidationError("give one of --state-dir and --coordinator") }
        }

        /// The registry in an initialised state directory. Writes hold the directory's lock, so
        /// they are refused while a daemon serves it (which owns its rounds): use its admin API.
        func withRegistry<T>(writing: Bool, purpose: String, _ body: (ClientRegistry) throws -> T) throws -> T {
            guard let stateDir else { throw ValidationError("--state-dir is required") }
            do {
                try CoordinatorDaemon.requireInitialised(stateDir)
                let lock = writing ? try StateLock.coordinator(stateDirectory: stateDir, purpose: purpose) : nil
                defer { withExtendedLifetime(lock) {} }
                let store = try CoordinatorStore(path: URL(fileURLWithPath: stateDir).appendingPathComponent(CoordinatorStore.fileName).path)
                return try body(store.registry)
            } catch let error as CoordinatorError {
                let hint = writing ? "; while a coordinator serves it, use --coordinator URL --admin-token-file F" : ""
                throw CommandFailure(error.description.replacingOccurrences(of: "state: ", with: "") + hint)
            }
        }
    }

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a new one-time enrollment token (only its hash is stored).")
        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Seconds the token stays valid.")
        var ttl: Double = 3600
        @Flag(name: .long, help: "One JSON object: {\"token\", \"expires_at\"}.")
        var json = false

        func run() async throws {
            guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
            let token: String
            if state.remote.coordinator != nil {
                let ttl = ttl
                let tokens = try await state.remote.withAdmin { try await $0.createTokens(count: 1, lifetimeSeconds: ttl) }
                guard let first = tokens.first else { throw CommandFailure("the coordinator returned no token") }
                token = first
            } else {
                token = try state.withRegistry(writing: true, purpose: "fedseg clients token") { try $0.createToken(lifetime: ttl) }
            }
            if json {
                struct Issued: Encodable { var token: String; var expiresAt: Double }
                return try JSONOutput.print(Issued(token: token, expiresAt: Date().timeIntervalSince1970 + ttl))
            }
            print(token)
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
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() throws {
            guard state.remote.coordinator == nil else {
                throw ValidationError("clients add writes the state directory (--state-dir); a live coordinator enrols clients by token (clients token --coordinator)")
            }
            guard let signing = Self.bytes(signingKey), let kx = Self.bytes(kxKey) else { throw ValidationError("keys must be hex") }
            do {
                try state.withRegistry(writing: true, purpose: "fedseg clients add") { try $0.add(id: id, signingKey: Signing.PublicKey(bytes: signing), kxKey: KeyAgreement.PublicKey(bytes: kx)) }
            } catch let failure as CryptoError {
                throw CommandFailure(failure.description)
            } catch let failure as ClientRegistry.Failure {
                throw CommandFailure(failure.description)
            }
            if json { return try JSONOutput.print(["enrolled": id]) }
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

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enrolled clients and their status.")
        @OptionGroup var state: StateOptions
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() async throws {
            if state.remote.coordinator != nil {
                let entries = try await state.remote.withAdmin { try await $0.clients() }
                if json { return try JSONOutput.print(entries) }
                let now = Date().timeIntervalSince1970
                for entry in entries {
                    let seen = String(format: "seen %.0f s ago", max(0, now - entry.lastSeenAt))
                    print("\(entry.id)\t\(entry.status)\t\(seen)\(entry.stale ? "\tstale (rounds do not wait for it)" : "")")
                }
                return
            }
            let clients = try state.withRegistry(writing: false, purpose: "") { try $0.clients() }
            if json {
                struct Row: Encodable { var id: String; var status: ClientStatus; var signingKey: String; var kxKey: String }
                try JSONOutput.print(clients.map { Row(id: $0.id, status: $0.status, signingKey: $0.signingKey.hexString, kxKey: $0.kxKey.hexString) })
                return
            }
            for client in clients { print("\(client.id)\t\(client.status)\t\(client.signingKey.hexString)") }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a client; its next message is refused.")
        @OptionGroup var state: StateOptions
        @Option(name: .long, help: "Client id.")
        var id: String
        @Flag(name: .long, help: "One JSON object.")
        var json = false

        func run() async throws {
            if state.remote.coordinator != nil {
                let id = id
                try await state.remote.withAdmin { try await $0.revoke(id) }
            } else {
                do {
                    try state.withRegistry(writing: true, purpose: "fedseg clients revoke") { try $0.revoke(id: id) }
                } catch let failure as ClientRegistry.Failure {
                    throw CommandFailure(failure.description)
                }
            }
            if json { return try JSONOutput.print(["revoked": id]) }
            print("revoked \(id)")
        }
    }
}
