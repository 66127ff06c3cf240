import FedSegEmbedding
import FedSegTestSupport
import Foundation
import Testing

@Suite("MiniLM model files")
struct ModelFilesTests {
    @Test("the digest in code equals the one scripts/setup verifies")
    func digestMatchesSetup() throws {
        let file = Fixtures.repositoryRoot.appendingPathComponent("models/all-MiniLM-L6-v2.sha256")
        let line = try String(contentsOf: file, encoding: .utf8)
        #expect(line.split(separator: " ").first.map(String.init) == MiniLMModelFiles.expectedWeightsSHA256)
    }

    @Test("FEDSEG_CACHE moves the model directory; HOME is the default")
    func location() {
        let custom = MiniLMModelFiles.defaultLocation(environment: ["FEDSEG_CACHE": "/tmp/fs-cache", "HOME": "/home/u"])
        #expect(custom.directory.path == "/tmp/fs-cache/models/all-MiniLM-L6-v2")
        let home = MiniLMModelFiles.defaultLocation(environment: ["HOME": "/home/u"])
        #expect(home.directory.path == "/home/u/.cache/fedseg/models/all-MiniLM-L6-v2")
        #expect(home.weights.lastPathComponent == "model.safetensors")
    }

    @Test("missing files are listed")
    func missing() {
        let files = MiniLMModelFiles(directory: URL(fileURLWithPath: "/nonexistent/fedseg-model"))
        #expect(files.missingFiles == MiniLMModelFiles.requiredFiles)
    }
}
