import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import HTTPTypes
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// What HCP Terraform sends a run task (payload version 1; the fields Waiver reads).
/// See HashiCorp's "Run Tasks Integration API".
public struct RunTaskRequest: Sendable, Equatable {
    public var accessToken: String
    public var stage: String
    public var callbackURL: String
    public var planJSONURL: String?
    public var organization: String
    public var workspace: String
    public var runID: String
    public var createdBy: String?
    public var runURL: String?

    /// HCP Terraform's check that the URL answers, when a run task is created: no run behind it.
    public var isVerification: Bool { accessToken == "test-token" }

    /// Reads the request, naming the field that is missing or wrong.
    public static func parse(_ v: Value) throws(RegisterError) -> RunTaskRequest {
        guard case .object = v else { throw .invalid("a run task request is a JSON object") }
        func string(_ key: String) throws(RegisterError) -> String {
            guard let s = v[key]?.stringValue, !s.isEmpty, s.utf8.count <= 4_096 else { throw .invalid("\(key) is missing or not a string") }
            return s
        }
        func optional(_ key: String) -> String? { v[key]?.stringValue.flatMap { $0.isEmpty || $0.utf8.count > 4_096 ? nil : $0 } }
        guard v["payload_version"]?.intValue == 1 else { throw .invalid("payload_version must be 1") }
        return RunTaskRequest(
            accessToken: try string("access_token"), stage: try string("stage"), callbackURL: try string("task_result_callback_url"),
            planJSONURL: optional("plan_json_api_url"), organization: try string("organization_name"), workspace: try string("workspace_name"),
            runID: try string("run_id"), createdBy: optional("run_created_by"), runURL: optional("run_app_url"))
    }
}

/// The `X-TFC-Task-Signature` header: hex HMAC-SHA512 of the body with the run task's key.
public enum RunTaskSignature {
    public static let header = "X-TFC-Task-Signature"

    public static func sign(_ body: Data, key: String) -> String {
        AuditChain.hex(HMAC<SHA512>.authenticationCode(for: body, using: SymmetricKey(data: Data(key.utf8))))
    }

    /// Compared in constant time (as API tokens are).
    public static func valid(_ body: Data, signature: String?, key: String) -> Bool {
        guard let signature else { return false }
        return APIToken.equal(sign(body, key: key), signature.lowercased())
    }
}

extension HTTPField.Name {
    /// HCP Terraform's signature of a run task request.
    static let tfcTaskSignature = HTTPField.Name("X-TFC-Task-Signature") ?? .authorization
}

/// `POST /api/v1/run-tasks/terraform`: verifies the signature, answers 200 at once, then fetches the
/// plan with the run's token, checks it with the server's policies and register (recorded like any
/// check), and sends the result to the callback URL, retrying a failed delivery with backoff.
struct RunTaskEndpoint: Sendable {
    let state: ServerState
    let settings: Configuration.TerraformRunTask
    /// Waits between callback attempts (tests shorten it).
    var backoff: @Sendable (Int) async -> Void = { attempt in try? await Task.sleep(for: .seconds(1 << min(attempt, 5))) }
    static let attempts = 5

    func handle(_ request: Request, _ ctx: WaiverContext) async throws -> Response {
        let limit = 1 << 20
        var request = request
        let raw = Data(try await request.collectBody(upTo: limit).readableBytesView)
        guard let key = state.settings.environment(settings.hmacKeyEnv), !key.isEmpty else {
            ctx.logger.error("run task refused: $\(settings.hmacKeyEnv) (run_tasks.terraform.hmac_key_env) is not set")
            throw APIError(.serviceUnavailable, "not_configured", "the run task's HMAC key is not set on this server")
        }
        guard RunTaskSignature.valid(raw, signature: request.headers[values: .tfcTaskSignature].first, key: key) else {
            throw APIError(.unauthorized, "unauthorized", "the \(RunTaskSignature.header) header does not match the body")
        }
        let parsed: RunTaskRequest
        do {
            parsed = try RunTaskRequest.parse(try JSONReader.parse(raw, maxDepth: 16))
        } catch let e as RegisterError {
            throw e
        } catch {
            throw APIError(.badRequest, "bad_request", "the body is not valid JSON: \(error)")
        }
        if parsed.isVerification { return jsonResponse(["status": "ok"]) }
        // Only URLs under HCP Terraform's address are fetched or called: a signed request cannot
        // point the server anywhere else.
        for url in [parsed.callbackURL, parsed.planJSONURL].compactMap({ $0 }) where !url.hasPrefix(settings.address + "/") {
            throw APIError(.unprocessableContent, "invalid", "\(url.clipped(120)) is not under \(settings.address)")
        }
        let job = self
        Task.detached { await job.process(parsed, logger: ctx.logger) }
        return jsonResponse(["status": "accepted"])
    }

    func process(_ run: RunTaskRequest, logger: Logger) async {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(60))))
        defer { _ = client.shutdown() }
        let result: Value
        do {
            result = try await check(run, client: client)
        } catch {
            logger.error("run task \(run.runID): \(error)")
            result = RunTaskResult.error("\(error)")
        }
        let body = JSONWriter.write(result, pretty: false)
        for attempt in 0..<Self.attempts {
            do {
                var patch = HTTPClientRequest(url: run.callbackURL)
                patch.method = .PATCH
                patch.headers.add(name: "Authorization", value: "Bearer \(run.accessToken)")
                patch.headers.add(name: "Content-Type", value: "application/vnd.api+json")
                patch.body = .bytes(ByteBuffer(string: body))
                let response = try await client.execute(patch, timeout: .seconds(30))
                _ = try? await response.body.collect(upTo: 1 << 16)
                if response.status.code / 100 == 2 {
                    logger.info("run task \(run.runID): result sent")
                    return
                }
                logger.warning("run task \(run.runID): the callback answered HTTP \(response.status.code) (attempt \(attempt + 1) of \(Self.attempts))")
            } catch {
                logger.warning("run task \(run.runID): the callback failed: \(error) (attempt \(attempt + 1) of \(Self.attempts))")
            }
            if attempt + 1 < Self.attempts { await backoff(attempt) }
        }
        logger.error("run task \(run.runID): the result could not be delivered")
    }

    /// Fetches the plan (following HCP Terraform's redirect to its archive, without the token when
    /// the host changes), checks it, records the check, and builds the result.
    func check(_ run: RunTaskRequest, client: HTTPClient) async throws -> Value {
        guard let planURL = run.planJSONURL else { throw RegisterError.invalid("the request has no plan_json_api_url (use the post-plan or pre-apply stage)") }
        let data = try await fetch(planURL, token: run.accessToken, client: client)
        let workspace = try RequestLimits.workspace(settings.workspace(organization: run.organization, workspace: run.workspace))
        let plan = try PlanReader.parse(data, file: "\(run.runID).json", selection: state.selection)
        let report = try CheckService.evaluate(
            policies: state.settings.policies, configuration: state.settings.configuration, resources: plan.resources.map { ($0, file: "\(run.runID).json") },
            sarif: [], workspace: workspace, unknown: .warn, keepCompliant: false)
        // Who started the run may not approve what it asks for, as a commit's author.
        let checked = try await state.checkIn(report, actor: "hcp-terraform", provenance: Provenance(declaredCommitAuthor: run.createdBy), request: nil)
        return RunTaskResult.body(checked.report, url: state.settings.publicURL)
    }

    func fetch(_ url: String, token: String, client: HTTPClient) async throws -> Data {
        var current = url
        var withToken = true
        for _ in 0..<4 {
            var get = HTTPClientRequest(url: current)
            if withToken { get.headers.add(name: "Authorization", value: "Bearer \(token)") }
            let response = try await client.execute(get, timeout: .seconds(60))
            if [301, 302, 303, 307, 308].contains(response.status.code), let location = response.headers.first(name: "Location") {
                _ = try? await response.body.collect(upTo: 1 << 16)
                guard let next = URL(string: location, relativeTo: URL(string: current))?.absoluteURL else { throw RegisterError.invalid("a redirect to '\(location.clipped(80))'") }
                if next.host != URL(string: current)?.host { withToken = false }
                current = next.absoluteString
                continue
            }
            guard response.status == .ok else { throw RegisterError.invalid("fetching the plan answered HTTP \(response.status.code)") }
            return Data(try await response.body.collect(upTo: state.settings.maxBodyBytes).readableBytesView)
        }
        throw RegisterError.invalid("fetching the plan was redirected too many times")
    }
}
