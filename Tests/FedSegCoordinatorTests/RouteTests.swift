import FedSegCrypto
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
            try expectError(try await client.execute(uri: "/admin/v1/status", method: .get), .unauthorized, .unauthorized)
            try expectError(
                try await client.execute(uri: "/admin/v1/status", method: .get, headers: [.authorization: "Bearer wrong"]), .unauthorized, .unauthorized
            )
            #expect(try await client.execute(uri: "/admin/v1/status", method: .get, headers: admin).status == .ok)

            // Enrollment: a token from the admin API once; a wrong token and a taken id are refused.
            let tokens = try await client.execute(
                uri: "/admin/v1/clients/tokens", method: .post, headers: admin, body: ByteBuffer(string: #"{"count": 3}"#)
            )
            #expect(tokens.status == .ok)
            let issued = try #require(try JSONDecoder().decode([String: [String]].self, from: Data([UInt8](buffer: tokens.body)))["tokens"])
            try expectError(
                try await client.execute(uri: "/admin/v1/clients/tokens", method: .post, headers: admin, body: ByteBuffer(string: #"{"count": 0}"#)),
                .badRequest, .badRequest
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
            try expectError(try await client.execute(uri: "/admin/v1/clients/nobody/revoke", method: .post, headers: admin), .notFound, .notFound)

            // No run yet.
            try expectError(try await client.execute(uri: "/v1/rounds/current", method: .get), .notFound, .noOpenRound)
            try expectError(try await client.execute(uri: "/v1/models/latest", method: .get), .notFound, .notFound)
            try expectError(try await client.execute(uri: "/admin/v1/runs/current", method: .get, headers: admin), .notFound, .notFound)
            try expectError(try await client.execute(uri: "/admin/v1/runs/current/stop", method: .post, headers: admin), .conflict, .badRequest)
            try expectError(try await client.execute(uri: "/admin/v1/segments", method: .get, headers: admin), .notFound, .notFound)

            // Starting runs: bad JSON, bad values (named), then one; a second is a conflict.
            try expectError(
                try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(string: "{")), .badRequest, .badRequest
            )
            let typo = try await client.execute(
                uri: "/admin/v1/runs", method: .post, headers: admin,
                body: ByteBuffer(string: #"{"k": 2, "epsilon": 4, "delta": 1e-6, "privacy_mode": "centrel"}"#)
            )
            try expectError(typo, .badRequest, .badRequest)
            let typoMessage = try error(typo).message
            #expect(typoMessage.contains("privacy_mode must be local or distributed"), "\(typoMessage)")
            var invalid = smallRun()
            invalid.k = 0
            try expectError(
                try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(bytes: [UInt8](try JSONEncoder().encode(invalid)))),
                .unprocessableContent, .invalidField
            )
            let started = try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON())
            #expect(started.status == .created)
            let summary = try JSONDecoder().decode(RunSummary.self, from: Data([UInt8](buffer: started.body)))
            #expect(summary.status == .running && summary.phase == .clustering)
            try expectError(try await client.execute(uri: "/admin/v1/runs", method: .post, headers: admin, body: try runJSON()), .conflict, .badRequest)
            #expect(try await client.execute(uri: "/admin/v1/runs/current", method: .get, headers: admin).status == .ok)
            #expect(try await client.execute(uri: "/admin/v1/runs/\(summary.id)", method: .get, headers: admin).status == .ok)
            try expectError(try await client.execute(uri: "/admin/v1/runs/run-none", method: .get, headers: admin), .notFound, .notFound)
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
            try expectError(try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, body: change), .unauthorized, .unauthorized)
            try expectError(
                try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, headers: admin, body: ByteBuffer(string: #"{"epsilon": 20, "reason": ""}"#)),
                .badRequest, .badRequest
            )
            let changed = try await client.execute(uri: "/admin/v1/privacy/budget", method: .post, headers: admin, body: change)
            #expect(changed.status == .ok)
            #expect(try JSONDecoder().decode(BudgetRequest.self, from: Data([UInt8](buffer: changed.body))) == BudgetRequest(epsilon: 20, delta: 1e-5, reason: "approved"))
            let audited = try await client.execute(uri: "/admin/v1/ledger", method: .get, headers: admin)
            #expect(String(buffer: audited.body).contains("admin: approved"))
            #expect(try await client.execute(uri: "/admin/v1/clients/bob/revoke", method: .post, headers: admin).status == .ok)
        }
    }

    @Test("every refusal of a client message has its status and code, checked in the documented order")
    func updateErrors() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        let members = (0..<3).map { TestClient(id: "m\($0)") }
        for member in members {
            try coordinator.store.registry.add(id: member.id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey)
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
            try coordinator.store.registry.add(id: member.id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey)
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
