import Foundation
import Synchronization
internal import CSodium

/// Client → coordinator messages: XChaCha20-Poly1305 under a key-exchange session key, with the
/// header as associated data, so a message cannot be moved to another client, round or kind.
///
/// Layout: "FSE1" | version u8 | kind u8 | round u64 LE | client-id length u8 | client id (UTF-8) |
/// nonce (24 random bytes) | ciphertext with 16-byte tag. The associated data is every byte
/// before the nonce. The key is the client's `tx` from `crypto_kx_client_session_keys` (the
/// coordinator's `rx` from `crypto_kx_server_session_keys`), derived once per peer (`SessionKey`).
/// See docs/PROTOCOL.md.
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

    /// The key one client's messages to the coordinator travel under: the client's `tx` from
    /// `crypto_kx_client_session_keys`, which is the coordinator's `rx` from
    /// `crypto_kx_server_session_keys`. Both sides derive it from long-term keys, so it is the
    /// same for every message between the pair: each side derives it once and keeps it
    /// (an X25519 exchange costs more than opening an update). Its bytes live in guarded memory.
    public final class SessionKey: Sendable {
        let bytes: SecureBytes

        init(bytes: consuming SecureBytes) { self.bytes = bytes }

        /// A client's key for messages to the coordinator whose public key is `coordinator`.
        public static func client(_ own: borrowing KeyAgreement.PrivateKey, to coordinator: KeyAgreement.PublicKey) throws -> SessionKey {
            guard let key = Envelope.derive(asClient: true, own: own, peer: coordinator) else { throw CryptoError.decryptionFailed }
            return SessionKey(bytes: key)
        }

        /// The coordinator's key for messages from the client whose public key is `client`.
        public static func coordinator(_ own: borrowing KeyAgreement.PrivateKey, from client: KeyAgreement.PublicKey) throws -> SessionKey {
            guard let key = Envelope.derive(asClient: false, own: own, peer: client) else { throw EnvelopeError.decryptionFailed }
            return SessionKey(bytes: key)
        }

        func withKey<R>(_ body: (UnsafePointer<UInt8>) throws -> R) rethrows -> R {
            try bytes.withUnsafeBytes { try body($0.bindMemory(to: UInt8.self).baseAddress!) }
        }
    }

    /// Encrypts `plaintext` from a client to the coordinator.
    public static func seal(
        _ plaintext: [UInt8], header: Header, sender: borrowing KeyAgreement.PrivateKey, recipient: KeyAgreement.PublicKey
    ) throws -> [UInt8] {
        try seal(plaintext, header: header, key: try SessionKey.client(sender, to: recipient))
    }

    /// Encrypts `plaintext` from a client to the coordinator under a derived session key.
    public static func seal(_ plaintext: [UInt8], header: Header, key: SessionKey) throws -> [UInt8] {
        Sodium.ensureInitialized()
        let associatedData = try header.encoded()
        var sealed = [UInt8]()
        sealed.reserveCapacity(associatedData.count + nonceLength + plaintext.count + tagLength)
        sealed.append(contentsOf: associatedData)
        sealed.append(contentsOf: repeatElement(0, count: nonceLength + plaintext.count + tagLength))
        var written: UInt64 = 0
        sealed.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            let nonce = base + associatedData.count
            randombytes_buf(nonce, nonceLength)
            key.withKey { k in
                _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
                    nonce + nonceLength, &written, plaintext, UInt64(plaintext.count), base, UInt64(associatedData.count), nil, nonce, k
                )
            }
        }
        precondition(Int(written) == plaintext.count + tagLength, "XChaCha20-Poly1305 wrote \(written) of \(plaintext.count + tagLength) bytes")
        return sealed
    }

    /// Authenticates and decrypts at the coordinator, given the claimed sender's public key.
    public static func open(
        _ bytes: [UInt8], recipient: borrowing KeyAgreement.PrivateKey, senderPublicKey: KeyAgreement.PublicKey,
        limit: Int = 1 << 24
    ) throws -> (header: Header, plaintext: [UInt8]) {
        let (header, headerEnd) = try peek(bytes, limit: limit)
        let key = try SessionKey.coordinator(recipient, from: senderPublicKey)
        return (header, try open(bytes, associatedDataLength: headerEnd, key: key))
    }

    /// Authenticates and decrypts under the claimed sender's session key, the header already
    /// parsed by `peek` (`associatedDataLength` is what it returned).
    public static func open(_ bytes: [UInt8], associatedDataLength headerEnd: Int, key: SessionKey) throws -> [UInt8] {
        guard headerEnd > 0, bytes.count >= headerEnd + nonceLength + tagLength else { throw EnvelopeError.truncated }
        // Header, nonce and ciphertext are read in place (an update's envelope is ~18 KB): no copies.
        let ciphertextStart = headerEnd + nonceLength
        let ciphertextLength = bytes.count - ciphertextStart
        var plaintext = [UInt8](repeating: 0, count: ciphertextLength - tagLength)
        var written: UInt64 = 0
        let result = key.withKey { k in
            bytes.withUnsafeBufferPointer { message in
                let base = message.baseAddress!
                return crypto_aead_xchacha20poly1305_ietf_decrypt(
                    &plaintext, &written, nil, base + ciphertextStart, UInt64(ciphertextLength), base, UInt64(headerEnd), base + headerEnd, k
                )
            }
        }
        guard result == 0 else { throw EnvelopeError.decryptionFailed }
        // The AEAD writes exactly ciphertext − tag bytes on success.
        precondition(Int(written) == plaintext.count, "XChaCha20-Poly1305 wrote \(written) of \(plaintext.count) bytes")
        return plaintext
    }

    /// The client → coordinator key: the client's `tx`, which is the coordinator's `rx`.
    fileprivate static func derive(
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

extension Envelope {
    /// The coordinator's session keys, one per client public key, derived on first use: what
    /// makes opening an update an AEAD and a dictionary look-up rather than an X25519 exchange.
    /// Keyed by the public key, so a client that enrols again with a new key gets a new entry;
    /// when `capacity` entries are held the cache starts afresh (a bound, not a policy: every
    /// entry can be derived again).
    public final class SessionKeyCache: Sendable {
        private let entries = Mutex<[KeyAgreement.PublicKey: SessionKey]>([:])
        public let capacity: Int

        public init(capacity: Int = 1 << 20) {
            precondition(capacity > 0, "a cache holds at least one key")
            self.capacity = capacity
        }

        /// The key for messages from `client` to the holder of `own`.
        public func coordinatorKey(_ own: borrowing KeyAgreement.PrivateKey, from client: KeyAgreement.PublicKey) throws -> SessionKey {
            if let key = entries.withLock({ $0[client] }) { return key }
            // Derived outside the lock: concurrent first messages from two clients do not wait on
            // each other's exchange.
            let key = try SessionKey.coordinator(own, from: client)
            return entries.withLock { entries in
                if let raced = entries[client] { return raced }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
                entries[client] = key
                return key
            }
        }
    }
}
