@testable import FedSegCrypto
import Foundation
import Testing

// Serialized: `manySecrets` spends the whole process-wide guarded budget on purpose, and
// `pooledSecrets` needs a fresh slab from it.
@Suite("Signatures, envelopes and key files", .serialized)
struct EnvelopeTests {
    @Test("a signature verifies, and fails on any other message or key")
    func signatures() {
        let key = Signing.PrivateKey()
        let other = Signing.PrivateKey()
        let message = Data("round plan 7".utf8)
        let signature = key.signature(for: message)
        #expect(key.publicKey.isValidSignature(signature, for: message))
        #expect(!key.publicKey.isValidSignature(signature, for: Data("round plan 8".utf8)))
        #expect(!other.publicKey.isValidSignature(signature, for: message))
        var forged = signature
        forged[0] ^= 1
        #expect(!key.publicKey.isValidSignature(forged, for: message))
        #expect(!key.publicKey.isValidSignature(Array(signature.prefix(10)), for: message))
    }

    @Test("seal then open returns the plaintext and the authenticated header")
    func roundTrip() throws {
        let client = KeyAgreement.PrivateKey()
        let coordinator = KeyAgreement.PrivateKey()
        let plaintext = Array("per-cluster sums and counts".utf8)
        let header = Envelope.Header(kind: 2, round: 42, clientID: "client-007")
        let sealed = try Envelope.seal(plaintext, header: header, sender: client, recipient: coordinator.publicKey)
        let opened = try Envelope.open(sealed, recipient: coordinator, senderPublicKey: client.publicKey)
        #expect(opened.plaintext == plaintext)
        #expect(opened.header == header)
        // Random nonces: the same message seals differently.
        #expect(try Envelope.seal(plaintext, header: header, sender: client, recipient: coordinator.publicKey) != sealed)
    }

    @Test("flipping any bit of any byte is rejected")
    func everyByte() throws {
        let client = KeyAgreement.PrivateKey()
        let coordinator = KeyAgreement.PrivateKey()
        let sealed = try Envelope.seal(Array(repeating: 7, count: 40), header: .init(kind: 1, round: 3, clientID: "c1"), sender: client, recipient: coordinator.publicKey)
        for index in sealed.indices {
            for bit in [0, 3, 7] {
                var tampered = sealed
                tampered[index] ^= UInt8(1 << bit)
                #expect(throws: (any Error).self, "byte \(index) bit \(bit)") {
                    try Envelope.open(tampered, recipient: coordinator, senderPublicKey: client.publicKey)
                }
            }
        }
    }

    @Test("moving a message to another round, kind or client, or the wrong keys, fails authentication")
    func binding() throws {
        let client = KeyAgreement.PrivateKey()
        let mallory = KeyAgreement.PrivateKey()
        let coordinator = KeyAgreement.PrivateKey()
        let sealed = try Envelope.seal([1, 2, 3], header: .init(kind: 1, round: 9, clientID: "alice"), sender: client, recipient: coordinator.publicKey)
        // Re-encode the header with another round / kind / id but keep the ciphertext.
        let (_, headerEnd) = try Envelope.peek(sealed)
        let body = Array(sealed[headerEnd...])
        func rebuilt(kind: UInt8, round: UInt64, id: String) -> [UInt8] {
            var bytes = Envelope.magic + [Envelope.version, kind]
            withUnsafeBytes(of: round.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(UInt8(id.utf8.count))
            return bytes + Array(id.utf8) + body
        }
        for moved in [rebuilt(kind: 1, round: 10, id: "alice"), rebuilt(kind: 2, round: 9, id: "alice"), rebuilt(kind: 1, round: 9, id: "bob")] {
            #expect(throws: Envelope.EnvelopeError.decryptionFailed) {
                try Envelope.open(moved, recipient: coordinator, senderPublicKey: client.publicKey)
            }
        }
        #expect(throws: Envelope.EnvelopeError.decryptionFailed) {
            try Envelope.open(sealed, recipient: coordinator, senderPublicKey: mallory.publicKey)
        }
        #expect(throws: Envelope.EnvelopeError.decryptionFailed) {
            try Envelope.open(sealed, recipient: mallory, senderPublicKey: client.publicKey)
        }
    }

    @Test("malformed envelopes get specific errors")
    func malformed() throws {
        let client = KeyAgreement.PrivateKey()
        let coordinator = KeyAgreement.PrivateKey()
        let sealed = try Envelope.seal([1], header: .init(kind: 1, round: 1, clientID: "c"), sender: client, recipient: coordinator.publicKey)
        #expect(throws: Envelope.EnvelopeError.truncated) { try Envelope.peek(Array(sealed.prefix(20))) }
        #expect(throws: Envelope.EnvelopeError.badMagic) { try Envelope.peek([0, 0, 0, 0] + Array(sealed.dropFirst(4))) }
        var version = sealed
        version[4] = 9
        #expect(throws: Envelope.EnvelopeError.unsupportedVersion(9)) { try Envelope.peek(version) }
        #expect(throws: Envelope.EnvelopeError.oversized(size: sealed.count, limit: 10)) { try Envelope.peek(sealed, limit: 10) }
        #expect(throws: Envelope.EnvelopeError.badClientID) {
            try Envelope.seal([1], header: .init(kind: 1, round: 1, clientID: String(repeating: "x", count: 65)), sender: client, recipient: coordinator.publicKey)
        }
    }

    @Test("key files: owner-only, round-trip, never overwritten, refused when readable by others")
    func keyFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("node.key").path
        let identity = NodeIdentity()
        try identity.save(to: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let loaded = try NodeIdentity.load(from: path)
        #expect(loaded.signing.publicKey == identity.signing.publicKey)
        #expect(loaded.keyAgreement.publicKey == identity.keyAgreement.publicKey)
        #expect(throws: CryptoError.self) { try NodeIdentity().save(to: path) }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect(throws: CryptoError.keyFilePermissions(path: path, mode: "644")) { _ = try NodeIdentity.load(from: path) }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path + ".short"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path + ".short")
        #expect(throws: CryptoError.self) { _ = try NodeIdentity.load(from: path + ".short") }
    }

    final class Box { let bytes: SecureBytes; init(_ b: consuming SecureBytes) { bytes = b } }

    @Test("past the guarded limit long secrets live in ordinary memory, all usable, and guarding resumes once they are released")
    func manySecrets() throws {
        // Longer than an arena slot, so each takes its own sodium_malloc.
        let long = SecretArena.slotBytes + 36
        var boxes: [Box] = []
        for i in 0..<(SecureBytes.guardedLimit + 100) { boxes.append(Box(SecureBytes(copying: [UInt8(i & 0xFF)] + [UInt8](repeating: 7, count: long - 1)))) }
        let first = boxes[0].bytes.isGuarded
        let last = boxes[SecureBytes.guardedLimit + 99].bytes.isGuarded
        #expect(first)
        #expect(!last, "past the mapping limit the bytes are no longer guarded")
        for (i, box) in boxes.enumerated() {
            let bytes = box.bytes.withUnsafeBytes { Array($0) }
            #expect(bytes == [UInt8(i & 0xFF)] + [UInt8](repeating: 7, count: long - 1))
        }
        boxes.removeAll()
        let again = SecureBytes(count: long).isGuarded
        #expect(again, "guarded again once released")
    }

    @Test("short secrets share pooled guarded slabs: thousands at once are all guarded and keep their own bytes; released slots come back zeroed and are reused")
    func pooledSecrets() throws {
        let count = SecureBytes.guardedLimit + 100  // more than the mapping budget allows one by one
        var boxes: [Box] = []
        for i in 0..<count { boxes.append(Box(SecureBytes(copying: [UInt8(i & 0xFF), UInt8((i >> 8) & 0xFF), 7]))) }
        #expect(boxes.allSatisfy { $0.bytes.isGuarded }, "short secrets stay guarded well past the per-allocation limit")
        for (i, box) in boxes.enumerated() {
            #expect(box.bytes.withUnsafeBytes { Array($0) } == [UInt8(i & 0xFF), UInt8((i >> 8) & 0xFF), 7])
        }
        let slabs = SecretArena.shared.slabCount
        #expect(slabs >= (count + SecretArena.slotsPerSlab - 1) / SecretArena.slotsPerSlab)
        boxes.removeAll()
        for _ in 0..<count { boxes.append(Box(SecureBytes(count: SecretArena.slotBytes))) }
        // Other suites make a few secrets meanwhile: at most one more slab, not another few.
        #expect(SecretArena.shared.slabCount <= slabs + 1, "released slots are reused")

        // A slot is wiped when it is given back, before anyone can take it again.
        let arena = SecretArena()
        let slot = try #require(arena.take())
        slot.initializeMemory(as: UInt8.self, repeating: 0xAB, count: SecretArena.slotBytes)
        arena.give(slot)
        let again = try #require(arena.take())
        #expect(again == slot, "the pool hands the last slot back first")
        #expect(UnsafeRawBufferPointer(start: again, count: SecretArena.slotBytes).allSatisfy { $0 == 0 })
        arena.give(again)
    }

    @Test("secure bytes compare in constant time and by value")
    func secureBytes() {
        let a = SecureBytes(copying: [1, 2, 3])
        let b = SecureBytes(copying: [1, 2, 3])
        let c = SecureBytes(copying: [1, 2, 4])
        let same = a.isEqual(to: b)
        let different = a.isEqual(to: c)
        #expect(same)
        #expect(!different)
        #expect(constantTimeEqual(Data("token".utf8), Data("token".utf8)))
        #expect(!constantTimeEqual(Data("token".utf8), Data("tokem".utf8)))
        #expect(!constantTimeEqual(Data("token".utf8), Data("token!".utf8)))
    }
}
