import Foundation
internal import CSodium
#if canImport(Glibc)
import Glibc
#endif

/// A node's long-term keys: Ed25519 for signatures, X25519 for encryption. Stored as one 64-byte
/// file (signing seed ‖ key-exchange seed) with mode 0600; a file readable by anyone else is
/// refused. The secret bytes go straight from the file into guarded memory.
public struct NodeIdentity: ~Copyable, Sendable {
    public let signing: Signing.PrivateKey
    public let keyAgreement: KeyAgreement.PrivateKey
    private let keyAgreementSeed: SecureBytes

    public init() {
        let seed = SecureBytes(count: Int(crypto_kx_SEEDBYTES))
        seed.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        self.init(signing: Signing.PrivateKey(), keyAgreementSeed: seed)
    }

    private init(signing: consuming Signing.PrivateKey, keyAgreementSeed: consuming SecureBytes) {
        self.keyAgreement = try! KeyAgreement.PrivateKey(seed: keyAgreementSeed)  // seed length fixed above
        self.signing = signing
        self.keyAgreementSeed = keyAgreementSeed
    }

    public static let fileLength = Int(crypto_sign_SEEDBYTES) + Int(crypto_kx_SEEDBYTES)

    /// Writes the key file; refuses to overwrite an existing one.
    public func save(to path: String) throws {
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw CryptoError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let seed = signing.seed()
        var ok = seed.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) == $0.count }
        ok = ok && keyAgreementSeed.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) == $0.count }
        guard ok, fsync(descriptor) == 0 else { throw CryptoError.io("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// Reads a key file, refusing one that others can read or write.
    public static func load(from path: String) throws -> NodeIdentity {
        var info = stat()
        guard stat(path, &info) == 0 else { throw CryptoError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else { throw CryptoError.keyFilePermissions(path: path, mode: String(mode, radix: 8)) }
        guard Int(info.st_size) == fileLength else { throw CryptoError.keyFileMalformed("\(path) has \(info.st_size) bytes, expected \(fileLength)") }
        let descriptor = Glibc.open(path, O_RDONLY)
        guard descriptor >= 0 else { throw CryptoError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let signingSeed = SecureBytes(count: Int(crypto_sign_SEEDBYTES))
        let kxSeed = SecureBytes(count: Int(crypto_kx_SEEDBYTES))
        var ok = signingSeed.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) == $0.count }
        ok = ok && kxSeed.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) == $0.count }
        guard ok else { throw CryptoError.keyFileMalformed("short read from \(path)") }
        return NodeIdentity(signing: try Signing.PrivateKey(seed: signingSeed), keyAgreementSeed: kxSeed)
    }
}
