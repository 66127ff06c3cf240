import FedSegClient
import FedSegCrypto
import FedSegEmbedding
import FedSegMath
import FedSegProtocol
import FedSegRecommend
import Foundation
import SwiftProtobuf
import Testing

@testable import FedSegNode

@Suite("fedseg-node state and data")
struct NodeTests {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fedseg-node-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func write(_ users: [Dataset.User], items: [Dataset.Item], to directory: URL) throws {
        try Dataset(users: users, items: items).write(to: directory)
    }

    let items = [
        Dataset.Item(item: "b1", title: "Dragons of the north", text: "an epic fantasy quest", tags: ["fantasy"]),
        Dataset.Item(item: "b2", title: "Sourdough at home", text: "bread and baking", tags: ["cooking"]),
    ]

    @Test("a node's profiles are the simulator's formula: own text plus liked items, normalised; empty users are left out")
    func profiles() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try write([
            .init(user: "a", texts: ["I love baking bread"], items: ["b2"]),
            .init(user: "b", texts: [], items: ["b1", "unknown"]),
            .init(user: "c", texts: [], items: ["unknown"]),
        ], items: items, to: directory)
        let embedder = HashingEmbedder(dimension: 64)
        let loaded = try NodeData.load(directory: directory, embedder: embedder)
        #expect(loaded.data.userIDs == ["a", "b"] && loaded.skipped == 1)
        let itemVectors = try embedder.embed(items.map(UserProfiles.itemText))
        var expected = try embedder.embed(["I love baking bread"]).row(0)
        BLAS.axpy(1, x: itemVectors.row(1), y: &expected)
        var matrix = Matrix(rows: 1, cols: 64, storage: expected)
        matrix.normalizeRows()
        for (got, want) in zip(loaded.data.points.row(0), matrix.row(0)) { #expect(abs(got - want) < 1e-6) }
        // User b: the one known item's vector alone, normalised.
        var onlyItem = Matrix(rows: 1, cols: 64, storage: itemVectors.row(0))
        onlyItem.normalizeRows()
        for (got, want) in zip(loaded.data.points.row(1), onlyItem.row(0)) { #expect(abs(got - want) < 1e-6) }
    }

    @Test("validation users hold out a seeded fifth of their known items (at least one); users with fewer than three are left out")
    func validationUsers() throws {
        let embedder = HashingEmbedder(dimension: 32)
        let ids = (0..<12).map { "i\($0)" }
        let itemVectors = try embedder.embed(ids)
        let itemRow = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        let items = [Array(ids.prefix(10)), ["i0", "i1"], ["i2", "i3", "i4", "unknown"]]
        let users = UserProfiles.validationUsers(
            hasText: [false, false, false], items: items, textVectors: Matrix(rows: 3, cols: 32), itemVectors: itemVectors, itemRow: itemRow,
            catalogIndex: itemRow
        )
        #expect(users.count == 2, "the user with two items is left out")
        #expect(users[0].heldOut.count == 2 && users[0].kept.count == 8)
        #expect(users[0].heldOut.isDisjoint(with: users[0].kept) && users[0].heldOut.union(users[0].kept) == Set(0..<10))
        #expect(users[1].heldOut.count == 1 && users[1].kept.count == 2, "three known items: one held out; unknown items do not count")
        // The profile is rebuilt from the kept items only.
        var expected = [Float](repeating: 0, count: 32)
        for item in users[1].kept { BLAS.axpy(1, x: itemVectors.row(item), y: &expected) }
        var matrix = Matrix(rows: 1, cols: 32, storage: expected)
        matrix.normalizeRows()
        for (got, want) in zip(users[1].vector, matrix.row(0)) { #expect(abs(got - want) < 1e-6) }
        let again = UserProfiles.validationUsers(
            hasText: [false, false, false], items: items, textVectors: Matrix(rows: 3, cols: 32), itemVectors: itemVectors, itemRow: itemRow,
            catalogIndex: itemRow
        )
        #expect(again.map(\.heldOut) == users.map(\.heldOut), "seeded: the same pick every time")
    }

    @Test("the node keeps the blend it chose (content and global weights) across reopening; cleared weights are removed")
    func rerankSettings() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var settings = try NodeStore(directory: directory).settings()
        #expect(settings.rerankBlend == nil && settings.rerankGlobalWeight == nil)
        settings.rerankBlend = 0.7
        settings.rerankGlobalWeight = 0.25
        try NodeStore(directory: directory).save(settings)
        let reopened = try NodeStore(directory: directory).settings()
        #expect(reopened.rerankBlend == 0.7 && reopened.rerankGlobalWeight == 0.25)
        settings.rerankGlobalWeight = nil
        try NodeStore(directory: directory).save(settings)
        #expect(try NodeStore(directory: directory).settings().rerankGlobalWeight == nil)
    }

    @Test("a changed data file changes the version (so serve reloads); duplicate user ids are refused by name")
    func reloadAndDuplicates() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try write([.init(user: "a", texts: ["x"], items: [])], items: items, to: directory)
        let before = NodeData.filesVersion(directory)
        #expect(NodeData.filesVersion(directory) == before)
        try write([.init(user: "a", texts: ["x"], items: []), .init(user: "b", texts: ["y"], items: [])], items: items, to: directory)
        #expect(NodeData.filesVersion(directory) != before)
        try write([.init(user: "a", texts: ["x"], items: []), .init(user: "a", texts: ["y"], items: [])], items: items, to: directory)
        #expect(throws: NodeData.Failure.self) { try NodeData.load(directory: directory, embedder: HashingEmbedder(dimension: 16)) }
        do {
            _ = try NodeData.load(directory: directory, embedder: HashingEmbedder(dimension: 16))
        } catch {
            #expect("\(error)".contains("user a appears more than once"))
        }
        try "{not json\n".write(to: directory.appendingPathComponent("users.jsonl"), atomically: true, encoding: .utf8)
        #expect(throws: NodeData.Failure.self) { try NodeData.load(directory: directory, embedder: HashingEmbedder(dimension: 16)) }
    }

    @Test("init makes an owner-only key and refuses to run twice; commands name the next step when not initialised or enrolled")
    func stateDirectory() async throws {
        let directory = try temporaryDirectory().appendingPathComponent("state", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: directory.deletingLastPathComponent()) }
        #expect(throws: NodeHome.Failure.notInitialized(directory.path)) { try NodeHome(directory: directory) }
        let made = try NodeHome.initialize(directory: directory)
        #expect(made.signingKey.count == 64 && made.fingerprint.split(separator: ":").count == 8)
        let mode = try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(ClientNode.keyFile).path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(throws: NodeHome.Failure.alreadyInitialized(directory.path)) { try NodeHome.initialize(directory: directory) }
        let home = try NodeHome(directory: directory)
        await #expect(throws: NodeHome.Failure.notEnrolled(directory.path)) { try await home.segments() }
        let status = try await home.status()
        #expect(!status.enrolled && status.users == 0 && status.ledgerVerified)
        #expect("\(NodeHome.Failure.notEnrolled(directory.path))".contains("fedseg-node enroll"))
        await #expect(throws: NodeHome.Failure.self) { _ = try await home.enroll(coordinatorURL: "http://127.0.0.1:1", token: "t", id: "bad id!", caCertificate: nil) }
    }

    @Test("stored users and models survive a reopen; a model that fails its signature is never used")
    func store() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try NodeStore(directory: directory)
        try store.replaceUsers(ids: ["u1", "u2"], points: Matrix(rows: 2, cols: 2, storage: [1, 0, 0, 1]), items: [["b1"], []])
        try store.keep(runID: "run-1", version: 1, publication: [1, 2, 3], at: 10)
        try store.keep(runID: "run-1", version: 1, publication: [9, 9], at: 11)
        let reopened = try NodeStore(directory: directory)
        #expect(try reopened.users() == [.init(id: "u1", vector: [1, 0], items: ["b1"]), .init(id: "u2", vector: [0, 1], items: [])])
        #expect(try reopened.models().map(\.publication) == [[1, 2, 3]], "a model already kept is not replaced")
        // A model verifies with the coordinator's key; one flipped byte, or another key, does not.
        let coordinator = NodeIdentity()
        var model = SegmentModel(runID: "run-1", version: 1, catalogSize: 2, segments: [], global: .init(id: -1, items: [1, 0], scores: [2, 1]))
        model.catalogItems = ["b1", "b2"]
        let signed = try model.signed(with: coordinator.signing)
        let publication = try [UInt8](Fedseg_V1_SignedPublication.with {
            $0.kind = .segmentModel
            $0.payload = signed.payload
            $0.signature = Data(signed.signature)
        }.serializedData())
        #expect(try NodeHome.verifyModel(publication, key: coordinator.signing.publicKey).catalogItems == ["b1", "b2"])
        var flipped = publication
        flipped[flipped.count / 2] ^= 1
        #expect(throws: (any Error).self) { try NodeHome.verifyModel(flipped, key: coordinator.signing.publicKey) }
        #expect(throws: (any Error).self) { try NodeHome.verifyModel(publication, key: NodeIdentity().signing.publicKey) }
        #expect(NodeHome.fingerprint(ofHex: String(repeating: "00", count: 32)) == NodeHome.fingerprint(ofHex: String(repeating: "00", count: 32)))
        #expect(NodeHome.fingerprint(ofHex: String(repeating: "00", count: 32)) != NodeHome.fingerprint(ofHex: String(repeating: "01", count: 32)))
    }
}
