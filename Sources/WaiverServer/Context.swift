import Foundation
import Hummingbird
import HummingbirdAuth
import WaiverCore
import WaiverStore

/// The request context: who is calling, once the token is checked.
public struct WaiverContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var user: User?
    /// The pipeline, when the caller authenticated with its CI system's OIDC token.
    public var pipeline: PipelineIdentity?
    /// The web session's CSRF token (web pages only).
    public var csrf: String?
    /// The client's address, for rate limiting failed sign-ins and token checks.
    public var client: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        user = nil
        pipeline = nil
        csrf = nil
        client = source.channel.remoteAddress?.ipAddress ?? "local"
    }

    /// Bodies are read by the handlers with their own limit (`ServerSettings.maxBodyBytes`).
    public var maxUploadSize: Int { 256 << 20 }

    func requireUser() throws -> User {
        guard let user else { throw APIError.unauthorized }
        return user
    }
}

/// Tokens look like `wvr_<id>_<secret>`: the id is stored, the secret only as its SHA-256.
public enum APIToken {
    /// A new random token for a user: (token id, full token to show once, hash to store).
    public static func generate() -> (id: String, token: String, hash: String) {
        var rng = SystemRandomNumberGenerator()
        let id = (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        return (id, "wvr_\(id)_\(secret)", AuditChain.sha256(Data(secret.utf8)))
    }

    static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "wvr", parts[1].count == 12, parts[2].count == 64 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    /// Constant-time comparison of two equal-length ASCII strings.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// Authenticates every API request with `Authorization: Bearer`: a Waiver token (the user is the
/// token's) or a pipeline's OIDC token (the pipeline is what its verified claims say); never a name
/// the client sends.
struct TokenMiddleware: RouterMiddleware {
    typealias Context = WaiverContext
    let state: ServerState

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let now = state.settings.now()
        if state.limiter.blocked(context.client, now: now) { throw APIError.tooManyFailures }
        if let bearer = request.headers.bearer, SignedToken.looksLikeJWT(bearer.token) {
            let pipeline: PipelineIdentity
            do {
                pipeline = try await state.pipelines.identify(bearer.token, now: now)
            } catch let e as TokenRejection {
                state.limiter.fail(context.client, now: now)
                context.logger.info("pipeline token refused: \(e.message)")
                throw APIError(.unauthorized, "unauthorized", "pipeline token refused: \(e.message)")
            } catch let e as RegisterError {
                context.logger.info("pipeline refused: \(e)")
                throw APIError(.forbidden, "forbidden", e.description)
            }
            var context = context
            context.user = User(name: pipeline.name, groups: [], admin: false)
            context.pipeline = pipeline
            return try await next(request, context)
        }
        guard let bearer = request.headers.bearer, let (id, secret) = APIToken.parse(bearer.token),
              let (user, hash) = try await state.store.token(id: id), APIToken.equal(hash, AuditChain.sha256(Data(secret.utf8)))
        else {
            state.limiter.fail(context.client, now: now)
            throw APIError.unauthorized
        }
        var context = context
        context.user = user
        return try await next(request, context)
    }
}

/// Counts failed sign-ins and token checks per client address; past `limit` failures within
/// `window` seconds, the client is refused (429) until the window ends. Valid requests are never
/// counted, so a busy pipeline is never limited. Time comes from the server's injected clock.
public final class FailureLimiter: @unchecked Sendable {
    public let limit: Int
    public let window: TimeInterval
    private let lock = NSLock()
    private var failures: [String: (start: Date, count: Int)] = [:]

    public init(limit: Int = 20, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    public func fail(_ client: String, now: Date) {
        lock.withLock {
            if failures.count > 100_000 { failures = failures.filter { now.timeIntervalSince($0.value.start) < window } }
            if let f = failures[client], now.timeIntervalSince(f.start) < window {
                failures[client] = (f.start, f.count + 1)
            } else {
                failures[client] = (now, 1)
            }
        }
    }

    public func blocked(_ client: String, now: Date) -> Bool {
        lock.withLock {
            guard let f = failures[client], now.timeIntervalSince(f.start) < window else { return false }
            return f.count >= limit
        }
    }
}
