import AsyncHTTPClient
import FedSegClient
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegProtocol
import FedSegRecommend
import Foundation
import SwiftProtobuf

/// A `fedseg-node` state directory: the node's key file (0600), `client.sqlite` (the client
/// engine's ledger, enrolment and outboxes) and `node.sqlite` (settings, users, models).
public struct NodeHome: Sendable {
    public let directory: URL
    public let store: NodeStore

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case notInitialized(String)
        case alreadyInitialized(String)
        case notEnrolled(String)
        case alreadyEnrolled(id: String, coordinator: String)
        case invalid(String)
        case noModel
        case refused(String)

        public var description: String {
            switch self {
            case .notInitialized(let path): "\(path) is not a node state directory: create it with `fedseg-node init --state-dir \(path)`"
            case .alreadyInitialized(let path): "\(path) already holds a node (its key file exists); use it as it is, or a new --state-dir"
            case .notEnrolled(let path):
                "the node in \(path) is not enrolled: ask the operator for a token (`fedseg clients token`) and run `fedseg-node enroll --state-dir \(path) --coordinator URL --token T`"
            case .alreadyEnrolled(let id, let coordinator):
                "this node is already enrolled as \(id) with \(coordinator); a node enrols once (use a new --state-dir for another coordinator)"
            case .invalid(let why): why
            case .noModel: "no segment model yet: the node keeps one when a run finishes while `fedseg-node serve` runs"
            case .refused(let why): why
            }
        }
    }

    /// Opens an initialised state directory.
    public init(directory: URL) throws {
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(ClientNode.keyFile).path),
            FileManager.default.fileExists(atPath: directory.appendingPathComponent(NodeStore.file).path)
        else { throw Failure.notInitialized(directory.path) }
        self.directory = directory
        store = try NodeStore(directory: directory)
    }

    /// What `init` made, for the operator.
    public struct Initialized: Sendable, Codable {
        public var stateDirectory: String
        public var signingKey: String
        public var fingerprint: String

        enum CodingKeys: String, CodingKey {
            case stateDirectory = "state_dir"
            case signingKey = "signing_key"
            case fingerprint
        }
    }

    /// Creates the directory (0700), the key file (0600) and both databases.
    public static func initialize(directory: URL) throws -> Initialized {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.appendingPathComponent(ClientNode.keyFile).path) { throw Failure.alreadyInitialized(directory.path) }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
        try NodeIdentity().save(to: directory.appendingPathComponent(ClientNode.keyFile).path)
        _ = try NodeStore(directory: directory)
        let home = try NodeHome(directory: directory)
        let node = try home.clientNode(id: "unenrolled", embedderID: "", budget: nil)
        return Initialized(stateDirectory: directory.path, signingKey: node.signingKeyHex, fingerprint: fingerprint(ofHex: node.signingKeyHex))
    }

    /// A key's short form to compare by eye: the first 16 bytes of its SHA-256, in groups of four hex digits.
    public static func fingerprint(ofHex hex: String) -> String {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let end = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), let byte = UInt8(hex[index..<end], radix: 16) {
            bytes.append(byte)
            index = end
        }
        let digest = SHA256.hash(bytes).hex.prefix(32)
        return stride(from: 0, to: digest.count, by: 4).map { offset in
            String(digest.dropFirst(offset).prefix(4))
        }.joined(separator: ":")
    }

    /// The client engine over this directory. `id` defaults to the enrolled one.
    public func clientNode(id: String? = nil, embedderID: String, budget: (epsilon: Double, delta: Double)?, data: ClientData? = nil) throws -> ClientNode {
        let settings = try store.settings()
        guard let id = id ?? settings.clientID else { throw Failure.notEnrolled(directory.path) }
        return try ClientNode(
            directory: directory, id: id, embedderID: embedderID,
            data: data ?? ClientData(userIDs: [], points: Matrix(rows: 0, cols: 0), items: []), budget: budget
        )
    }

    /// What `enroll` did, for the operator to compare with the coordinator's key.
    public struct Enrolled: Sendable, Codable {
        public var clientID: String
        public var coordinatorURL: String
        public var coordinatorSigningKey: String
        public var coordinatorFingerprint: String

        enum CodingKeys: String, CodingKey {
            case clientID = "client_id"
            case coordinatorURL = "coordinator_url"
            case coordinatorSigningKey = "coordinator_signing_key"
            case coordinatorFingerprint = "coordinator_fingerprint"
        }
    }

    /// The id a node enrols as when none is given: "node-" and its key's first eight hex digits.
    func defaultID() throws -> String {
        let node = try clientNode(id: "unenrolled", embedderID: "", budget: nil)
        return "node-" + node.signingKeyHex.prefix(8)
    }

    /// Enrols with a one-time token (network failures retried for a minute) and pins the
    /// coordinator's keys; the coordinator URL and CA are kept for `serve`.
    public func enroll(coordinatorURL: String, token: String, id: String?, caCertificate: String?) async throws -> Enrolled {
        var settings = try store.settings()
        if let enrolled = settings.clientID, let url = settings.coordinatorURL, settings.enrolledAt != nil {
            throw Failure.alreadyEnrolled(id: enrolled, coordinator: url)
        }
        let clientID = try id ?? defaultID()
        guard !clientID.isEmpty, clientID.utf8.count <= 128, clientID.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw Failure.invalid("--id \(clientID): use 1 to 128 letters, digits, '-', '_' or '.'")
        }
        if let caCertificate, !FileManager.default.isReadableFile(atPath: caCertificate) {
            throw Failure.invalid("cannot read --ca-cert \(caCertificate)")
        }
        let node = try clientNode(id: clientID, embedderID: "", budget: nil)
        let http = HTTPCoordinatorTransport.makeHTTPClient(connectionsPerHost: 2, caCertificate: caCertificate)
        let transport = HTTPCoordinatorTransport(baseURL: coordinatorURL, client: http)
        do {
            try await Retry.untilDeadline(seconds: 60) { try await node.enroll(token: token, transport: transport) }
            try await http.shutdown()
        } catch {
            try? await http.shutdown()
            if case TransportError.refused(_, let code, let message)? = error as? TransportError {
                throw Failure.refused("the coordinator refused the enrolment (\(code)): \(message)")
            }
            throw Failure.refused(HTTPCoordinatorTransport.explain(error, url: coordinatorURL))
        }
        guard let keys = await node.pinnedKeys else { throw Failure.refused("the coordinator's answer pinned no keys") }
        settings.clientID = clientID
        settings.coordinatorURL = coordinatorURL
        settings.caCertificate = caCertificate.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        settings.enrolledAt = Date().timeIntervalSince1970
        try store.save(settings)
        return Enrolled(
            clientID: clientID, coordinatorURL: coordinatorURL, coordinatorSigningKey: keys.signing.hex, coordinatorFingerprint: Self.fingerprint(ofHex: keys.signing.hex)
        )
    }

    /// The latest kept model whose signature verifies with the pinned coordinator key.
    public func latestModel() async throws -> SegmentModel? {
        let node = try clientNode(embedderID: "", budget: nil)
        guard let keys = await node.pinnedKeys else { throw Failure.notEnrolled(directory.path) }
        for stored in try store.models() {
            if let model = try? Self.verifyModel(stored.publication, key: keys.signing) { return model }
        }
        return nil
    }

    /// Verifies a signed model publication.
    public static func verifyModel(_ publication: [UInt8], key: Signing.PublicKey) throws -> SegmentModel {
        let signed = try Fedseg_V1_SignedPublication(serializedBytes: publication)
        guard signed.kind == .segmentModel else { throw SegmentModel.VerificationError.malformed }
        return try SegmentModel.verify(
            .init(payload: signed.payload, signature: [UInt8](signed.signature)), coordinatorKey: key, runID: nil, latestVersion: nil, catalogSize: nil
        )
    }

    /// The embedder a choice names; MiniLM never falls back to hashing on a node (its vectors
    /// would not match any run's).
    public static func embedder(_ choice: EmbedderChoice, progress: ProgressLine? = nil) throws -> any Embedder {
        let (base, warning) = choice.make(progress: progress)
        if let warning, choice == .minilm {
            throw Failure.invalid("\(warning.components(separatedBy: ";").first ?? warning): run `make setup` (or scripts/setup) to install the MiniLM weights, or use --embedder hashing")
        }
        return base
    }
}
