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
        /// The client already answered the round with another kind of message (an update after
        /// a decline, say): one answer per client per round.
        case alreadyAnswered(client: String, round: UInt64, earlier: UInt8)

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
            case .alreadyAnswered: "already_answered"
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
            case .alreadyAnswered(let client, let round, let earlier):
                "client \(client) already answered round \(round) (with a message of kind \(Fedseg_V1_MessageKind(rawValue: Int(earlier)).map { "\($0)" } ?? "\(earlier)")); a round takes one answer per client"
            }
        }
    }

    public let registry: ClientRegistry
    public var limits: ProtocolLimits
    /// Each sender's session key, derived from its enrolled key on its first message.
    public let sessionKeys: Envelope.SessionKeyCache

    public init(registry: ClientRegistry, limits: ProtocolLimits = .init(), sessionKeys: Envelope.SessionKeyCache = .init()) {
        self.registry = registry
        self.limits = limits
        self.sessionKeys = sessionKeys
    }

    /// A decoded, validated client message.
    public enum Message: Sendable {
        case clientUpdate(Fedseg_V1_ClientUpdate)
        case recommendationUpdate(Fedseg_V1_RecommendationUpdate)
        case startHistogram(Fedseg_V1_StartHistogram)
        case decline(Fedseg_V1_Decline)
        /// With the sender's enrolled signing key, which verified the advertisement's signature.
        case secAggAdvertise(Fedseg_V1_SecAggAdvertise, signingKey: Data)
        case secAggShares(Fedseg_V1_SecAggShares)
        case secAggMaskedInput(Fedseg_V1_SecAggMaskedInput)
        case secAggUnmask(Fedseg_V1_SecAggUnmask)
        case secAggConsistency(Fedseg_V1_SecAggConsistency)
    }

    /// A message opened and validated against its round's plan, not yet recorded.
    public struct Decoded: Sendable {
        public var clientID: String
        public var kind: UInt8
        public var message: Message

        public init(clientID: String, kind: UInt8, message: Message) {
            self.clientID = clientID
            self.kind = kind
            self.message = message
        }
    }

    /// Checks a decoded message needs beyond the plan (a distributed round's graph), run before
    /// the message is recorded; throws `ProtocolError`.
    public typealias Check = @Sendable (_ clientID: String, _ message: Message) throws -> Void

    /// The kinds a round of this phase takes: its update, or a decline.
    public static func acceptedKinds(for phase: Fedseg_V1_Phase) -> [Fedseg_V1_MessageKind] {
        switch phase {
        case .clustering: [.clientUpdate, .decline]
        case .recommendation: [.recommendationUpdate, .decline]
        case .start: [.startHistogram, .decline]
        default: []
        }
    }

    /// Accepts any message of the round's phase, or throws the reason it is refused. The sealed
    /// envelope is stored with the replay record (one transaction) when `keepEnvelope` is set, so
    /// a restarted coordinator can rebuild the open round's sums from what it accepted.
    ///
    /// The coordinator does not use this: it decodes here, outside its state machine, and records
    /// the message in the same step that adds it to the open round (`Coordinator.accept`).
    public func accept(
        _ envelope: [UInt8], plan: Fedseg_V1_RoundPlan, coordinator: borrowing KeyAgreement.PrivateKey, keepEnvelope: Bool = false,
        kinds: [Fedseg_V1_MessageKind]? = nil, check: Check? = nil
    ) throws -> (clientID: String, message: Message) {
        let decoded = try decode(envelope, plan: plan, coordinator: coordinator, checkStatus: true, kinds: kinds, check: check)
        try registry.database.write { db in
            try Self.recordAccepted(db, clientID: decoded.clientID, round: plan.round, kind: decoded.kind, envelope: keepEnvelope ? .inline(envelope) : .none)
        }
        return (decoded.clientID, decoded.message)
    }

    /// Opens and validates a message against the plan without recording it: the coordinator's
    /// recovery path for envelopes it had already accepted (revocation since then does not undo
    /// an accepted message, so status is not checked again there).
    public func decode(
        _ envelope: [UInt8], plan: Fedseg_V1_RoundPlan, coordinator: borrowing KeyAgreement.PrivateKey, checkStatus: Bool,
        kinds acceptedKinds: [Fedseg_V1_MessageKind]? = nil, check: Check? = nil
    ) throws -> Decoded {
        guard envelope.count <= limits.maximumMessageBytes else { throw Rejection.oversized(envelope.count) }
        let kinds = acceptedKinds ?? Self.acceptedKinds(for: plan.phase)
        let kind: UInt8
        do {
            kind = try Envelope.peek(envelope, limit: limits.maximumMessageBytes).header.kind
        } catch {
            throw Rejection.malformedEnvelope("\(error)")
        }
        let expected = UInt8(kinds.first?.rawValue ?? 0)
        guard let messageKind = Fedseg_V1_MessageKind(rawValue: Int(kind)), kinds.contains(messageKind) else {
            throw Rejection.wrongKind(expected: expected, found: kind)
        }
        let (client, plaintext) = try open(envelope, round: plan.round, kind: kind, coordinator: coordinator, checkStatus: checkStatus)
        let clientID = client.id
        do {
            let message: Message
            switch messageKind {
            case .clientUpdate:
                let update = try MessageCodec.decode(Fedseg_V1_ClientUpdate.self, from: plaintext, limits: limits)
                try update.validate(against: plan, limits: limits)
                message = .clientUpdate(update)
            case .recommendationUpdate:
                let update = try MessageCodec.decode(Fedseg_V1_RecommendationUpdate.self, from: plaintext, limits: limits)
                try update.validate(against: plan, limits: limits)
                message = .recommendationUpdate(update)
            case .startHistogram:
                let histogram = try MessageCodec.decode(Fedseg_V1_StartHistogram.self, from: plaintext, limits: limits)
                try histogram.validate(against: plan, limits: limits)
                message = .startHistogram(histogram)
            case .secaggAdvertise:
                let advertise = try MessageCodec.decode(Fedseg_V1_SecAggAdvertise.self, from: plaintext, limits: limits)
                try advertise.validate(against: plan)
                // Signed with the sender's enrolled key: what neighbours verify before using them.
                let statement = SecAggSigning.advertisement(
                    runID: plan.runID, round: plan.round, clientID: clientID, encryptionKey: advertise.encryptionKey, maskingKey: advertise.maskingKey
                )
                guard let key = try? Signing.PublicKey(bytes: [UInt8](client.signingKey)), advertise.signature.count == 64,
                    key.isValidSignature([UInt8](advertise.signature), for: statement)
                else { throw ProtocolError.invalidField("signature", "does not verify with the sender's enrolled signing key") }
                message = .secAggAdvertise(advertise, signingKey: client.signingKey)
            case .secaggShares:
                // Neighbour rules need the round's graph: the caller's check.
                let shares = try MessageCodec.decode(Fedseg_V1_SecAggShares.self, from: plaintext, limits: limits)
                guard shares.runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: shares.runID) }
                guard shares.round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: shares.round) }
                message = .secAggShares(shares)
            case .secaggMaskedInput:
                let masked = try MessageCodec.decode(Fedseg_V1_SecAggMaskedInput.self, from: plaintext, limits: limits)
                try masked.validate(against: plan)
                message = .secAggMaskedInput(masked)
            case .secaggUnmask:
                let unmask = try MessageCodec.decode(Fedseg_V1_SecAggUnmask.self, from: plaintext, limits: limits)
                guard unmask.runID == plan.runID else { throw ProtocolError.wrongRun(expected: plan.runID, found: unmask.runID) }
                guard unmask.round == plan.round else { throw ProtocolError.wrongRound(expected: plan.round, found: unmask.round) }
                message = .secAggUnmask(unmask)
            case .secaggConsistency:
                let consistency = try MessageCodec.decode(Fedseg_V1_SecAggConsistency.self, from: plaintext, limits: limits)
                try consistency.validate(against: plan)
                message = .secAggConsistency(consistency)
            default:
                let decline = try MessageCodec.decode(Fedseg_V1_Decline.self, from: plaintext, limits: limits)
                try decline.validate(against: plan)
                message = .decline(decline)
            }
            try check?(clientID, message)
            return Decoded(clientID: clientID, kind: kind, message: message)
        } catch let error as ProtocolError {
            throw Rejection.invalid(error)
        }
    }

    /// Accepts a clustering update for `plan`, or throws the reason it is refused.
    public func acceptClientUpdate(
        _ envelope: [UInt8], plan: Fedseg_V1_RoundPlan, coordinator: borrowing KeyAgreement.PrivateKey
    ) throws -> (clientID: String, update: Fedseg_V1_ClientUpdate) {
        let decoded = try decode(envelope, plan: plan, coordinator: coordinator, checkStatus: true)
        guard case .clientUpdate(let update) = decoded.message else {
            throw Rejection.wrongKind(expected: UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue), found: decoded.kind)
        }
        try registry.database.write { db in try Self.recordAccepted(db, clientID: decoded.clientID, round: plan.round, kind: decoded.kind, envelope: .none) }
        return (decoded.clientID, update)
    }

    /// The first checks, which need no round: size, envelope header, enrolled and active sender.
    public func identify(_ envelope: [UInt8], checkStatus: Bool = true) throws -> (header: Envelope.Header, client: ClientRegistry.Client) {
        let identified = try identified(envelope, checkStatus: checkStatus)
        return (identified.header, identified.client)
    }

    func identified(
        _ envelope: [UInt8], checkStatus: Bool
    ) throws -> (header: Envelope.Header, associatedDataLength: Int, client: ClientRegistry.Client) {
        guard envelope.count <= limits.maximumMessageBytes else { throw Rejection.oversized(envelope.count) }
        let header: Envelope.Header
        let associatedDataLength: Int
        do {
            (header, associatedDataLength) = try Envelope.peek(envelope, limit: limits.maximumMessageBytes)
        } catch {
            throw Rejection.malformedEnvelope("\(error)")
        }
        guard let client = try registry.sender(header.clientID) else { throw Rejection.unknownSender(header.clientID) }
        guard !checkStatus || client.status == .active else { throw Rejection.revoked(header.clientID) }
        return (header, associatedDataLength, client)
    }

    func open(
        _ envelope: [UInt8], round: UInt64, kind: UInt8, coordinator: borrowing KeyAgreement.PrivateKey, checkStatus: Bool = true
    ) throws -> (ClientRegistry.Client, [UInt8]) {
        let (header, associatedDataLength, client) = try identified(envelope, checkStatus: checkStatus)
        guard header.round == round else { throw Rejection.wrongRound(expected: round, found: header.round) }
        guard header.kind == kind else { throw Rejection.wrongKind(expected: kind, found: header.kind) }
        let senderKey: KeyAgreement.PublicKey
        do {
            senderKey = try KeyAgreement.PublicKey(bytes: Array(client.kxKey))
        } catch {
            throw Rejection.unknownSender(header.clientID)
        }
        do {
            let key = try sessionKeys.coordinatorKey(coordinator, from: senderKey)
            return (client, try Envelope.open(envelope, associatedDataLength: associatedDataLength, key: key))
        } catch {
            throw Rejection.tampered
        }
    }

    /// The kinds that answer a round: a client sends at most one of them per round (its update,
    /// its decline, or in a distributed round its advertisement, which opens its part).
    public static let answerKinds: Set<UInt8> = Set(
        [Fedseg_V1_MessageKind.clientUpdate, .recommendationUpdate, .startHistogram, .decline, .secaggAdvertise].map { UInt8($0.rawValue) }
    )

    /// Where an accepted message's sealed envelope is kept until its round ends.
    public enum StoredEnvelope: Sendable {
        /// Not kept.
        case none
        /// In the replay record's row.
        case inline([UInt8])
        /// In the round's envelope log, at this byte range (the coordinator's store: written and
        /// on disk before the transaction holding this record commits).
        case logged(offset: Int64, length: Int)
    }

    static let earlierAnswerSQL =
        "SELECT kind FROM accepted_messages WHERE client_id = ? AND round = ? AND kind IN (\(answerKinds.sorted().map(String.init).joined(separator: ", "))) LIMIT 1"
    static let earlierKindSQL = "SELECT kind FROM accepted_messages WHERE client_id = ? AND round = ? AND kind = ? LIMIT 1"

    /// Records an accepted message inside the caller's transaction, or throws `replay` (the same
    /// message again) or `alreadyAnswered` (another answer to the same round).
    public static func recordAccepted(_ db: Database, clientID: String, round: UInt64, kind: UInt8, envelope: StoredEnvelope) throws {
        // Cached statements: compiling (and authorising) the same SQL for every message had been
        // a tenth of the intake's CPU; the SQL itself is built once.
        let earlier: Int?
        if answerKinds.contains(kind) {
            earlier = try Int.fetchOne(db.cachedStatement(sql: Self.earlierAnswerSQL), arguments: [clientID, Int64(bitPattern: round)])
        } else {
            earlier = try Int.fetchOne(db.cachedStatement(sql: Self.earlierKindSQL), arguments: [clientID, Int64(bitPattern: round), Int(kind)])
        }
        if let earlier {
            if earlier == Int(kind) { throw Rejection.replay(client: clientID, round: round) }
            throw Rejection.alreadyAnswered(client: clientID, round: round, earlier: UInt8(earlier))
        }
        let (inline, offset, length): (Data?, Int64?, Int?) = switch envelope {
        case .none: (nil, nil, nil)
        case .inline(let bytes): (Data(bytes), nil, nil)
        case .logged(let offset, let length): (nil, offset, length)
        }
        try db.cachedStatement(
            sql: "INSERT INTO accepted_messages (client_id, round, kind, accepted_at, envelope, envelope_offset, envelope_length) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [clientID, Int64(bitPattern: round), Int(kind), Date().timeIntervalSince1970, inline, offset, length])
    }
}
