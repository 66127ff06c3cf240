import Foundation
internal import CSodium

/// Errors of the crypto layer, each distinct so callers can log and count them.
public enum CryptoError: Error, Equatable, CustomStringConvertible {
    case invalidKeyLength(expected: Int, found: Int)
    case verificationFailed
    case decryptionFailed
    case keyFilePermissions(path: String, mode: String)
    case keyFileMalformed(String)
    case io(String)

    public var description: String {
        switch self {
        case .invalidKeyLength(let expected, let found): "key has \(found) bytes, expected \(expected)"
        case .verificationFailed: "signature verification failed"
        case .decryptionFailed: "authenticated decryption failed (wrong key, tampered bytes or associated data)"
        case .keyFilePermissions(let path, let mode): "\(path) has mode \(mode); key files must be readable by their owner only (chmod 600)"
        case .keyFileMalformed(let why): "malformed key file: \(why)"
        case .io(let why): why
        }
    }
}

/// Ed25519 signing keys (libsodium `crypto_sign`).
public enum Signing {
    public struct PublicKey: Sendable, Hashable, Codable {
        public static let byteCount = Int(crypto_sign_PUBLICKEYBYTES)
        public let bytes: [UInt8]

        public init(bytes: [UInt8]) throws {
            guard bytes.count == Self.byteCount else { throw CryptoError.invalidKeyLength(expected: Self.byteCount, found: bytes.count) }
            self.bytes = bytes
        }

        /// Checks a detached signature over `message`.
        public func isValidSignature(_ signature: [UInt8], for message: some ContiguousBytes) -> Bool {
            guard signature.count == Int(crypto_sign_BYTES) else { return false }
            return message.withUnsafeBytes { m in
                crypto_sign_verify_detached(signature, m.bindMemory(to: UInt8.self).baseAddress, UInt64(m.count), bytes) == 0
            }
        }

        public var hex: String { bytes.hexString }
    }

    public struct PrivateKey: ~Copyable, Sendable {
        let secret: SecureBytes
        public let publicKey: PublicKey

        /// A fresh key pair from the OS CSPRNG.
        public init() {
            Sodium.ensureInitialized()
            var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
            let secret = SecureBytes(count: Int(crypto_sign_SECRETKEYBYTES))
            secret.withUnsafeMutableBytes { _ = crypto_sign_keypair(&publicBytes, $0.bindMemory(to: UInt8.self).baseAddress!) }
            self.secret = secret
            self.publicKey = try! PublicKey(bytes: publicBytes)
        }

        /// From the 32-byte seed (the form stored in key files).
        public init(seed: borrowing SecureBytes) throws {
            guard seed.count == Int(crypto_sign_SEEDBYTES) else {
                throw CryptoError.invalidKeyLength(expected: Int(crypto_sign_SEEDBYTES), found: seed.count)
            }
            var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
            let secret = SecureBytes(count: Int(crypto_sign_SECRETKEYBYTES))
            seed.withUnsafeBytes { s in
                secret.withUnsafeMutableBytes {
                    _ = crypto_sign_seed_keypair(&publicBytes, $0.bindMemory(to: UInt8.self).baseAddress!, s.bindMemory(to: UInt8.self).baseAddress!)
                }
            }
            let publicKey = try! PublicKey(bytes: publicBytes)  // libsodium wrote exactly byteCount bytes
            self.secret = secret
            self.publicKey = publicKey
        }

        /// The 32-byte seed (first half of libsodium's secret key).
        public func seed() -> SecureBytes {
            secret.withUnsafeBytes { SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<Int(crypto_sign_SEEDBYTES)])) }
        }

        public func signature(for message: some ContiguousBytes) -> [UInt8] {
            var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
            message.withUnsafeBytes { m in
                secret.withUnsafeBytes { s in
                    _ = crypto_sign_detached(
                        &signature, nil, m.bindMemory(to: UInt8.self).baseAddress, UInt64(m.count), s.bindMemory(to: UInt8.self).baseAddress!
                    )
                }
            }
            return signature
        }
    }
}

/// X25519 key agreement keys (libsodium `crypto_kx`).
public enum KeyAgreement {
    public struct PublicKey: Sendable, Hashable, Codable {
        public static let byteCount = Int(crypto_kx_PUBLICKEYBYTES)
        public let bytes: [UInt8]

        public init(bytes: [UInt8]) throws {
            guard bytes.count == Self.byteCount else { throw CryptoError.invalidKeyLength(expected: Self.byteCount, found: bytes.count) }
            self.bytes = bytes
        }

        public var hex: String { bytes.hexString }
    }

    public struct PrivateKey: ~Copyable, Sendable {
        let secret: SecureBytes
        public let publicKey: PublicKey

        public init() {
            Sodium.ensureInitialized()
            var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
            let secret = SecureBytes(count: Int(crypto_kx_SECRETKEYBYTES))
            secret.withUnsafeMutableBytes { _ = crypto_kx_keypair(&publicBytes, $0.bindMemory(to: UInt8.self).baseAddress!) }
            self.secret = secret
            self.publicKey = try! PublicKey(bytes: publicBytes)
        }

        public init(seed: borrowing SecureBytes) throws {
            guard seed.count == Int(crypto_kx_SEEDBYTES) else {
                throw CryptoError.invalidKeyLength(expected: Int(crypto_kx_SEEDBYTES), found: seed.count)
            }
            var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
            let secret = SecureBytes(count: Int(crypto_kx_SECRETKEYBYTES))
            seed.withUnsafeBytes { s in
                secret.withUnsafeMutableBytes {
                    _ = crypto_kx_seed_keypair(&publicBytes, $0.bindMemory(to: UInt8.self).baseAddress!, s.bindMemory(to: UInt8.self).baseAddress!)
                }
            }
            let publicKey = try! PublicKey(bytes: publicBytes)  // libsodium wrote exactly byteCount bytes
            self.secret = secret
            self.publicKey = publicKey
        }

        /// A 32-byte key this key pair and `peer` derive alike (crypto_kx session keys; the key pair
        /// with the smaller public key takes the client role): the seed of a pairwise mask.
        public func sharedKey(with peer: PublicKey) -> SecureBytes? {
            let receive = SecureBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
            let transmit = SecureBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
            let initiator = publicKey.bytes.lexicographicallyPrecedes(peer.bytes)
            let status = receive.withUnsafeMutableBytes { rx in
                transmit.withUnsafeMutableBytes { tx in
                    withSecret { secret -> Int32 in
                        let rxKey = rx.bindMemory(to: UInt8.self).baseAddress!
                        let txKey = tx.bindMemory(to: UInt8.self).baseAddress!
                        return initiator
                            ? crypto_kx_client_session_keys(rxKey, txKey, publicKey.bytes, secret, peer.bytes)
                            : crypto_kx_server_session_keys(rxKey, txKey, publicKey.bytes, secret, peer.bytes)
                    }
                }
            }
            guard status == 0 else { return nil }
            // The initiator's transmit key is the responder's receive key.
            return initiator ? transmit : receive
        }

        /// The secret scalar (the form stored in key files; crypto_kx secret keys are seeds' hashes,
        /// so files keep the seed they were made from).
        func withSecret<R>(_ body: (UnsafePointer<UInt8>) throws -> R) rethrows -> R {
            try secret.withUnsafeBytes { try body($0.bindMemory(to: UInt8.self).baseAddress!) }
        }
    }
}
