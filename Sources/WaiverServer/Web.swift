import Foundation
import Hummingbird
import Mustache
import NIOCore
import NIOPosix
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// Server-rendered pages for approvers and auditors (routes here; sessions in WebSession.swift, the pages in WebPages.swift): sign-in with a token, then a session cookie
/// (HttpOnly, SameSite=Strict, Secure behind TLS, expiring); every form carries a CSRF token;
/// every piece of user text is escaped by Mustache. No JavaScript.
struct Web: Sendable {
    let state: ServerState
    let library: MustacheLibrary
    static let sessionCookie = "waiver_session"
    static let loginCookie = "waiver_login"
    static let sessionSeconds: TimeInterval = 8 * 3600
    /// A session unused this long ends (an approver's browser left open on a shared machine).
    static let sessionIdleSeconds: TimeInterval = 30 * 60

    var store: any ServerRegisterStore { state.store }
    var now: Date { state.settings.now() }

    /// The templates: embedded in the binary (`scripts/gen-templates.py` from `Templates/`), so a
    /// copied binary serves its pages; `$WAIVER_TEMPLATES` names a folder to use instead (to work on
    /// the pages without rebuilding).
    static func templates() throws -> MustacheLibrary {
        var sources = EmbeddedTemplates.all
        if let dir = ProcessInfo.processInfo.environment["WAIVER_TEMPLATES"], !dir.isEmpty {
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                throw InputError(file: dir, message: "$WAIVER_TEMPLATES names no readable folder")
            }
            sources = [:]
            for file in files where file.hasSuffix(".mustache") {
                let path = (dir as NSString).appendingPathComponent(file)
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw InputError(file: path, message: "cannot read this template") }
                sources[String(file.dropLast(".mustache".count))] = text
            }
            guard sources["header"] != nil else { throw InputError(file: dir, message: "$WAIVER_TEMPLATES names a folder without header.mustache") }
        }
        return MustacheLibrary(templates: try sources.mapValues { try MustacheTemplate(string: $0) })
    }

    func register(on router: Router<WaiverContext>) {
        router.get("/") { _, _ in redirect("/inbox") }
        router.get("/login") { req, _ in try loginPage(req, notice: nil) }
        router.post("/login") { req, ctx in try await login(req, ctx) }
        router.get("/login/oidc") { req, ctx in try await ssoStart(req, ctx) }
        router.get("/login/oidc/callback") { req, ctx in try await ssoCallback(req, ctx) }
        let pages = router.group().add(middleware: SessionMiddleware(store: state.store, now: state.settings.now))
        pages.post("/logout") { req, ctx in try await page(ctx) { _ in
            try await requireCSRF(req, ctx)
            if let id = cookie(req, Self.sessionCookie) { try await store.endSession(idHash: AuditChain.sha256(Data(id.utf8))) }
            var r = redirect("/login")
            r.headers[.setCookie] = cookieHeader(Self.sessionCookie, "", maxAge: 0, req: req)
            return r
        } }
        pages.get("/inbox") { _, ctx in try await page(ctx) { user in try await inbox(user, ctx) } }
        pages.get("/exceptions/:id") { req, ctx in try await page(ctx) { user in try await exceptionPage(req, ctx, user, notice: nil) } }
        pages.post("/exceptions/:id/decide") { req, ctx in try await page(ctx) { user in try await decide(req, ctx, user) } }
        pages.post("/exceptions/:id/amend") { req, ctx in try await page(ctx) { user in try await amend(req, ctx, user) } }
        pages.post("/exceptions/:id/evidence") { req, ctx in try await page(ctx) { user in try await addEvidence(req, ctx, user) } }
        pages.post("/inbox/decide") { req, ctx in try await page(ctx) { user in try await decideBatch(req, ctx, user) } }
        pages.get("/mine") { _, ctx in try await page(ctx) { user in try await myRequestsPage(ctx, user) } }
        pages.get("/evidence/:sha256") { _, ctx in try await page(ctx) { user in
            guard let sha = ctx.parameters.get("sha256"), let data = try? await service(user).evidence(sha256: sha) ?? nil else {
                return try render("audit", ["title": "Not found"], ctx, status: .notFound)
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        } }
        pages.get("/register") { req, ctx in try await page(ctx) { user in try await registerPage(req, ctx, user) } }
        pages.get("/register.csv") { req, ctx in try await page(ctx) { user in
            let f = try await filtered(req, user)
            var rows: [(record: ExceptionRecord, history: [AuditEvent])] = []
            for e in f.items { rows.append((e, try await store.auditEvents(subject: e.displayId))) }
            var r = text(RegisterOutput.csv(rows), contentType: "text/csv; charset=utf-8")
            r.headers[.contentDisposition] = "attachment; filename=\"waiver-register.csv\""
            return r
        } }
        pages.get("/policies/:id") { req, ctx in try await page(ctx) { _ in try await policyPage(req, ctx) } }
        pages.get("/controls") { _, ctx in try await page(ctx) { _ in try await controlsPage(ctx) } }
        pages.get("/review") { req, ctx in try await page(ctx) { _ in try await reviewPage(req, ctx) } }
        pages.get("/audit") { _, ctx in try await page(ctx) { user in try await auditPage(ctx, user) } }
        pages.get("/audit/package") { req, ctx in try await page(ctx) { user in try await auditPackage(req, user) } }
        pages.get("/audit/export.jsonl") { _, ctx in try await page(ctx) { user in
            var r = text(try await service(user).exportAudit(), contentType: "application/jsonl; charset=utf-8")
            r.headers[.contentDisposition] = "attachment; filename=\"waiver-audit.jsonl\""
            return r
        } }
    }

    func page(_ ctx: WaiverContext, _ body: (User) async throws -> Response) async throws -> Response {
        guard let user = ctx.user else { return redirect("/login") }
        do {
            return try await body(user)
        } catch {
            let e = APIError.from(error, context: ctx)
            var r = try render("message", ["title": e.status.code >= 500 ? "Server error" : "Refused", "message": e.message], ctx, status: e.status)
            if let id = e.requestId { r.headers[.requestId] = id }
            return r
        }
    }

    // MARK: - Helpers

    func policy(_ id: String) -> Policy? { state.settings.policies.first { $0.id == id } }

    func age(_ seconds: TimeInterval) -> String {
        let s = max(0, Int(seconds))
        if s >= 86_400 { return "\(s / 86_400) d" }
        if s >= 3600 { return "\(s / 3600) h" }
        return "\(s / 60) min"
    }

    func render(_ name: String, _ values: [String: Any], _ ctx: WaiverContext, status: HTTPResponse.Status = .ok) throws -> Response {
        var v = values
        if let user = ctx.user {
            v["user"] = ["name": user.name, "admin": user.admin, "csrf": ctx.csrf ?? ""] as [String: Any]
            v["csrf"] = ctx.csrf ?? ""
        }
        return try renderPlain(name, v, status: status)
    }

    /// Template values without absent ones: an Optional holding nothing is dropped (a page never says
    /// "nil", and a section over it is not rendered), one holding a value is unwrapped, in nested
    /// dictionaries and arrays too. Every page goes through it, so no page can forget one field.
    static func present(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let inner = mirror.children.first?.value else { return nil }
            return present(inner)
        }
        if let d = value as? [String: Any] { return d.compactMapValues(present) }
        if let a = value as? [Any] { return a.compactMap(present) }
        return value
    }

    func renderPlain(_ name: String, _ values: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
        guard let html = library.render(Self.present(values) ?? [:], withTemplate: name) else { throw APIError(.internalServerError, "internal", "no template \(name)") }
        var r = text(html, status: status, contentType: "text/html; charset=utf-8")
        r.headers[.init("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
        r.headers[.init("X-Content-Type-Options")!] = "nosniff"
        r.headers[.init("Referrer-Policy")!] = "same-origin"
        return r
    }

    func redirect(_ to: String) -> Response {
        var h = HTTPFields()
        h[.location] = to
        return Response(status: .seeOther, headers: h)
    }

}
