import FedSegCrypto
import FedSegPrivacy
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SwiftProtobuf

/// The HTTP API (docs/PROTOCOL.md, docs/openapi.json): client endpoints with protobuf bodies,
/// admin endpoints with JSON bodies behind the bearer token, `/healthz`, `/metrics`, and the
/// operator's dashboard under `/dashboard`.
public enum CoordinatorRoutes {
    static let protobuf = "application/x-protobuf"

    /// `secureCookies`: the dashboard's session cookie is sent over HTTPS only (the daemon sets it
    /// when it serves TLS). `responseLog`: every answer is recorded there (`--response-log`).
    public static func router(
        coordinator: Coordinator, adminTokenHash: [UInt8], secureCookies: Bool = false, responseLog: ResponseLog? = nil
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        if let responseLog { router.add(middleware: ResponseRecorder(log: responseLog)) }
        // Before every route, so that each one is counted under its pattern.
        router.add(middleware: RequestMetrics(metrics: coordinator.metrics))
        let limit = coordinator.settings.limits.maximumMessageBytes

        router.get("healthz") { _, _ in "ok\n" }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: coordinator.metrics.exposition()))
            )
        }

        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }

        router.post("v1/enroll") { request, _ in
            let body = try await collect(request, limit: 64 * 1024)
            do {
                let enroll = try MessageCodec.decode(Fedseg_V1_EnrollRequest.self, from: body, limits: coordinator.settings.limits)
                try coordinator.store.registry.enroll(enroll, now: Date(timeIntervalSince1970: coordinator.settings.clock.now()))
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

        // `?client=ID` marks the client as live (docs/PROTOCOL.md, "Liveness"): rounds wait only
        // for clients seen within stale_after_seconds.
        router.get("v1/rounds/current") { request, _ in
            if let client = request.uri.queryParameters.get("client") { coordinator.markSeen(client) }
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
                body = try await collect(request, limit: limit)
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

        let admin = router.group("admin/v1")
            .add(middleware: AdminErrors(logger: coordinator.logger))
            .add(middleware: AdminAuthentication(tokenHash: adminTokenHash))
        admin.get("status") { _, _ in
            let clients = try coordinator.store.registry.clients()
            let summary = try? await coordinator.summary()
            let live = try coordinator.liveClientIDs().count
            return try json(AdminStatus(
                clients: clients.count, activeClients: clients.filter { $0.status == .active }.count, liveClients: live,
                run: summary, coordinatorSigningKey: coordinator.keys.identity.signing.publicKey.hex
            ))
        }
        admin.get("clients") { _, _ in
            try json(try coordinator.clientEntries())
        }
        admin.post("clients/tokens") { request, _ in
            let ask = try await decodeJSON(TokenRequest.self, request, limit: 64 * 1024)
            guard (1...100_000).contains(ask.count ?? 1) else { throw AdminError(.invalidField, "count: must be in 1...100000", field: "count") }
            let lifetime = ask.lifetimeSeconds ?? 3600
            let issuedAt = Date(timeIntervalSince1970: coordinator.settings.clock.now())
            guard lifetime.isFinite, lifetime > 0, lifetime <= 366 * 86_400 else {
                throw AdminError(.invalidField, "lifetime_seconds: must be in (0, 31622400]", field: "lifetime_seconds")
            }
            let tokens = try coordinator.store.registry.createTokens(count: ask.count ?? 1, lifetime: lifetime, now: issuedAt)
            return try json(["tokens": tokens])
        }
        admin.post("clients/:id/revoke") { _, context in
            let id = try context.parameters.require("id")
            do {
                try coordinator.store.registry.revoke(id: id)
            } catch let failure as ClientRegistry.Failure {
                throw AdminError(.notFound, failure.description)
            }
            return try json(["revoked": id])
        }
        admin.get("runs") { _, _ in
            try json(coordinator.store.runs().map { run in
                ["id": run.id, "status": run.status.rawValue, "phase": run.phase.rawValue, "committed_rounds": "\(run.committedRounds)"]
            })
        }
        admin.post("runs") { request, _ in
            let parameters = try await decodeJSON(RunParameters.self, request, limit: max(limit, 1 << 20))
            do {
                // Embedding seed phrases can take seconds: done off the event loop and outside the
                // state machine.
                let settings = coordinator.settings
                let prepared = try await Task.detached { try RunStart.prepare(parameters, settings: settings) }.value
                return try json(try await coordinator.start(prepared), status: .created)
            } catch let error as ProtocolError {
                if case .invalidField(let field, _) = error { throw AdminError(.invalidField, error.description, field: field) }
                throw AdminError(.invalidField, error.description)
            }
        }
        admin.get("runs/current") { _, _ in
            try json(try await coordinator.summary())
        }
        admin.get("runs/:id") { _, context in
            try json(try await coordinator.summary(try context.parameters.require("id")))
        }
        admin.post("runs/current/stop") { _, _ in
            do { return try json(try await coordinator.stop()) } catch CoordinatorError.noRun {
                throw AdminError(.conflict, "no run in progress: nothing to stop")
            }
        }
        admin.get("segments") { _, _ in
            try json(try await segmentsReport(coordinator))
        }
        admin.get("ledger") { _, _ in
            try json(LedgerAudit.run(coordinator.store.ledger))
        }
        admin.post("privacy/budget") { request, _ in
            let ask = try await decodeJSON(BudgetRequest.self, request, limit: 64 * 1024)
            do {
                try ask.validate()
            } catch let ProtocolError.invalidField(field, rule) {
                throw AdminError(.invalidField, "\(field): \(rule)", field: field)
            }
            let budget = try await coordinator.setLifetimeBudget(epsilon: ask.epsilon, delta: ask.delta, reason: ask.reason)
            return try json(BudgetRequest(epsilon: budget.epsilon, delta: budget.delta, reason: ask.reason))
        }
        Dashboard.register(on: router, coordinator: coordinator, adminTokenHash: adminTokenHash, secureCookies: secureCookies)
        return router
    }

    /// The current (or last) run's segments; after a restart the run's seed phrases are embedded
    /// again first (off the state machine), for the nearest phrases and labels.
    static func segmentsReport(_ coordinator: Coordinator) async throws -> SegmentsReport {
        if let parameters = try await coordinator.needsSeedVectors(), let runID = try coordinator.store.runs().last?.id {
            let settings = coordinator.settings
            let vectors = try await Task.detached { try RunStart.embedSeedPhrases(parameters, settings: settings) }.value
            await coordinator.setSeedVectors(runID: runID, vectors: vectors)
        }
        return try await coordinator.segments()
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
            if let storage = StorageFailure(error) {
                coordinator.metrics.rejected("unavailable")
                return errorResponse(.serviceUnavailable, .unavailable, "\(storage); send it again later")
            }
            coordinator.metrics.rejected("internal")
            coordinator.logger.error("a client message could not be taken", metadata: ["error": "\(String(reflecting: error))"])
            return errorResponse(.internalServerError, .unspecified, "the coordinator could not take the message; its log has the cause; send it again later")
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

    static func collect(_ request: Request, limit: Int) async throws -> [UInt8] {
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

    /// A JSON request body, read up to `limit` bytes and decoded with errors as `AdminError`.
    static func decodeJSON<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int) async throws -> T {
        let body: [UInt8]
        do {
            body = try await collect(request, limit: limit)
        } catch is NIOTooManyBytesError {
            throw AdminError(.tooLarge, "the body is over the limit of \(limit) bytes")
        }
        return try AdminError.decode(T.self, from: Data(body))
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
        guard let presented = Self.bearerToken(request) else {
            throw AdminError(.unauthorized, "admin endpoints need Authorization: Bearer <admin token> (the token coordinator init wrote to the state directory's admin-token file)")
        }
        guard Self.matches(presented, tokenHash) else {
            throw AdminError(.unauthorized, "wrong admin token")
        }
        return try await next(request, context)
    }

    /// The token of an `Authorization: Bearer` header, if the request has one.
    static func bearerToken(_ request: Request) -> Substring? {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return header.dropFirst("Bearer ".count)
    }

    /// Whether `token` is the admin token, by its SHA-256, in constant time.
    static func matches(_ token: some StringProtocol, _ tokenHash: [UInt8]) -> Bool {
        constantTimeEqual(SHA256.hash(Data(token.utf8)).bytes, tokenHash)
    }
}

/// Every admin error as the documented JSON shape (`AdminError.Body`) with its status: errors the
/// handlers throw, the coordinator's own, and the HTTP library's (which would otherwise answer in
/// its own format). Unexpected errors are logged and answered without their internals.
struct AdminErrors<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as AdminError {
            return Self.response(error)
        } catch let error as CoordinatorError {
            return Self.response(Self.adminError(error))
        } catch let error as HTTPError {
            let code: AdminError.Code = switch error.status.code {
            case 401: .unauthorized
            case 404: .notFound
            case 413: .tooLarge
            default: .badRequest
            }
            return Self.response(AdminError(code, error.body ?? error.status.reasonPhrase), status: error.status)
        } catch {
            if let unavailable = StorageFailure(error) { return Self.response(AdminError(.unavailable, unavailable.description)) }
            logger.error("admin request failed", metadata: ["path": "\(request.uri.path)", "error": "\(String(reflecting: error))"])
            return Self.response(AdminError(.internal, "the coordinator failed to answer \(request.method) \(request.uri.path); its log has the cause"))
        }
    }

    static func adminError(_ error: CoordinatorError) -> AdminError {
        switch error {
        case .invalidParameters: AdminError(.invalidField, error.description)
        case .runInProgress: AdminError(.conflict, error.description)
        case .noRun, .unknownRun: AdminError(.notFound, error.description)
        case .budget: AdminError(.budget, error.description)
        case .embedder: AdminError(.invalidField, error.description, field: "embedder_id")
        case .state: AdminError(.unavailable, error.description)
        case .configuration: AdminError(.invalidField, error.description)
        }
    }

    static func status(_ code: AdminError.Code) -> HTTPResponse.Status {
        switch code {
        case .malformedJSON, .badRequest: .badRequest
        case .invalidField, .budget: .unprocessableContent
        case .unauthorized: .unauthorized
        case .notFound: .notFound
        case .conflict: .conflict
        case .tooLarge: .contentTooLarge
        case .unavailable: .serviceUnavailable
        case .internal: .internalServerError
        }
    }

    static func response(_ error: AdminError, status: HTTPResponse.Status? = nil) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(AdminError.Body(error: error))) ?? Data("{\"error\":{\"code\":\"internal\",\"message\":\"\"}}".utf8)
        return Response(
            status: status ?? Self.status(error.code), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body))
        )
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
