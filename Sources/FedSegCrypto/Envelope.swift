import Foundation
internal import CSodium

/// Client → coordinator messages: XChaCha20-Poly1305 under a key-exchange session key, with the
/// header as associated data, so a message cannot be moved to another client, round or kind.
///
/// Layout: "FSE1" | version u8 | kind u8 | round u64 LE | client-id length u8 | client id (UTF-8) |
/// nonce (24 random bytes) | ciphertext with 16-byte tag. The associated data is every byte
/// before the nonce. The key is the client's `tx` from `crypto_kx_client_session_keys` (the
/// coordinator's `rx` from `crypto_kx_server_session_keys`). See docs/PROTOCOL.md.
public enum Envelope {
    public static let magic: [UInt8] = Array("FSE1".utf8)
    public static let version: UInt8 = 1
    public static let nonceLength = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    public static let tagLength = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
    public static let maximumClientIDLength = 64

    public struct Header: Sendable, Equatable {
        public var kind: UInt8
        public var round: UInt64
        public var clientID: String

        public init(kind: UInt8, round: UInt64, clientID: String) {
            self.kind = kind
            self.round = round
            self.clientID = clientID
        }

        func encoded() throws -> [UInt8] {
            let id = Array(clientID.utf8)
            guard !id.isEmpty, id.count <= Envelope.maximumClientIDLength else { throw EnvelopeError.badClientID }
            var bytes = Envelope.magic + [Envelope.version, kind]
            withUnsafeBytes(of: round.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(UInt8(id.count))
            return bytes + id
        }
    }

    public enum EnvelopeError: Error, Equatable, CustomStringConvertible {
        case truncated
        case badMagic
        case unsupportedVersion(UInt8)
        case badClientID
        case oversized(size: Int, limit: Int)
        case decryptionFailed

        public var description: String {
            switch self {
            case .truncated: "envelope is truncated"
            case .badMagic: "not a FedSeg envelope"
            case .unsupportedVersion(let v): "envelope version \(v) is not supported"
            case .badClientID: "client id must be 1 to \(Envelope.maximumClientIDLength) bytes of UTF-8"
            case .oversized(let size, let limit): "envelope of \(size) bytes exceeds the limit of \(limit)"
            case .decryptionFailed: "envelope failed authentication (tampered, wrong key, or moved to another client, round or kind)"
            }
        }
    }

    /// Parses the header without decrypting: who claims to send what. Nothing in it is trusted
    /// until `open` authenticates it.
    public static func peek(_ bytes: [UInt8], limit: Int = 1 << 24) throws -> (header: Header, associatedDataLength: Int) {
        guard bytes.count <= limit else { throw EnvelopeError.oversized(size: bytes.count, limit: limit) }
        guard bytes.count >= magic.count + 11 else { throw EnvelopeError.truncated }
        guard Array(bytes[0..<4]) == magic else { throw EnvelopeError.badMagic }
        guard bytes[4] == version else { throw EnvelopeError.unsupportedVersion(bytes[4]) }
        let kind = bytes[5]
        var round: UInt64 = 0
        for i in 0..<8 { round |= UInt64(bytes[6 + i]) << (8 * UInt64(i)) }
        let idLength = Int(bytes[14])
        guard idLength >= 1, idLength <= maximumClientIDLength else { throw EnvelopeError.badClientID }
        let headerEnd = 15 + idLength
        guard bytes.count >= headerEnd + nonceLength + tagLength else { throw EnvelopeError.truncated }
        guard let clientID = String(validating: bytes[15..<headerEnd], as: UTF8.self) else { throw EnvelopeError.badClientID }
        return (Header(kind: kind, round: round, clientID: clientID), headerEnd)
    }

    /// Encrypts `plaintext` from a client to the coordinator.
    public static func seal(
        _ plaintext: [UInt8], header: Header, sender: borrowing KeyAgreement.PrivateKey, recipient: KeyAgreement.PublicKey
    ) throws -> [UInt8] {
        Sodium.ensureInitialized()
        let associatedData = try header.encoded()
        guard let key = sessionKey(asClient: true, own: sender, peer: recipient) else { throw CryptoError.decryptionFailed }
        var nonce = [UInt8](repeating: 0, count: nonceLength)
        randombytes_buf(&nonce, nonceLength)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + tagLength)
        var written: UInt64 = 0
        key.withUnsafeBytes { k in
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                &ciphertext, &written, plaintext, UInt64(plaintext.count), associatedData, UInt64(associatedData.count), nil,
                nonce, k.bindMemory(to: UInt8.self).baseAddress!
            )
        }
        return associatedData + nonce + ciphertext[0..<Int(written)]
    }

    /// Authenticates and decrypts at the coordinator, given the claimed sender's public key.
    public static func open(
        _ bytes: [UInt8], recipient: borrowing KeyAgreement.PrivateKey, senderPublicKey: KeyAgreement.PublicKey,
        limit: Int = 1 << 24
    ) throws -> (header: Header, plaintext: [UInt8]) {
        let (header, headerEnd) = try peek(bytes, limit: limit)
        guard let key = sessionKey(asClient: false, own: recipient, peer: senderPublicKey) else { throw EnvelopeError.decryptionFailed }
        // Header, nonce and ciphertext are read in place (an update's envelope is ~18 KB): no copies.
        let ciphertextStart = headerEnd + nonceLength
        let ciphertextLength = bytes.count - ciphertextStart
        var plaintext = [UInt8](repeating: 0, count: ciphertextLength - tagLength)
        var written: UInt64 = 0
        let result = key.withUnsafeBytes { k in
            bytes.withUnsafeBufferPointer { message in
                let base = message.baseAddress!
                return crypto_aead_xchacha20poly1305_ietf_decrypt(
                    &plaintext, &written, nil, base + ciphertextStart, UInt64(ciphertextLength), base, UInt64(headerEnd),
                    base + headerEnd, k.bindMemory(to: UInt8.self).baseAddress!
                )
            }
        }
        guard result == 0 else { throw EnvelopeError.decryptionFailed }
        // The AEAD writes exactly ciphertext − tag bytes on success.
        precondition(Int(written) == plaintext.count, "XChaCha20-Poly1305 wrote \(written) of \(plaintext.count) bytes")
        return (header, plaintext)
    }

    /// The client → coordinator key: the client's `tx`, which is the coordinator's `rx`.
    private static func sessionKey(
        asClient: Bool, own: borrowing KeyAgreement.PrivateKey, peer: KeyAgreement.PublicKey
    ) -> SecureBytes? {
        let upstream = SecureBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let downstream = SecureBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let status = upstream.withUnsafeMutableBytes { up in
            downstream.withUnsafeMutableBytes { down in
                own.withSecret { secret -> Int32 in
                    let upKey = up.bindMemory(to: UInt8.self).baseAddress!
                    let downKey = down.bindMemory(to: UInt8.self).baseAddress!
                    return asClient
                        ? crypto_kx_client_session_keys(downKey, upKey, own.publicKey.bytes, secret, peer.bytes)
                        : crypto_kx_server_session_keys(upKey, downKey, own.publicKey.bytes, secret, peer.bytes)
                }
            }
        }
        guard status == 0 else { return nil }
        return upstream
    }
}
