import FedSegCrypto
import Foundation
import Testing

@Suite("SHA-256 through libsodium")
struct SHA256Tests {
    @Test("FIPS 180-2 test vectors")
    func vectors() {
        #expect(SHA256.hash(Data("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash(Data()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256.hash(long).hex == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("streaming a file in chunks equals hashing it whole")
    func fileHash() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-sha-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        let bytes = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try bytes.write(to: url)
        #expect(try SHA256.hash(fileAt: url) == SHA256.hash(bytes))
    }

    @Test("libsodium reports a version")
    func version() {
        #expect(Sodium.version.split(separator: ".").count >= 2)
    }
}
