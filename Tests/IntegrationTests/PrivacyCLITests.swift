import FedSegTestSupport
import Foundation
import Testing

@Suite("fedseg privacy epsilon and calibrate")
struct PrivacyCLITests {
    @Test("epsilon prints dp_accounting's value as JSON")
    func epsilon() throws {
        let result = try Executables.run("fedseg", [
            "privacy", "epsilon", "--noise-multiplier", "1.1", "--sampling-rate", "0.01", "--rounds", "1000",
            "--delta", "1e-5", "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let epsilon = try #require(object["epsilon"] as? Double)
        #expect(abs(epsilon - 1.7117701662429012) / 1.7117701662429012 < 1e-6)
        #expect(object["accountant"] as? String == "rdp")
    }

    @Test("calibrate round-trips through epsilon")
    func calibrate() throws {
        let result = try Executables.run("fedseg", ["privacy", "calibrate", "--epsilon", "4", "--delta", "1e-6", "--rounds", "10", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let z = try #require(object["noise_multiplier"] as? Double)
        let check = try Executables.run("fedseg", ["privacy", "epsilon", "--noise-multiplier", String(z), "--rounds", "10", "--delta", "1e-6", "--json"])
        let back = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        let epsilon = try #require(back["epsilon"] as? Double)
        #expect(epsilon <= 4 && epsilon > 3.99)
    }

    @Test("a sampling rate outside [0, 1] is a usage error")
    func badInput() throws {
        let result = try Executables.run("fedseg", ["privacy", "epsilon", "--noise-multiplier", "1", "--sampling-rate", "2", "--rounds", "1", "--delta", "1e-5"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("sampling rate"))
    }
}
