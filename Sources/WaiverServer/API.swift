import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// The JSON API under /api/v1.
struct API: Sendable {
    let state: ServerState
    var store: any ServerRegisterStore { state.store }
    /// The rules with the register's users and groups as of this request.
    var register: Register { get async throws { try await state.decisions() } }
    var now: Date { state.settings.now() }

    func register(on group: RouterGroup<WaiverContext>) {
        group.post("evaluations") { req, ctx in try await wrap(ctx) { try await evaluate(req, ctx) } }
        group.get("me") { _, ctx in try await wrap(ctx) {
            let u = try ctx.requireUser()
            return jsonResponse(["name": .string(u.name), "groups": .array(u.groups.map(Value.string)), "admin": .bool(u.admin)])
        } }
        group.post("exceptions") { req, ctx in try await wrap(ctx) { try await requestException(req, ctx, renews: nil) } }
        group.post("exceptions/batch") { req, ctx in try await wrap(ctx) { try await requestExceptions(req, ctx) } }
        group.get("exceptions") { req, ctx in try await wrap(ctx) { try await list(req, ctx) } }
        group.get("exceptions/:id") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            let asText = try format(req, ["json", "text"]) == "text"
            let shown = try await service.show(try id(ctx))
            if asText { return text(RegisterOutput.show(shown.record, history: shown.history, now: service.now)) }
            return jsonResponse(RegisterOutput.value(shown.record, history: shown.history, now: service.now))
        } }
        group.post("exceptions/:id/approve") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx), a = try APIBodies.approval(try await object(req))
            let d = try await service.approve(try id(ctx), comment: a.comment, days: a.days, risk: a.risk)
            var v = RegisterOutput.value(d.record, now: service.now)
            if case .object(var o) = v, let missing = d.stillNeeds {
                o.append("still_needs", .string(missing))
                v = .object(o)
            }
            return jsonResponse(v)
        } }
        group.post("exceptions/:id/reject") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx), comment = try APIBodies.comment(try await object(req))
            return jsonResponse(RegisterOutput.value(try await service.reject(try id(ctx), comment: comment).record, now: service.now))
        } }
        group.post("exceptions/:id/revoke") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx), comment = try APIBodies.comment(try await object(req))
            return jsonResponse(RegisterOutput.value(try await service.revoke(try id(ctx), comment: comment).record, now: service.now))
        } }
        group.post("exceptions/:id/attest") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx), comment = try APIBodies.comment(try await object(req))
            return jsonResponse(RegisterOutput.value(try await service.attest(try id(ctx), comment: comment).record, now: service.now))
        } }
        group.post("exceptions/:id/close") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx), comment = try APIBodies.comment(try await object(req))
            return jsonResponse(RegisterOutput.value(try await service.closeRemediated(try id(ctx), comment: comment).record, now: service.now))
        } }
        group.post("exceptions/:id/renew") { req, ctx in try await wrap(ctx) { try await requestException(req, ctx, renews: try id(ctx)) } }
        group.post("exceptions/:id/evidence") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            let n = try id(ctx)
            // The exception is checked before the body is read or anything reaches the disk.
            guard let target = try await store.exception(id: n) else { throw APIError(.notFound, "not_found", "\(ExceptionRecord.display(n)) not found") }
            try service.register.mayAddEvidence(target, actor: service.actor)
            let q = req.uri.queryParameters
            let upload = EvidenceUpload(name: q.get("name").map { String($0) } ?? "evidence", data: try await body(req),
                                        displayText: q.get("display_text").map { String($0) })
            return jsonResponse(RegisterOutput.value(try await service.addEvidence(n, upload), now: service.now), status: .created)
        } }
        group.post("reviews") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            let b = try APIBodies.review(try await object(req))
            return jsonResponse(RegisterOutput.reviewValue(try await service.recordReview(quarter: b.quarter, policy: b.policy, decision: b.decision, link: b.link)),
                                status: .created)
        } }
        group.get("evidence/:sha256") { _, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            guard let sha = ctx.parameters.get("sha256") else { throw APIError(.badRequest, "bad_request", "no SHA-256") }
            let data: Data?
            do { data = try await service.evidence(sha256: sha) } catch RegisterError.invalid(let m) { throw APIError(.badRequest, "bad_request", m) }
            guard let data else { throw APIError(.notFound, "not_found", "no evidence \(sha)") }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
        } }
        group.get("policies") { _, ctx in try await wrap(ctx) {
            _ = try ctx.requireUser()
            return jsonResponse(.array(state.settings.policies.map(policyValue)))
        } }
        group.get("policies/:id") { _, ctx in try await wrap(ctx) {
            _ = try ctx.requireUser()
            guard let p = state.settings.policies.first(where: { $0.id == ctx.parameters.get("id") }) else {
                throw APIError(.notFound, "not_found", "no policy '\(ctx.parameters.get("id") ?? "")'")
            }
            return jsonResponse(policyValue(p))
        } }
        group.get("reports") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            func date(_ key: String) throws -> Date? {
                guard let t = req.uri.queryParameters.get(key) else { return nil }
                guard let d = parseInstant(t) else { throw APIError(.badRequest, "bad_request", "\(key): '\(t)' is not a date") }
                return d
            }
            let from = try date("from"), to = try date("to"), asked = try format(req, ["json", "text", "markdown"])
            let report = try await service.report(from: from, to: to)
            switch asked {
            case "text": return text(RegisterOutput.reportText(report, markdown: false))
            case "markdown": return text(RegisterOutput.reportText(report, markdown: true), contentType: "text/markdown; charset=utf-8")
            default: return jsonResponse(RegisterOutput.reportValue(report))
            }
        } }
        group.get("audit/events") { req, ctx in try await wrap(ctx) {
            _ = try ctx.requireUser()
            let limit = try self.limit(req) ?? 1000
            let events = try await store.auditEvents(subject: req.uri.queryParameters.get("subject"), last: max(0, min(limit, 100_000)))
            return jsonResponse(.array(events.map { e in
                (try? JSONReader.parse(Data(AuditChain.exportLine(e).utf8))) ?? .null
            }))
        } }
        group.get("audit/verify") { req, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            var anchors: [AuditAnchor] = []
            for text in req.uri.queryParameters.getAll("anchor") {
                guard let a = AuditAnchor(String(text)) else {
                    throw APIError(.badRequest, "bad_request", "anchor: '\(text.prefix(80))' is not \(AuditAnchor.syntax)")
                }
                anchors.append(a)
            }
            var key: PublicSigningKey?
            if let text = req.uri.queryParameters.get("public_key") {
                guard let k = PublicSigningKey(text: text) else {
                    throw APIError(.badRequest, "bad_request", "public_key: not an Ed25519 public key (ed25519:BASE64)")
                }
                key = k
            }
            // From the head last verified, unless `full=true` (or an anchor or key) asks for the whole chain.
            let full = try self.flag(req.uri.queryParameters, "full")
            return jsonResponse(AuditOutput.value(try await service.verifyAudit(anchors: anchors, publicKey: key, given: nil, incremental: !full)))
        } }
        group.get("audit/checkpoints") { _, ctx in try await wrap(ctx) {
            _ = try ctx.requireUser()
            var o = Value.Object()
            o.append("public_key", state.settings.signingKey.map { .string($0.publicKey.text) } ?? .null)
            await o.append("checkpoints", .array(try store.checkpoints().map(\.value)))
            return jsonResponse(.object(o))
        } }
        group.post("audit/checkpoints") { _, ctx in try await wrap(ctx) {
            jsonResponse(try await self.service(ctx).checkpoint().value, status: .created)
        } }
        group.get("audit/export") { _, ctx in try await wrap(ctx) {
            text(try await self.service(ctx).exportAudit(), contentType: "application/jsonl; charset=utf-8")
        } }
        group.post("expire") { _, ctx in try await wrap(ctx) {
            let service = try await self.service(ctx)
            return jsonResponse(.array(try await service.expire().map { RegisterContract.outcomeValue($0, now: service.now) }))
        } }
        group.get("admin/webhooks") { _, ctx in try await wrap(ctx) {
            let user = try ctx.requireUser()
            guard user.admin else { throw APIError(.forbidden, "forbidden", "administrators only") }
            return await jsonResponse(.array(try store.deliveries().map(deliveryValue)))
        } }
    }

    // MARK: - Handlers

    func evaluate(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        let user = try ctx.requireUser()
        let data = try await body(req)
        var workspaceText: String?
        var plan: Result<Plan, InputError>?
        var sarif: [Range<Int>] = []
        var unknownText: String?, formatText: String?
        var commitAuthor: String?, commit: String?, runURL: String?, changeURL: String?, failOnText: String?
        var request: Value?, planFile: Value?, sarifFiles: Value?, formatsValue: Value?
        var unknownKey: String?
        let parsed: Result<Void, JSONSyntaxError> = data.withUnsafeBytes { raw in
            var r = JSONReader(raw.bindMemory(to: UInt8.self))
            do throws(JSONSyntaxError) {
                try r.readObject { (r: inout JSONReader, key: String) throws(JSONSyntaxError) in
                    switch key {
                    case "plan": plan = try PlanReader.parseDocument(&r, file: "plan.json", atEnd: false, selection: state.selection)
                    case "sarif":
                        try r.readArray(depth: 1) { (r: inout JSONReader, _: Int) throws(JSONSyntaxError) in sarif.append(try r.skipValueRange(depth: 2)) }
                    case "workspace": workspaceText = try r.readValue(depth: 1).stringValue
                    case "commit_author": commitAuthor = try r.readValue(depth: 1).stringValue
                    case "commit": commit = try r.readValue(depth: 1).stringValue
                    case "fail_on": failOnText = try r.readValue(depth: 1).stringValue ?? "?"
                    case "run_url": runURL = try r.readValue(depth: 1).stringValue
                    case "change_url": changeURL = try r.readValue(depth: 1).stringValue
                    case "unknown": unknownText = try r.readValue(depth: 1).stringValue ?? "?"
                    case "format": formatText = try r.readValue(depth: 1).stringValue ?? "?"
                    case "request": request = try r.readValue(depth: 1)
                    case "formats": formatsValue = try r.readValue(depth: 1)
                    case "plan_file": planFile = try r.readValue(depth: 1)
                    case "sarif_files": sarifFiles = try r.readValue(depth: 1)
                    default:
                        unknownKey = unknownKey ?? key
                        try r.skipValue(depth: 1)
                    }
                }
                try r.expectEnd()
                return .success(())
            } catch { return .failure(error) }
        }
        if case .failure(let e) = parsed { throw APIError(.badRequest, "bad_request", "the body is not valid JSON: \(e)") }
        if let key = unknownKey { throw APIBodies.unknownField(key, APIBodies.evaluationFields) }
        let workspace = try RequestLimits.workspace(workspaceText ?? "")
        let unknown = try APIBodies.unknownMode(unknownText), format = try APIBodies.format(formatText)
        let formats = try APIBodies.formats(formatsValue, first: format)
        guard plan != nil || !sarif.isEmpty else { throw APIError(.unprocessableContent, "invalid", "send a plan or at least one SARIF report") }
        let spec = try request.map(APIBodies.checkRequest)
        var failOn: Severity?
        if let t = failOnText {
            guard let s = Severity(rawValue: t) else { throw RegisterError.invalid("fail_on must be low, medium, high or critical, not \(t.debugDescription.clipped())") }
            failOn = s
        }
        let provenance = try Provenance(pipeline: ctx.pipeline, declaredCommitAuthor: commitAuthor, commit: commit, runURL: runURL, changeURL: changeURL).validated()
        let names = try APIBodies.documentNames(planFile: planFile, sarifFiles: sarifFiles, sarifCount: sarif.count)
        let resources = try plan.map { try $0.get().resources.map { ($0, file: names.plan) } } ?? []
        let report = try CheckService.evaluate(
            policies: state.settings.policies, configuration: state.settings.configuration, resources: resources,
            sarif: zip(names.sarif, sarif).map { ($0, data.subdata(in: $1)) },
            workspace: workspace, unknown: unknown, keepCompliant: formats.contains(.junit), failOn: failOn)
        let (linked, filed, evaluation, register) = try await state.checkIn(
            report, actor: user.name, provenance: provenance, request: spec)
        let answer = CheckService.resultValue(linked, evaluation: evaluation, filed: filed, warnings: CheckService.requestWarnings(filed, register: register))
        guard case .object(var o) = answer else { return jsonResponse(.null) }
        if format != .json { o.append("rendered", .string(format.render(linked))) }
        if formatsValue != nil {
            var renderings = Value.Object()
            for f in formats where f != .json && renderings[f.rawValue] == nil { renderings.append(f.rawValue, .string(f.render(linked))) }
            o.append("renderings", .object(renderings))
        }
        return jsonResponse(.object(o), status: .created)
    }

    /// The use cases for this request's user: the same implementation the CLI runs on a local register.
    func service(_ ctx: WaiverContext) async throws -> LocalRegisterService {
        let user = try ctx.requireUser()
        return LocalRegisterService(register: try await register, evidence: EvidenceFolder(path: state.settings.evidenceDirectory), actor: user.name, now: now,
                                    audit: store, signingKey: state.settings.signingKey, pipeline: ctx.pipeline)
    }

    func requestException(_ req: Request, _ ctx: WaiverContext, renews: Int?) async throws -> Response {
        let service = try await self.service(ctx)
        let filed = try await service.request(APIBodies.exceptionRequest(try await object(req), renews: renews),
            evidence: [])
        var v = RegisterOutput.value(filed.record, now: service.now)
        if let warning = filed.warning, case .object(var o) = v {
            o.append("warning", .string(warning))
            v = .object(o)
        }
        return jsonResponse(v, status: .created)
    }

    /// Several requests filed all or none.
    func requestExceptions(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        let service = try await self.service(ctx)
        let filed = try await service.requestAll(APIBodies.exceptionRequests(try await object(req)))
        let items: [Value] = filed.map { f in
            var v = RegisterOutput.value(f.record, now: service.now)
            if let warning = f.warning, case .object(var o) = v {
                o.append("warning", .string(warning))
                v = .object(o)
            }
            return v
        }
        return jsonResponse(.object(Value.Object([("requested", .array(items))])), status: .created)
    }

    func list(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        let service = try await self.service(ctx)
        let q = req.uri.queryParameters
        var query = ListQuery(policy: q.get("policy"), workspace: q.get("workspace"), requester: q.get("requester"), ticket: q.get("ticket"),
                              mine: try flag(q, "mine"), limit: try limit(req))
        if let s = q.get("status") {
            guard let status = ExceptionStatus(rawValue: s) else { throw APIError(.badRequest, "bad_request", "unknown status '\(s)'") }
            query.status = status
        }
        if let w = q.get("expiring_within") {
            guard let d = parseDuration(w) else { throw APIError(.badRequest, "bad_request", "expiring_within: '\(w)' is not a duration") }
            query.expiringWithin = d
        }
        let asked = try format(req, ["json", "text", "csv"])
        let history = try flag(q, "history")
        if asked == "text" { return text(RegisterOutput.listText(try await service.list(query), now: service.now)) }
        // The CSV export, and the JSON with `history=true`, carry each exception's decisions and risk history.
        if asked == "csv" {
            return text(RegisterOutput.csv(try await service.exportRows(query).map { ($0.record, $0.history) }), contentType: "text/csv; charset=utf-8")
        }
        if history {
            return jsonResponse(.array(try await service.exportRows(query).map { RegisterOutput.value($0.record, history: $0.history, now: service.now) }))
        }
        return jsonResponse(.array(try await service.list(query).map { RegisterOutput.value($0, now: service.now) }))
    }

    // MARK: - Helpers

    /// A boolean query parameter: `true` or `false` (absent: false); anything else, or given twice, is a 400.
    func flag(_ q: Parameters, _ name: String) throws -> Bool {
        let values = q.getAll(name)
        guard let v = values.first else { return false }
        guard values.count == 1, v == "true" || v == "false" else {
            throw APIError(.badRequest, "bad_request", "\(name) must be true or false, not \(v.debugDescription.clipped(20))")
        }
        return v == "true"
    }

    /// Runs a handler and turns every error into the JSON error shape.
    func wrap(_ ctx: WaiverContext, _ body: () async throws -> Response) async throws -> Response {
        do { return try await body() } catch { throw APIError.from(error, context: ctx) }
    }

    /// Runs blocking register work (SQLite writes wait for the disk) on NIO's thread pool, so the
    /// few threads that serve requests are never stuck behind an fsync.
    func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(work)
    }

    func body(_ req: Request) async throws -> Data {
        let limit = state.settings.maxBodyBytes
        if let length = req.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.contentTooLarge, "too_large", "the request body (\(length) bytes) is over the limit of \(limit) bytes")
        }
        var req = req
        let buffer = try await req.collectBody(upTo: limit)
        return Data(buffer.readableBytesView)
    }

    /// A JSON body (its fields are read by `APIBodies`); an empty body is an empty object.
    func object(_ req: Request) async throws -> Value {
        let data = try await body(req)
        if data.isEmpty { return .object(Value.Object()) }
        let v: Value
        do { v = try JSONReader.parse(data, maxDepth: 64) } catch {
            throw APIError(.badRequest, "bad_request", "the body is not valid JSON: \(error)")
        }
        guard case .object = v else { throw APIError(.badRequest, "bad_request", "the body must be a JSON object") }
        return v
    }

    /// `?format=`, one of `allowed` (the first is the default); anything else is a 400.
    func format(_ req: Request, _ allowed: [String]) throws -> String {
        guard let f = req.uri.queryParameters.get("format") else { return allowed[0] }
        guard allowed.contains(f) else { throw APIError(.badRequest, "bad_request", "format must be one of \(allowed.joined(separator: ", ")), not '\(f.clipped(40))'") }
        return f
    }

    /// `?limit=`, a whole number of at least 0; anything else is a 400.
    func limit(_ req: Request) throws -> Int? {
        guard let l = req.uri.queryParameters.get("limit") else { return nil }
        guard let n = Int(l), n >= 0 else { throw APIError(.badRequest, "bad_request", "limit must be a whole number of at least 0, not '\(l.clipped(40))'") }
        return n
    }

    func id(_ ctx: WaiverContext) throws -> Int {
        guard let text = ctx.parameters.get("id"), let id = ExceptionRecord.parseId(text) else {
            throw APIError(.badRequest, "bad_request", "'\(ctx.parameters.get("id") ?? "")' is not an exception id")
        }
        return id
    }

    func exception(_ ctx: WaiverContext) async throws -> ExceptionRecord {
        let n = try id(ctx)
        guard let e = try await store.exception(id: n) else { throw APIError(.notFound, "not_found", "\(ExceptionRecord.display(n)) not found") }
        return e
    }

    func policyValue(_ p: Policy) -> Value {
        var o = Value.Object()
        o.append("id", .string(p.id))
        o.append("title", .string(p.title))
        o.append("category", .string(p.category))
        o.append("severity", .string(p.severity.rawValue))
        o.append("description", .string(p.description))
        o.append("remediation", .string(p.remediation))
        o.append("resource_types", p.resourceTypes.map { .array($0.map { .string($0.pattern) }) } ?? .null)
        let kind: String
        switch p.rule {
        case .forbid: kind = "forbid"
        case .require: kind = "require"
        case .external: kind = "sarif"
        case .control: kind = "control"
        }
        o.append("kind", .string(kind))
        o.append("max_days", .number(Double(state.register.maxDays(for: p))))
        o.append("source", p.location.map { .string($0.description) } ?? .null)
        return .object(o)
    }

    func deliveryValue(_ d: WebhookDelivery) -> Value {
        ["id": .number(Double(d.id)), "url": .string(d.url), "event": .string(d.action), "attempts": .number(Double(d.attempts)),
         "delivered": d.deliveredAt.map { .string(iso($0)) } ?? .null, "next_attempt": .string(iso(d.nextAttemptAt)),
         "last_error": d.lastError.map(Value.string) ?? .null]
    }
}
