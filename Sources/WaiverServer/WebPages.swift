import Foundation
import Hummingbird
import MultipartKit
import Mustache
import NIOHTTP1
import NIOCore
import NIOPosix
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// The pages: each builds its view from the use cases (`LocalRegisterService`) and renders a template.
extension Web {
    func inbox(_ user: User, _ ctx: WaiverContext, notice: [String: Any]? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let current = now
        // The same rule the decision applies: never the requester, the commit author, the subject or owner.
        let register = try await state.decisions()
        let mine = try await store.exceptions(ExceptionFilter(statuses: [.pending])).filter { register.mayDecide($0, person: user.name) }
            .sorted { $0.createdAt < $1.createdAt }
        // Requests filed together (one pipeline run's) are one group, decided together with one form.
        var order: [String] = []
        var byBatch: [String: [ExceptionRecord]] = [:]
        for e in mine {
            if byBatch[e.batch] == nil { order.append(e.batch) }
            byBatch[e.batch, default: []].append(e)
        }
        let groups: [[String: Any]] = order.enumerated().map { n, key in
            let members = byBatch[key] ?? []
            let first = members[0]
            let source = first.origin?.runURL.map { "pipeline run \($0)" } ?? first.origin?.commit.map { "commit \($0)" }
                ?? "\(first.requester) at \(iso(first.createdAt))"
            let title = members.count == 1 ? "\(first.displayId) from \(source)" : "\(members.count) requests from \(source) in \(first.workspace)"
            return ["title": title, "batch": members.count > 1, "key": n, "items": members.map { e in
                ["id": e.displayId, "number": e.id, "policy": e.policy, "policyTitle": policy(e.policy)?.title ?? "", "workspace": e.workspace,
                 "resources": e.resources.count == 1 ? e.resources[0] : "\(e.resources.count) resources",
                 "risk": e.riskLevel, "requester": e.requester, "age": age(current.timeIntervalSince(e.createdAt))] as [String: Any]
            }]
        }
        return try render("inbox", ["title": "Waiting for me", "groups": groups, "hasItems": !mine.isEmpty, "notice": notice as Any], ctx, status: status)
    }

    /// The inbox's batch form: each selected request decided on its own (`decideAll`), each its own
    /// audit event; the page says what happened to each.
    func decideBatch(_ req: Request, _ ctx: WaiverContext, _ user: User) async throws -> Response {
        let form = try await formBody(req)
        guard let expected = ctx.csrf, let sent = form["csrf"], APIToken.equal(expected, sent) else {
            throw APIError(.forbidden, "csrf", "this form is missing its CSRF token or it does not match your session")
        }
        guard let action = form["action"].flatMap(BatchAction.init(rawValue:)) else { throw APIError(.badRequest, "bad_request", "unknown action") }
        let ids = form.filter { $0.key.hasPrefix("pick_") && $0.value == "on" }.compactMap { Int($0.key.dropFirst("pick_".count)) }.sorted()
        guard !ids.isEmpty, ids.count <= 500 else { throw APIError(.badRequest, "bad_request", "select 1 to 500 requests to decide") }
        let comment = (form["comment"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let outcomes = try await service(user).decideAll(ids, action: action, comment: comment.isEmpty ? nil : comment)
        let refused = outcomes.filter { $0.decided == nil }.count
        let text = outcomes.map(\.line).joined(separator: " · ")
        return try await inbox(user, ctx, notice: ["kind": refused == 0 ? "ok" : "error", "text": text])
    }

    func exceptionPage(_ req: Request, _ ctx: WaiverContext, _ user: User, notice: [String: Any]?, status: HTTPResponse.Status = .ok) async throws -> Response {
        guard let n = ctx.parameters.get("id").flatMap(ExceptionRecord.parseId), let e = try await store.exception(id: n) else {
            throw APIError(.notFound, "not_found", "no such exception")
        }
        let current = now
        let p = policy(e.policy)
        let latest = try await store.latestEvaluation(workspace: e.workspace)
        // The latest check's values beside the ones the exception was approved for: a change is
        // what a `changed` result blocks on, and the page offers the amended request it needs.
        let seen = (latest?.violations ?? []).filter { $0.policy == e.policy && e.resources.contains($0.resource) }
        let violations: [[String: Any]] = seen.map { v in
            let changed = !e.covers(resource: v.resource, values: v.message)
            return ["resource": v.resource, "message": v.message, "changed": changed, "approved": e.bound?[v.resource] as Any]
        }
        let changedResources = seen.filter { !e.covers(resource: $0.resource, values: $0.message) }.map(\.resource)
        let bound: [[String: Any]] = e.resources.compactMap { r in e.bound?[r].map { ["resource": r, "values": $0] } }
        let history: [[String: Any]] = try await store.auditEvents(subject: e.displayId).map { ev in
            ["seq": ev.seq, "at": iso(ev.time), "actor": ev.actor, "action": ev.action, "details": RegisterOutput.details(ev.payload)]
        }
        let auditor = user.groups.contains(state.settings.configuration.auditorGroup)
        let canDecide = !e.status.isFinal && e.untrusted == nil && !auditor
            && (user.admin || !Set(user.groups).isDisjoint(with: e.rule.groups) || Identity.same(user.name, e.requester))
        let higherRisks = state.register.riskOrder.filter { state.register.rank($0) > state.register.rank(e.riskLevel) }
        // What the approver weighs besides the request: how often this policy (and this workspace)
        // was excepted in the last four quarters, and the exception a renewal renews, side by side.
        let qs = quarters(endingAt: current)
        let recent = try await store.exceptions(ExceptionFilter(policy: e.policy, createdFrom: qs.first?.1, createdBefore: qs.last?.2))
        let perQuarter = qs.enumerated().map { i, q in
            let inQ = recent.filter { $0.createdAt >= q.1 && $0.createdAt < q.2 }
            return ["label": q.0, "policy": inQ.count, "workspace": inQ.filter { $0.workspace == e.workspace }.count, "last": i == qs.count - 1] as [String: Any]
        }
        var previous: [String: Any]?
        if let old = e.renews, let p = try await store.exception(id: old) {
            previous = ["id": p.displayId, "status": p.status.rawValue, "reason": p.reason, "newReason": e.reason, "mitigations": p.mitigations,
                        "newMitigations": e.mitigations, "risk": RegisterOutput.riskText(p), "newRisk": RegisterOutput.riskText(e), "days": p.requestedDays,
                        "newDays": e.requestedDays, "expires": p.expiresAt.map(iso) as Any,
                        "approvals": p.approvals.map { ["approver": $0.approver, "comment": $0.comment as Any] }]
        }
        let context: [String: Any] = [
            "frequency": ["policy": e.policy, "workspace": e.workspace, "policyCount": recent.count, "policyPlural": recent.count == 1 ? "" : "s",
                          "workspaceCount": recent.filter { $0.workspace == e.workspace }.count, "quarters": perQuarter] as [String: Any],
            "previous": previous as Any,
            "ticket": e.ticket as Any, "ticketURL": e.ticket.flatMap { $0.lowercased().hasPrefix("http") ? $0 : nil } as Any,
            "origin": e.origin.map { o in ["commit": o.commit as Any, "commitAuthor": o.commitAuthor as Any, "changeURL": o.changeURL as Any,
                                           "runURL": o.runURL as Any, "pipeline": o.pipeline as Any] } as Any,
            "canAddEvidence": e.untrusted == nil && !auditor && (user.admin || Identity.same(user.name, e.requester) || !Set(user.groups).isDisjoint(with: e.rule.groups)
                                                     || e.subjectPeople.contains { Identity.same($0, user.name) }),
            "title": e.displayId, "id": e.displayId, "status": e.status.rawValue, "active": e.isActive(at: current),
            "expires": e.expiresAt.map(iso) as Any, "policy": e.policy, "policyTitle": p?.title ?? "", "policyDescription": p?.description ?? "",
            "policyRemediation": p?.remediation ?? "", "workspace": e.workspace,
            "subjectLabel": e.subjectKind == .resource ? "Resources" : e.subjectKind.rawValue.capitalized, "resources": e.resources,
            "violations": violations, "bound": bound, "bindsResource": e.subjectKind == .resource && e.bound == nil,
            "amend": !changedResources.isEmpty && !auditor && e.untrusted == nil && [.approved, .pending].contains(e.status)
                ? ["resources": changedResources] as Any : false as Any,
            "requester": e.requester, "reason": e.reason, "risk": e.riskLevel,
            "riskNote": RegisterOutput.riskText(e), "higherRisks": higherRisks.map { ["level": $0] }, "canRaise": !higherRisks.isEmpty,
            "owner": e.owner as Any, "conflicted": e.conflicted.isEmpty ? false as Any : e.conflicted.joined(separator: ", "),
            "untrusted": e.untrusted as Any,
            "likelihood": e.likelihood.rawValue, "impact": e.impact.rawValue, "mitigations": e.mitigations, "days": e.requestedDays,
            "minApprovals": e.rule.minApprovals, "groups": e.rule.groups.joined(separator: ", "),
            "requiredGroups": e.rule.requiredGroups.isEmpty ? false as Any : e.rule.requiredGroups.joined(separator: " or "),
            "approvals": e.approvals.map { ["approver": $0.approver, "at": iso($0.at), "comment": $0.comment as Any] },
            "evidence": e.evidence.map { f in
                ["name": f.name, "sha256": f.sha256, "addedBy": f.addedBy, "at": iso(f.at), "displayText": f.displayText as Any,
                 "afterDecision": e.decidedAt.map { f.at >= $0 } ?? false] as [String: Any]
            }, "renews": e.renews.map(ExceptionRecord.display) as Any,
            "canDecide": canDecide, "pending": e.status == .pending,
            "reviewCycle": state.register.reviewEvery(e).flatMap { every in e.reviewDue(every: every).map { ["due": iso($0)] } } as Any,
            "closable": e.isActive(at: current), "history": history, "notice": notice as Any,
        ]
        return try render("exception", context, ctx, status: status)
    }

    func decide(_ req: Request, _ ctx: WaiverContext, _ user: User) async throws -> Response {
        let form = try await formBody(req)
        guard let expected = ctx.csrf, let sent = form["csrf"], APIToken.equal(expected, sent) else {
            throw APIError(.forbidden, "csrf", "this form is missing its CSRF token or it does not match your session")
        }
        guard let n = ctx.parameters.get("id").flatMap(ExceptionRecord.parseId) else { throw APIError(.notFound, "not_found", "no such exception") }
        let comment = (form["comment"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let service = try await self.service(user)
        do {
            let d: Decided
            switch form["action"] {
            case "approve":
                let risk = (form["risk"] ?? "").trimmingCharacters(in: .whitespaces)
                d = try await service.approve(n, comment: comment.isEmpty ? nil : comment, days: nil, risk: risk.isEmpty ? nil : risk)
            case "reject": d = try await service.reject(n, comment: comment)
            case "revoke": d = try await service.revoke(n, comment: comment)
            case "attest": d = try await service.attest(n, comment: comment)
            case "close": d = try await service.closeRemediated(n, comment: comment)
            default: throw APIError(.badRequest, "bad_request", "unknown action")
            }
            let text: String
            if let missing = d.stillNeeds { text = "Your approval is recorded; it still needs \(missing)." } else { text = "\(d.record.displayId) is now \(d.record.status.rawValue)." }
            return try await exceptionPage(req, ctx, user, notice: ["kind": "ok", "text": text])
        } catch let error as RegisterError {
            // A refused action says which rule refused it.
            let status = APIError.from(error, context: ctx).status
            return try await exceptionPage(req, ctx, user, notice: ["kind": "error", "text": "Refused: \(error.description)"], status: status)
        }
    }

    /// The amended request a `changed` result needs: the same policy, workspace, risk and mitigations
    /// on the resources whose values changed, bound to the values the latest check recorded.
    func amend(_ req: Request, _ ctx: WaiverContext, _ user: User) async throws -> Response {
        let form = try await formBody(req)
        guard let expected = ctx.csrf, let sent = form["csrf"], APIToken.equal(expected, sent) else {
            throw APIError(.forbidden, "csrf", "this form is missing its CSRF token or it does not match your session")
        }
        guard let n = ctx.parameters.get("id").flatMap(ExceptionRecord.parseId), let e = try await store.exception(id: n) else {
            throw APIError(.notFound, "not_found", "no such exception")
        }
        let latest = try await store.latestEvaluation(workspace: e.workspace)
        let changed = (latest?.violations ?? []).filter { v in v.policy == e.policy && e.resources.contains(v.resource) && !e.covers(resource: v.resource, values: v.message) }
        do {
            guard !changed.isEmpty else { throw RegisterError.invalid("the latest check of \(e.workspace) shows no changed values under \(e.displayId)") }
            let filed = try await service(user).request(ExceptionRequest(
                policy: e.policy, workspace: e.workspace, resources: changed.map(\.resource), reason: form["reason"] ?? "", days: nil,
                likelihood: e.likelihood, impact: e.impact, mitigations: e.mitigations, ticket: e.ticket), evidence: [])
            return redirect("/exceptions/\(filed.record.displayId)")
        } catch let error as RegisterError {
            let status = APIError.from(error, context: ctx).status
            return try await exceptionPage(req, ctx, user, notice: ["kind": "error", "text": "Refused: \(error.description)"], status: status)
        }
    }

    struct Filtered {
        var items: [ExceptionRecord]
        var status: String, policy: String, workspace: String, expiringWithin: String, ticket: String, control: String
    }

    /// The use cases for the signed-in user: the same implementation as the API's and the CLI's.
    func service(_ user: User) async throws -> LocalRegisterService {
        LocalRegisterService(register: try await state.decisions(), evidence: EvidenceFolder(path: state.settings.evidenceDirectory), actor: user.name, now: now,
                             audit: store, signingKey: state.settings.signingKey)
    }

    func filtered(_ req: Request, _ user: User) async throws -> Filtered {
        let q = req.uri.queryParameters
        let status = q.get("status") ?? "", policy = q.get("policy") ?? "", workspace = q.get("workspace") ?? "", within = q.get("expiring_within") ?? ""
        let ticket = q.get("ticket") ?? "", control = q.get("control") ?? ""
        var query = ListQuery(policy: policy.isEmpty ? nil : policy, workspace: workspace.isEmpty ? nil : workspace, ticket: ticket.isEmpty ? nil : ticket)
        if !status.isEmpty {
            guard let s = ExceptionStatus(rawValue: status) else { throw APIError(.badRequest, "bad_request", "unknown status '\(status)'") }
            query.status = s
        }
        if !within.isEmpty {
            guard let d = parseDuration(within) else { throw APIError(.badRequest, "bad_request", "'\(within)' is not a duration (7d, 12h)") }
            query.expiringWithin = d
        }
        var items = try await service(user).list(query)
        if !control.isEmpty {
            // A framework control: the exceptions to the policies that name it.
            let ids = Set(state.settings.policies.filter { $0.controls.contains(control) }.map(\.id))
            items = items.filter { ids.contains($0.policy) }
        }
        return Filtered(items: items, status: status, policy: policy, workspace: workspace, expiringWithin: within, ticket: ticket, control: control)
    }

    /// Rows per register page, unless `per_page` (1-500) says otherwise.
    static let registerPageSize = 100

    func registerPage(_ req: Request, _ ctx: WaiverContext, _ user: User) async throws -> Response {
        let f = try await filtered(req, user)
        // Newest first, one page at a time: a register of thousands stays a page a browser can show.
        let q = req.uri.queryParameters
        let perPage = min(500, max(1, q.get("per_page").flatMap { Int($0) } ?? Self.registerPageSize))
        let pages = max(1, (f.items.count + perPage - 1) / perPage)
        let page = min(pages, max(1, q.get("page").flatMap { Int($0) } ?? 1))
        let newestFirst = Array(f.items.reversed())
        let first = (page - 1) * perPage, last = min(newestFirst.count, first + perPage)
        let items: [[String: Any]] = newestFirst[first..<last].map { e in
            ["id": e.displayId, "status": e.status.rawValue, "policy": e.policy, "workspace": e.workspace,
             "resources": e.resources.joined(separator: ", "), "risk": e.riskLevel, "requester": e.requester, "expires": e.expiresAt.map(iso) ?? ""]
        }
        let query = [("status", f.status), ("policy", f.policy), ("workspace", f.workspace), ("expiring_within", f.expiringWithin), ("ticket", f.ticket), ("control", f.control)]
            .filter { !$0.1.isEmpty }.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
        func link(_ p: Int) -> String {
            "/register?" + ([query, "page=\(p)", perPage == Self.registerPageSize ? "" : "per_page=\(perPage)"].filter { !$0.isEmpty }.joined(separator: "&"))
        }
        var values: [String: Any] = [
            "title": "Register", "items": items, "count": f.items.count, "policy": f.policy, "workspace": f.workspace,
            "expiringWithin": f.expiringWithin, "query": query, "ticket": f.ticket, "control": f.control,
            "statuses": ExceptionStatus.allCases.map { ["value": $0.rawValue, "selected": $0.rawValue == f.status] },
        ]
        if pages > 1 {
            var nav: [String: Any] = ["first": first + 1, "last": last, "page": page, "pages": pages]
            if page > 1 { nav["previous"] = link(page - 1) }
            if page < pages { nav["next"] = link(page + 1) }
            values["paged"] = nav
        }
        return try render("register", values, ctx)
    }

    /// The last four calendar quarters (UTC), oldest first: (label, start, end).
    func quarters(endingAt date: Date) -> [(String, Date, Date)] {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(secondsFromGMT: 0) ?? cal.timeZone
        let y = cal.component(.year, from: date), q = (cal.component(.month, from: date) - 1) / 3
        return (0..<4).reversed().map { back in
            let index = y * 4 + q - back
            let (year, quarter) = (index / 4, index % 4)
            let start = cal.date(from: DateComponents(year: year, month: quarter * 3 + 1, day: 1)) ?? date
            let end = cal.date(from: DateComponents(year: year + (quarter == 3 ? 1 : 0), month: quarter == 3 ? 1 : quarter * 3 + 4, day: 1)) ?? date
            return ("Q\(quarter + 1) \(year)", start, end)
        }
    }

    /// The quarter a page shows: `?quarter=2026-Q2` (any past quarter), else the running one; an
    /// instant inside it, and the selector's links (the last eight quarters, the chosen one marked).
    func chosenQuarter(_ req: Request, path: String) throws -> (at: Date, label: String, choices: [[String: Any]]) {
        let current = now
        var at = current
        if let text = req.uri.queryParameters.get("quarter"), !text.isEmpty {
            guard let start = Quarter(text)?.start, start <= current else {
                throw APIError(.badRequest, "bad_request", "quarter: '\(text.clipped(20))' is not a quarter up to now (2026-Q2)")
            }
            at = start
        }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(secondsFromGMT: 0) ?? cal.timeZone
        let y = cal.component(.year, from: current), q = (cal.component(.month, from: current) - 1) / 3
        let chosen = "\(cal.component(.year, from: at))-Q\((cal.component(.month, from: at) - 1) / 3 + 1)"
        let choices: [[String: Any]] = (0..<8).map { back in
            let index = y * 4 + q - back
            let key = "\(index / 4)-Q\(index % 4 + 1)"
            return ["key": key, "link": "\(path)?quarter=\(key)", "chosen": key == chosen]
        }
        return (at, chosen, choices)
    }

    func policyPage(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        guard let id = ctx.parameters.get("id"), let p = policy(id) else { throw APIError(.notFound, "not_found", "no such policy") }
        let items = try await store.exceptions(ExceptionFilter(policy: p.id))
        let chosen = try chosenQuarter(req, path: "/policies/\(p.id)")
        let qs = quarters(endingAt: chosen.at)
        let counts = qs.map { q in items.filter { $0.createdAt >= q.1 && $0.createdAt < q.2 }.count }
        let threshold = state.settings.configuration.reviewThreshold
        let last = counts.last ?? 0
        return try render("policy", [
            "title": p.title, "id": p.id, "category": p.category, "severity": p.severity.rawValue,
            "description": p.description, "remediation": p.remediation, "maxDays": state.register.maxDays(for: p),
            "source": p.location.map { PolicyListing.relative($0, to: state.settings.policyDirectory) } ?? "", "rule": Self.policyText(p) as Any, "chart": Self.barChart(labels: qs.map(\.0), values: counts),
            "review": last >= threshold ? ["count": last, "threshold": threshold, "quarter": chosen.label] as [String: Any] : false as Any,
            "quarters": chosen.choices, "quarter": chosen.label,
            "reviews": Register.reviews(in: try await store.auditEvents(subject: "policy:\(p.id)")).reversed().map { r in
                ["quarter": r.quarter, "decision": r.decision, "by": r.by, "at": iso(r.at), "link": r.link as Any] as [String: Any]
            },
            "items": items.reversed().map { ["id": $0.displayId, "status": $0.status.rawValue, "workspace": $0.workspace, "requester": $0.requester, "created": iso($0.createdAt)] },
        ], ctx)
    }

    /// The policy as written in its file: from its line to the next policy of the same list.
    static func policyText(_ p: Policy) -> String? {
        guard let loc = p.location, loc.line > 0, let text = try? String(contentsOfFile: loc.file, encoding: .utf8) else { return nil }
        let lines = text.components(separatedBy: "\n")
        guard loc.line <= lines.count else { return nil }
        let first = lines[loc.line - 1]
        let indent = first.prefix { $0 == " " }.count
        var out = [first]
        for line in lines[loc.line...] {
            let lead = line.prefix { $0 == " " }.count
            if !line.trimmingCharacters(in: .whitespaces).isEmpty, lead <= indent, line.dropFirst(lead).hasPrefix("-") || lead < indent { break }
            out.append(line)
            if out.count > 200 { break }
        }
        return out.joined(separator: "\n").trimmingCharacters(in: .newlines)
    }

    /// An SVG bar chart (numbers and fixed labels only, so it is safe to embed unescaped).
    static func barChart(labels: [String], values: [Int]) -> String {
        let width = 480, height = 200, top = 20, bottom = 30, left = 30
        let maxValue = max(1, values.max() ?? 1)
        let slot = (width - left) / max(1, values.count)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(width) \(height)\" width=\"100%\" style=\"max-width:560px\" role=\"img\" aria-label=\"Exceptions per quarter\" id=\"chart\">"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width)\" y2=\"\(height - bottom)\" stroke=\"#c9ced8\"/>"
        for (i, v) in values.enumerated() {
            let h = (height - top - bottom) * v / maxValue
            let x = left + i * slot + slot / 5
            let w = slot * 3 / 5
            svg += "<rect x=\"\(x)\" y=\"\(height - bottom - h)\" width=\"\(w)\" height=\"\(h)\" fill=\"#2f5bd3\" rx=\"3\"><title>\(v)</title></rect>"
            svg += "<text x=\"\(x + w / 2)\" y=\"\(height - bottom - h - 5)\" text-anchor=\"middle\" font-size=\"12\" fill=\"#1d2330\">\(v)</text>"
            let label = labels.indices.contains(i) ? labels[i].filter { $0.isLetter || $0.isNumber || $0 == " " } : ""
            svg += "<text x=\"\(x + w / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\" font-size=\"12\" fill=\"#5b6475\">\(label)</text>"
        }
        return svg + "</svg>"
    }

    /// Exceptions grouped by the framework controls their policies implement.
    func controlsPage(_ ctx: WaiverContext) async throws -> Response {
        let current = now
        var policiesOf: [String: [String]] = [:]
        for p in state.settings.policies { for c in p.controls { policiesOf[c, default: []].append(p.id) } }
        let all = try await store.exceptions(ExceptionFilter())
        let rows: [[String: Any]] = policiesOf.keys.sorted().map { control in
            let ids = Set(policiesOf[control] ?? [])
            let items = all.filter { ids.contains($0.policy) }
            return ["control": control, "policies": (policiesOf[control] ?? []).sorted(), "total": items.count,
                    "active": items.filter { $0.isActive(at: current) }.count, "pending": items.filter { $0.status == .pending }.count]
        }
        return try render("controls", ["title": "Controls", "controls": rows, "hasControls": !rows.isEmpty], ctx)
    }

    func reviewPage(_ req: Request, _ ctx: WaiverContext) async throws -> Response {
        let current = now
        let chosen = try chosenQuarter(req, path: "/review")
        let q = quarters(endingAt: chosen.at).last ?? ("", current, current)
        let inPeriod = try await store.exceptions(ExceptionFilter(createdFrom: q.1, createdBefore: q.2))
        let active = try await store.exceptions(ExceptionFilter(statuses: [.approved]))
        var latest: [String: Evaluation] = [:]
        for w in Set(active.map(\.workspace)) { latest[w] = try await store.latestEvaluation(workspace: w) }
        let r = RegisterReport.build(inPeriod: inPeriod, active: active, latest: latest, from: q.1, to: q.2, now: current,
                                     reviewThreshold: state.settings.configuration.reviewThreshold)
        return try render("review", [
            "title": "Quarterly review", "period": q.0, "quarters": chosen.choices, "total": r.total, "renewals": r.renewals,
            "median": r.medianApprovedDays.map { String(format: "%.1f days", $0) } ?? "n/a", "active": r.activeNow, "orphaned": r.orphaned,
            "policies": r.perPolicy.map { ["key": $0.key, "count": $0.count, "flag": $0.count >= r.reviewThreshold] },
        ], ctx)
    }

    /// The audit package of a period as a ZIP download (`from`, `to`: dates, the last one included).
    func auditPackage(_ req: Request, _ user: User) async throws -> Response {
        let q = req.uri.queryParameters
        guard let fromText = q.get("from"), let from = parseInstant(fromText), let toText = q.get("to"), let to = AuditPackage.periodEnd(toText) else {
            throw APIError(.badRequest, "bad_request", "the package needs its period: from and to as dates (2026-10-01, 2026-12-31)")
        }
        let files = try await AuditPackage.files(service: try await service(user), from: from, to: to, policies: state.settings.policies,
                                                 publicKey: state.settings.signingKey?.publicKey)
        let temp = NSTemporaryDirectory() + "waiver-package-\(UUID().uuidString).zip"
        defer { try? FileManager.default.removeItem(atPath: temp) }
        try AuditPackage.write(files, to: temp, at: now)
        guard let data = FileManager.default.contents(atPath: temp) else { throw APIError(.internalServerError, "internal", "the package could not be read back") }
        var headers = HTTPFields()
        headers[.contentType] = "application/zip"
        let name = "waiver-audit-\(fromText.prefix(10))-\(toText.prefix(10)).zip".filter { $0.isLetter || $0.isNumber || "-._".contains($0) }
        headers[.contentDisposition] = "attachment; filename=\"\(name)\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func auditPage(_ ctx: WaiverContext, _ user: User) async throws -> Response {
        // What was appended since the head last verified (the whole chain the first time, or when that head no longer stands).
        let v = try await service(user).verifyAudit(anchors: [], publicKey: nil, given: nil, incremental: true)
        let recent = try await store.auditEvents(subject: nil, last: 20).reversed().map { e in
            ["seq": e.seq, "at": iso(e.time), "actor": e.actor, "action": e.action, "subject": e.subject] as [String: Any]
        }
        var values: [String: Any] = await ["title": "Audit", "intact": v.intact, "events": v.events, "firstBad": v.firstBad as Any,
                                     "problem": v.problem as Any, "recent": Array(recent),
                                     "findings": v.findings, "checkpoint": (try store.checkpoints().last?.json) as Any]
        if let head = v.head { values["head"] = head.description }
        if let r = v.resumedAfter { values["resumedAfter"] = r }
        // The package form defaults to the running quarter.
        if let q = quarters(endingAt: now).last {
            values["packageFrom"] = String(iso(q.1).prefix(10))
            values["packageTo"] = String(iso(q.2.addingTimeInterval(-86_400)).prefix(10))
        }
        return try render("audit", values, ctx)
    }

}


extension Web {
    /// The evidence form (`multipart/form-data`, parsed by MultipartKit): the file, its display text
    /// and the CSRF token. The same use case as `waiver evidence add` and the API.
    struct EvidenceForm {
        var csrf = ""
        var displayText: String?
        var file: MultipartPart?

        init(_ parts: [MultipartPart]) {
            for p in parts {
                switch p.name {
                case "csrf": csrf = String(buffer: p.body)
                case "display_text": displayText = String(buffer: p.body)
                case "file": file = p
                default: continue
                }
            }
        }
    }

    func addEvidence(_ req: Request, _ ctx: WaiverContext, _ user: User) async throws -> Response {
        guard let n = ctx.parameters.get("id").flatMap(ExceptionRecord.parseId) else { throw APIError(.notFound, "not_found", "no such exception") }
        let contentType = req.headers[.contentType] ?? ""
        guard contentType.lowercased().hasPrefix("multipart/form-data"),
              let boundary = contentType.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.lowercased().hasPrefix("boundary=") }).map({ String($0.dropFirst("boundary=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }),
              !boundary.isEmpty, boundary.count <= 200 else {
            throw APIError(.badRequest, "bad_request", "the evidence form is sent as multipart/form-data with a boundary")
        }
        var request = req
        let buffer = try await request.collectBody(upTo: state.settings.maxBodyBytes)
        var parts: [MultipartPart] = []
        let parser = MultipartParser(boundary: boundary)
        var headers = HTTPHeaders()
        var partBody = ByteBuffer()
        parser.onHeader = { field, value in headers.replaceOrAdd(name: field, value: value) }
        parser.onBody = { chunk in partBody.writeBuffer(&chunk) }
        parser.onPartComplete = {
            parts.append(MultipartPart(headers: headers, body: partBody))
            headers = HTTPHeaders()
            partBody = ByteBuffer()
        }
        do { try parser.execute(buffer) } catch {
            throw APIError(.badRequest, "bad_request", "the evidence form could not be read as multipart/form-data")
        }
        let form = EvidenceForm(parts)
        guard let expected = ctx.csrf, APIToken.equal(expected, form.csrf) else {
            throw APIError(.forbidden, "csrf", "this form is missing its CSRF token or it does not match your session")
        }
        guard let file = form.file else { throw APIError(.badRequest, "bad_request", "the evidence form has no file") }
        let name = Self.fileName(file.headers.first(name: "Content-Disposition") ?? "") ?? "evidence"
        let upload = EvidenceUpload(name: name, data: Data(file.body.readableBytesView), displayText: form.displayText)
        do {
            let e = try await service(user).addEvidence(n, upload)
            return try await exceptionPage(req, ctx, user, notice: ["kind": "ok", "text": "Evidence \(name) is kept with \(e.displayId)."])
        } catch let error as RegisterError {
            let status = APIError.from(error, context: ctx).status
            return try await exceptionPage(req, ctx, user, notice: ["kind": "error", "text": "Refused: \(error.description)"], status: status)
        }
    }

    /// The `filename` of a part's Content-Disposition, as the browser sent it (a path's last
    /// component only; the use case checks the name).
    static func fileName(_ disposition: String) -> String? {
        for param in disposition.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where param.lowercased().hasPrefix("filename=") {
            var v = String(param.dropFirst("filename=".count))
            if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            let last = v.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
            return last.isEmpty ? nil : last
        }
        return nil
    }

    /// "My requests": the signed-in user's own requests — pending with whom they wait for, active
    /// with days left, decided with the decision's comment (`waiver list --mine`).
    func myRequestsPage(_ ctx: WaiverContext, _ user: User) async throws -> Response {
        let current = now
        let mine = try await service(user).myRequests()
        func row(_ m: MyRequest) -> [String: Any] {
            let e = m.record
            let left = e.expiresAt.map { Int(($0.timeIntervalSince(current) / 86_400).rounded(.up)) }
            return ["id": e.displayId, "policy": e.policy, "workspace": e.workspace, "status": e.status.rawValue,
                    "resources": e.resources.count == 1 ? e.resources[0] : "\(e.resources.count) resources",
                    "awaiting": e.awaiting, "daysLeft": left as Any, "expires": e.expiresAt.map(iso) as Any, "decision": m.decision as Any,
                    "ticket": e.ticket as Any]
        }
        let pending = mine.filter { $0.record.status == .pending }.map(row)
        let active = mine.filter { $0.record.isActive(at: current) }.map(row)
        let decided = mine.filter { $0.record.status != .pending && !$0.record.isActive(at: current) }.map(row)
        return try render("mine", ["title": "My requests", "pending": pending, "active": active, "decided": decided,
                                   "none": mine.isEmpty, "hasPending": !pending.isEmpty, "hasActive": !active.isEmpty,
                                   "hasDecided": !decided.isEmpty], ctx)
    }
}
