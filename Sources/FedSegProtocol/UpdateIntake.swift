import FedSegCrypto
import Foundation
import GRDB
import SwiftProtobuf

/// The coordinator's door for client messages: every check in a fixed order, each failure a
/// distinct error, and nothing recorded unless the message is accepted.
///
/// Order: size → envelope header → sender enrolled and active → round and kind expected →
/// authenticated decryption → decode and validate against the plan → not already accepted (the
/// (client, round, kind) triple is recorded in the same transaction that checks it).
public struct UpdateIntake: Sendable {
    public enum Rejection: Error, Equatable, CustomStringConvertible {
        case oversized(Int)
        case malformedEnvelope(String)
        case unknownSender(String)
        case revoked(String)
        case wrongRound(expected: UInt64, found: UInt64)
        case wrongKind(expected: UInt8, found: UInt8)
        case tampered
        case invalid(ProtocolError)
        case replay(client: String, round: UInt64)

        /// A stable label for metrics.
        public var reason: String {
            switch self {
            case .oversized: "oversized"
            case .malformedEnvelope: "malformed"
            case .unknownSender: "unknown_sender"
            case .revoked: "revoked"
            case .wrongRound: "wrong_round"
            case .wrongKind: "wrong_kind"
            case .tampered: "tampered"
            case .invalid: "invalid"
            case .replay: "replay"
            }
        }

        public var description: String {
            switch self {
            case .oversized(let size): "envelope of \(size) bytes is over the limit"
            case .malformedEnvelope(let why): "malformed envelope: \(why)"
            case .unknownSender(let id): "unknown client \(id)"
            case .revoked(let id): "client \(id) is revoked"
            case .wrongRound(let expected, let found): "message for round \(found), the open round is \(expected)"
            case .wrongKind(let expected, let found): "message kind \(found), this endpoint takes \(expected)"
            case .tampered: "authentication failed"
            case .invalid(let error): "invalid message: \(error)"
            case .replay(let client, let round): "client \(client) already sent this message for round \(round)"
            }
        }
    }

    public let registry: ClientRegistry
    public var limits: ProtocolLimits

    public init(registry: ClientRegistry, limits: ProtocolLimits = .init()) {
        self.registry = registry
        self.limits = limits
    }

    /// Accepts a clustering update for `plan`, or throws the reason it is refused.
    public func acceptClientUpdate(
        _ envelope: [UInt8], plan: Fedseg_V1_RoundPlan, coordinator: borrowing KeyAgreement.PrivateKey
    ) throws -> (clientID: String, update: Fedseg_V1_ClientUpdate) {
        let (clientID, plaintext) = try open(
            envelope, round: plan.round, kind: UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue), coordinator: coordinator
        )
        let update: Fedseg_V1_ClientUpdate
        do {
            update = try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: plaintext, limits: limits)
            try update.validate(against: plan, limits: limits)
        } catch let error as ProtocolError {
            throw Rejection.invalid(error)
        }
        try recordAccepted(clientID: clientID, round: plan.round, kind: UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue))
        return (clientID, update)
    }

    func open(
        _ envelope: [UInt8], round: UInt64, kind: UInt8, coordinator: borrowing KeyAgreement.PrivateKey
    ) throws -> (String, [UInt8]) {
        guard envelope.count <= limits.maximumMessageBytes else { throw Rejection.oversized(envelope.count) }
        let header: Envelope.Header
        do {
            header = try Envelope.peek(envelope, limit: limits.maximumMessageBytes).header
        } catch {
            throw Rejection.malformedEnvelope("\(error)")
        }
        guard let client = try registry.client(header.clientID) else { throw Rejection.unknownSender(header.clientID) }
        guard client.status == "active" else { throw Rejection.revoked(header.clientID) }
        guard header.round == round else { throw Rejection.wrongRound(expected: round, found: header.round) }
        guard header.kind == kind else { throw Rejection.wrongKind(expected: kind, found: header.kind) }
        let senderKey: KeyAgreement.PublicKey
        do {
            senderKey = try KeyAgreement.PublicKey(bytes: Array(client.kxKey))
        } catch {
            throw Rejection.unknownSender(header.clientID)
        }
        do {
            return (header.clientID, try Envelope.open(envelope, recipient: coordinator, senderPublicKey: senderKey, limit: limits.maximumMessageBytes).plaintext)
        } catch {
            throw Rejection.tampered
        }
    }

    func recordAccepted(clientID: String, round: UInt64, kind: UInt8) throws {
        try registry.database.write { db in
            let seen = try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM accepted_messages WHERE client_id = ? AND round = ? AND kind = ?",
                arguments: [clientID, Int64(bitPattern: round), Int(kind)]
            ) ?? 0
            guard seen == 0 else { throw Rejection.replay(client: clientID, round: round) }
            try db.execute(
                sql: "INSERT INTO accepted_messages (client_id, round, kind, accepted_at) VALUES (?, ?, ?, ?)",
                arguments: [clientID, Int64(bitPattern: round), Int(kind), Date().timeIntervalSince1970]
            )
        }
    }
}
