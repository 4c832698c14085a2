import AsyncHTTPClient
import Foundation
import JWTKit
import NIOCore
import WaiverCore
import WaiverFormats

/// Why a signed token was not accepted; the message says which check failed (never the token).
public struct TokenRejection: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An OpenID provider's discovery document: what Waiver reads of it.
public struct OIDCDiscovery: Sendable, Equatable {
    public var issuer: String
    public var jwksURI: String
    public var authorizationEndpoint: String?
    public var tokenEndpoint: String?
}

/// Fetches a URL's body (bounded): AsyncHTTPClient in the server, replaceable in no test (the tests
/// run a real provider on loopback).
public typealias Fetch = @Sendable (String) async throws -> Data

public enum OIDCFetch {
    /// GET with a 10 s timeout and a 1 MiB cap; a non-200 answer is an error naming the URL.
    public static let http: Fetch = { url in
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw TokenRejection("\(url) answered HTTP \(response.status.code)") }
        let body = try await response.body.collect(upTo: 1 << 20)
        return Data(body.readableBytesView)
    }
}

/// The signing keys of the issuers the server trusts, from each one's discovery document and JWKS.
/// Only issuers named in the configuration are ever fetched (a token cannot make the server fetch a
/// URL of its choosing). Keys are kept for an hour; a token signed with a key id the cache does not
/// hold refreshes them (key rotation), at most once per `refreshInterval`, so a stream of forged key
/// ids cannot make the server hammer the provider.
public actor IssuerKeys {
    struct Entry {
        var discovery: OIDCDiscovery
        var keys: JWTKeyCollection
        var kids: Set<String>
        var fetchedAt: Date
    }

    let fetch: Fetch
    let maxAge: TimeInterval
    let refreshInterval: TimeInterval
    var entries: [String: Entry] = [:]

    public init(fetch: @escaping Fetch = OIDCFetch.http, maxAge: TimeInterval = 3600, refreshInterval: TimeInterval = 30) {
        self.fetch = fetch
        self.maxAge = maxAge
        self.refreshInterval = refreshInterval
    }

    /// The issuer's discovery document (fetched when not cached).
    public func discovery(_ issuer: String, now: Date) async throws -> OIDCDiscovery {
        try await entry(issuer, kid: nil, now: now).discovery
    }

    func entry(_ issuer: String, kid: String?, now: Date) async throws -> Entry {
        if let e = entries[issuer] {
            let fresh = now.timeIntervalSince(e.fetchedAt) < maxAge
            let known = kid.map { e.kids.contains($0) } ?? true
            if fresh && known { return e }
            // An unknown key id: refresh, unless the keys were fetched moments ago.
            if fresh && now.timeIntervalSince(e.fetchedAt) < refreshInterval { return e }
        }
        let e = try await load(issuer, now: now)
        entries[issuer] = e
        return e
    }

    func load(_ issuer: String, now: Date) async throws -> Entry {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let doc: Value
        do { doc = try JSONReader.parse(try await fetch(base + "/.well-known/openid-configuration"), maxDepth: 16) } catch let e as TokenRejection {
            throw e
        } catch {
            throw TokenRejection("cannot read the discovery document of \(issuer) (\(String(describing: error).clipped()))")
        }
        guard let named = doc["issuer"]?.stringValue, named == issuer else {
            throw TokenRejection("the discovery document of \(issuer) names another issuer")
        }
        guard let jwks = Web.endpoint(doc["jwks_uri"]?.stringValue) else {
            throw TokenRejection("the discovery document of \(issuer) has no https jwks_uri")
        }
        let discovery = OIDCDiscovery(issuer: issuer, jwksURI: jwks, authorizationEndpoint: doc["authorization_endpoint"]?.stringValue,
                                      tokenEndpoint: doc["token_endpoint"]?.stringValue)
        let body: Data
        do { body = try await fetch(jwks) } catch let e as TokenRejection { throw e } catch {
            throw TokenRejection("cannot fetch the keys of \(issuer) (\(String(describing: error).clipped()))")
        }
        let keys = JWTKeyCollection()
        var kids: Set<String> = []
        let set: JWKS
        do { set = try JSONDecoder().decode(JWKS.self, from: body) } catch { throw TokenRejection("the keys of \(issuer) are not a JWK set") }
        for jwk in set.keys {
            // Keys with an id that jwt-kit can verify with; others (unsupported types) are skipped.
            guard let kid = jwk.keyIdentifier?.string else { continue }
            if (try? await keys.add(jwk: jwk)) != nil { kids.insert(kid) }
        }
        guard !kids.isEmpty else { throw TokenRejection("\(issuer) publishes no signing key Waiver can use") }
        return Entry(discovery: discovery, keys: keys, kids: kids, fetchedAt: now)
    }

    /// Verifies `token`'s signature with the issuer's key named in its header, and decodes its claims.
    func verified<P: JWTPayload>(_ token: String, issuer: String, kid: String, as: P.Type, now: Date) async throws -> P {
        let e = try await entry(issuer, kid: kid, now: now)
        guard e.kids.contains(kid) else { throw TokenRejection("the token is signed with a key \(issuer) does not publish (kid \(kid.clipped(40)))") }
        do { return try await e.keys.verify(token, as: P.self) } catch {
            throw TokenRejection("the token's signature does not verify with the key of \(issuer)")
        }
    }
}

/// Checks a compact JWT in the order that keeps a forged token cheap to refuse: size and shape, an
/// asymmetric algorithm and a key id in the header, a trusted issuer (before anything is fetched),
/// the signature with that issuer's key, then audience and time with the server's clock.
public enum SignedToken {
    public static let maxBytes = 16 << 10
    public static let algorithms: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    public static let leeway: TimeInterval = 60

    /// Whether `text` has the shape of a compact JWT (three base64url parts), as opposed to a Waiver token.
    public static func looksLikeJWT(_ text: String) -> Bool {
        text.utf8.count <= maxBytes && text.split(separator: ".", omittingEmptySubsequences: false).count == 3 && !text.hasPrefix("wvr_")
    }

    static func part(_ s: Substring) -> Data? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b)
    }

    /// The header's `alg` and `kid` and the unverified `iss`, or a rejection.
    static func inspect(_ token: String) throws(TokenRejection) -> (kid: String, issuer: String) {
        guard token.utf8.count <= maxBytes else { throw TokenRejection("the token is longer than \(maxBytes) bytes") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let h = part(parts[0]), let p = part(parts[1]),
              let header = try? JSONReader.parse(h, maxDepth: 8), let payload = try? JSONReader.parse(p, maxDepth: 16) else {
            throw TokenRejection("the token is not a signed JWT")
        }
        guard let alg = header["alg"]?.stringValue, algorithms.contains(alg) else {
            throw TokenRejection("the token's algorithm \((header["alg"]?.stringValue ?? "none").debugDescription.clipped(40)) is not an asymmetric signature Waiver accepts")
        }
        guard let kid = header["kid"]?.stringValue, !kid.isEmpty else { throw TokenRejection("the token's header names no key (kid)") }
        guard let iss = payload["iss"]?.stringValue else { throw TokenRejection("the token names no issuer") }
        return (kid, iss)
    }

    /// Verifies `token` from one of `issuers` for `audience` at `now`; the claims are `P`'s.
    public static func verify<P: JWTPayload & TimedClaims>(_ token: String, issuers: Set<String>, audience: String, keys: IssuerKeys,
                                                          as: P.Type, now: Date) async throws -> P {
        let (kid, issuer) = try inspect(token)
        guard issuers.contains(issuer) else { throw TokenRejection("the token's issuer \(issuer.debugDescription.clipped(80)) is not trusted") }
        let claims = try await keys.verified(token, issuer: issuer, kid: kid, as: P.self, now: now)
        guard claims.iss.value == issuer else { throw TokenRejection("the token's issuer changed under its signature") }
        guard claims.aud.value.contains(audience) else { throw TokenRejection("the token is for another audience (expected \(audience))") }
        guard claims.exp.value.addingTimeInterval(leeway) > now else { throw TokenRejection("the token expired at \(iso(claims.exp.value))") }
        if let nbf = claims.nbf?.value, nbf > now.addingTimeInterval(leeway) { throw TokenRejection("the token is not valid before \(iso(nbf))") }
        if let iat = claims.iat?.value, iat > now.addingTimeInterval(leeway) { throw TokenRejection("the token was issued in the future (\(iso(iat)))") }
        return claims
    }
}

/// The registered claims every accepted token carries and Waiver checks itself, with its clock.
public protocol TimedClaims {
    var iss: IssuerClaim { get }
    var aud: AudienceClaim { get }
    var exp: ExpirationClaim { get }
    var nbf: NotBeforeClaim? { get }
    var iat: IssuedAtClaim? { get }
}

/// The claims of a CI system's OIDC token that Waiver reads (GitHub Actions, GitLab CI, HCP Terraform).
struct PipelineClaims: JWTPayload, TimedClaims {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?
    // GitHub Actions
    var repository: String?
    var ref: String?
    var workflow: String?
    var environment: String?
    var actor: String?
    var triggering_actor: String?
    var run_id: String?
    // GitLab CI
    var project_path: String?
    var ref_type: String?
    var user_login: String?
    var user_email: String?
    var pipeline_id: String?
    // HCP Terraform
    var terraform_organization_name: String?
    var terraform_workspace_name: String?
    var terraform_run_phase: String?
    var terraform_run_id: String?

    /// Signature is checked by the key collection; time, issuer and audience by `SignedToken.verify`.
    func verify(using algorithm: some JWTAlgorithm) async throws {}

    /// The pipeline these claims describe, or why they describe none.
    func identity() throws(TokenRejection) -> PipelineIdentity {
        var p: PipelineIdentity
        if let repo = repository {
            p = PipelineIdentity(issuer: iss.value, subject: sub.value, repository: repo, ref: ref, workflow: workflow, environment: environment,
                                 actor: triggering_actor ?? actor, run: run_id)
        } else if let project = project_path {
            let full = ref.map { r in r.hasPrefix("refs/") ? r : (ref_type == "tag" ? "refs/tags/" : "refs/heads/") + r }
            p = PipelineIdentity(issuer: iss.value, subject: sub.value, repository: project, ref: full, environment: environment,
                                 actor: user_login, actorEmail: user_email, run: pipeline_id)
        } else if let org = terraform_organization_name, let ws = terraform_workspace_name {
            p = PipelineIdentity(issuer: iss.value, subject: sub.value, repository: "\(org)/\(ws)", workflow: terraform_run_phase, run: terraform_run_id)
        } else {
            throw TokenRejection("the token names no repository (GitHub repository, GitLab project_path or HCP Terraform organization and workspace)")
        }
        for (field, value) in [("repository", p.repository), ("ref", p.ref ?? ""), ("workflow", p.workflow ?? ""), ("environment", p.environment ?? ""),
                               ("actor", p.actor ?? ""), ("actor email", p.actorEmail ?? ""), ("run", p.run ?? ""), ("subject", p.subject)] {
            guard RequestLimits.oneLine(value, max: RequestLimits.name) else {
                throw TokenRejection("the token's \(field) is longer than \(RequestLimits.name) characters or holds control characters")
            }
        }
        return p
    }
}

/// Verifies pipelines' tokens against `identity.pipelines`.
public struct PipelineVerifier: Sendable {
    public let settings: IdentitySettings
    public let keys: IssuerKeys

    public init(settings: IdentitySettings, keys: IssuerKeys) {
        self.settings = settings
        self.keys = keys
    }

    /// The pipeline `token` proves, admitted by at least one rule; otherwise a rejection (401) or
    /// a refusal (403) naming why.
    public func identify(_ token: String, now: Date) async throws -> PipelineIdentity {
        guard !settings.pipelines.isEmpty else { throw TokenRejection("this server trusts no pipeline issuer (identity.pipelines)") }
        let claims = try await SignedToken.verify(token, issuers: Set(settings.pipelineIssuers), audience: settings.audience, keys: keys,
                                                  as: PipelineClaims.self, now: now)
        let p = try claims.identity()
        guard settings.pipelines.contains(where: { $0.admits(p) }) else {
            throw RegisterError.refused("no identity.pipelines rule admits \(p.repository)\(p.ref.map { " at \($0)" } ?? "") from \(p.issuer)")
        }
        return p
    }
}
