import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// The shared register behind `waiver serve`, reached with `--server URL` and `$WAIVER_TOKEN`.
struct ServerClient: Sendable {
    let base: String
    let token: String

    struct Reply: Sendable {
        let status: Int
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> Value {
            do { return try JSONReader.parse(body) } catch { throw UsageError("the server sent something that is not JSON") }
        }
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's message (exit 2).
    func call(_ method: HTTPMethod, _ path: String, query: [(String, String?)] = [], body: Data? = nil,
              contentType: String = "application/json", timeout: TimeAmount = .seconds(120)) async throws -> Reply {
        var target = base.hasSuffix("/") ? String(base.dropLast()) : base
        target += path
        let items = query.compactMap { k, v in v.map { "\(k)=\($0.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? $0)" } }
        if !items.isEmpty { target += "?" + items.joined(separator: "&") }
        let token = self.token
        let url = target
        let reply: Reply
        do {
            var request = HTTPClientRequest(url: url)
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            request.headers.add(name: "Accept", value: "application/json")
            if let body {
                request.headers.add(name: "Content-Type", value: contentType)
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            let response: HTTPClientResponse
            do {
                response = try await HTTPClient.shared.execute(request, timeout: timeout)
            } catch {
                throw UsageError("\(url): cannot reach the server (\(error))")
            }
            let buffer = try await response.body.collect(upTo: 1 << 30)
            reply = Reply(status: Int(response.status.code), body: Data(buffer.readableBytesView))
        }
        guard (200..<300).contains(reply.status) else {
            let message = (try? reply.json())?["error"]?["message"]?.stringValue ?? reply.text.prefix(300).description
            let text = "server: \(message) (HTTP \(reply.status))"
            // A rule's refusal is the register's own error, as on a local register (a batch goes on past it).
            switch reply.status {
            case 403 where !message.contains("token"): throw RegisterError.refused(text)
            case 404: throw RegisterError.notFound(text)
            case 409: throw RegisterError.conflict(text)
            case 422: throw RegisterError.invalid(text)
            default: throw UsageError(text)
            }
        }
        return reply
    }

    func json(_ method: HTTPMethod, _ path: String, query: [(String, String?)] = [], body: Value? = nil) async throws -> Value {
        try await call(method, path, query: query, body: body.map { Data(JSONWriter.write($0, pretty: false).utf8) }).json()
    }
}

extension CharacterSet {
    static let urlQueryValueAllowed: CharacterSet = {
        var set = CharacterSet.urlQueryAllowed
        set.remove(charactersIn: "&=+?#")
        return set
    }()
}

extension RegisterOptions {
    /// The server client when `--server` (or `$WAIVER_SERVER`) is set, with the credential
    /// `PipelineCredential.find` picks.
    /// `--server` or `$WAIVER_SERVER`, when set.
    var serverURL: String? {
        guard let url = server ?? ProcessInfo.processInfo.environment["WAIVER_SERVER"], !url.isEmpty else { return nil }
        return url
    }

    func client() async throws -> ServerClient? {
        guard let url = serverURL else { return nil }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw UsageError("--server: '\(url)' is not an http(s) URL") }
        return ServerClient(base: url, token: try await PipelineCredential.find(ProcessInfo.processInfo.environment))
    }
}

/// The credential `--server` sends, in this order: a Waiver token (`$WAIVER_TOKEN`); an OIDC token
/// the job already holds (`$WAIVER_ID_TOKEN`, e.g. a GitLab CI `id_tokens` entry); GitHub Actions'
/// token, requested for the audience `$WAIVER_AUDIENCE` (default `waiver`) when the job has
/// `permissions: id-token: write`; HCP Terraform's workload identity token
/// (`$TFC_WORKLOAD_IDENTITY_TOKEN`). The server verifies OIDC tokens against `identity.pipelines`.
enum PipelineCredential {
    static func find(_ env: [String: String]) async throws -> String {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        if let t = value("WAIVER_TOKEN") { return t }
        if let t = value("WAIVER_ID_TOKEN") { return t }
        if let url = value("ACTIONS_ID_TOKEN_REQUEST_URL"), let bearer = value("ACTIONS_ID_TOKEN_REQUEST_TOKEN") {
            return try await github(url: url, bearer: bearer, audience: value("WAIVER_AUDIENCE") ?? "waiver")
        }
        if let t = value("TFC_WORKLOAD_IDENTITY_TOKEN") { return t }
        throw UsageError("--server needs a credential: an API token in $WAIVER_TOKEN (from `waiver admin add-user` on the server host), or a CI job's OIDC token ($WAIVER_ID_TOKEN; GitHub Actions with `id-token: write`; HCP Terraform workload identity)")
    }

    /// GitHub Actions' OIDC token for `audience`: GET `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with
    /// the request token; the answer is `{"value": "<jwt>"}`.
    static func github(url: String, bearer: String, audience: String) async throws -> String {
        let sep = url.contains("?") ? "&" : "?"
        let target = url + sep + "audience=" + (audience.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? audience)
        var request = HTTPClientRequest(url: target)
        request.headers.add(name: "Authorization", value: "bearer \(bearer)")
        request.headers.add(name: "Accept", value: "application/json")
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: .seconds(30)) } catch {
            throw UsageError("ACTIONS_ID_TOKEN_REQUEST_URL: cannot reach GitHub's token service (\(error))")
        }
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok, let v = try? JSONReader.parse(Data(body.readableBytesView)), let token = v["value"]?.stringValue, !token.isEmpty else {
            throw UsageError("ACTIONS_ID_TOKEN_REQUEST_URL: GitHub's token service gave no token (HTTP \(response.status.code)); does the job have `permissions: id-token: write`?")
        }
        return token
    }
}

/// The register's use cases over HTTP (`--server`): each call is the API route for it, and each
/// answer is read back into the register's types (`RegisterContract`), so a command renders the
/// same lines whether its register is local or shared.
struct RemoteRegisterService: RegisterService {
    let client: ServerClient
    let now: Date

    func decode<T>(_ body: () throws(RegisterContract.Mismatch) -> T) throws -> T {
        do { return try body() } catch { throw UsageError("\(error)") }
    }

    func record(_ v: Value) throws -> ExceptionRecord { try decode { () throws(RegisterContract.Mismatch) in try RegisterContract.record(v) } }

    func request(_ r: ExceptionRequest, evidence: [EvidenceUpload]) async throws -> Filed {
        let answer = try await client.json(.POST, "/api/v1/exceptions", body: APIBodies.exceptionRequest(r))
        var e = try record(answer)
        for u in evidence { e = try await addEvidence(e.id, u) }
        return Filed(record: e, warning: answer["warning"]?.stringValue)
    }

    func requestAll(_ requests: [ExceptionRequest]) async throws -> [Filed] {
        guard !requests.isEmpty else { return [] }
        let answer = try await client.json(.POST, "/api/v1/exceptions/batch", body: APIBodies.exceptionRequests(requests))
        return try (answer["requested"]?.arrayValue ?? []).map { v in Filed(record: try record(v), warning: v["warning"]?.stringValue) }
    }

    func approve(_ id: Int, comment: String?, days: Int?, risk: String?) async throws -> Decided {
        let answer = try await client.json(.POST, "/api/v1/exceptions/\(ExceptionRecord.display(id))/approve",
                                           body: APIBodies.approval(.init(comment: comment, days: days, risk: risk)))
        let e = try record(answer)
        return Decided(record: e, actor: e.approvals.last?.approver ?? "?", stillNeeds: answer["still_needs"]?.stringValue)
    }

    /// The token's user: the actor of every change (a rejection or revocation records no approver to read it from).
    func me() async throws -> String {
        guard let name = try await client.json(.GET, "/api/v1/me")["name"]?.stringValue else {
            throw UsageError("the server's answer does not match the API: /me has no name")
        }
        return name
    }

    func reject(_ id: Int, comment: String) async throws -> Decided { try await commented(id, "reject", comment) }
    func revoke(_ id: Int, comment: String) async throws -> Decided { try await commented(id, "revoke", comment) }
    func attest(_ id: Int, comment: String) async throws -> Decided { try await commented(id, "attest", comment) }
    func closeRemediated(_ id: Int, comment: String) async throws -> Decided { try await commented(id, "close", comment) }

    /// A decision that takes a comment (`POST /api/v1/exceptions/{id}/VERB`), and who made it.
    func commented(_ id: Int, _ verb: String, _ comment: String) async throws -> Decided {
        let e = try record(try await client.json(.POST, "/api/v1/exceptions/\(ExceptionRecord.display(id))/\(verb)", body: APIBodies.comment(comment)))
        return Decided(record: e, actor: try await me())
    }

    func addEvidence(_ id: Int, _ upload: EvidenceUpload) async throws -> ExceptionRecord {
        try record(try await client.call(.POST, "/api/v1/exceptions/\(ExceptionRecord.display(id))/evidence", query: [("name", upload.name), ("display_text", upload.displayText)],
                                         body: upload.data, contentType: "application/octet-stream").json())
    }

    func exportRows(_ q: ListQuery) async throws -> [ExportRow] {
        let answer = try await client.json(.GET, "/api/v1/exceptions", query: listQuery(q) + [("history", "true")])
        guard let items = answer.arrayValue else { throw UsageError("the server's answer does not match the API: the list is not a list") }
        return try items.map { item in
            let e = try record(item)
            do { return ExportRow(record: e, history: try RegisterContract.history(item, subject: e.displayId)) } catch { throw UsageError("\(error)") }
        }
    }

    func listQuery(_ q: ListQuery) -> [(String, String?)] {
        [("status", q.status?.rawValue), ("policy", q.policy), ("workspace", q.workspace), ("requester", q.requester),
         ("expiring_within", q.expiringWithin.map { "\($0)s" }), ("limit", q.limit.map(String.init)), ("ticket", q.ticket),
         ("mine", q.mine ? "true" : nil)]
    }

    func list(_ q: ListQuery) async throws -> [ExceptionRecord] {
        let answer = try await client.json(.GET, "/api/v1/exceptions", query: listQuery(q))
        guard let items = answer.arrayValue else { throw UsageError("the server's answer does not match the API: the list is not a list") }
        return try items.map(record)
    }

    func show(_ id: Int) async throws -> Shown {
        let answer = try await client.json(.GET, "/api/v1/exceptions/\(ExceptionRecord.display(id))")
        let e = try record(answer)
        return Shown(record: e, history: try decode { () throws(RegisterContract.Mismatch) in try RegisterContract.history(answer, subject: e.displayId) })
    }

    func recordReview(quarter: String, policy: String, decision: String, link: String?) async throws -> PolicyReview {
        let answer = try await client.json(.POST, "/api/v1/reviews", body: APIBodies.review(quarter: quarter, policy: policy, decision: decision, link: link))
        guard let q = answer["quarter"]?.stringValue, let p = answer["policy"]?.stringValue, let d = answer["decision"]?.stringValue,
              let by = answer["by"]?.stringValue, let at = answer["at"]?.stringValue.flatMap(parseInstant) else {
            throw UsageError("the server's answer does not match the API: not a review")
        }
        return PolicyReview(quarter: q, policy: p, decision: d, link: answer["link"]?.stringValue, by: by, at: at)
    }

    func report(from: Date?, to: Date?) async throws -> RegisterReport {
        let answer = try await client.json(.GET, "/api/v1/reports", query: [("from", from.map(iso)), ("to", to.map(iso))])
        return try decode { () throws(RegisterContract.Mismatch) in try RegisterContract.report(answer) }
    }

    func evidence(sha256: String) async throws -> Data? {
        try await client.call(.GET, "/api/v1/evidence/\(sha256)").body
    }

    func exportAudit() async throws -> String {
        try await client.call(.GET, "/api/v1/audit/export").text
    }

    func verifyAudit(anchors: [AuditAnchor], publicKey: PublicSigningKey?, given: [WaiverStore.Checkpoint]?, incremental: Bool) async throws -> AuditVerification {
        if given != nil { throw UsageError("--checkpoint with --server: verify the server's export instead (audit export, then --file)") }
        var query: [(String, String?)] = anchors.map { ("anchor", $0.description) }
        if !incremental { query.append(("full", "true")) }
        if let publicKey { query.append(("public_key", publicKey.text)) }
        guard let v = AuditOutput.verification(try await client.call(.GET, "/api/v1/audit/verify", query: query).json()) else {
            throw UsageError("the server's answer does not match the API: audit/verify is not a verification")
        }
        return v
    }

    func checkpoint() async throws -> WaiverStore.Checkpoint {
        do { return try WaiverStore.Checkpoint(json: try await client.json(.POST, "/api/v1/audit/checkpoints")) } catch let e as ExportLineError {
            throw UsageError("the server's answer does not match the API: not a checkpoint (\(e))")
        }
    }

    func expire() async throws -> [ExpiryOutcome] {
        guard let items = try await client.json(.POST, "/api/v1/expire").arrayValue else {
            throw UsageError("the server's answer does not match the API: the outcomes are not a list")
        }
        return try items.map { v in try decode { () throws(RegisterContract.Mismatch) in try RegisterContract.outcome(v) } }
    }
}

/// `check --server`: the server evaluates with its own policies against the shared register and
/// renders the format asked for; the documents go as they are (normalized to UTF-8) in a JSON envelope.
struct RemoteCheck: CheckUseCase {
    let client: ServerClient

    func decode<T>(_ body: () throws(RegisterContract.Mismatch) -> T) throws -> T {
        do { return try body() } catch { throw UsageError("\(error)") }
    }

    func envelope(_ input: CheckInput) throws -> Data {
        let planBytes = try input.plan.map { try PlanReader.normalized(try InputFile.read($0), file: $0) }
        let sarifBytes = try input.sarifDocuments().map(\.data)
        let meta = APIBodies.evaluationSettings(input)
        var out = Array(JSONWriter.write(.object(meta), pretty: false).utf8.dropLast())  // without the closing brace
        if let planBytes {
            out.append(contentsOf: ",\"plan\":".utf8)
            out.append(contentsOf: planBytes)
        }
        if !sarifBytes.isEmpty {
            out.append(contentsOf: ",\"sarif\":[".utf8)
            for (i, bytes) in sarifBytes.enumerated() {
                if i > 0 { out.append(0x2C) }
                out.append(contentsOf: bytes)
            }
            out.append(0x5D)
        }
        out.append(0x7D)
        return Data(out)
    }

    func check(_ input: CheckInput) async throws -> CheckOutcome {
        let reply = try await client.call(.POST, "/api/v1/evaluations", body: try envelope(input)).json()
        let answer = try decode { () throws(RegisterContract.Mismatch) in try RegisterContract.checkAnswer(reply) }
        let filed = answer.requested.map { id in
            let covered = answer.results.filter { $0.exception == id }
            return FiledRequest(id: id, policy: covered.first?.policy ?? "?", resources: covered.map(\.resource), link: covered.first?.link)
        }
        // The server renders other formats; JSON is its answer itself (without the renderings).
        var renderings: [OutputFormat: String] = [:]
        for format in input.formats {
            if format == .json {
                guard case .object(var o) = reply else { continue }
                o["rendered"] = nil
                o["renderings"] = nil
                renderings[format] = JSONWriter.write(.object(o))
            } else {
                renderings[format] = answer.renderings[format.rawValue] ?? (format == input.format ? answer.rendered : nil) ?? ""
            }
        }
        return CheckOutcome(renderings: renderings, passed: answer.passed, summary: answer.summary, filed: filed, warnings: answer.requestWarnings,
                            pending: answer.results.filter { $0.status == .pending }.compactMap(\.exception))
    }
}
