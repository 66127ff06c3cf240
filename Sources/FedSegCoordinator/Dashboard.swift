import FedSegCrypto
import FedSegMath
import FedSegPrivacy
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import Synchronization

/// The operator's web dashboard at `/dashboard`: server-rendered HTML (swift-mustache templates,
/// no JavaScript build step), behind the admin token. A browser signs in with the token once and
/// gets an HttpOnly, SameSite=Strict session cookie; scripts may send the admin bearer token
/// instead. Every action is a POST carrying the session's CSRF token, and is refused when its
/// Origin is another site.
public enum Dashboard {
    static let cookieName = "fedseg_session"
    /// How long a sign-in lasts.
    static let sessionSeconds = 12 * 3600
    static let formLimit = 16 * 1024

    /// What every page answers with: no caching, no framing, scripts and styles from the
    /// coordinator only (the live refresh is `/dashboard/static/live.js`, not inline).
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        .xContentTypeOptions: "nosniff",
        .cacheControl: "no-store",
        // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on form posts.
        HTTPField.Name("Referrer-Policy")!: "same-origin",
        HTTPField.Name("X-Frame-Options")!: "DENY",
    ]

    static func register(on router: Router<BasicRequestContext>, coordinator: Coordinator, adminTokenHash: [UInt8], secureCookies: Bool) {
        let sessions = DashboardSessions()
        let pages = DashboardPages(coordinator: coordinator)
        let access = DashboardAccess(tokenHash: adminTokenHash, sessions: sessions, clock: coordinator.settings.clock)

        router.get("dashboard/static/style.css") { _, _ in
            asset(DashboardTemplates.style, type: "text/css; charset=utf-8")
        }
        router.get("dashboard/static/live.js") { _, _ in
            asset(DashboardTemplates.liveScript, type: "text/javascript; charset=utf-8")
        }
        router.get("dashboard/login") { request, _ in
            if access.session(request) != nil { return redirect("/dashboard") }
            return html(pages.login(message: nil))
        }
        router.post("dashboard/login") { request, _ in
            guard access.sameOrigin(request) else { return html(pages.login(message: "refused: the form came from another site"), status: .forbidden) }
            let form = try await Self.form(LoginForm.self, request)
            guard let token = form?.token, AdminAuthentication<BasicRequestContext>.matches(token.trimmingCharacters(in: .whitespacesAndNewlines), adminTokenHash) else {
                return html(pages.login(message: "wrong admin token: paste the contents of admin.token from the coordinator's state directory"), status: .unauthorized)
            }
            let cookie = sessions.create(now: coordinator.settings.clock.now())
            var response = redirect("/dashboard")
            response.setCookie(Cookie(
                name: cookieName, value: cookie, maxAge: sessionSeconds, path: "/dashboard", secure: secureCookies, httpOnly: true, sameSite: .strict
            ))
            return response
        }

        let group = router.group("dashboard").add(middleware: access)
        group.get { request, _ in
            html(pages.layout(.runs, body: try await pages.runs(csrf: access.csrf(request)), request: request, access: access))
        }
        group.get("live/run") { request, _ in
            html(try await pages.liveRun(csrf: access.csrf(request)))
        }
        group.get("privacy") { request, _ in
            html(pages.layout(.privacy, body: try pages.privacy(), request: request, access: access))
        }
        group.get("segments") { request, _ in
            html(pages.layout(.segments, body: try await pages.segments(), request: request, access: access))
        }
        group.get("clients") { request, _ in
            html(pages.layout(.clients, body: try pages.clients(), request: request, access: access))
        }
        group.post("runs/stop") { request, _ in
            guard try await access.allowsAction(request, form: Self.form(ActionForm.self, request)) else { return forbidden(pages) }
            do {
                _ = try await coordinator.stop(reason: "stopped from the dashboard")
            } catch CoordinatorError.noRun {
                // Already over (another operator, or the run finished): the page shows that.
            }
            return redirect("/dashboard")
        }
        group.post("logout") { request, _ in
            guard try await access.allowsAction(request, form: Self.form(ActionForm.self, request)) else { return forbidden(pages) }
            if let cookie = request.cookies[cookieName]?.value { sessions.end(cookie) }
            var response = redirect("/dashboard/login")
            response.setCookie(Cookie(name: cookieName, value: "", maxAge: 0, path: "/dashboard", secure: secureCookies, httpOnly: true, sameSite: .strict))
            return response
        }
    }

    struct LoginForm: Decodable { var token: String }
    struct ActionForm: Decodable { var csrf: String }

    /// A URL-encoded form body, or nil when it is not one.
    static func form<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T? {
        var buffer = try await request.body.collect(upTo: formLimit)
        let text = buffer.readString(length: buffer.readableBytes) ?? ""
        return try? URLEncodedFormDecoder().decode(T.self, from: text)
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func asset(_ text: String, type: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = type
        headers[.cacheControl] = "max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func redirect(_ location: String) -> Response {
        var headers = securityHeaders
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    static func forbidden(_ pages: DashboardPages) -> Response {
        html(pages.message(title: "Refused", text: "This action needs the form of a page you loaded from this coordinator (its CSRF token did not match, or it came from another site). Reload the page and try again."), status: .forbidden)
    }
}

/// Signed-in browsers: the SHA-256 of each session cookie (the cookie itself is never kept) with
/// its CSRF token and expiry, in memory. A restart signs everyone out.
final class DashboardSessions: Sendable {
    struct Session: Sendable {
        var csrf: String
        var expires: Double
    }

    /// Sign-ins kept at once; the oldest goes first.
    static let limit = 1024
    private let sessions = Mutex<[String: Session]>([:])

    /// A new session's cookie value.
    func create(now: Double) -> String {
        let cookie = Self.randomHex()
        let session = Session(csrf: Self.randomHex(), expires: now + Double(Dashboard.sessionSeconds))
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            if sessions.count >= Self.limit, let oldest = sessions.min(by: { $0.value.expires < $1.value.expires }) {
                sessions[oldest.key] = nil
            }
            sessions[Self.key(cookie)] = session
        }
        return cookie
    }

    func session(_ cookie: String, now: Double) -> Session? {
        let key = Self.key(cookie)
        return sessions.withLock { sessions in
            guard let session = sessions[key] else { return nil }
            guard session.expires > now else {
                sessions[key] = nil
                return nil
            }
            return session
        }
    }

    func end(_ cookie: String) {
        let key = Self.key(cookie)
        sessions.withLock { $0[key] = nil }
    }

    static func key(_ cookie: String) -> String { SHA256.hash(Data(cookie.utf8)).hex }

    static func randomHex() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { SecureRandom.fill($0) }
        return bytes.hexString
    }
}

/// Who may see the dashboard: a signed-in browser (session cookie) or a script with the admin
/// bearer token. A browser without a session is sent to the sign-in form.
struct DashboardAccess: RouterMiddleware {
    typealias Context = BasicRequestContext
    let tokenHash: [UInt8]
    let sessions: DashboardSessions
    let clock: any WallClock

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.headers[.authorization] != nil {
            guard bearerValid(request) else {
                return Dashboard.html("wrong admin token in the Authorization header\n", status: .unauthorized)
            }
            return try await next(request, context)
        }
        if session(request) != nil { return try await next(request, context) }
        if request.method == .get || request.method == .head { return Dashboard.redirect("/dashboard/login") }
        return Dashboard.html("your dashboard session has ended: sign in again at /dashboard/login\n", status: .unauthorized)
    }

    func bearerValid(_ request: Request) -> Bool {
        AdminAuthentication<Context>.bearerToken(request).map { AdminAuthentication<Context>.matches($0, tokenHash) } ?? false
    }

    func session(_ request: Request) -> DashboardSessions.Session? {
        guard let cookie = request.cookies[Dashboard.cookieName]?.value, !cookie.isEmpty else { return nil }
        return sessions.session(cookie, now: clock.now())
    }

    /// An Origin header, when the browser sends one, must be this coordinator's own.
    func sameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return true }
        guard let authority = request.head.authority else { return false }
        guard let url = URL(string: origin), let host = url.host else { return false }
        let port = url.port.map { ":\($0)" } ?? ""
        return "\(host)\(port)".lowercased() == authority.lowercased()
    }

    /// A state-changing request: a script with the bearer token, or a browser form from this
    /// coordinator carrying its session's CSRF token.
    func allowsAction(_ request: Request, form: Dashboard.ActionForm?) -> Bool {
        if bearerValid(request) { return true }
        guard sameOrigin(request), let session = session(request), let presented = form?.csrf else { return false }
        return constantTimeEqual(Array(presented.utf8), Array(session.csrf.utf8))
    }

    /// The CSRF token the page's forms carry (empty for bearer-token scripts, which need none).
    func csrf(_ request: Request) -> String { session(request)?.csrf ?? "" }
}
