import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import JWTKit
import NIOCore
import WaiverCore
import WaiverFormats
import WaiverStore

/// The claims of a person's ID token that Waiver checks itself (the user and groups claims are
/// configurable and read from the verified payload by name).
struct PersonClaims: JWTPayload, TimedClaims {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    var nonce: String?
    var azp: String?
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Nonces of ID tokens already used to sign in, until their tokens expire: a replayed ID token is
/// refused. Per replica (the provider's codes are single-use and the sign-in cookie is cleared, so
/// a replay across replicas still needs a code the provider has not redeemed).
final class NonceLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var used: [String: Date] = [:]

    /// Records `nonce` as used until `until`; false when it already was.
    func use(_ nonce: String, until: Date, now: Date) -> Bool {
        lock.withLock {
            if used.count > 100_000 { used = used.filter { $0.value > now } }
            if let t = used[nonce], t > now { return false }
            used[nonce] = until
            return true
        }
    }
}

/// Single sign-on for people (OpenID Connect, authorization code flow with PKCE, `state` and
/// `nonce`): `/login/oidc` sends the browser to the provider, `/login/oidc/callback` takes it back,
/// redeems the code, verifies the ID token and opens a session for the user it names.
extension Web {
    static let ssoCookie = "waiver_sso"
    static let ssoSeconds = 600

    static func random() -> String {
        var rng = SystemRandomNumberGenerator()
        return base64url(Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }))
    }

    static func base64url(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    var redirectURI: String { (state.settings.publicURL ?? "http://\(state.settings.host):\(state.settings.port)") + "/login/oidc/callback" }

    /// An endpoint the discovery document names: https, or http on a loopback host.
    static func endpoint(_ url: String?) -> String? {
        guard let url, let c = URLComponents(string: url), let host = c.host, c.fragment == nil else { return nil }
        if c.scheme == "https" { return url }
        if c.scheme == "http", ConfigLoader.isLoopback(host) { return url }
        return nil
    }

    func ssoStart(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        guard let oidc = state.settings.configuration.identity.oidc else { return try loginPage(req, notice: "Single sign-on is not configured.", status: .notFound) }
        let discovery: OIDCDiscovery
        do { discovery = try await state.pipelines.keys.discovery(oidc.issuer, now: now) } catch {
            ctx.logger.error("single sign-on: \(error)")
            return try loginPage(req, notice: "\(oidc.name) cannot be reached; try again later.", status: .badGateway)
        }
        guard let authorize = Self.endpoint(discovery.authorizationEndpoint), var url = URLComponents(string: authorize) else {
            return try loginPage(req, notice: "\(oidc.name) names no usable authorization endpoint.", status: .badGateway)
        }
        let st = Self.random(), nonce = Self.random(), verifier = Self.random()
        let challenge = Self.base64url(Data(SHA256.hash(data: Data(verifier.utf8))))
        url.queryItems = (url.queryItems ?? []) + [
            URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: oidc.clientId),
            URLQueryItem(name: "redirect_uri", value: redirectURI), URLQueryItem(name: "scope", value: oidc.scopes.joined(separator: " ")),
            URLQueryItem(name: "state", value: st), URLQueryItem(name: "nonce", value: nonce),
            URLQueryItem(name: "code_challenge", value: challenge), URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        guard let location = url.string else { return try loginPage(req, notice: "\(oidc.name)'s authorization endpoint is not a URL.", status: .badGateway) }
        var h = HTTPFields()
        h[.location] = location
        var r = Response(status: .seeOther, headers: h)
        // SameSite=Lax: the provider sends the browser back with a cross-site GET, which must carry it.
        let expires = Int(now.timeIntervalSince1970) + Self.ssoSeconds
        r.headers[.setCookie] = Cookie(name: Self.ssoCookie, value: "\(st).\(nonce).\(verifier).\(expires)", maxAge: Self.ssoSeconds,
                                       path: "/login/oidc", secure: isSecure(req), httpOnly: true, sameSite: .lax).description
        return r
    }

    func isSecure(_ req: Request) -> Bool { req.headers[.init("X-Forwarded-Proto")!] == "https" || req.uri.scheme == .https }

    func ssoCallback(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        guard let oidc = state.settings.configuration.identity.oidc else { return try loginPage(req, notice: "Single sign-on is not configured.", status: .notFound) }
        let current = now
        if state.limiter.blocked(ctx.client, now: current) {
            return try loginPage(req, notice: "Too many failed sign-ins from this address: wait a minute.", status: .tooManyRequests)
        }
        func refuse(_ why: String, _ status: HTTPResponse.Status = .forbidden) throws -> Response {
            state.limiter.fail(ctx.client, now: current)
            ctx.logger.info("single sign-on refused: \(why)")
            var r = try loginPage(req, notice: "Sign-in with \(oidc.name) failed: \(why)", status: status)
            r.headers[values: .setCookie].append(Cookie(name: Self.ssoCookie, value: "", maxAge: 0, path: "/login/oidc", secure: isSecure(req),
                                                        httpOnly: true, sameSite: .lax).description)
            return r
        }
        let q = req.uri.queryParameters
        if let error = q["error"] { return try refuse("\(oidc.name) answered \(String(error).clipped(80))") }
        let parts = cookie(req, Self.ssoCookie)?.split(separator: ".").map(String.init) ?? []
        guard parts.count == 4, let expires = Int(parts[3]) else { return try refuse("the sign-in did not start here, or its cookie is gone (start again)") }
        let (expectedState, nonce, verifier) = (parts[0], parts[1], parts[2])
        guard let st = q["state"], APIToken.equal(String(st), expectedState) else { return try refuse("the state does not match this browser's sign-in") }
        guard Double(expires) > current.timeIntervalSince1970 else { return try refuse("the sign-in took longer than \(Self.ssoSeconds / 60) minutes (start again)") }
        guard let code = q["code"], !code.isEmpty, code.count <= 4096 else { return try refuse("the provider sent no code", .badRequest) }

        // Redeem the code (with the PKCE verifier) for the ID token.
        let idToken: String
        do {
            let discovery = try await state.pipelines.keys.discovery(oidc.issuer, now: current)
            guard let tokenURL = Self.endpoint(discovery.tokenEndpoint) else { return try refuse("\(oidc.name) names no usable token endpoint", .badGateway) }
            var fields = [("grant_type", "authorization_code"), ("code", String(code)), ("redirect_uri", redirectURI),
                          ("client_id", oidc.clientId), ("code_verifier", verifier)]
            if let secret = state.settings.oidcClientSecret { fields.append(("client_secret", secret)) }
            let answer = try await OIDCFetch.postForm(tokenURL, fields)
            guard let t = (try? JSONReader.parse(answer, maxDepth: 16))?["id_token"]?.stringValue else {
                return try refuse("\(oidc.name) gave no ID token for the code", .badGateway)
            }
            idToken = t
        } catch let e as TokenRejection {
            return try refuse(e.message, .unauthorized)
        }

        // Verify it: signature with the provider's key, issuer, audience, time, then nonce.
        let claims: PersonClaims
        do {
            claims = try await SignedToken.verify(idToken, issuers: [oidc.issuer], audience: oidc.clientId, keys: state.pipelines.keys,
                                                  as: PersonClaims.self, now: current)
        } catch let e as TokenRejection {
            return try refuse(e.message, .unauthorized)
        }
        guard let n = claims.nonce, APIToken.equal(n, nonce) else { return try refuse("the ID token's nonce is not this sign-in's", .unauthorized) }
        if claims.aud.value.count > 1, claims.azp != oidc.clientId { return try refuse("the ID token was issued to another client (azp)", .unauthorized) }
        guard state.ssoNonces.use(n, until: claims.exp.value.addingTimeInterval(SignedToken.leeway), now: current) else {
            return try refuse("this ID token was already used to sign in", .unauthorized)
        }

        // The user and groups, from the verified payload.
        let payloadPart = idToken.split(separator: ".", omittingEmptySubsequences: false)[1]
        guard let raw = SignedToken.part(payloadPart).flatMap({ try? JSONReader.parse($0, maxDepth: 16) }) else {
            return try refuse("the ID token's claims cannot be read", .unauthorized)
        }
        if oidc.userClaim == "email", raw["email_verified"]?.boolValue == false { return try refuse("\(oidc.name) has not verified this e-mail address") }
        guard let name = raw[oidc.userClaim]?.stringValue?.trimmingCharacters(in: .whitespaces), !name.isEmpty,
              RequestLimits.oneLine(name, max: RequestLimits.name) else {
            return try refuse("the ID token has no usable \(oidc.userClaim) claim")
        }
        // Groups from the claim when the token carries it (even empty); a provider that sends no
        // groups claim leaves the groups kept in Waiver (`waiver admin add-user --group`) as they are.
        let existing = try await store.user(named: name)
        var groups = existing?.groups ?? []
        switch raw[oidc.groupsClaim] {
        case .array(let items)?: groups = oidc.groups(from: items.compactMap(\.stringValue))
        case .string(let one)?: groups = oidc.groups(from: [one])
        default: break
        }
        if existing == nil || existing?.groups != groups {
            try await store.putUser(User(name: name, groups: groups, admin: existing?.admin ?? false), actor: "sso:\(oidc.issuer)", now: current)
        }
        let session = APIToken.generate().token, csrf = APIToken.generate().token
        try await store.createSession(idHash: AuditChain.sha256(Data(session.utf8)), user: name, tokenId: ssoSession, csrf: csrf,
                                      expiresAt: current.addingTimeInterval(Self.sessionSeconds), now: current)
        // A page that moves on to the inbox: the session cookie is SameSite=Strict, which a browser
        // does not send on the redirect chain the provider started; this next navigation is same-site.
        var r = try renderPlain("signed-in", ["title": "Signed in", "user": name])
        r.headers[values: .setCookie] = [
            cookieHeader(Self.sessionCookie, session, maxAge: Int(Self.sessionSeconds), req: req),
            Cookie(name: Self.ssoCookie, value: "", maxAge: 0, path: "/login/oidc", secure: isSecure(req), httpOnly: true, sameSite: .lax).description,
        ]
        return r
    }
}

extension OIDCFetch {
    /// POST an `application/x-www-form-urlencoded` body (the token endpoint); the answer's body, or
    /// a rejection naming the status.
    static func postForm(_ url: String, _ fields: [(String, String)]) async throws -> Data {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: .seconds(10)) } catch {
            throw TokenRejection("the token endpoint cannot be reached (\(String(describing: error).clipped()))")
        }
        let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        guard response.status == .ok else {
            let why = (try? JSONReader.parse(data))?["error"]?.stringValue ?? "HTTP \(response.status.code)"
            throw TokenRejection("the provider refused the code (\(why.clipped(80)))")
        }
        return data
    }
}
