import FedSegProtocol
import Foundation
import Testing

@Suite("State directory lock")
struct StateLockTests {
    @Test("a second holder is refused, naming the first and what it does; the lock is free again once the first is gone")
    func exclusive() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("state-lock-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var first: StateLock? = try StateLock(stateDirectory: directory.path, fileName: StateLock.nodeFile, purpose: "fedseg-node serve")
        #expect(first?.path.hasSuffix("/node.lock") == true)
        do {
            _ = try StateLock(stateDirectory: directory.path, fileName: StateLock.nodeFile, purpose: "second")
            Issue.record("a second lock on the same directory was granted")
        } catch {
            #expect(error.description == "\(directory.path) is in use by another process (pid \(getpid()): fedseg-node serve); stop it first, or use another --state-dir")
        }
        // Another lock file in the same directory is another lock.
        _ = try StateLock(stateDirectory: directory.path, fileName: StateLock.coordinatorFile, purpose: "coordinator serve")
        first = nil
        #expect(throws: Never.self) { _ = try StateLock(stateDirectory: directory.path, fileName: StateLock.nodeFile, purpose: "third") }
    }
}
