import Foundation
import WaiverCore

/// Renders exceptions, lists, histories and reports of the register.
public enum RegisterOutput {
    /// An exception as JSON (the shape `show --format json` and the API use).
    public static func value(_ e: ExceptionRecord, history: [AuditEvent] = [], now: Date? = nil) -> Value {
        var o = Value.Object()
        o.append("id", .string(e.displayId))
        o.append("status", .string(e.status.rawValue))
        if let now { o.append("active", .bool(e.isActive(at: now))) }
        o.append("policy", .string(e.policy))
        o.append("category", .string(e.category))
        o.append("workspace", .string(e.workspace))
        o.append("subject_kind", .string(e.subjectKind.rawValue))
        o.append("resources", .array(e.resources.map(Value.string)))
        o.append("requester", .string(e.requester))
        o.append("reason", .string(e.reason))
        if let t = e.ticket { o.append("ticket", .string(t)) }
        if let origin = e.origin { o.append("origin", origin.value) }
        if let bound = e.bound { o.append("bound", ExceptionRecord.boundValue(bound)) }
        o.append("days", .number(Double(e.requestedDays)))
        o.append("likelihood", .string(e.likelihood.rawValue))
        o.append("impact", .string(e.impact.rawValue))
        o.append("risk", .string(e.riskLevel))
        if let p = e.proposedRisk { o.append("risk_proposed", .string(p)) }
        if let by = e.riskRaisedBy { o.append("risk_raised_by", .string(by)) }
        o.append("risk_note", .string(riskText(e)))
        if let owner = e.owner { o.append("owner", .string(owner)) }
        o.append("conflicted", .array(e.conflicted.map(Value.string)))
        if let why = e.untrusted { o.append("untrusted", .string(why)) }
        o.append("mitigations", .array(e.mitigations.map(Value.string)))
        o.append("approvers", ["groups": .array(e.rule.groups.map(Value.string)), "min_approvals": .number(Double(e.rule.minApprovals)),
                               "required_groups": .array(e.rule.requiredGroups.map(Value.string))])
        o.append("approvals", .array(e.approvals.map { a in
            ["approver": .string(a.approver), "comment": a.comment.map(Value.string) ?? .null, "at": .string(iso(a.at))]
        }))
        o.append("evidence", .array(e.evidence.map { f in
            var item = Value.Object([("name", .string(f.name)), ("sha256", .string(f.sha256)), ("size", .number(Double(f.size))),
                                     ("added_by", .string(f.addedBy)), ("at", .string(iso(f.at)))])
            if let text = f.displayText { item.append("display_text", .string(text)) }
            return .object(item)
        }))
        o.append("created", .string(iso(e.createdAt)))
        o.append("decided", e.decidedAt.map { .string(iso($0)) } ?? .null)
        o.append("expires", e.expiresAt.map { .string(iso($0)) } ?? .null)
        if let r = e.reviewedAt { o.append("reviewed", .string(iso(r))) }
        o.append("renews", e.renews.map { .string(ExceptionRecord.display($0)) } ?? .null)
        if !history.isEmpty {
            o.append("history", .array(history.map { ev in
                ["seq": .number(Double(ev.seq)), "at": .string(iso(ev.time)), "actor": .string(ev.actor), "action": .string(ev.action),
                 "details": historyDetails(ev.payload)]
            }))
            o.append("decisions", .array(decisions(history).map { d in
                var item = Value.Object([("decision", .string(d.decision)), ("by", .string(d.by)), ("at", .string(iso(d.at)))])
                if let c = d.comment { item.append("comment", .string(c)) }
                return .object(item)
            }))
            o.append("risk_history", .array(riskHistory(history).map { r in
                .object(Value.Object([("level", .string(r.level)), ("by", .string(r.by)), ("at", .string(iso(r.at))), ("how", .string(r.how))]))
            }))
        }
        return .object(o)
    }

    /// Every decision in an exception's history, in order: each approval (with its comment), the
    /// rejection or revocation (with its reason), the expiry or closing (with the re-check's basis).
    public static func decisions(_ history: [AuditEvent]) -> [(decision: String, by: String, at: Date, comment: String?)] {
        let names = ["exception.approval_added": "approval", "exception.approved": "approved", "exception.rejected": "rejected",
                     "exception.revoked": "revoked", "exception.expired": "expired", "exception.closed": "closed"]
        return history.compactMap { ev in
            guard let name = names[ev.action] else { return nil }
            let payload = try? JSONReader.parse(Data(ev.payload.utf8))
            let comment = payload?["comment"]?.stringValue ?? payload?["basis"]?.stringValue
            return (name, ev.actor, ev.time, comment)
        }
    }

    /// How the risk level came about, in order: as filed (and raised to the policy's floor), then
    /// each re-rating by an approver.
    public static func riskHistory(_ history: [AuditEvent]) -> [(level: String, by: String, at: Date, how: String)] {
        history.compactMap { ev in
            guard ev.action == "exception.requested" || ev.action == "exception.risk_raised",
                  let payload = try? JSONReader.parse(Data(ev.payload.utf8)) else { return nil }
            if ev.action == "exception.requested" {
                guard let level = payload["risk"]?.stringValue else { return nil }
                let how = payload["risk_floor"]?.stringValue ?? "as requested (likelihood \(payload["likelihood"]?.stringValue ?? "?") x impact \(payload["impact"]?.stringValue ?? "?"))"
                return (level, ev.actor, ev.time, how)
            }
            guard let to = payload["to"]?.stringValue else { return nil }
            return (to, ev.actor, ev.time, "raised from \(payload["from"]?.stringValue ?? "?") by an approver")
        }
    }

    /// An event's payload for a history, without the recorded state (the exception itself shows it).
    static func historyDetails(_ payload: String) -> Value {
        guard let v = try? JSONReader.parse(Data(payload.utf8)), case .object(var o) = v else { return .string(payload) }
        o["state"] = nil
        return .object(o)
    }

    public static func show(_ e: ExceptionRecord, history: [AuditEvent], now: Date) -> String {
        var out = "\(e.displayId)  \(e.status.rawValue.uppercased())\(e.isActive(at: now) ? " (active)" : "")\n"
        out += "  policy:      \(e.policy) (\(e.category))\n"
        out += "  workspace:   \(e.workspace)\n"
        out += "  " + (e.subjectKind == .resource ? "resources:" : "\(e.subjectKind.rawValue):").padding(toLength: 13, withPad: " ", startingAt: 0) + e.resources.joined(separator: ", ") + "\n"
        out += "  requester:   \(e.requester)\n"
        out += "  reason:      \(e.reason)\n"
        if let t = e.ticket { out += "  ticket:      \(t)\n" }
        if let o = e.origin { out += originLines(o) }
        out += "  risk:        \(riskText(e))\n"
        if let owner = e.owner { out += "  owner:       \(owner)\n" }
        if !e.conflicted.isEmpty { out += "  conflicted:  \(e.conflicted.joined(separator: ", ")) (may not approve)\n" }
        if let why = e.untrusted { out += "  NOT TRUSTED: \(why)\n" }
        for m in e.mitigations { out += "  mitigation:  \(m)\n" }
        out += "  approvers:   \(e.rule.minApprovals) of \(e.rule.groups.joined(separator: ", "))"
        out += e.rule.requiredGroups.isEmpty ? "\n" : ", including \(e.rule.requiredGroups.joined(separator: " or "))\n"
        for a in e.approvals { out += "  approved by: \(a.approver) at \(iso(a.at))\(a.comment.map { ": \($0)" } ?? "")\n" }
        out += "  duration:    \(e.requestedDays) days\n"
        if let x = e.expiresAt { out += "  expires:     \(iso(x))\n" }
        if let r = e.reviewedAt { out += "  reviewed:    \(iso(r)) (last attestation)\n" }
        if let r = e.renews { out += "  renews:      \(ExceptionRecord.display(r))\n" }
        for f in e.evidence {
            out += "  evidence:    \(f.name) sha256:\(f.sha256) (\(f.size) bytes, added by \(f.addedBy) at \(iso(f.at)))\n"
            if let text = f.displayText { out += "               “\(text)”\n" }
        }
        if !history.isEmpty {
            out += "  history:\n"
            for ev in history { out += "    #\(ev.seq) \(iso(ev.time)) \(ev.actor) \(ev.action)\(summary(ev.payload))\n" }
        }
        return out
    }

    /// Where a request came from, one line each (`show`).
    static func originLines(_ o: RequestOrigin) -> String {
        var out = ""
        if let c = o.commit { out += "  commit:      \(c)\(o.commitAuthor.map { " by \($0) (declared)" } ?? "")\n" }
        else if let a = o.commitAuthor { out += "  author:      \(a) (declared)\n" }
        if let u = o.changeURL { out += "  change:      \(u)\n" }
        if let u = o.runURL { out += "  run:         \(u)\n" }
        if let p = o.pipeline { out += "  pipeline:    \(p) (verified)\n" }
        return out
    }

    /// The risk as shown everywhere: the level, how it came about, and who raised it.
    public static func riskText(_ e: ExceptionRecord) -> String {
        let factors = "likelihood \(e.likelihood.rawValue) x impact \(e.impact.rawValue)"
        guard let proposed = e.proposedRisk else { return "\(e.riskLevel) (\(factors))" }
        if let by = e.riskRaisedBy { return "\(e.riskLevel) (raised from \(proposed) by \(by); requested \(factors))" }
        return "\(e.riskLevel) (the policy's floor; \(factors) gives \(proposed))"
    }

    static func summary(_ payload: String) -> String {
        let parts = details(payload)
        return parts.isEmpty ? "" : " (" + parts + ")"
    }

    /// The telling parts of an audit payload, for history lists: comment, expiry, what is still needed.
    public static func details(_ payload: String) -> String {
        guard let v = try? JSONReader.parse(Data(payload.utf8)), case .object(let o) = v else { return "" }
        var parts: [String] = []
        for key in ["comment", "expires", "still_needs", "still_violating", "basis", "name", "before", "from", "to", "risk_floor", "warning"] {
            guard let x = o[key], !x.isNull else { continue }
            parts.append("\(key): \(x.stringValue ?? x.rendered(limit: 80))")
        }
        return parts.joined(separator: "; ")
    }

    public static func listText(_ list: [ExceptionRecord], now: Date) -> String {
        if list.isEmpty { return "No exceptions.\n" }
        var out = ""
        for e in list {
            let until = e.expiresAt.map { " until \(iso($0))" } ?? ""
            out += "\(e.displayId)  \(e.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(e.policy)  \(e.workspace)  "
            out += "\(e.resources.count == 1 ? e.resources[0] : "\(e.resources.count) resources")  \(e.riskLevel) risk  by \(e.requester)\(until)\n"
        }
        out += "\(list.count) exception\(list.count == 1 ? "" : "s")\n"
        return out
    }

    /// `list --mine`: a person's own requests in three groups — pending (waiting for whom), active
    /// (days left), decided (the decision and its comment).
    public static func myRequests(_ items: [(record: ExceptionRecord, decision: String?)], now: Date) -> String {
        if items.isEmpty { return "You have no requests.\n" }
        func line(_ e: ExceptionRecord) -> String {
            "\(e.displayId)  \(e.policy)  \(e.workspace)  \(e.resources.count == 1 ? e.resources[0] : "\(e.resources.count) resources")"
        }
        let pending = items.filter { $0.record.status == .pending }
        let active = items.filter { $0.record.isActive(at: now) }
        let decided = items.filter { $0.record.status != .pending && !$0.record.isActive(at: now) }
        var out = ""
        if !pending.isEmpty {
            out += "Pending (\(pending.count))\n"
            for (e, _) in pending { out += "  \(line(e))  waiting for \(e.awaiting)\n" }
        }
        if !active.isEmpty {
            out += "Active (\(active.count))\n"
            for (e, _) in active {
                let left = e.expiresAt.map { Int(($0.timeIntervalSince(now) / 86_400).rounded(.up)) } ?? 0
                out += "  \(line(e))  \(left) day\(left == 1 ? "" : "s") left, until \(e.expiresAt.map(iso) ?? "?")\n"
            }
        }
        if !decided.isEmpty {
            out += "Decided (\(decided.count))\n"
            for (e, d) in decided { out += "  \(line(e))  \(e.status.rawValue)\(d.map { ": \($0)" } ?? "")\n" }
        }
        return out
    }

    /// An evidence item in one line: `name (sha256): display text`.
    static func evidenceLine(_ f: EvidenceFile) -> String {
        let text: String = f.displayText.map { ": " + $0 } ?? ""
        return f.name + " (" + f.sha256 + ")" + text
    }

    /// CSV for auditors (RFC 4180 quoting).
    public static func csv(_ list: [ExceptionRecord]) -> String { csv(list.map { ($0, []) }) }

    /// CSV for auditors with each exception's decisions and risk history (from `history`).
    public static func csv(_ rows: [(record: ExceptionRecord, history: [AuditEvent])]) -> String {
        func q(_ s: String) -> String {
            // A leading = + - @ would run as a formula in a spreadsheet: prefix it.
            var t = s
            if let f = t.first, "=+-@".contains(f) { t = "'" + t }
            return "\"" + t.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var out = "id,status,policy,category,workspace,subject_kind,resources,requester,reason,risk,likelihood,impact,mitigations,approvers,created,decided,expires,renews,evidence_sha256,"
            + "ticket,commit,run_url,change_url,commit_author,conflicted,evidence,decisions,risk_history\r\n"
        for (e, history) in rows {
            var fields: [String] = [
                e.displayId, e.status.rawValue, e.policy, e.category, e.workspace, e.subjectKind.rawValue, e.resources.joined(separator: " "),
                e.requester, e.reason, e.riskLevel, e.likelihood.rawValue, e.impact.rawValue, e.mitigations.joined(separator: " | "),
                e.approvals.map(\.approver).joined(separator: " "), iso(e.createdAt), e.decidedAt.map(iso) ?? "",
                e.expiresAt.map(iso) ?? "", e.renews.map(ExceptionRecord.display) ?? "", e.evidence.map(\.sha256).joined(separator: " "),
            ]
            let origin = e.origin ?? RequestOrigin()
            fields += [e.ticket ?? "", origin.commit ?? "", origin.runURL ?? "", origin.changeURL ?? "", origin.commitAuthor ?? ""]
            fields.append(e.conflicted.joined(separator: " "))
            // Each evidence item as name (sha256): display text, one per line.
            fields.append(e.evidence.map(evidenceLine).joined(separator: "\n"))
            // One line per decision and per risk level, as `time decision by who: comment`.
            fields.append(decisions(history).map { d in iso(d.at) + " " + d.decision + " by " + d.by + (d.comment.map { ": " + $0 } ?? "") }.joined(separator: "\n"))
            fields.append(riskHistory(history).map { r in iso(r.at) + " " + r.level + " (" + r.how + ", " + r.by + ")" }.joined(separator: "\n"))
            out += fields.map(q).joined(separator: ",") + "\r\n"
        }
        return out
    }

    // MARK: - Report

    public static func reportValue(_ r: RegisterReport) -> Value {
        func counts(_ list: [RegisterReport.Count], _ key: String) -> Value {
            .array(list.map { [key: .string($0.key), "exceptions": .number(Double($0.count))] })
        }
        return [
            "from": r.from.map { .string(iso($0)) } ?? .null,
            "to": r.to.map { .string(iso($0)) } ?? .null,
            "generated": .string(iso(r.now)),
            "exceptions": .number(Double(r.total)),
            "renewals": .number(Double(r.renewals)),
            "median_approved_days": r.medianApprovedDays.map { .number(($0 * 10).rounded() / 10) } ?? .null,
            "active_now": .number(Double(r.activeNow)),
            "expiring_within_7_days": .array(r.expiringWithin7Days.map(Value.string)),
            "per_policy": counts(r.perPolicy, "policy"),
            "per_workspace": counts(r.perWorkspace, "workspace"),
            "per_requester": counts(r.perRequester, "requester"),
            "review_threshold": .number(Double(r.reviewThreshold)),
            "review_policies": counts(r.reviewPolicies, "policy"),
            "orphaned": .array(r.orphaned.map(Value.string)),
            "reviews": .array(r.reviews.map(reviewValue)),
        ]
    }

    public static func reviewValue(_ r: PolicyReview) -> Value {
        var o = Value.Object([("quarter", .string(r.quarter)), ("policy", .string(r.policy)), ("decision", .string(r.decision)),
                              ("by", .string(r.by)), ("at", .string(iso(r.at)))])
        if let link = r.link { o.append("link", .string(link)) }
        return .object(o)
    }

    public static func reportText(_ r: RegisterReport, markdown: Bool) -> String {
        let period = "\(r.from.map(iso) ?? "the beginning") to \(r.to.map(iso) ?? iso(r.now))"
        var out = markdown ? "## Waiver exception report\n\nPeriod: \(period)\n\n" : "Exception report, \(period)\n\n"
        let median = r.medianApprovedDays.map { String(format: "%.1f days", $0) } ?? "n/a"
        let lines = [
            ("Exceptions requested", "\(r.total)"), ("Renewals", "\(r.renewals)"), ("Median approved duration", median),
            ("Active now", "\(r.activeNow)"),
            ("Expiring within 7 days", r.expiringWithin7Days.isEmpty ? "none" : r.expiringWithin7Days.joined(separator: ", ")),
        ]
        if markdown {
            out += "| | |\n|---|---|\n" + lines.map { "| \($0.0) | \($0.1) |" }.joined(separator: "\n") + "\n"
        } else {
            out += lines.map { "  \($0.0.padding(toLength: 26, withPad: " ", startingAt: 0)) \($0.1)" }.joined(separator: "\n") + "\n"
        }
        func section(_ title: String, _ list: [RegisterReport.Count], _ column: String) {
            guard !list.isEmpty else { return }
            if markdown {
                out += "\n### \(title)\n\n| \(column) | exceptions |\n|---|---|\n"
                for c in list { out += "| \(MarkdownOutput.cell(c.key)) | \(c.count) |\n" }
            } else {
                out += "\n\(title)\n"
                for c in list { out += "  \(String(c.count).padding(toLength: 6, withPad: " ", startingAt: 0)) \(c.key)\n" }
            }
        }
        section("Per policy", r.perPolicy, "policy")
        section("Per workspace", r.perWorkspace, "workspace")
        section("Per requester", r.perRequester, "requester")
        let reviewTitle = "Review these policies (\(r.reviewThreshold) or more exceptions in the period)"
        if r.reviewPolicies.isEmpty {
            out += markdown ? "\n### Policies to review\n\nNone reached \(r.reviewThreshold) exceptions.\n" : "\nNo policy reached \(r.reviewThreshold) exceptions in the period.\n"
        } else {
            section(reviewTitle, r.reviewPolicies, "policy")
        }
        if !r.orphaned.isEmpty {
            let text = "Orphaned (active, but the violation is gone from the latest check; revoke them): \(r.orphaned.joined(separator: ", "))"
            out += markdown ? "\n### Orphaned exceptions\n\n\(text)\n" : "\n\(text)\n"
        }
        if !r.reviews.isEmpty {
            out += markdown ? "\n### Reviews recorded\n\n| Quarter | Policy | Decision | By | Link |\n|---|---|---|---|---|\n" : "\nReviews recorded\n"
            for v in r.reviews {
                out += markdown
                    ? "| \(v.quarter) | \(MarkdownOutput.cell(v.policy)) | \(MarkdownOutput.cell(v.decision)) | \(MarkdownOutput.cell(v.by)) | \(v.link.map(MarkdownOutput.cell) ?? "") |\n"
                    : "  \(v.quarter)  \(v.policy): \(v.decision) (\(v.by)\(v.link.map { ", \($0)" } ?? ""))\n"
            }
        }
        return out
    }
}

/// `audit verify` as JSON (API) and text (CLI), one shape for both.
public enum AuditOutput {
    public static func value(_ v: AuditVerification) -> Value {
        var o = Value.Object([("intact", .bool(v.intact)), ("events", .number(Double(v.events))),
         ("first_bad", v.firstBad.map { .number(Double($0)) } ?? .null), ("problem", v.problem.map(Value.string) ?? .null),
         ("head", v.head.map { .string($0.description) } ?? .null),
         ("findings", .array(v.findings.map(Value.string))), ("checkpoints", .number(Double(v.checkpoints)))])
        if let r = v.resumedAfter { o.append("resumed_after", .number(Double(r))) }
        return .object(o)
    }

    /// Reads `value` back (the CLI against a server); nil when the shape is not ours.
    public static func verification(_ v: Value) -> AuditVerification? {
        guard let events = v["events"]?.numberValue, events >= 0, events <= 9e15, events == events.rounded() else { return nil }
        let bad = v["first_bad"]?.intValue
        let checkpoints = v["checkpoints"]?.intValue ?? 0
        var result = AuditVerification(events: Int(events), firstBad: bad, problem: v["problem"]?.stringValue,
                                       head: v["head"]?.stringValue.flatMap(AuditAnchor.init),
                                       findings: v["findings"]?.arrayValue?.compactMap(\.stringValue) ?? [], checkpoints: checkpoints)
        result.resumedAfter = v["resumed_after"]?.intValue
        return result
    }

    /// The lines `audit verify` prints; the first says intact or not.
    public static func lines(_ v: AuditVerification, anchors: Int) -> [String] {
        var out: [String] = []
        if let bad = v.firstBad {
            out.append("audit log NOT intact: event \(bad): \(v.problem ?? "does not verify") (\(v.events) events verified before it)")
        } else if !v.findings.isEmpty {
            out.append("audit log NOT intact: the chain of \(v.events) events verifies, but the register does not match it:")
        } else {
            let matched = anchors == 0 ? "" : ", \(anchors) anchor\(anchors == 1 ? "" : "s") matched"
            let signed = v.checkpoints == 0 ? "" : ", \(v.checkpoints) signed checkpoint\(v.checkpoints == 1 ? "" : "s") verified"
            let resumed = v.resumedAfter.map { " (events \($0 + 1)-\(v.events) since event \($0), verified before)" } ?? ""
            out.append("audit log intact: \(v.events) events verified\(matched)\(signed)\(resumed)")
        }
        for f in v.findings { out.append("  \(f)") }
        if v.firstBad == nil, let head = v.head {
            out.append("head: \(head) (keep it outside the register; --anchor \(head) proves nothing up to it changed)")
        }
        return out
    }
}

extension ExceptionRecord {
    /// Who a pending exception waits for: "1 more approval from finance or engineering-managers".
    public var awaiting: String {
        let given = Set(approvals.map { Identity.canonical($0.approver) }).count
        let more = max(rule.minApprovals - given, 0)
        var parts: [String] = []
        if more > 0 { parts.append("\(more) more approval\(more == 1 ? "" : "s") from \(rule.groups.joined(separator: " or "))") }
        if !rule.requiredGroups.isEmpty { parts.append("one approval from \(rule.requiredGroups.joined(separator: " or ")) (\(riskLevel) risk)") }
        return parts.isEmpty ? "its approvals are being recorded" : parts.joined(separator: ", including ")
    }
}

/// What `check --wait` says as decisions come.
public enum WaitNews {
    /// "EX-3 approved by fin until 2026-12-21T10:00:00Z", "EX-3 rejected by sam: too wide".
    public static func decided(_ e: ExceptionRecord, history: [AuditEvent]) -> String {
        let last = history.last { $0.action == "exception.\(e.status.rawValue)" }
        let comment = last.flatMap { try? JSONReader.parse(Data($0.payload.utf8))["comment"]?.stringValue }.map(TextOutput.oneLine)
        let by = last.map { " by \($0.actor)" } ?? ""
        switch e.status {
        case .approved:
            let who = e.approvals.map(\.approver).joined(separator: ", ")
            return "\(e.displayId) approved by \(who)" + (e.expiresAt.map { " until \(iso($0))" } ?? "")
        case .rejected, .revoked:
            return "\(e.displayId) \(e.status.rawValue)\(by)" + (comment.map { ": \($0)" } ?? "")
        default:
            return "\(e.displayId) is \(e.status.rawValue)"
        }
    }

    /// Time left, to the second: "29m 43s", "2h 0m 5s".
    public static func left(_ seconds: Int) -> String {
        let h = seconds / 3600, m = seconds % 3600 / 60, s = seconds % 60
        return h > 0 ? "\(h)h \(m)m \(s)s" : m > 0 ? "\(m)m \(s)s" : "\(s)s"
    }
}
