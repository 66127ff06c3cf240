import FedSegCrypto
import FedSegPrivacy
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwiftProtobuf

/// The HTTP API (docs/PROTOCOL.md): client endpoints with protobuf bodies, admin endpoints with
/// JSON bodies behind the bearer token, `/healthz` and `/metrics`.
public enum CoordinatorRoutes {
    static let protobuf = "application/x-protobuf"

    public static func router(coordinator: Coordinator, adminTokenHash: [UInt8]) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let limit = coordinator.settings.limits.maximumMessageBytes

        router.get("healthz") { _, _ in "ok\n" }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: coordinator.metrics.exposition()))
            )
        }

        router.post("v1/enroll") { request, _ in
            let body = try await collect(request, limit: 64 * 1024, coordinator: coordinator)
            do {
                let enroll = try MessageCodec.decode(Fedseg_V1_EnrollRequest.self, from: body, limits: coordinator.settings.limits)
                try coordinator.store.registry.enroll(enroll)
                let response = Fedseg_V1_EnrollResponse.with {
                    $0.clientID = enroll.clientID
                    $0.coordinatorSigningKey = Data(coordinator.keys.identity.signing.publicKey.bytes)
                    $0.coordinatorKxKey = Data(coordinator.keys.identity.keyAgreement.publicKey.bytes)
                }
                return try protobufResponse(response)
            } catch let failure as ClientRegistry.Failure {
                switch failure {
                case .clientExists: return errorResponse(.badRequest, .badRequest, failure.description)
                default: return errorResponse(.forbidden, .badToken, failure.description)
                }
            } catch let error as ProtocolError {
                return errorResponse(.unprocessableContent, .invalidField, error.description)
            }
        }

        router.get("v1/rounds/current") { _, _ in
            guard let publication = await coordinator.currentPublication() else {
                return errorResponse(.notFound, .noOpenRound, "no round is open")
            }
            return Response(status: .ok, headers: [.contentType: protobuf], body: .init(byteBuffer: ByteBuffer(bytes: publication)))
        }

        router.post("v1/rounds/:round/updates") { request, context in
            guard let round = context.parameters.get("round", as: UInt64.self) else {
                return errorResponse(.badRequest, .badRequest, "round must be an unsigned integer")
            }
            if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
                coordinator.metrics.rejected("oversized")
                // The body is never read; closing the connection stops a client still sending it.
                var response = errorResponse(.contentTooLarge, .oversized, "body of \(length) bytes is over the limit of \(limit)")
                response.headers[.connection] = "close"
                return response
            }
            let body: [UInt8]
            do {
                body = try await collect(request, limit: limit, coordinator: coordinator)
            } catch is NIOTooManyBytesError {
                coordinator.metrics.rejected("oversized")
                return errorResponse(.contentTooLarge, .oversized, "body over the limit of \(limit) bytes")
            }
            return await submit(body, round: round, coordinator: coordinator)
        }

        // Distributed rounds: the signed stage view for one client (its neighbours' keys, the
        // shares sealed to it, the survivors), or the public progress without `client`.
        router.get("v1/rounds/:round/secagg") { request, context in
            guard let round = context.parameters.get("round", as: UInt64.self) else {
                return errorResponse(.badRequest, .badRequest, "round must be an unsigned integer")
            }
            let client = request.uri.queryParameters.get("client")
            guard let view = try await coordinator.secAggView(round: round, clientID: client) else {
                return errorResponse(.notFound, .notFound, client.map { "round \(round) is not open, or \($0) is not in its cohort" } ?? "round \(round) is not open")
            }
            return Response(status: .ok, headers: [.contentType: protobuf], body: .init(byteBuffer: ByteBuffer(bytes: view)))
        }

        router.get("v1/models/latest") { _, _ in
            guard let model = try coordinator.store.latestModel() else {
                return errorResponse(.notFound, .notFound, "no segment model has been published")
            }
            return Response(status: .ok, headers: [.contentType: protobuf], body: .init(byteBuffer: ByteBuffer(bytes: model.publication)))
        }

        let admin = router.group("admin/v1").add(middleware: AdminAuthentication(tokenHash: adminTokenHash))
        admin.get("status") { _, _ in
            let clients = try coordinator.store.registry.clients()
            let summary = try? await coordinator.summary()
            return try json(AdminStatus(
                clients: clients.count, activeClients: clients.filter { $0.status == .active }.count,
                run: summary, coordinatorSigningKey: coordinator.keys.identity.signing.publicKey.hex
            ))
        }
        admin.get("clients") { _, _ in
            try json(coordinator.store.registry.clients().map { ClientEntry(id: $0.id, status: $0.status, enrolledAt: $0.enrolledAt) })
        }
        admin.post("clients/tokens") { request, context in
            let ask = try await request.decode(as: TokenRequest.self, context: context)
            guard (1...100_000).contains(ask.count ?? 1) else { return errorResponse(.badRequest, .badRequest, "count must be in 1...100000") }
            let lifetime = ask.lifetimeSeconds ?? 3600
            let tokens = try (0..<(ask.count ?? 1)).map { _ in try coordinator.store.registry.createToken(lifetime: lifetime) }
            return try json(["tokens": tokens])
        }
        admin.post("clients/:id/revoke") { _, context in
            let id = try context.parameters.require("id")
            do {
                try coordinator.store.registry.revoke(id: id)
            } catch let failure as ClientRegistry.Failure {
                return errorResponse(.notFound, .notFound, failure.description)
            }
            return try json(["revoked": id])
        }
        admin.get("runs") { _, _ in
            try json(coordinator.store.runs().map { run in
                ["id": run.id, "status": run.status.rawValue, "phase": run.phase.rawValue, "committed_rounds": "\(run.committedRounds)"]
            })
        }
        admin.post("runs") { request, context in
            let parameters: RunParameters
            do {
                parameters = try await request.decode(as: RunParameters.self, context: context)
            } catch {
                return errorResponse(.badRequest, .badRequest, "run parameters: \(error)")
            }
            do {
                // Embedding seed phrases can take seconds: done off the event loop and outside the
                // state machine.
                let settings = coordinator.settings
                let prepared = try await Task.detached { try RunStart.prepare(parameters, settings: settings) }.value
                return try json(try await coordinator.start(prepared), status: .created)
            } catch let error as CoordinatorError {
                if case .runInProgress = error { return errorResponse(.conflict, .badRequest, error.description) }
                return errorResponse(.unprocessableContent, .invalidField, error.description)
            } catch let error as ProtocolError {
                return errorResponse(.unprocessableContent, .invalidField, "invalid run parameters: \(error)")
            }
        }
        admin.get("runs/current") { _, _ in
            do { return try json(try await coordinator.summary()) } catch let error as CoordinatorError {
                return errorResponse(.notFound, .notFound, error.description)
            }
        }
        admin.get("runs/:id") { _, context in
            do { return try json(try await coordinator.summary(try context.parameters.require("id"))) } catch let error as CoordinatorError {
                return errorResponse(.notFound, .notFound, error.description)
            }
        }
        admin.post("runs/current/stop") { _, _ in
            do { return try json(try await coordinator.stop()) } catch let error as CoordinatorError {
                return errorResponse(.conflict, .badRequest, error.description)
            }
        }
        admin.get("segments") { _, _ in
            do {
                if let parameters = try await coordinator.needsSeedVectors(), let runID = try coordinator.store.runs().last?.id {
                    let settings = coordinator.settings
                    let vectors = try await Task.detached { try RunStart.embedSeedPhrases(parameters, settings: settings) }.value
                    await coordinator.setSeedVectors(runID: runID, vectors: vectors)
                }
                return try json(try await coordinator.segments())
            } catch let error as CoordinatorError {
                return errorResponse(.notFound, .notFound, error.description)
            }
        }
        admin.get("ledger") { _, _ in
            try json(LedgerAudit.run(coordinator.store.ledger))
        }
        admin.post("privacy/budget") { request, context in
            let ask: BudgetRequest
            do {
                ask = try await request.decode(as: BudgetRequest.self, context: context)
                try ask.validate()
            } catch {
                return errorResponse(.badRequest, .badRequest, "budget: \(error)")
            }
            do {
                let budget = try await coordinator.setLifetimeBudget(epsilon: ask.epsilon, delta: ask.delta, reason: ask.reason)
                return try json(BudgetRequest(epsilon: budget.epsilon, delta: budget.delta, reason: ask.reason))
            } catch let error as CoordinatorError {
                if case .runInProgress = error { return errorResponse(.conflict, .badRequest, error.description) }
                return errorResponse(.unprocessableContent, .invalidField, error.description)
            }
        }
        return router
    }

    /// One client message: the intake's checks outside the state machine (size, header, sender,
    /// round and kind, decryption, validation), then recorded and added to the open round in one
    /// step (`Coordinator.accept`). The sender is checked before the round, so an impostor is
    /// refused as one even after the round closed; a message already accepted is a replay even
    /// after its round closed, which tells a retrying client that an earlier attempt counted.
    static func submit(_ body: [UInt8], round: UInt64, coordinator: Coordinator) async -> Response {
        do {
            let header = try coordinator.intake.identify(body).header
            let current = await coordinator.snapshot()
            guard let snapshot = current, snapshot.round == round else {
                if try coordinator.store.registry.wasAccepted(clientID: header.clientID, round: round, kind: header.kind) {
                    return rejected(.replay(client: header.clientID, round: round), coordinator)
                }
                let open = current?.round
                if let open, round > open {
                    coordinator.metrics.rejected("wrong_round")
                    return errorResponse(.conflict, .wrongRound, "round \(round) is not open; round \(open) is")
                }
                return late(open.map { "round \(round) has closed; round \($0) is open" } ?? "no round is open", coordinator)
            }
            // A distributed round takes the open stage's kind only: earlier stages are late, later
            // ones not open yet.
            if let order = snapshot.stageOrder, let kind = Fedseg_V1_MessageKind(rawValue: Int(header.kind)) {
                switch order(kind) {
                case .open: break
                case .closed(let why):
                    if try coordinator.store.registry.wasAccepted(clientID: header.clientID, round: round, kind: header.kind) {
                        return rejected(.replay(client: header.clientID, round: round), coordinator)
                    }
                    return late(why, coordinator)
                case .notOpenYet(let why):
                    return errorResponse(.conflict, .stageNotOpen, why)
                }
            }
            let decoded = try coordinator.intake.decode(
                body, plan: snapshot.plan, coordinator: coordinator.keys.identity.keyAgreement, checkStatus: true, kinds: snapshot.kinds,
                check: snapshot.check
            )
            switch try await coordinator.accept(decoded, envelope: body, round: round) {
            case .added: return Response(status: .accepted)
            case .late(let why): return late(why, coordinator)
            case .rejected(let rejection): return rejected(rejection, coordinator)
            }
        } catch let rejection as UpdateIntake.Rejection {
            return rejected(rejection, coordinator)
        } catch {
            coordinator.metrics.rejected("internal")
            return errorResponse(.internalServerError, .unspecified, "the coordinator could not take the message: \(error)")
        }
    }

    static func late(_ why: String, _ coordinator: Coordinator) -> Response {
        coordinator.metrics.rejected("late")
        return errorResponse(.conflict, .late, why)
    }

    static func rejected(_ rejection: UpdateIntake.Rejection, _ coordinator: Coordinator) -> Response {
        coordinator.metrics.rejected(rejection.reason)
        return errorResponse(rejection)
    }

    static func collect(_ request: Request, limit: Int, coordinator: Coordinator) async throws -> [UInt8] {
        var buffer = try await request.body.collect(upTo: limit)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    static func protobufResponse(_ message: some SwiftProtobuf.Message) throws -> Response {
        let bytes: [UInt8] = try message.serializedBytes()
        return Response(status: .ok, headers: [.contentType: protobuf], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func errorResponse(_ rejection: UpdateIntake.Rejection) -> Response {
        switch rejection {
        case .oversized: errorResponse(.contentTooLarge, .oversized, rejection.description)
        case .malformedEnvelope, .tampered: errorResponse(.badRequest, .tampered, rejection.description)
        case .unknownSender: errorResponse(.forbidden, .unknownSender, rejection.description)
        case .revoked: errorResponse(.forbidden, .revoked, rejection.description)
        case .wrongRound: errorResponse(.conflict, .wrongRound, rejection.description)
        case .wrongKind: errorResponse(.badRequest, .wrongKind, rejection.description)
        case .invalid: errorResponse(.unprocessableContent, .invalidField, rejection.description)
        case .replay: errorResponse(.conflict, .replay, rejection.description)
        case .alreadyAnswered: errorResponse(.conflict, .alreadyAnswered, rejection.description)
        }
    }

    static func errorResponse(_ status: HTTPResponse.Status, _ code: Fedseg_V1_ErrorResponse.Code, _ message: String) -> Response {
        let error = Fedseg_V1_ErrorResponse.with {
            $0.code = code
            $0.message = message
        }
        let bytes: [UInt8] = (try? error.serializedBytes()) ?? []
        return Response(status: status, headers: [.contentType: protobuf], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// `Authorization: Bearer <token>`, compared with the stored SHA-256 of the admin token in
/// constant time.
struct AdminAuthentication<Context: RequestContext>: RouterMiddleware {
    let tokenHash: [UInt8]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            return CoordinatorRoutes.errorResponse(.unauthorized, .unauthorized, "admin endpoints need Authorization: Bearer <admin token>")
        }
        let presented = SHA256.hash(Data(header.dropFirst("Bearer ".count).utf8)).bytes
        guard constantTimeEqual(presented, tokenHash) else {
            return CoordinatorRoutes.errorResponse(.unauthorized, .unauthorized, "wrong admin token")
        }
        return try await next(request, context)
    }
}

struct TokenRequest: Decodable {
    var count: Int?
    var lifetimeSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case count
        case lifetimeSeconds = "lifetime_seconds"
    }
}
