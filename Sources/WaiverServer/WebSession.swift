import Foundation
import Hummingbird
import Mustache
import NIOCore
import NIOPosix
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// Sign-in with a token, the session cookie, CSRF and forms (Hummingbird's cookies and URL-encoded form decoder).
extension Web {
    func login(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        let current = now
        if state.limiter.blocked(ctx.client, now: current) {
            return try loginPage(req, notice: "Too many failed sign-ins from this address: wait a minute.", status: .tooManyRequests)
        }
        let form: [String: String]
        do { form = try await formBody(req) } catch {
            let e = APIError.from(error, context: ctx)
            return try loginPage(req, notice: e.message, status: e.status)
        }
        guard let expected = cookie(req, Self.loginCookie), let sent = form["csrf"], APIToken.equal(expected, sent) else {
            return try loginPage(req, notice: "The sign-in form expired; please try again.", status: .forbidden)
        }
        guard let token = form["token"], let (id, secret) = APIToken.parse(token.trimmingCharacters(in: .whitespaces)),
              let (user, hash) = try await store.token(id: id), APIToken.equal(hash, AuditChain.sha256(Data(secret.utf8)))
        else {
            state.limiter.fail(ctx.client, now: current)
            return try loginPage(req, notice: "That token is not valid (or was revoked).", status: .unauthorized)
        }
        let session = APIToken.generate().token, csrf = APIToken.generate().token
        try await store.createSession(idHash: AuditChain.sha256(Data(session.utf8)), user: user.name, tokenId: id, csrf: csrf,
                                expiresAt: now.addingTimeInterval(Self.sessionSeconds), now: now)
        var r = redirect("/inbox")
        r.headers[values: .setCookie] = [
            cookieHeader(Self.sessionCookie, session, maxAge: Int(Self.sessionSeconds), req: req),
            cookieHeader(Self.loginCookie, "", maxAge: 0, req: req),
        ]
        return r
    }

    func loginPage(_ req: Request, notice: String?, status: HTTPResponse.Status = .ok) throws -> Response {
        let csrf = APIToken.generate().token
        let sso = state.settings.configuration.identity.oidc.map { ["name": $0.name] }
        var r = try renderPlain("login", ["title": "Sign in", "csrf": csrf, "notice": notice.map { ["kind": "error", "text": $0] } as Any,
                                          "sso": sso as Any], status: status)
        r.headers[.setCookie] = cookieHeader(Self.loginCookie, csrf, maxAge: 900, req: req)
        return r
    }

    /// A `Set-Cookie` value (Hummingbird's `Cookie`): HttpOnly, SameSite=Strict, Secure behind TLS.
    /// Our values are URL-safe tokens, or empty to end a cookie.
    func cookieHeader(_ name: String, _ value: String, maxAge: Int, req: Request) -> String {
        let secure = req.headers[.init("X-Forwarded-Proto")!] == "https" || req.uri.scheme == .https
        return Cookie(name: name, value: value, maxAge: maxAge, path: "/", secure: secure, httpOnly: true, sameSite: .strict).description
    }

    func requireCSRF(_ req: Request, _ ctx: WaiverContext) async throws {
        let form = try await formBody(req)
        guard let expected = ctx.csrf, let sent = form["csrf"], APIToken.equal(expected, sent) else {
            throw APIError(.forbidden, "csrf", "this form is missing its CSRF token or it does not match your session")
        }
    }

    /// Runs a page handler for a signed-in user; without a session, back to sign-in.
    func cookie(_ req: Request, _ name: String) -> String? { Web.cookie(req, name) }

    static func cookie(_ req: Request, _ name: String) -> String? { req.cookies[name]?.value }

    /// A form body (`application/x-www-form-urlencoded`, at most 64 KiB) through Hummingbird's
    /// decoder; a body it cannot decode (a broken percent escape, say) is a 400, never a field
    /// silently emptied.
    func formBody(_ req: Request) async throws -> [String: String] {
        var req = req
        let buffer = try await req.collectBody(upTo: 64 << 10)
        do {
            return try URLEncodedFormDecoder().decode([String: String].self, from: String(buffer: buffer))
        } catch {
            throw APIError(.badRequest, "bad_request", "the form could not be read (\(String(describing: error).clipped()))")
        }
    }
}

/// Reads the session cookie into the context (user and CSRF token).
struct SessionMiddleware: RouterMiddleware {
    typealias Context = WaiverContext
    let store: any ServerRegisterStore
    let now: @Sendable () -> Date

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let id = Web.cookie(request, Web.sessionCookie), let (user, csrf) = try await store.session(idHash: AuditChain.sha256(Data(id.utf8)), now: now(), idle: Web.sessionIdleSeconds) {
            context.user = user
            context.csrf = csrf
        }
        return try await next(request, context)
    }
}
