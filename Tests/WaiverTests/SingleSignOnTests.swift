import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverStore

/// People sign in to the pages through a real OpenID provider on loopback (Authlib's authorization
/// server in `Tests/Identity/oidc_provider.py`): authorization code with PKCE, state and nonce.
@Suite("Single sign-on for people (OpenID Connect)", .serialized, needsPeers(["flask", "joserfc", "authlib"]))
struct SingleSignOnTests {
    /// Follows no redirect: each hop of the flow is looked at.
    static let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    /// The server with sign-on through `provider` (provider group sec-team -> security, finops -> finance),
    /// its clock at the provider's (real) time, since the provider stamps its tokens with it.
    func fixture(_ provider: IdentityProvider, secret: String? = "waiver-secret") async throws -> ServerFixture {
        var identity = IdentitySettings()
        var oidc = OIDCSettings(issuer: provider.issuer, clientId: "waiver")
        oidc.name = "Test IdP"
        oidc.clientSecretEnv = "OIDC_SECRET"
        oidc.groupMap = ["sec-team": ["security"], "finops": ["finance"]]
        identity.oidc = oidc
        let f = try await ServerFixture(env: secret.map { ["OIDC_SECRET": $0] } ?? [:], identity: identity)
        f.clock.set(Date())
        return f
    }

    /// Who signs in next at the provider, and what its next ID tokens do wrong on purpose.
    func next(_ provider: IdentityProvider, email: String = "ada@example.com", groups: [String]? = ["sec-team"], verified: Bool = true,
              tweak: Value.Object = Value.Object([])) async throws {
        var user = Value.Object([("sub", .string("sub-" + email)), ("email", .string(email)), ("email_verified", .bool(verified))])
        if let groups { user.append("groups", .array(groups.map(Value.string))) }
        _ = try await provider.post("/control/oidc", .object(Value.Object([("user", .object(user)), ("tweak", .object(tweak))])))
    }

    /// One sign-in through the provider: our redirect to it, its redirect back with a code, our callback.
    /// `state` replaces the state the provider sends back. Returns the callback's status and page.
    func signIn(_ c: some TestClientProtocol, _ browser: Browser, state: String? = nil) async throws -> (Int, String) {
        let (start, _, headers) = try await browser.get(c, "/login/oidc")
        #expect(start == 303)
        let authorize = try #require(headers[.location])
        #expect(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce=") && authorize.contains("state="))
        let response = try await Self.http.execute(HTTPClientRequest(url: authorize), timeout: .seconds(30))
        #expect(response.status == .found)
        let back = try #require(response.headers.first(name: "Location").flatMap(URLComponents.init(string:)))
        var items = back.queryItems ?? []
        if let state { items = items.map { $0.name == "state" ? URLQueryItem(name: "state", value: state) : $0 } }
        var callback = URLComponents()
        callback.path = "/login/oidc/callback"
        callback.queryItems = items
        let (status, page, _) = try await browser.get(c, try #require(callback.string))
        return (status, page)
    }

    /// The nonce the server sent the provider in its latest sign-in.
    func lastNonce(_ browser: Browser) -> String? { browser.cookies[Web.ssoCookie]?.split(separator: ".").dropFirst().first.map(String.init) }

    @Test func aPersonSignsInWithTheProviderAndTheirGroupsAreMappedAndRefreshed() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        try await f.app().test(.router) { c in
            let (loginStatus, login, _) = try await Browser().get(c, "/login")
            #expect(loginStatus == 200 && login.contains("Sign in with Test IdP"))
            try await next(provider, groups: ["sec-team", "unmapped"])
            let browser = Browser()
            let (status, page) = try await signIn(c, browser)
            #expect(status == 200 && page.contains("Signed in as <strong id=\"user\">ada@example.com</strong>"), "\(page)")
            #expect(browser.cookies[Web.sessionCookie] != nil && browser.cookies[Web.ssoCookie] == nil)
            let (inbox, body, _) = try await browser.get(c, "/inbox")
            #expect(inbox == 200 && body.contains("ada@example.com"))
            // Created at first sign-in with the mapped groups (an unmapped provider group gives none).
            #expect(try await f.state.store.user(named: "ada@example.com") == User(name: "ada@example.com", groups: ["security"], admin: false))
            // Her groups at the provider change: refreshed at the next sign-in.
            try await next(provider, groups: ["finops"])
            #expect(try await signIn(c, Browser()).0 == 200)
            #expect(try await f.state.store.user(named: "ada@example.com")?.groups == ["finance"])
            let saved = try await f.state.store.auditEvents(subject: "user:ada@example.com").filter { $0.action == "user.saved" }
            #expect(saved.count == 2 && saved.allSatisfy { $0.actor == "sso:\(provider.issuer)" })
            // A token without the groups claim leaves the groups Waiver has.
            try await next(provider, groups: nil)
            #expect(try await signIn(c, Browser()).0 == 200)
            #expect(try await f.state.store.user(named: "ada@example.com")?.groups == ["finance"])
            // Ending her sessions ends the single sign-on session too.
            _ = try await f.state.store.endSessions(user: "ada@example.com", actor: "root", now: f.clock.now)
            #expect(try await browser.get(c, "/inbox").0 == 303)
        }
    }

    @Test func aWrongStateAReplayedNonceAndAnUnverifiedEmailOpenNoSession() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        try await f.app().test(.router) { c in
            try await next(provider)
            // The state the provider sends back is not this browser's: a forged or crossed sign-in.
            let crossed = Browser()
            let (wrongState, page) = try await signIn(c, crossed, state: "not-this-browsers")
            #expect(wrongState == 403 && page.contains("the state does not match"), "\(page)")
            #expect(crossed.cookies[Web.sessionCookie] == nil)
            // A first sign-in succeeds; its nonce is then replayed in an ID token for a new sign-in.
            let first = Browser()
            _ = try await first.get(c, "/login/oidc")
            let usedNonce = try #require(lastNonce(first))
            first.cookies.removeAll()
            #expect(try await signIn(c, first).0 == 200)
            try await next(provider, tweak: Value.Object([("nonce", .string(usedNonce))]))
            let replay = Browser()
            let (replayed, why) = try await signIn(c, replay)
            #expect(replayed == 401 && why.contains("nonce"), "\(why)")
            #expect(replay.cookies[Web.sessionCookie] == nil)
            // A provider that has not verified the address does not sign anyone in with it.
            try await next(provider, verified: false)
            let (unverified, text) = try await signIn(c, Browser())
            #expect(unverified == 403 && text.contains("has not verified this e-mail"), "\(text)")
            // Without the sign-in cookie (another browser, or it expired), the callback opens nothing.
            let (noCookie, _, _) = try await Browser().get(c, "/login/oidc/callback?code=x&state=y")
            #expect(noCookie == 403)
        }
    }

    @Test func anIDTokenSignedByAnUnknownKeyForAnotherAudienceOrExpiredIsRefused() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        try await f.app().test(.router) { c in
            for (tweak, expected) in [(Value.Object([("key", "stranger")]), "does not publish"),
                                      (Value.Object([("aud", "another-client")]), "another audience"),
                                      (Value.Object([("exp_offset", .number(-120))]), "expired")] {
                try await next(provider, tweak: tweak)
                let browser = Browser()
                let (status, page) = try await signIn(c, browser)
                #expect(status == 401 && page.contains(expected), "\(tweak): \(status) \(page.prefix(2000))")
                #expect(browser.cookies[Web.sessionCookie] == nil)
            }
            #expect(try await f.state.store.user(named: "ada@example.com") == nil)
        }
    }

    @Test func aRotatedProviderKeyIsPickedUpAndAWrongClientSecretIsRefusedByTheProvider() async throws {
        let provider = try IdentityProvider()
        let f = try await fixture(provider)
        try await f.app().test(.router) { c in
            try await next(provider)
            #expect(try await signIn(c, Browser()).0 == 200)
            _ = try await provider.rotate()
            f.clock.set(f.clock.now.addingTimeInterval(31))
            let (rotated, page) = try await signIn(c, Browser())
            #expect(rotated == 200, "\(page)")
            #expect(try await provider.jwksFetches == 2)
        }
        let wrong = try await fixture(provider, secret: "not-the-secret")
        try await wrong.app().test(.router) { c in
            let (status, page) = try await signIn(c, Browser())
            #expect(status == 401 && page.contains("the provider refused the code"), "\(page)")
        }
    }

    @Test func theProviderIsReadFromWaiverYamlAndItsMistakesNamed() throws {
        let c = try ConfigLoader.parse(Data("""
            identity:
              oidc:
                issuer: https://sso.example.com/realms/acme
                client_id: waiver
                group_map: { /sec: security, /eng: [engineering-managers, developers] }
            """.utf8), file: "waiver.yaml")
        let oidc = try #require(c.identity.oidc)
        #expect(oidc.userClaim == "email" && oidc.groupsClaim == "groups" && oidc.scopes == ["openid", "email", "profile"])
        #expect(oidc.groups(from: ["/eng", "/sec", "/other"]) == ["developers", "engineering-managers", "security"])
        do {
            _ = try ConfigLoader.parse(Data("""
                identity:
                  oidc:
                    issuer: http://sso.example.com
                    client_id: waiver
                    scopes: [email]
                """.utf8), file: "waiver.yaml")
            Issue.record("a plain-http provider was accepted")
        } catch {
            #expect(error.description.contains("waiver.yaml:3") && error.description.contains("must be https"), "\(error)")
        }
        #expect(throws: InputErrors.self) { try ConfigLoader.parse(Data("identity:\n  oidc:\n    issuer: https://x.example.com\n".utf8), file: "w.yaml") }
    }
}
