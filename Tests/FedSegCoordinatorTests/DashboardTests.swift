import FedSegCrypto
import FedSegPrivacy
import FedSegProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import FedSegCoordinator

/// The dashboard through the real router, in memory: who gets in (session cookie or bearer
/// token), what the cookie is, that actions need the session's CSRF token and this site's
/// Origin, and what each page shows. The browser test (IntegrationTests) loads the same pages in
/// headless Chromium.
@Suite("Dashboard")
struct DashboardTests {
    static let adminToken = "dashboard-test-admin-token"

    func application(_ coordinator: Coordinator) -> some ApplicationProtocol {
        Application(router: CoordinatorRoutes.router(coordinator: coordinator, adminTokenHash: SHA256.hash(Data(Self.adminToken.utf8)).bytes))
    }

    var admin: HTTPFields { [.authorization: "Bearer \(Self.adminToken)", .contentType: "application/json"] }
    var form: HTTPFields { [.contentType: "application/x-www-form-urlencoded"] }

    func text(_ response: TestResponse) -> String { String(buffer: response.body) }

    /// Signs in through the form and returns the `name=value` of the session cookie.
    func signIn(_ client: some TestClientProtocol) async throws -> String {
        let response = try await client.execute(
            uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "token=\(Self.adminToken)")
        )
        #expect(response.status == .seeOther)
        #expect(response.headers[.location] == "/dashboard")
        let cookie = try #require(response.headers[.setCookie])
        return String(cookie.prefix { $0 != ";" })
    }

    func csrf(in page: String) throws -> String {
        let marker = #"name="csrf" value=""#
        let start = try #require(page.range(of: marker)).upperBound
        return String(page[start...].prefix { $0 != "\"" })
    }

    @Test("sign-in: a redirect without a session, a wrong token refused, an HttpOnly SameSite=Strict cookie, the bearer token for scripts")
    func access() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        try await application(coordinator).test(.router) { client in
            let anonymous = try await client.execute(uri: "/dashboard", method: .get)
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/dashboard/login")
            #expect(try await client.execute(uri: "/dashboard/privacy", method: .get).status == .seeOther)
            #expect(try await client.execute(uri: "/dashboard/runs/stop", method: .post).status == .unauthorized)

            let login = try await client.execute(uri: "/dashboard/login", method: .get)
            #expect(login.status == .ok && text(login).contains(#"name="token""#))
            #expect(login.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)

            let wrong = try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "token=nope"))
            #expect(wrong.status == .unauthorized && text(wrong).contains("wrong admin token"))
            #expect(wrong.headers[.setCookie] == nil)
            var foreign = form
            foreign[.origin] = "https://evil.example"
            let crossSite = try await client.execute(uri: "/dashboard/login", method: .post, headers: foreign, body: ByteBuffer(string: "token=\(Self.adminToken)"))
            #expect(crossSite.status == .forbidden && crossSite.headers[.setCookie] == nil)

            let response = try await client.execute(uri: "/dashboard/login", method: .post, headers: form, body: ByteBuffer(string: "token=\(Self.adminToken)"))
            let setCookie = try #require(response.headers[.setCookie])
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"] {
                #expect(setCookie.contains(attribute), "\(setCookie)")
            }
            #expect(!setCookie.contains("Secure"), "plain HTTP in this test: no Secure attribute")
            let cookie = String(setCookie.prefix { $0 != ";" })
            for path in ["/dashboard", "/dashboard/privacy", "/dashboard/segments", "/dashboard/clients", "/dashboard/live/run"] {
                let page = try await client.execute(uri: path, method: .get, headers: [.cookie: cookie])
                #expect(page.status == .ok, "\(path)")
                #expect(page.headers[.contentType] == "text/html; charset=utf-8", "\(path)")
            }
            #expect(try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: "fedseg_session=forged"]).status == .seeOther)
            #expect(try await client.execute(uri: "/dashboard", method: .get, headers: [.authorization: "Bearer \(Self.adminToken)"]).status == .ok)
            #expect(try await client.execute(uri: "/dashboard", method: .get, headers: [.authorization: "Bearer wrong"]).status == .unauthorized)

            // Signing out ends the session on the server, not only in the browser.
            let page = text(try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: cookie]))
            var signOut = form
            signOut[.cookie] = cookie
            let out = try await client.execute(uri: "/dashboard/logout", method: .post, headers: signOut, body: ByteBuffer(string: "csrf=\(try csrf(in: page))"))
            #expect(out.status == .seeOther && out.headers[.location] == "/dashboard/login")
            #expect(try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: cookie]).status == .seeOther)
        }
    }

    @Test("actions need the session's CSRF token and this site's Origin; stopping a run from the dashboard stops it")
    func csrfAndStop() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        try await application(coordinator).test(.router) { client in
            for id in ["alice", "bob"] {
                let member = TestClient(id: id)
                try coordinator.store.registry.add(
                    id: id, signingKey: member.keys.signing.publicKey, kxKey: member.keys.keyAgreement.publicKey,
                    now: Date(timeIntervalSince1970: coordinator.settings.clock.now())
                )
            }
            var parameters = smallRun(rounds: 2, minParticipants: 2)
            parameters.maxUsers = 1000
            let started = try await client.execute(
                uri: "/admin/v1/runs", method: .post, headers: admin, body: ByteBuffer(bytes: [UInt8](try JSONEncoder().encode(parameters)))
            )
            #expect(started.status == .created, "\(text(started))")
            let cookie = try await signIn(client)
            let page = text(try await client.execute(uri: "/dashboard", method: .get, headers: [.cookie: cookie]))
            #expect(page.contains(#"<span class="status running">running</span>"#) && page.contains("Stop this run"))
            let token = try csrf(in: page)
            #expect(token.count == 64)

            var headers = form
            headers[.cookie] = cookie
            #expect(try await client.execute(uri: "/dashboard/runs/stop", method: .post, headers: headers, body: ByteBuffer(string: "")).status == .forbidden)
            #expect(try await client.execute(uri: "/dashboard/runs/stop", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(String(repeating: "0", count: 64))")).status == .forbidden)
            var foreign = headers
            foreign[.origin] = "http://evil.example"
            #expect(try await client.execute(uri: "/dashboard/runs/stop", method: .post, headers: foreign, body: ByteBuffer(string: "csrf=\(token)")).status == .forbidden)
            #expect(try await coordinator.summary().status == .running, "a refused action changes nothing")

            let stopped = try await client.execute(uri: "/dashboard/runs/stop", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(token)"))
            #expect(stopped.status == .seeOther && stopped.headers[.location] == "/dashboard")
            let summary = try await coordinator.summary()
            #expect(summary.status == .stopped && summary.reason == "stopped from the dashboard")
            let after = text(try await client.execute(uri: "/dashboard/live/run", method: .get, headers: [.cookie: cookie]))
            #expect(after.contains("stopped") && !after.contains("Stop this run"))
        }
    }

    @Test("pages: the ledger verified with its chart, segment sizes never negative, rejections by reason")
    func pages() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        coordinator.metrics.rejected("tampered")
        coordinator.metrics.rejected("tampered")
        coordinator.metrics.rejected("late")
        try await application(coordinator).test(.router) { client in
            let headers: HTTPFields = [.authorization: "Bearer \(Self.adminToken)"]
            let privacy = text(try await client.execute(uri: "/dashboard/privacy", method: .get, headers: headers))
            #expect(privacy.contains("Ledger verified"))
            #expect(privacy.contains("all-users") && privacy.contains("<svg") && privacy.contains("Why the same releases show two ε figures"))
            let clients = text(try await client.execute(uri: "/dashboard/clients", method: .get, headers: headers))
            #expect(clients.contains("<td><code>tampered</code></td><td class=\"num\">2</td>"))
            #expect(clients.contains("<td><code>late</code></td><td class=\"num\">1</td>"))
            let segments = text(try await client.execute(uri: "/dashboard/segments", method: .get, headers: headers))
            #expect(segments.contains("No segments yet"))
            // Text from the ledger or clients is escaped, never markup.
            #expect(!privacy.contains("<script>"))
        }
        #expect(DashboardPages.size(-9.4) == "≈ 0 (noisy; released -9.4, clamped)")
        #expect(DashboardPages.size(41.6) == "≈ 42 (noisy)")
        #expect(DashboardPages.size(nil) == "not released")
    }

    @Test("/metrics: HELP and TYPE for every metric, requests by route pattern, lifetime ε per population and δ")
    func metrics() async throws {
        let coordinator = try makeCoordinator(try temporaryDirectory(), clock: ManualWallClock())
        try await coordinator.recover()
        try await application(coordinator).test(.router) { client in
            _ = try await client.execute(uri: "/healthz", method: .get)
            _ = try await client.execute(uri: "/v1/rounds/7/updates", method: .post, body: ByteBuffer(string: "x"))
            _ = try await client.execute(uri: "/no/such/path", method: .get)
            let exposition = text(try await client.execute(uri: "/metrics", method: .get))
            let families = Set(exposition.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }.map { line in
                String(line.prefix { $0 != "{" && $0 != " " }).replacingOccurrences(of: "_bucket", with: "")
                    .replacingOccurrences(of: "_sum", with: "").replacingOccurrences(of: "_count", with: "")
            })
            #expect(families.count >= 5, "\(exposition)")
            for family in families {
                #expect(exposition.contains("# HELP \(family) "), "no HELP for \(family)")
                #expect(exposition.contains("# TYPE \(family) "), "no TYPE for \(family)")
            }
            #expect(exposition.contains(#"fedseg_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "\(exposition)")
            #expect(exposition.contains(#"fedseg_http_requests_total{method="POST",route="/v1/rounds/{round}/updates",status="400"} 1"#), "\(exposition)")
            #expect(exposition.contains(#"fedseg_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "\(exposition)")
            #expect(exposition.contains(#"fedseg_http_request_duration_seconds_count{method="GET",route="/healthz"} 1"#), "\(exposition)")
            #expect(exposition.contains(#"fedseg_epsilon_budget{population="all-users",delta="1e-05"} 16.0"#), "\(exposition)")
            #expect(exposition.contains(#"fedseg_epsilon_spent{population="all-users",delta="1e-05"} 0.0"#), "\(exposition)")
        }
    }
}
