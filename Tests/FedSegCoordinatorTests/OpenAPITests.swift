import FedSegCrypto
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import FedSegTestSupport
import Testing

@testable import FedSegCoordinator

/// docs/openapi.json against the code: the served copy is the committed file, every route of the
/// router is documented (and nothing else is), every reference resolves, and every answer of an
/// admin session that reaches every endpoint, errors included, has a documented status, media
/// type and, for JSON, a body that validates against its schema.
@Suite("OpenAPI document")
struct OpenAPITests {
    static let adminToken = "openapi-test-admin-token"
    static let documentURL = OpenAPIContract.documentURL

    static func document() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
    }

    @Test("the served document is docs/openapi.json, OpenAPI 3.1, and every $ref resolves")
    func committed() throws {
        let file = try String(contentsOf: Self.documentURL, encoding: .utf8)
        #expect(file == OpenAPIDocument.json, "docs/openapi.json changed: run `make openapi` to compile it into the coordinator")
        let document = try Self.document()
        #expect(document["openapi"] as? String == "3.1.0")
        var references: [String] = []
        func collect(_ value: Any) {
            if let object = value as? [String: Any] {
                if let reference = object["$ref"] as? String { references.append(reference) }
                object.values.forEach(collect)
            } else if let array = value as? [Any] {
                array.forEach(collect)
            }
        }
        collect(document)
        #expect(!references.isEmpty)
        let validator = OpenAPIContract(document: document)
        for reference in Set(references) { #expect(validator.resolve(["$ref": reference]) != nil, "\(reference) does not resolve") }
    }

    @Test("every route of the router is in the document, and every documented route is in the router")
    func routes() throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let router = CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data(Self.adminToken.utf8)).bytes)
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path)" })
        let paths = try #require(try Self.document()["paths"] as? [String: [String: Any]])
        let documented = Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(served.count >= 30)
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }

    @Test("every answer of a session over every endpoint is documented and validates against its schema")
    func answers() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        for id in ["alice", "bob"] {
            let member = TestClient(id: id)
            try coordinator.store.registry.add(
                id: id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey,
                now: Date(timeIntervalSince1970: coordinator.settings.clock.now())
            )
        }
        let document = try Self.document()
        let validator = OpenAPIContract(document: document)
        let admin: HTTPFields = [.authorization: "Bearer \(Self.adminToken)", .contentType: "application/json"]
        let checked = Mutex<Set<String>>([])
        // What was answered, in order, to compare with what `--response-log` recorded.
        let answered = Mutex<[(method: String, route: String, status: Int, json: String?)]>([])
        let logPath = try temporaryDirectory().appendingPathComponent("responses.jsonl").path
        let responseLog = try ResponseLog(path: logPath)
        let app = Application(
            router: CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data(Self.adminToken.utf8)).bytes, responseLog: responseLog)
        )
        try await app.test(.router) { client in
            func call(
                _ method: HTTPRequest.Method, _ uri: String, _ pattern: String, headers: HTTPFields = [:], body: String? = nil,
                sourceLocation: SourceLocation = #_sourceLocation
            ) async throws -> TestResponse {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                let problems = validator.check(
                    method: method.rawValue, path: pattern, status: Int(response.status.code), contentType: response.headers[.contentType],
                    body: Data([UInt8](buffer: response.body)), bytes: response.body.readableBytes
                )
                #expect(problems.isEmpty, "\(method) \(uri) → \(response.status.code): \(problems)", sourceLocation: sourceLocation)
                checked.withLock { _ = $0.insert("\(method.rawValue) \(pattern) \(response.status.code)") }
                let isJSON = response.headers[.contentType]?.hasPrefix("application/json") == true
                answered.withLock {
                    $0.append((method.rawValue, pattern, Int(response.status.code), isJSON ? String(buffer: response.body) : nil))
                }
                return response
            }
            let runJSON = String(decoding: try JSONEncoder().encode({
                var parameters = smallRun(rounds: 2, minParticipants: 2)
                parameters.maxUsers = 1000
                return parameters
            }()), as: UTF8.self)

            _ = try await call(.get, "/healthz", "/healthz")
            _ = try await call(.get, "/metrics", "/metrics")
            _ = try await call(.get, "/openapi.json", "/openapi.json")
            _ = try await call(.get, "/admin/v1/status", "/admin/v1/status")
            _ = try await call(.get, "/admin/v1/status", "/admin/v1/status", headers: admin)
            _ = try await call(.get, "/admin/v1/clients", "/admin/v1/clients", headers: admin)
            _ = try await call(.post, "/admin/v1/clients/tokens", "/admin/v1/clients/tokens", headers: admin, body: #"{"count": 2}"#)
            _ = try await call(.post, "/admin/v1/clients/tokens", "/admin/v1/clients/tokens", headers: admin, body: #"{"count": 0}"#)
            _ = try await call(.post, "/admin/v1/clients/tokens", "/admin/v1/clients/tokens", headers: admin, body: "{")
            _ = try await call(.get, "/admin/v1/runs/current", "/admin/v1/runs/current", headers: admin)
            _ = try await call(.get, "/admin/v1/segments", "/admin/v1/segments", headers: admin)
            _ = try await call(.post, "/admin/v1/runs/current/stop", "/admin/v1/runs/current/stop", headers: admin)
            _ = try await call(.post, "/admin/v1/runs", "/admin/v1/runs", headers: admin, body: #"{"k": 0, "epsilon": 1, "delta": 1e-6}"#)
            let started = try await call(.post, "/admin/v1/runs", "/admin/v1/runs", headers: admin, body: runJSON)
            #expect(started.status == .created)
            let runID = try #require((try JSONSerialization.jsonObject(with: Data([UInt8](buffer: started.body))) as? [String: Any])?["id"] as? String)
            _ = try await call(.post, "/admin/v1/runs", "/admin/v1/runs", headers: admin, body: runJSON)
            _ = try await call(.get, "/admin/v1/status", "/admin/v1/status", headers: admin)
            _ = try await call(.get, "/admin/v1/runs", "/admin/v1/runs", headers: admin)
            _ = try await call(.get, "/admin/v1/runs/current", "/admin/v1/runs/current", headers: admin)
            _ = try await call(.get, "/admin/v1/runs/\(runID)", "/admin/v1/runs/{id}", headers: admin)
            _ = try await call(.get, "/admin/v1/runs/nope", "/admin/v1/runs/{id}", headers: admin)
            _ = try await call(.get, "/admin/v1/segments", "/admin/v1/segments", headers: admin)
            _ = try await call(.get, "/admin/v1/ledger", "/admin/v1/ledger", headers: admin)
            _ = try await call(.post, "/admin/v1/privacy/budget", "/admin/v1/privacy/budget", headers: admin, body: #"{"epsilon": 20, "reason": "more"}"#)
            _ = try await call(.get, "/v1/rounds/current?client=alice", "/v1/rounds/current")
            _ = try await call(.post, "/v1/rounds/99/updates", "/v1/rounds/{round}/updates", body: "x")
            _ = try await call(.get, "/v1/rounds/1/secagg", "/v1/rounds/{round}/secagg")
            _ = try await call(.post, "/admin/v1/runs/current/stop", "/admin/v1/runs/current/stop", headers: admin)
            _ = try await call(.post, "/admin/v1/privacy/budget", "/admin/v1/privacy/budget", headers: admin, body: #"{"epsilon": 20, "reason": "more"}"#)
            _ = try await call(.post, "/admin/v1/privacy/budget", "/admin/v1/privacy/budget", headers: admin, body: #"{"epsilon": 20, "reason": ""}"#)
            _ = try await call(.get, "/admin/v1/ledger", "/admin/v1/ledger", headers: admin)
            _ = try await call(.post, "/admin/v1/clients/nobody/revoke", "/admin/v1/clients/{id}/revoke", headers: admin)
            _ = try await call(.post, "/admin/v1/clients/alice/revoke", "/admin/v1/clients/{id}/revoke", headers: admin)
            _ = try await call(.get, "/v1/rounds/current", "/v1/rounds/current")
            _ = try await call(.get, "/v1/models/latest", "/v1/models/latest")
            _ = try await call(.post, "/v1/enroll", "/v1/enroll", body: "not protobuf")
            _ = try await call(.get, "/dashboard", "/dashboard")
            _ = try await call(.get, "/dashboard/login", "/dashboard/login")
            _ = try await call(.post, "/dashboard/login", "/dashboard/login", headers: [.contentType: "application/x-www-form-urlencoded"], body: "token=wrong")
            _ = try await call(.get, "/dashboard/privacy", "/dashboard/privacy", headers: [.authorization: "Bearer \(Self.adminToken)"])
            _ = try await call(.get, "/dashboard/static/style.css", "/dashboard/static/style.css")
        }
        // The response log holds each of those answers, errors included, with the route's pattern
        // and, for JSON, the body as sent; and nothing of any request.
        let recorded = try RecordedResponses(path: logPath).entries
        let expected = answered.withLock { $0 }
        #expect(recorded.count == expected.count)
        for (entry, answer) in zip(recorded, expected) {
            #expect(entry.method == answer.method && entry.route == answer.route && entry.status == answer.status, "\(entry) ≠ \(answer)")
            #expect(entry.body == answer.json, "\(entry.method) \(entry.route)")
        }
        #expect(try String(contentsOfFile: logPath, encoding: .utf8).contains(Self.adminToken) == false)
        let mode = try FileManager.default.attributesOfItem(atPath: logPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // Every admin endpoint was reached, with at least one error each where it has one.
        let adminOperations = Set(checked.withLock { $0 }.filter { $0.contains("/admin/") }.map { String($0.split(separator: " ").prefix(2).joined(separator: " ")) })
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let documentedAdmin = Set(paths.filter { $0.key.hasPrefix("/admin/") }.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(documentedAdmin.count == 12)
        #expect(adminOperations == documentedAdmin, "not reached: \(documentedAdmin.subtracting(adminOperations).sorted())")
    }
}
