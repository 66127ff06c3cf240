import FedSegCrypto
import FedSegPrivacy
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SwiftProtobuf
import Testing

@testable import FedSegCoordinator

/// Every endpoint and every error code of docs/PROTOCOL.md through the real router, in memory
/// (no socket), against a real coordinator on a temporary state directory.
@Suite("Coordinator routes in memory")
struct RouteTests {
    static let adminToken = "route-test-admin-token"

    func application(_ coordinator: Coordinator) -> some ApplicationProtocol {
        Application(router: CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data(Self.adminToken.utf8)).bytes))
    }

    func error(_ response: TestResponse) throws -> Fedseg_V1_ErrorResponse {
        try Fedseg_V1_ErrorResponse(serializedBytes: [UInt8](buffer: response.body))
    }

    func expectError(
        _ response: TestResponse, _ status: HTTPResponse.Status, _ code: Fedseg_V1_ErrorResponse.Code, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let decoded = try error(response)
        #expect(response.status == status, "\(decoded.message)", sourceLocation: sourceLocation)
        #expect(decoded.code == code, "\(decoded.message)", sourceLocation: sourceLocation)
    }

    /// The admin API's one error shape: `{"error": {"code", "message", "field"}}`.
    @discardableResult
    func expectAdminError(
        _ response: TestResponse, _ status: HTTPResponse.Status, _ code: AdminError.Code, field: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> AdminError {
        #expect(response.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
        let decoded = try JSONDecoder().decode(AdminError.Body.self, from: Data([UInt8](buffer: response.body))).error
        #expect(response.status == status, "\(decoded.message)", sourceLocation: sourceLocation)
        #expect(decoded.code == code, "\(decoded.message)", sourceLocation: sourceLocation)
        if let field { #expect(decoded.field == field, "\(decoded.message)", sourceLocation: sourceLocation) }
        #expect(!decoded.message.isEmpty, sourceLocation: sourceLocation)
        return decoded
    }

    var admin: HTTPFields { [.authorization: "Bearer \(Self.adminToken)", .contentType: "application/json"] }

    func bytes(_ message: some SwiftProtobuf.Message) throws -> ByteBuffer { ByteBuffer(bytes: try message.serializedBytes() as [UInt8]) }

    func enrollRequest(token: String, client: TestClient) -> Fedseg_V1_EnrollRequest {
        .with {
            $0.protocolVersion = fedsegProtocolVersion
            $0.token = token
            $0.clientID = client.id
            $0.signingPublicKey = Data(client.keys.signing.publicKey.bytes)
            $0.kxPublicKey = Data(client.keys.keyAgreement.publicKey.bytes)
        }
    }

    func runJSON(minParticipants: Int = 2, mode: PrivacyMode = .local) throws -> ByteBuffer {
        var parameters = smallRun(rounds: 1, minParticipants: minParticipants)
        parameters.privacyMode = mode
        parameters.maxUsers = 1000
        return ByteBuffer(bytes: [UInt8](try JSONEncoder().encode(parameters)))
    }

    func currentPlan(_ client: some TestClientProtocol) async throws -> Fedseg_V1_RoundPlan {
        let response = try await client.execute(uri: "/v1/rounds/current", method: .get)
        #expect(response.status == .ok)
        let publication = try Fedseg_V1_SignedPublication(serializedBytes: [UInt8](buffer: response.body))
        return try Fedseg_V1_RoundPlan(serializedBytes: publication.payload)
    }

    func update(_ plan: Fedseg_V1_RoundPlan, sums: Float = 0.1) -> Fedseg_V1_ClientUpdate {
        gridUpdate(plan, sums: [Float](repeating: sums, count: Int(plan.k * plan.dimension)), counts: [Float](repeating: 1, count: Int(plan.k)))
    }

    @Test("health, metrics, enrollment, the open round, models and the admin API, each with its errors")
    func endpoints() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        try await application(coordinator).test(.router) { client in
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok && String(buffer: metrics.body).contains("fedseg_"))

            // Admin endpoints need the bearer token.
            try expectAdminError(try await client.execute(uri: "/admin/v1/status", method: .get), .unauthorized, .unauthorized)
            try expectAdminError(
                try await client.execute(uri: "/admin/v1/status", method: .get, headers: [.authorization: "Bearer wrong"]), .unauthorized, .unauthorized
            )
            #expect(try await client.execute(uri: "/admin/v1/status", method: .get, headers: admin).status == .ok)

            // Enrollment: a token from the admin API once; a wrong token and a taken id are refused.
            let tokens = try await client.execute(
                uri: "/admin/v1/clients/tokens", method: .post, headers: admin, body: ByteBuffer(string: #"{"count": 3}"#)
            )
            #expect(tokens.status == .ok)
            let issued = try #require(try JSONDecoder().decode([String: [String]].self, from: Data([UInt8](buffer: tokens.body)))["tokens"])
            try expectAdminError(
                try await client.execute(uri: "/admin/v1/clients/tokens", method: .post, headers: admin, body: ByteBuffer(string: #"{"count": 0}"#)),
                .unprocessableContent, .invalidField, field: "count"
            )
            let alice = TestClient(id: "alice"), bob = TestClient(id: "bob")
            try expectError(
                try await client.execute(uri: "/v1/enroll", method: .post, body: try bytes(enrollRequest(token: "nope", client: alice))), .forbidden, .badToken
            )
            let enrolled = try await client.execute(uri: "/v1/enroll", method: .post, body: try bytes(enrollRequest(token: issued[0], client: alice)))
            #expect(enrolled.status == .ok)
            let response = try Fedseg_V1_EnrollResponse(serializedBytes: [UInt8](buffer: enrolled.body))
            #expect(response.coordinatorSigningKey == Data(coordinator.keys.identity.signing.publicKey.bytes))
            try expectError(
                try await client.execute(uri: "/v1/enroll", method: .post, body: try bytes(enrollRequest(token: issued[1], client: alice))), .badRequest, .badRequest
            )
            var badKey = enrollRequest(token: issued[1], client: bob)
            badKey.kxPublicKey = Data([1, 2, 3])
            try expectError(try await client.execute(uri: "/v1/enroll", method: .post, body: try bytes(badKey)), .unprocessableContent, .invalidField)
            #expect(try await client.execute(uri: "/v1/enroll", method: .post, body: try bytes(enrollRequest(token: issued[2], client: bob))).status == .ok)
            let clients = try await client.execute(uri: "/admin/v1/clients", method: .get, headers: admin)
            #expect(try JSONDecoder().decode([ClientEntry].self, from: Data([UInt8](buffer: clients.body))).map(\.id) == ["alice", "bob"])
            try expectAdminError(try await client.execute(uri: "/admin/v1/clients/nobody/revoke", method: .post, headers: admin), .notFound, .notFound)

            // No run yet.
            try expectError(try await client.execute(uri: "/v1/rounds/current", method: .get), .notFound, .noOpenRound)
            try expectError(try await client.execute(uri: "/v1/models/latest", method: .get), .notFound, .notFound)
            try expectAdminError(try await client.execute(uri: "/admin/v1/runs/current", method: .get, headers: admin), .notFound, .notFound)
            try expectAdminError(try await client.execute(uri: "/admin/v1/runs/current/stop", method: .post, headers: admin), .conflict, .conflict)
            try expectAdminError(try await client.execute(uri: "/admin/v1/segments", method: .get, headers: admin), .notFound, .notFound)

            // Starting runs: bad JSON, bad values (named), then one; a second is a conflict.
            try expectAdminError(
                try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(string: "{")), .badRequest, .malformedJSON
            )
            let typo = try await client.execute(
                uri: "/admin/v1/runs", method: .post, headers: admin,
                body: ByteBuffer(string: #"{"k": 2, "epsilon": 4, "delta": 1e-6, "privacy_mode": "centrel"}"#)
            )
            let typoMessage = try expectAdminError(typo, .unprocessableContent, .invalidField, field: "privacy_mode").message
            #expect(typoMessage.contains("privacy_mode must be local or distributed"), "\(typoMessage)")
            var invalid = smallRun()
            invalid.k = 0
            try expectAdminError(
                try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(bytes: [UInt8](try JSONEncoder().encode(invalid)))),
                .unprocessableContent, .invalidField, field: "k"
            )
            let started = try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON())
            #expect(started.status == .created)
            let summary = try JSONDecoder().decode(RunSummary.self, from: Data([UInt8](buffer: started.body)))
            #expect(summary.status == .running && summary.phase == .clustering)
            try expectAdminError(try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON()), .conflict, .conflict)
            #expect(try await client.execute(uri: "/admin/v1/runs/current", method: .get, headers: admin).status == .ok)
            #expect(try await client.execute(uri: "/admin/v1/runs/\(summary.id)", method: .get, headers: admin).status == .ok)
            try expectAdminError(try await client.execute(uri: "/admin/v1/runs/run-none", method: .get, headers: admin), .notFound, .notFound)
            #expect(try await client.execute(uri: "/admin/v1/runs", method: .get, headers: admin).status == .ok)

            // The round: both clients answer, the run completes, its model is published.
            let plan = try await currentPlan(client)
            try expectError(try await client.execute(uri: "/v1/rounds/\(plan.round + 7)/secagg", method: .get), .notFound, .notFound)
            // A local round has no secure-aggregation view, for anyone.
            try expectError(try await client.execute(uri: "/v1/rounds/\(plan.round)/secagg", method: .get), .notFound, .notFound)
            try expectError(try await client.execute(uri: "/v1/rounds/\(plan.round)/secagg?client=alice", method: .get), .notFound, .notFound)
            let key = coordinator.keys.identity.keyAgreement.publicKey
            for member in [alice, bob] {
                let sealed = try member.seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)
                #expect(try await client.execute(uri: "/v1/rounds/\(plan.round)/updates", method: .post, body: ByteBuffer(bytes: sealed)).status == .accepted)
            }
            #expect(try await client.execute(uri: "/v1/models/latest", method: .get).status == .ok)
            let done = try await client.execute(uri: "/admin/v1/runs/\(summary.id)", method: .get, headers: admin)
            #expect(try JSONDecoder().decode(RunSummary.self, from: Data([UInt8](buffer: done.body))).status == .completed)
            #expect(try await client.execute(uri: "/admin/v1/segments", method: .get, headers: admin).status == .ok)
            let ledger = try await client.execute(uri: "/admin/v1/ledger", method: .get, headers: admin)
            #expect(ledger.status == .ok && String(buffer: ledger.body).contains(summary.id))
            // The lifetime budget: changed only with the token and a reason; recorded and audited.
            let change = ByteBuffer(string: #"{"epsilon": 20, "reason": "approved"}"#)
            try expectAdminError(try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, body: change), .unauthorized, .unauthorized)
            try expectAdminError(
                try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, headers: admin, body: ByteBuffer(string: #"{"epsilon": 20, "reason": ""}"#)),
                .unprocessableContent, .invalidField, field: "reason"
            )
            let changed = try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, headers: admin, body: change)
            #expect(changed.status == .ok)
            #expect(try JSONDecoder().decode(BudgetRequest.self, from: Data([UInt8](buffer: changed.body))) == BudgetRequest(epsilon: 20, delta: 1e-5, reason: "approved"))
            let audited = try await client.execute(uri: "/admin/v1/ledger", method: .get, headers: admin)
            #expect(String(buffer: audited.body).contains("admin: approved"))
            #expect(try await client.execute(uri: "/admin/v1/clients/bob/revoke", method: .post, headers: admin).status == .ok)
        }
    }

    @Test("every broken run rule is a 422 naming its field; malformed JSON to any admin endpoint is the documented error shape; the ledger is snake_case")
    func adminErrors() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        try await application(coordinator).test(.router) { client in
            func start(_ body: String) async throws -> TestResponse {
                try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(string: body))
            }
            let base = #""epsilon": 4, "delta": 1e-6, "embedder_id": "hashing-v1-d4-s0", "dimension": 4, "initialization": "random""#
            let broken: [(body: String, field: String)] = [
                (#"{"k": 0, \#(base)}"#, "k"),
                (#"{"k": 2000, \#(base)}"#, "k"),
                (#"{"k": 2, "epsilon": -1, "delta": 1e-6, "embedder_id": "hashing-v1-d4-s0", "dimension": 4, "initialization": "random"}"#, "epsilon"),
                (#"{"k": 2, "epsilon": 4, "delta": 1, "embedder_id": "hashing-v1-d4-s0", "dimension": 4, "initialization": "random"}"#, "delta"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "hashing-v1-d4-s0", "dimension": 5000, "initialization": "random"}"#, "dimension"),
                (#"{"k": 2, \#(base), "clip_norm": 0}"#, "clip_norm"),
                (#"{"k": 2, \#(base), "sampling_rate": 1.5}"#, "sampling_rate"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "hashing-v1-d4-s0", "dimension": 4, "initialization": "public"}"#, "seed_phrases"),
                (#"{"k": 2, \#(base), "privacy_mode": "secret"}"#, "privacy_mode"),
                (#"{"epsilon": 4, "delta": 1e-6}"#, "k"),
                (#"{"k": 2, "delta": 1e-6}"#, "epsilon"),
                (#"{"k": "two", \#(base)}"#, "k"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "hashing-v1-d64-s1", "dimension": 384, "initialization": "random"}"#, "dimension"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "all-MiniLM-L6-v2", "dimension": 64, "initialization": "random"}"#, "dimension"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "minilm", "dimension": 384, "initialization": "random"}"#, "embedder_id"),
                (#"{"k": 2, "epsilon": 4, "delta": 1e-6, "embedder_id": "../../etc/passwd", "dimension": 384, "initialization": "random"}"#, "embedder_id"),
                (#"{"k": 2, \#(base), "seed_phrases": [1, 2]}"#, "seed_phrases[0]"),
            ]
            for (body, field) in broken {
                let answer = try await start(body)
                let error = try expectAdminError(answer, .unprocessableContent, .invalidField, field: field)
                #expect(error.message.contains(field.split(separator: "[").first.map(String.init) ?? field), "\(error.message)")
                #expect(!error.message.contains("CodingKeys") && !error.message.contains("DecodingError"), "\(error.message)")
            }
            // Malformed JSON, to every admin endpoint that takes a body: one shape, no library text.
            for path in ["/admin/v1/runs", "/admin/v1/clients/tokens", "/admin/v1/privacy/budget"] {
                for body in ["{", "[1, 2]", "not json", ""] {
                    let answer = try await client.execute(uri: path, method: .post, headers: admin, body: ByteBuffer(string: body))
                    let error = try expectAdminError(answer, .badRequest, .malformedJSON)
                    #expect(error.field == nil)
                }
            }
            // Nothing was stored by any of them.
            #expect(try coordinator.store.runs().isEmpty)
            #expect(try coordinator.store.ledger.records().isEmpty)
            // The ledger's keys are snake_case, as the rest of the admin API.
            let ledger = String(buffer: try await client.execute(uri: "/admin/v1/ledger", method: .get, headers: admin).body)
            #expect(ledger.contains("\"budget_changes\""))
            for camel in ["epsilonSpent", "releaseID", "epsilonBudget", "epsilonLeft", "budgetChanges", "createdAt", "previousHash"] {
                #expect(!ledger.contains(camel), "\(camel) in \(ledger.prefix(300))")
            }
        }
    }

    @Test("liveness: a poll naming a client marks it seen; a vanished client goes stale, is listed so, and rounds neither wait for it nor count it")
    func liveness() async throws {
        let clock = ManualWallClock()
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: clock)
        let members = (0..<3).map { TestClient(id: "l\($0)") }
        for member in members {
            try coordinator.store.registry.add(
                id: member.id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey,
                now: Date(timeIntervalSince1970: clock.now())
            )
        }
        try await application(coordinator).test(.router) { client in
            clock.advance(by: coordinator.settings.staleAfterSeconds - 10)
            // l0 and l1 poll (their nodes are up); l2's node died with its simulator.
            for id in ["l0", "l1"] {
                #expect(try await client.execute(uri: "/v1/rounds/current?client=\(id)", method: .get).status == .notFound)
            }
            clock.advance(by: 20)
            let listed = try JSONDecoder().decode([ClientEntry].self, from: Data([UInt8](buffer: try await client.execute(uri: "/admin/v1/clients", method: .get, headers: admin).body)))
            #expect(listed.map(\.id) == ["l0", "l1", "l2"])
            #expect(listed.map(\.stale) == [false, false, true])
            let status = try JSONDecoder().decode(AdminStatus.self, from: Data([UInt8](buffer: try await client.execute(uri: "/admin/v1/status", method: .get, headers: admin).body)))
            #expect(status.activeClients == 3 && status.liveClients == 2)

            // A run needing all three is refused before anything is charged, naming the stale one.
            let refused = try expectAdminError(try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON(minParticipants: 3)), .unprocessableContent, .invalidField)
            #expect(refused.message.contains("not seen"), "\(refused.message)")
            #expect(try coordinator.store.ledger.records().isEmpty)

            // With two: the round expects the two live clients and closes when they answered,
            // long before its deadline; the run status lists the stale one.
            let started = try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON(minParticipants: 2))
            #expect(started.status == .created)
            let summary = try JSONDecoder().decode(RunSummary.self, from: Data([UInt8](buffer: started.body)))
            #expect(summary.openRound?.expected == 2)
            #expect(summary.staleClients == ["l2"])
            let plan = try await currentPlan(client)
            let key = coordinator.keys.identity.keyAgreement.publicKey
            for member in members.prefix(2) {
                let sealed = try member.seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)
                #expect(try await client.execute(uri: "/v1/rounds/\(plan.round)/updates", method: .post, body: ByteBuffer(bytes: sealed)).status == .accepted)
            }
            let done = try JSONDecoder().decode(RunSummary.self, from: Data([UInt8](buffer: try await client.execute(uri: "/admin/v1/runs/\(summary.id)", method: .get, headers: admin).body)))
            #expect(done.status == .completed)
            // The stale client's node comes back: one poll and it is live again.
            #expect(try await client.execute(uri: "/v1/rounds/current?client=l2", method: .get).status == .notFound)
            #expect(try coordinator.liveClientIDs() == ["l0", "l1", "l2"])
        }
    }

    @Test("every refusal of a client message has its status and code, checked in the documented order")
    func updateErrors() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let members = (0..<3).map { TestClient(id: "m\($0)") }
        for member in members {
            try coordinator.store.registry.add(id: member.id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        }
        let key = coordinator.keys.identity.keyAgreement.publicKey
        try await application(coordinator).test(.router) { client in
            #expect(try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON(minParticipants: 3)).status == .created)
            let plan = try await currentPlan(client)
            let path = "/v1/rounds/\(plan.round)/updates"
            func post(_ body: [UInt8], to uri: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
                try await client.execute(uri: uri ?? path, method: .post, headers: headers, body: ByteBuffer(bytes: body))
            }
            let good = try members[0].seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)

            try expectError(try await post(good, to: "/v1/rounds/abc/updates"), .badRequest, .badRequest)
            try expectError(try await post([UInt8](repeating: 0x46, count: coordinator.settings.limits.maximumMessageBytes + 1)), .contentTooLarge, .oversized)
            try expectError(try await post([1, 2, 3]), .badRequest, .tampered)
            let stranger = TestClient(id: "stranger")
            try expectError(try await post(try stranger.seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)), .forbidden, .unknownSender)
            try expectError(
                try await post(try members[0].seal(update(plan), kind: .clientUpdate, round: plan.round + 1, to: key), to: "/v1/rounds/\(plan.round + 1)/updates"),
                .conflict, .wrongRound
            )
            try expectError(try await post(try members[0].seal(update(plan), kind: .recommendationUpdate, round: plan.round, to: key)), .badRequest, .wrongKind)
            var tampered = good
            tampered[tampered.count - 1] ^= 1
            try expectError(try await post(tampered), .badRequest, .tampered)
            try expectError(try await post(try members[0].seal(update(plan, sums: 1e10), kind: .clientUpdate, round: plan.round, to: key)), .unprocessableContent, .invalidField)
            // Nothing refused so far was recorded: the good update is accepted once, then a replay.
            #expect(try await post(good).status == .accepted)
            try expectError(try await post(good), .conflict, .replay)
            // A decline after an update: one answer per client per round.
            let decline = Fedseg_V1_Decline.with {
                $0.runID = plan.runID
                $0.round = plan.round
                $0.reason = "budget"
            }
            try expectError(try await post(try members[0].seal(decline, kind: .decline, round: plan.round, to: key)), .conflict, .alreadyAnswered)
            // A revoked client is refused, even with a well-formed update.
            try coordinator.store.registry.revoke(id: members[2].id)
            try expectError(try await post(try members[2].seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)), .forbidden, .revoked)
            // The round closes at its deadline (abandoned: 1 of 3); its messages are late from now on,
            // and what it accepted is still a replay.
            (coordinator.settings.clock as! ManualWallClock).advance(by: 31)
            try await coordinator.tick()
            try expectError(try await post(try members[1].seal(update(plan), kind: .clientUpdate, round: plan.round, to: key)), .conflict, .late)
            try expectError(try await post(good), .conflict, .replay)
        }
    }

    @Test("a distributed round takes the open stage's messages only: a later stage is not open yet, an earlier one is late")
    func stageErrors() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let members = (0..<2).map { TestClient(id: "s\($0)") }
        for member in members {
            try coordinator.store.registry.add(id: member.id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
        }
        let key = coordinator.keys.identity.keyAgreement.publicKey
        try await application(coordinator).test(.router) { client in
            #expect(try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON(mode: .distributed)).status == .created)
            let plan = try await currentPlan(client)
            let path = "/v1/rounds/\(plan.round)/updates"
            let shares = Fedseg_V1_SecAggShares.with {
                $0.runID = plan.runID
                $0.round = plan.round
            }
            let early = try members[0].seal(shares, kind: .secaggShares, round: plan.round, to: key)
            try expectError(try await client.execute(uri: path, method: .post, body: ByteBuffer(bytes: early)), .conflict, .stageNotOpen)
            try expectError(
                try await client.execute(uri: path, method: .post, body: ByteBuffer(bytes: try members[0].seal(update(plan), kind: .clientUpdate, round: plan.round, to: key))),
                .badRequest, .wrongKind
            )
            // The signed stage view: the cohort member's, and 404 for someone outside it.
            let view = try await client.execute(uri: "/v1/rounds/\(plan.round)/secagg?client=s0", method: .get)
            #expect(view.status == .ok)
            let publication = try Fedseg_V1_SignedPublication(serializedBytes: [UInt8](buffer: view.body))
            #expect(try Fedseg_V1_SecAggStage(serializedBytes: publication.payload).stage == .secaggStageAdvertise)
            try expectError(try await client.execute(uri: "/v1/rounds/\(plan.round)/secagg?client=nobody", method: .get), .notFound, .notFound)
            // Nobody advertises; at the stage deadline the round aborts and a later advertisement is late.
            (coordinator.settings.clock as! ManualWallClock).advance(by: plan.secagg.stageSeconds + 1)
            try await coordinator.tick()
            let advertise = members[1].advertisement(plan, encryptionKey: KeyAgreement.PrivateKey().publicKey, maskingKey: KeyAgreement.PrivateKey().publicKey)
            let late = try members[1].seal(advertise, kind: .secaggAdvertise, round: plan.round, to: key)
            let response = try await client.execute(uri: path, method: .post, body: ByteBuffer(bytes: late))
            let code = try error(response).code
            #expect(response.status == .conflict && [.late, .wrongRound].contains(code))
        }
    }
}
