import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Prometheus
import ServiceLifecycle
import WaiverCore
import WaiverFormats
import WaiverPostgres
import WaiverStore
import WaiverUseCases

/// How to run the server.
public struct ServerSettings: Sendable {
    public var host: String
    public var port: Int
    public var databasePath: String
    public var configuration: Configuration
    public var policies: [Policy]
    /// Where evidence files are kept (by SHA-256).
    public var evidenceDirectory: String
    /// Requests with a larger body are refused (413) before the body is read whole.
    public var maxBodyBytes: Int
    /// How often the scheduler (reminders, expiry) and the webhook sender run.
    public var schedulerInterval: Duration
    public var webhookInterval: Duration
    /// The clock: injected so that tests move time to the second.
    public var now: @Sendable () -> Date
    /// Environment lookups (webhook secrets).
    public var environment: @Sendable (String) -> String?
    public var logLevel: Logger.Level
    /// Signs checkpoints of the audit log's head (kept outside the register: a key file or an environment variable).
    public var signingKey: SigningKey?
    /// How often the scheduler signs a checkpoint when the log has grown.
    public var checkpointInterval: TimeInterval
    /// What one client may hold of the server (connections, request deadlines).
    public var connectionLimits = ConnectionLimits()
    /// How long a replica's claim on a batch of webhook deliveries lasts (`WebhookService.claimDeliveries`).
    public var webhookLease: TimeInterval = WebhookService.lease
    /// Failed sign-ins and token checks one client address may make in a minute before it is refused (429).
    public var authFailureLimit = 20
    /// How the server fetches OIDC discovery documents and keys.
    public var fetch: Fetch = OIDCFetch.http
    /// The URL people reach the server at (`--public-url`): links and single sign-on's redirect.
    public var publicURL: String?
    /// The folder the policies were loaded from: pages name a policy's file relative to it, never by
    /// the server's absolute path.
    public var policyDirectory: String?
    /// The client secret of single sign-on, read once from `identity.oidc.client_secret_env`.
    public var oidcClientSecret: String? {
        configuration.identity.oidc?.clientSecretEnv.flatMap { environment($0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    public init(
        host: String = "127.0.0.1", port: Int = 8080, databasePath: String, configuration: Configuration, policies: [Policy],
        evidenceDirectory: String? = nil, maxBodyBytes: Int = 64 << 20, schedulerInterval: Duration = .seconds(60),
        webhookInterval: Duration = .seconds(2), now: @escaping @Sendable () -> Date = { Date() },
        environment: @escaping @Sendable (String) -> String? = { ProcessInfo.processInfo.environment[$0] }, logLevel: Logger.Level = .info,
        signingKey: SigningKey? = nil, checkpointInterval: TimeInterval = 3600
    ) {
        self.signingKey = signingKey
        self.checkpointInterval = checkpointInterval
        self.host = host
        self.port = port
        self.databasePath = databasePath
        self.configuration = configuration
        self.policies = policies
        self.evidenceDirectory = evidenceDirectory ?? ((databasePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("evidence")
        self.maxBodyBytes = maxBodyBytes
        self.schedulerInterval = schedulerInterval
        self.webhookInterval = webhookInterval
        self.now = now
        self.environment = environment
        self.logLevel = logLevel
    }
}

/// Everything the handlers and services share.
public final class ServerState: Sendable {
    public let settings: ServerSettings
    public let store: any ServerRegisterStore
    /// The rules with no people: every rule about who may act refuses here (it fails closed).
    /// Decisions use `decisions()`, which reads the users and groups of the register.
    public let register: Register
    public let metrics: ServerMetrics
    /// The plan attributes the server's policies read: evaluations build only these.
    public let selection: AttributeSelection
    /// Failed sign-ins and token checks per client.
    public let limiter: FailureLimiter
    /// Open connections per client address.
    public let clients = ClientConnections()
    /// Verifies pipelines' OIDC tokens against `identity.pipelines` (its key cache serves single sign-on too).
    public let pipelines: PipelineVerifier
    /// ID-token nonces already used to sign in.
    let ssoNonces = NonceLedger()

    /// The server on the SQLite register at `settings.databasePath`.
    public convenience init(settings: ServerSettings) throws {
        self.init(settings: settings, store: try SQLiteRegisterStore(path: settings.databasePath, webhooks: settings.configuration.notify,
                                                                             email: settings.configuration.email))
    }

    /// The server on a register already open (SQLite or PostgreSQL).
    public init(settings: ServerSettings, store: any ServerRegisterStore) {
        self.settings = settings
        self.limiter = FailureLimiter(limit: settings.authFailureLimit)
        self.selection = AttributeSelection(policies: settings.policies)
        self.store = store
        self.register = Register(store: store, configuration: settings.configuration, policies: settings.policies,
                                 groupsOf: { _ in [] }, membersOf: { _ in [] }, isAdmin: { _ in false })
        self.metrics = ServerMetrics()
        self.pipelines = PipelineVerifier(settings: settings.configuration.identity, keys: IssuerKeys(fetch: settings.fetch))
    }

    /// The server on the register `settings` names: SQLite, or PostgreSQL when `postgres` is given.
    public static func open(settings: ServerSettings, postgres: PostgresURL?) async throws -> ServerState {
        guard let postgres else { return try ServerState(settings: settings) }
        return ServerState(settings: settings, store: try await PostgresRegisterStore(url: postgres, webhooks: settings.configuration.notify,
                                                                                             email: settings.configuration.email))
    }

    /// The rules with the register's users and groups as of now: what every decision runs with.
    public func decisions() async throws -> Register {
        try await store.people().bind(register)
    }

    /// A check through the server (the API's evaluations, HCP Terraform's run tasks): the register's
    /// step in one transaction (`CheckService.checkIn`) under the register's people, each finding
    /// linked to its exception's page when the server has a public URL.
    func checkIn(_ report: CheckReport, actor: String, provenance: Provenance, request: RequestSpec?) async throws
        -> (report: CheckReport, filed: [ExceptionRecord], evaluation: Int, register: Register) {
        let register = try await decisions()
        let scoped = Register(store: store, configuration: settings.configuration, policies: report.policies,
                              groupsOf: register.groupsOf, membersOf: register.membersOf, isAdmin: register.isAdmin)
        var (final, filed, evaluation) = try await CheckService.checkIn(report, register: scoped, actor: actor, provenance: provenance,
                                                                       request: request, now: settings.now())
        if let base = settings.publicURL {
            for i in final.findings.indices { final.findings[i].link = final.findings[i].exception.map { "\(base)/exceptions/\($0)" } }
        }
        return (final, filed, evaluation, register)
    }
}

/// The application `waiver serve` runs and the tests drive: JSON API, health, metrics, OpenAPI,
/// plus the scheduler and the webhook sender as services with graceful shutdown.
public func buildApplication(_ settings: ServerSettings) throws -> some ApplicationProtocol {
    let state = try ServerState(settings: settings)
    return try buildApplication(state: state)
}

public func buildApplication(state: ServerState) throws -> some ApplicationProtocol {
    var logger = Logger(label: "waiver")
    logger.logLevel = state.settings.logLevel
    let router = try buildRouter(state: state)
    // The scheduler and the webhook sender start once the port is bound.
    let ready = ServerReady()
    let scheduler = SchedulerService(state: state, logger: logger, ready: ready)
    let webhooks = WebhookService(state: state, logger: logger, ready: ready)
    // Slow clients: an idle timeout, a deadline for each request's head and body, a cap per client
    // address and one for the server, so one client cannot take every connection.
    let limits = state.settings.connectionLimits, clients = state.clients
    return Application(
        router: router,
        server: .http1(configuration: .init(additionalChannelHandlers: [SlowClientGuard(limits: limits, clients: clients)],
                                             idleTimeout: limits.idleTimeout)),
        configuration: .init(address: .hostname(state.settings.host, port: state.settings.port), serverName: "waiver",
                             availableConnectionsDelegate: MaximumAvailableConnections(limits.maxConnections, logger: logger)),
        services: [scheduler, webhooks],
        onServerRunning: { _ in ready.open() },
        logger: logger)
}

/// Every route of the server (the tests check each is in the OpenAPI document).
public func buildRouter(state: ServerState) throws -> Router<WaiverContext> {
    let router = Router(context: WaiverContext.self)
    router.add(middleware: LogRequestsMiddleware(.info))
    router.add(middleware: MetricsMiddleware(metrics: state.metrics))
    router.add(middleware: NoStoreMiddleware())
    router.add(middleware: MethodNotAllowedMiddleware())
    router.get("/health") { _, _ in jsonResponse(["status": "ok"]) }
    // The metrics need a token, as the API does (Prometheus sends one: `authorization: { credentials_file: ... }`),
    // unless waiver.yaml says `server: { metrics: open }`.
    let metrics = state.settings.configuration.metricsOpen ? router.group() : router.group().add(middleware: TokenMiddleware(state: state))
    metrics.get("/metrics") { _, _ in
        await state.metrics.refresh(store: state.store, maxAttempts: WebhookService.maxAttempts)
        return text(state.metrics.registry.emitToString(), contentType: "text/plain; version=0.0.4; charset=utf-8")
    }
    router.get("/openapi.yaml") { _, _ in text(OpenAPI.document, contentType: "application/yaml; charset=utf-8") }
    // HCP Terraform signs its run task calls (HMAC): no API token, so outside the token middleware.
    if let task = state.settings.configuration.terraformRunTask {
        let endpoint = RunTaskEndpoint(state: state, settings: task)
        router.post("/api/v1/run-tasks/terraform") { req, ctx in
            do { return try await endpoint.handle(req, ctx) } catch { throw APIError.from(error, context: ctx) }
        }
    }
    API(state: state).register(on: router.group("api/v1").add(middleware: TokenMiddleware(state: state)))
    // The templates are in the binary; only a bad $WAIVER_TEMPLATES can fail here, and then the
    // server does not start without its pages.
    Web(state: state, library: try Web.templates()).register(on: router)
    return router
}

/// Request counts and latencies, exceptions by status, webhook deliveries, scheduler runs.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let schedulerRuns: Counter
    let remindersSent: Counter

    init() {
        schedulerRuns = registry.makeCounter(descriptor: .init(namespace: "waiver", metricName: "scheduler_runs", unitName: "total", helpText: "Scheduler passes (reminders and expiry)."))
        remindersSent = registry.makeCounter(descriptor: .init(namespace: "waiver", metricName: "reminders_sent", unitName: "total", helpText: "Expiry reminders sent."))
    }

    func request(method: String, route: String, status: Int, duration: Duration) {
        registry.makeCounter(descriptor: .init(namespace: "waiver", metricName: "http_requests", unitName: "total", helpText: "HTTP requests by method, route and status."),
                             labels: [("method", method), ("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(descriptor: .init(namespace: "waiver", metricName: "http_request_duration", unitName: "seconds", helpText: "HTTP request latency."),
                                       labels: [("route", route)],
                                       buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5)])
            .record(duration)
    }

    func delivery(_ result: String) {
        registry.makeCounter(descriptor: .init(namespace: "waiver", metricName: "webhook_deliveries", unitName: "total", helpText: "Webhook delivery attempts by result."),
                             labels: [("result", result)]).increment()
    }

    /// Gauges read from the register when scraped.
    func refresh(store: any ServerRegisterStore, maxAttempts: Int) async {
        let counts = (try? await store.statusCounts()) ?? [:]
        for status in ExceptionStatus.allCases {
            registry.makeGauge(descriptor: .init(namespace: "waiver", metricName: "exceptions", helpText: "Exceptions in the register by status."),
                               labels: [("status", status.rawValue)]).set(Double(counts[status.rawValue] ?? 0))
        }
        if let d = try? await store.deliveryCounts(maxAttempts: maxAttempts) {
            for (state, n) in [("delivered", d.delivered), ("waiting", d.waiting), ("failed", d.failed)] {
                registry.makeGauge(descriptor: .init(namespace: "waiver", metricName: "webhook_outbox", helpText: "Webhook deliveries in the outbox by state."),
                                   labels: [("state", state)]).set(Double(n))
            }
        }
    }
}

struct MetricsMiddleware: RouterMiddleware {
    typealias Context = WaiverContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.request(method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: response.status.code, duration: ContinuousClock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.request(method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: status, duration: ContinuousClock.now - start)
            throw error
        }
    }
}

/// Nothing Waiver serves is for a shared cache or the browser's history: exceptions, evidence,
/// pages with a CSRF token. Every response says `Cache-Control: no-store`.
struct NoStoreMiddleware: RouterMiddleware {
    typealias Context = WaiverContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            var r = try await next(request, context)
            if r.headers[.cacheControl] == nil { r.headers[.cacheControl] = "no-store" }
            return r
        } catch let e as any HTTPResponseError {
            var r = try e.response(from: request, context: context)
            r.headers[.cacheControl] = "no-store"
            return r
        }
    }
}
