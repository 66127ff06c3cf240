import FedSegTestSupport
import Foundation
import Testing

@Suite("Bundled fixtures")
struct FixturesTests {
    @Test("every reference fixture is present and parses as JSON", arguments: [
        "minilm_reference.json", "accountant_reference.json", "kmeans_reference.json",
    ])
    func bundled(name: String) throws {
        let object = try JSONSerialization.jsonObject(with: Fixtures.data(name))
        #expect(object is [String: Any])
    }

    @Test("an unknown fixture is a clear error")
    func missing() {
        #expect(throws: Fixtures.Failure.self) { try Fixtures.data("nope.json") }
    }
}
