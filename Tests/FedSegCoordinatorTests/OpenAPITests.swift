import FedSegCrypto
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import FedSegCoordinator

/// docs/openapi.json against the code: the served copy is the committed file, every route of the
/// router is documented (and nothing else is), every reference resolves, and every answer of an
/// admin session that reaches every endpoint, errors included, has a documented status, media
/// type and, for JSON, a body that validates against its schema.
@Suite("OpenAPI document")
struct OpenAPITests {
    static let adminToken = "openapi-test-admin-token"
    static let documentURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/openapi.json")

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
        let validator = SchemaValidator(document: document)
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
        let validator = SchemaValidator(document: document)
        let admin: HTTPFields = [.authorization: "Bearer \(Self.adminToken)", .contentType: "application/json"]
        let checked = Mutex<Set<String>>([])
        let app = Application(router: CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data(Self.adminToken.utf8)).bytes))
        try await app.test(.router) { client in
            func call(
                _ method: HTTPRequest.Method, _ uri: String, _ pattern: String, headers: HTTPFields = [:], body: String? = nil,
                sourceLocation: SourceLocation = #_sourceLocation
            ) async throws -> TestResponse {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                let problems = validator.check(response: response, path: pattern, method: method)
                #expect(problems.isEmpty, "\(method) \(uri) → \(response.status.code): \(problems)", sourceLocation: sourceLocation)
                checked.withLock { _ = $0.insert("\(method.rawValue) \(pattern) \(response.status.code)") }
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
        // Every admin endpoint was reached, with at least one error each where it has one.
        let adminOperations = Set(checked.withLock { $0 }.filter { $0.contains("/admin/") }.map { String($0.split(separator: " ").prefix(2).joined(separator: " ")) })
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let documentedAdmin = Set(paths.filter { $0.key.hasPrefix("/admin/") }.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(documentedAdmin.count == 12)
        #expect(adminOperations == documentedAdmin, "not reached: \(documentedAdmin.subtracting(adminOperations).sorted())")
    }
}

/// The part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that docs/openapi.json uses:
/// `$ref`, `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`,
/// `enum`.
/// Immutable after init (a parsed JSON document), so safe to share.
struct SchemaValidator: @unchecked Sendable {
    let document: [String: Any]

    func resolve(_ schema: [String: Any]) -> [String: Any]? {
        guard let reference = schema["$ref"] as? String else { return schema }
        guard reference.hasPrefix("#/") else { return nil }
        var node: Any = document
        for part in reference.dropFirst(2).split(separator: "/") {
            guard let next = (node as? [String: Any])?[String(part)] else { return nil }
            node = next
        }
        return (node as? [String: Any]).flatMap(resolve)
    }

    /// Problems with one answer: its status not documented for the operation, its media type not
    /// the documented one, or its JSON body not valid against the documented schema.
    func check(response: TestResponse, path: String, method: HTTPRequest.Method) -> [String] {
        guard let paths = document["paths"] as? [String: Any], let operations = paths[path] as? [String: Any],
            let operation = operations[method.rawValue.lowercased()] as? [String: Any], let responses = operation["responses"] as? [String: Any]
        else { return ["\(method) \(path) is not documented"] }
        guard let documented = responses["\(response.status.code)"] as? [String: Any] else {
            return ["status \(response.status.code) is not documented (documented: \(responses.keys.sorted()))"]
        }
        guard let content = documented["content"] as? [String: Any] else {
            return response.body.readableBytes == 0 ? [] : ["a body where none is documented"]
        }
        let mediaType = (response.headers[.contentType] ?? "").split(separator: ";").first.map(String.init) ?? ""
        guard let media = content[mediaType] as? [String: Any] else { return ["media type \(mediaType) is not documented (\(content.keys.sorted()))"] }
        guard mediaType == "application/json", let schema = media["schema"] as? [String: Any] else { return [] }
        guard let value = try? JSONSerialization.jsonObject(with: Data([UInt8](buffer: response.body)), options: [.fragmentsAllowed]) else {
            return ["the body is not JSON"]
        }
        var problems: [String] = []
        validate(value, schema, at: "$", into: &problems)
        return problems
    }

    func validate(_ value: Any, _ schema: [String: Any], at location: String, into problems: inout [String]) {
        guard let schema = resolve(schema) else { return problems.append("\(location): unresolvable $ref") }
        let types: [String] = (schema["type"] as? String).map { [$0] } ?? (schema["type"] as? [String]) ?? []
        if !types.isEmpty, !types.contains(where: { Self.matches(value, $0) }) {
            return problems.append("\(location): \(Self.describe(value)) is not \(types.joined(separator: " or "))")
        }
        if let allowed = schema["enum"] as? [String], let string = value as? String, !allowed.contains(string) {
            problems.append("\(location): \(string) is not one of \(allowed)")
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                problems.append("\(location): \(key) is required")
            }
            for (key, member) in object {
                if let property = properties[key] as? [String: Any] {
                    validate(member, property, at: "\(location).\(key)", into: &problems)
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    validate(member, additional, at: "\(location).\(key)", into: &problems)
                } else if schema["additionalProperties"] as? Bool == false {
                    problems.append("\(location): \(key) is not in the schema")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (index, item) in array.enumerated() { validate(item, items, at: "\(location)[\(index)]", into: &problems) }
        }
    }

    static func matches(_ value: Any, _ type: String) -> Bool {
        switch type {
        case "object": value is [String: Any]
        case "array": value is [Any]
        case "string": value is String
        case "null": value is NSNull
        case "boolean": value is Bool && !(value is String)
        case "number": !(value is String) && (value as? Double) != nil
        case "integer": !(value is String) && (value as? Double).map { $0 == $0.rounded() } == true
        default: false
        }
    }

    static func describe(_ value: Any) -> String { "\(type(of: value)) \(String(describing: value).prefix(60))" }
}
