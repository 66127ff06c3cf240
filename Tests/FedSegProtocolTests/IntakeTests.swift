import FedSegCrypto
import FedSegProtocol
import Foundation
import GRDB
import Testing

private func registry() throws -> ClientRegistry {
    try ClientRegistry(database: DatabaseQueue())
}

private func enrollRequest(token: String, id: String, signing: Signing.PublicKey, kx: KeyAgreement.PublicKey) -> Fedseg_V1_EnrollRequest {
    var request = Fedseg_V1_EnrollRequest()
    request.protocolVersion = fedsegProtocolVersion
    request.token = token
    request.clientID = id
    request.signingPublicKey = Data(signing.bytes)
    request.kxPublicKey = Data(kx.bytes)
    return request
}

@Suite("Enrollment and update intake")
struct IntakeTests {
    @Test("tokens are one-time and expire; enrolled clients are listed; revocation sticks")
    func enrollment() throws {
        let registry = try registry()
        let now = Date()
        let token = try registry.createToken(lifetime: 60, now: now)
        let client = NodeIdentity()
        try registry.enroll(enrollRequest(token: token, id: "c1", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now)
        #expect(throws: ClientRegistry.Failure.tokenUsed) {
            try registry.enroll(enrollRequest(token: token, id: "c2", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now)
        }
        // The same enrolment again (a retry after a lost answer) succeeds and changes nothing;
        // the spent token with other keys does not.
        try registry.enroll(enrollRequest(token: token, id: "c1", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now)
        let other = NodeIdentity()
        #expect(throws: ClientRegistry.Failure.tokenUsed) {
            try registry.enroll(enrollRequest(token: token, id: "c1", signing: other.signing.publicKey, kx: other.keyAgreement.publicKey), now: now)
        }
        #expect(try registry.clients().map(\.id) == ["c1"])
        let expired = try registry.createToken(lifetime: 1, now: now)
        #expect(throws: ClientRegistry.Failure.tokenExpired) {
            try registry.enroll(enrollRequest(token: expired, id: "c3", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now.addingTimeInterval(5))
        }
        #expect(throws: ClientRegistry.Failure.badToken) {
            try registry.enroll(enrollRequest(token: "nope", id: "c4", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now)
        }
        let second = try registry.createToken(now: now)
        #expect(throws: ClientRegistry.Failure.clientExists("c1")) {
            try registry.enroll(enrollRequest(token: second, id: "c1", signing: client.signing.publicKey, kx: client.keyAgreement.publicKey), now: now)
        }
        #expect(try registry.clients().map(\.id) == ["c1"])
        try registry.revoke(id: "c1")
        #expect(try registry.client("c1")?.status == .revoked)
        // Only hashes of tokens are stored.
        let stored = try registry.database.read { db in try String.fetchAll(db, sql: "SELECT hash FROM enrollment_tokens") }
        #expect(!stored.contains(token))
    }

    @Test("the intake accepts a good update once and rejects each kind of bad one with its own reason, changing nothing")
    func intake() throws {
        let registry = try registry()
        let coordinator = KeyAgreement.PrivateKey()
        let alice = NodeIdentity()
        let bob = NodeIdentity()
        let stranger = NodeIdentity()
        try registry.add(id: "alice", signingKey: alice.signing.publicKey, kxKey: alice.keyAgreement.publicKey)
        try registry.add(id: "bob", signingKey: bob.signing.publicKey, kxKey: bob.keyAgreement.publicKey)
        let intake = UpdateIntake(registry: registry)
        let plan = samplePlan()
        let kind = UInt8(Fedseg_V1_MessageKind.clientUpdate.rawValue)
        func seal(_ update: Fedseg_V1_ClientUpdate, from sender: borrowing KeyAgreement.PrivateKey, id: String, round: UInt64 = 7, kind: UInt8 = kind) throws -> [UInt8] {
            try Envelope.seal(try MessageCodec.encode(update), header: .init(kind: kind, round: round, clientID: id), sender: sender, recipient: coordinator.publicKey)
        }
        func rejection(_ bytes: [UInt8]) -> String? {
            do {
                _ = try intake.acceptClientUpdate(bytes, plan: plan, coordinator: coordinator)
                return nil
            } catch let rejection as UpdateIntake.Rejection {
                return rejection.reason
            } catch {
                return "other: \(error)"
            }
        }
        let good = try seal(sampleUpdate(for: plan), from: alice.keyAgreement, id: "alice")
        #expect(rejection(good) == nil)
        #expect(rejection(good) == "replay")
        #expect(rejection(try seal(sampleUpdate(for: plan), from: alice.keyAgreement, id: "alice")) == "replay")
        #expect(rejection(try seal(sampleUpdate(for: plan), from: stranger.keyAgreement, id: "mallory")) == "unknown_sender")
        #expect(rejection(try seal(sampleUpdate(for: plan), from: stranger.keyAgreement, id: "bob")) == "tampered")
        #expect(rejection(try seal(sampleUpdate(for: plan), from: bob.keyAgreement, id: "bob", round: 6)) == "wrong_round")
        #expect(rejection(try seal(sampleUpdate(for: plan), from: bob.keyAgreement, id: "bob", kind: 2)) == "wrong_kind")
        var outOfRange = sampleUpdate(for: plan)
        outOfRange.words[0] = .max
        #expect(rejection(try seal(outOfRange, from: bob.keyAgreement, id: "bob")) == "invalid")
        var tampered = try seal(sampleUpdate(for: plan), from: bob.keyAgreement, id: "bob")
        tampered[tampered.count - 3] ^= 0x40
        #expect(rejection(tampered) == "tampered")
        var strict = UpdateIntake(registry: registry)
        strict.limits.maximumMessageBytes = 64
        #expect(throws: UpdateIntake.Rejection.oversized(tampered.count)) {
            try strict.acceptClientUpdate(tampered, plan: plan, coordinator: coordinator)
        }
        #expect(rejection([1, 2, 3]) == "malformed")
        // None of the rejections recorded anything: bob can still send his update once.
        #expect(rejection(try seal(sampleUpdate(for: plan), from: bob.keyAgreement, id: "bob")) == nil)
        // Revocation applies to the next message.
        try registry.revoke(id: "bob")
        var next = plan
        next.round = 8
        let late = try Envelope.seal(try MessageCodec.encode(sampleUpdate(for: next)), header: .init(kind: kind, round: 8, clientID: "bob"), sender: bob.keyAgreement, recipient: coordinator.publicKey)
        #expect(throws: UpdateIntake.Rejection.revoked("bob")) { try intake.acceptClientUpdate(late, plan: next, coordinator: coordinator) }
    }
}
