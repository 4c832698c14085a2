import Foundation

/// A request for an exception, as the requester states it.
public struct ExceptionRequest: Sendable, Equatable {
    public var policy: String
    public var workspace: String
    public var subjectKind: SubjectKind
    public var resources: [String]
    public var reason: String
    public var days: Int?
    public var likelihood: RiskFactor?
    public var impact: RiskFactor?
    public var mitigations: [String]
    public var renews: Int?
    /// People who may not approve besides the requester (e.g. the commit author).
    public var conflicted: [String]

    public init(policy: String, workspace: String, subjectKind: SubjectKind = .resource, resources: [String], reason: String,
                days: Int? = nil, likelihood: RiskFactor? = nil, impact: RiskFactor? = nil, mitigations: [String] = [],
                renews: Int? = nil, conflicted: [String] = []) {
        self.policy = policy
        self.workspace = workspace
        self.subjectKind = subjectKind
        self.resources = resources
        self.reason = reason
        self.days = days
        self.likelihood = likelihood
        self.impact = impact
        self.mitigations = mitigations
        self.renews = renews
        self.conflicted = conflicted
    }
}

/// What `waiver expire` did to one exception.
public struct ExpiryOutcome: Sendable, Equatable {
    public var exception: ExceptionRecord
    /// Resources still violating the policy in the workspace's latest recorded check.
    public var stillViolating: [String]
}

/// The rules of the register, enforced on top of a `RegisterStore`: separation of duties, routing,
/// risk escalation, duration caps, the state machine, expiry and re-check. Time comes in as `now`.
public struct Register: Sendable {
    public let store: any RegisterStore
    public let configuration: Configuration
    /// Policies by id (the policy files, plus implicit SARIF policies a check met).
    public let policies: [String: Policy]
    /// The groups a person belongs to (from waiver.yaml locally, from the user database on a server).
    public let groupsOf: @Sendable (String) -> Set<String>
    /// Whether a person is an administrator (may revoke any exception; never approve their own).
    public let isAdmin: @Sendable (String) -> Bool

    public init(store: any RegisterStore, configuration: Configuration, policies: [Policy],
                groupsOf: (@Sendable (String) -> Set<String>)? = nil, isAdmin: @escaping @Sendable (String) -> Bool = { _ in false }) {
        self.isAdmin = isAdmin
        self.store = store
        self.configuration = configuration
        var byId: [String: Policy] = [:]
        for p in policies { byId[p.id] = p }
        self.policies = byId
        let groups = configuration.groups
        self.groupsOf = groupsOf ?? { person in Set(groups.filter { $0.value.contains(person) }.map(\.key)) }
    }

    public static func second(_ d: Date) -> Date { Date(timeIntervalSince1970: d.timeIntervalSince1970.rounded(.down)) }

    // MARK: - Request

    /// The risk level for likelihood x impact, from `risk.levels`.
    public func riskLevel(_ likelihood: RiskFactor, _ impact: RiskFactor) throws -> String {
        let score = likelihood.score * impact.score
        guard let level = configuration.riskLevels.first(where: { $0.value.contains(score) })?.key else {
            throw RegisterError.invalid("no risk level in waiver.yaml covers likelihood \(likelihood.rawValue) x impact \(impact.rawValue) (score \(score))")
        }
        return level
    }

    /// Who must approve an exception to this policy at this risk level.
    public func approvalRule(for policy: Policy, level: String) -> ApprovalRule {
        let base = policy.exceptions?.approvers ?? configuration.routing[policy.category] ?? configuration.routing["default"] ?? ["security"]
        var min = policy.exceptions?.minApprovals ?? 1
        var required: [String] = []
        if let esc = configuration.escalation[level] {
            if let m = esc.minApprovals { min = max(min, m) }
            required = esc.approvers ?? []
        }
        var groups = base
        for g in required where !groups.contains(g) { groups.append(g) }
        return ApprovalRule(groups: groups, minApprovals: min, requiredGroups: required)
    }

    /// The longest exception this policy allows, in days.
    public func maxDays(for policy: Policy) -> Int {
        min(configuration.maxDays, policy.exceptions?.maxDays ?? configuration.maxDays, Configuration.absoluteMaxDays)
    }

    public func policy(_ id: String) throws -> Policy {
        if let p = policies[id] { return p }
        let hint = closestMatch(to: id, in: Array(policies.keys)).map { " (did you mean '\($0)'?)" } ?? ""
        throw RegisterError.invalid("unknown policy '\(id)'\(hint)")
    }

    /// Files a request: validated, priced for risk, routed, logged. It is pending until approved.
    public func request(_ r: ExceptionRequest, actor: String, now: Date) throws -> ExceptionRecord {
        let now = Register.second(now)
        let policy = try policy(r.policy)
        let reason = r.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw RegisterError.invalid("a request needs a reason (--reason)") }
        guard reason.count <= 10_000 else { throw RegisterError.invalid("the reason is longer than 10,000 characters") }
        let workspace = r.workspace.trimmingCharacters(in: .whitespaces)
        guard !workspace.isEmpty else { throw RegisterError.invalid("a request needs a workspace (--workspace)") }
        var resources: [String] = []
        for res in r.resources.map({ $0.trimmingCharacters(in: .whitespaces) }) where !resources.contains(res) {
            guard !res.isEmpty else { throw RegisterError.invalid("an empty resource address") }
            resources.append(res)
        }
        guard !resources.isEmpty else {
            throw RegisterError.invalid(r.subjectKind == .resource
                ? "a request needs at least one resource (--resource ADDRESS)"
                : "a program exception needs its subject (--resource: the \(r.subjectKind.rawValue))")
        }
        guard resources.count <= 10_000 else { throw RegisterError.invalid("more than 10,000 resources in one request") }
        let cap = maxDays(for: policy)
        let days = r.days ?? min(configuration.defaultDays, cap)
        guard days >= 1 else { throw RegisterError.invalid("--days must be at least 1: every exception expires") }
        guard days <= cap else {
            let why = policy.exceptions?.maxDays.map { _ in "policy \(policy.id) exceptions.max_days" } ?? "waiver.yaml exceptions.max_days"
            throw RegisterError.invalid("\(days) days is past the cap of \(cap) days for \(policy.id) (\(why))")
        }
        let likelihood = r.likelihood ?? .medium
        let impact = r.impact ?? {
            switch policy.severity {
            case .low: return .low
            case .medium: return .medium
            case .high, .critical: return .high
            }
        }()
        let level = try riskLevel(likelihood, impact)
        if let old = r.renews {
            guard let previous = try store.exception(id: old) else {
                throw RegisterError.notFound("\(ExceptionRecord.display(old)) not found (--renews)")
            }
            guard previous.policy == policy.id, previous.workspace == workspace else {
                throw RegisterError.invalid("\(previous.displayId) is for \(previous.policy) in \(previous.workspace): a renewal keeps the policy and workspace")
            }
            guard [.approved, .expired, .closed].contains(previous.status) else {
                throw RegisterError.invalid("\(previous.displayId) is \(previous.status.rawValue): only an approved or expired exception can be renewed")
            }
            guard reason != previous.reason else {
                throw RegisterError.invalid("a renewal needs a reason of its own: say why the exception is still needed")
            }
        }
        let record = ExceptionRecord(
            id: 0, policy: policy.id, category: policy.category, workspace: workspace, subjectKind: r.subjectKind,
            resources: resources, requester: actor, conflicted: r.conflicted.filter { $0 != actor }, reason: reason,
            requestedDays: days, likelihood: likelihood, impact: impact, riskLevel: level,
            mitigations: r.mitigations.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty },
            evidence: [], approvals: [], rule: approvalRule(for: policy, level: level), status: .pending,
            createdAt: now, decidedAt: nil, expiresAt: nil, renews: r.renews)
        var payload: Value.Object = Value.Object([
            ("policy", .string(record.policy)), ("workspace", .string(workspace)), ("subject_kind", .string(r.subjectKind.rawValue)),
            ("resources", .array(resources.map(Value.string))), ("reason", .string(reason)), ("days", .number(Double(days))),
            ("likelihood", .string(likelihood.rawValue)), ("impact", .string(impact.rawValue)), ("risk", .string(level)),
            ("mitigations", .array(record.mitigations.map(Value.string))),
            ("approvers", .array(record.rule.groups.map(Value.string))), ("min_approvals", .number(Double(record.rule.minApprovals))),
        ])
        if let old = r.renews { payload.append("renews", .string(ExceptionRecord.display(old))) }
        return try store.insert(record, event: AuditDraft(actor: actor, action: "exception.requested", subject: "", payload: .object(payload), time: now))
    }

    // MARK: - Decisions

    func mayDecide(_ e: ExceptionRecord, actor: String, verb: String) throws {
        if actor == e.requester {
            throw RegisterError.refused("\(actor) cannot \(verb) \(e.displayId): they requested it (no one approves their own request)")
        }
        if e.conflicted.contains(actor) {
            throw RegisterError.refused("\(actor) cannot \(verb) \(e.displayId): they authored the change it covers")
        }
        let mine = groupsOf(actor)
        if mine.isDisjoint(with: e.rule.groups) {
            throw RegisterError.refused("\(actor) cannot \(verb) \(e.displayId): exceptions to \(e.policy) (\(e.category), \(e.riskLevel) risk) are decided by members of \(e.rule.groups.joined(separator: ", "))")
        }
    }

    func satisfied(_ e: ExceptionRecord) -> (Bool, String) {
        let approvers = Set(e.approvals.map(\.approver))
        var missing: [String] = []
        if approvers.count < e.rule.minApprovals {
            missing.append("\(e.rule.minApprovals - approvers.count) more approval\(e.rule.minApprovals - approvers.count == 1 ? "" : "s")")
        }
        if !e.rule.requiredGroups.isEmpty, !approvers.contains(where: { !groupsOf($0).isDisjoint(with: e.rule.requiredGroups) }) {
            missing.append("an approval from \(e.rule.requiredGroups.joined(separator: " or ")) (\(e.riskLevel) risk)")
        }
        return (missing.isEmpty, missing.joined(separator: " and "))
    }

    /// Approves (or adds one approval to) a pending request. When the approvals suffice, the
    /// exception becomes active until now + its duration (an approver may shorten it with `days`).
    public func approve(_ id: Int, actor: String, comment: String?, days: Int?, now: Date) throws -> ExceptionRecord {
        let now = Register.second(now)
        return try store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .approved, id: e.displayId) { throw RegisterError.refused(refusal) }
            try mayDecide(e, actor: actor, verb: "approve")
            if e.approvals.contains(where: { $0.approver == actor }) {
                throw RegisterError.refused("\(actor) already approved \(e.displayId); it needs \(e.rule.minApprovals) distinct approvers")
            }
            if let days {
                guard days >= 1, days <= e.requestedDays else {
                    throw RegisterError.invalid("--days \(days): an approver may shorten the requested \(e.requestedDays) days, not lengthen them")
                }
                e.requestedDays = days
            }
            e.approvals.append(Approval(approver: actor, comment: comment, at: now))
            let (done, missing) = satisfied(e)
            var payload = Value.Object([("comment", comment.map(Value.string) ?? .null), ("approvals", .number(Double(e.approvals.count)))])
            if done {
                e.status = .approved
                e.decidedAt = now
                e.expiresAt = now.addingTimeInterval(Double(e.requestedDays) * 86_400)
                payload.append("expires", .string(iso(e.expiresAt!)))
                payload.append("days", .number(Double(e.requestedDays)))
                return [AuditDraft(actor: actor, action: "exception.approved", subject: e.displayId, payload: .object(payload), time: now)]
            }
            payload.append("still_needs", .string(missing))
            return [AuditDraft(actor: actor, action: "exception.approval_added", subject: e.displayId, payload: .object(payload), time: now)]
        }
    }

    /// What an approval would still need, for messages.
    public func missingApprovals(_ e: ExceptionRecord) -> String? {
        let (done, missing) = satisfied(e)
        return done ? nil : missing
    }

    public func reject(_ id: Int, actor: String, comment: String, now: Date) throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty else { throw RegisterError.invalid("rejecting needs a comment (--comment) saying why") }
        return try store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .rejected, id: e.displayId) { throw RegisterError.refused(refusal) }
            try mayDecide(e, actor: actor, verb: "reject")
            e.status = .rejected
            e.decidedAt = now
            return [AuditDraft(actor: actor, action: "exception.rejected", subject: e.displayId, payload: ["comment": .string(comment)], time: now)]
        }
    }

    /// Ends an exception early. An approver of its policy may revoke; the requester may withdraw their own.
    public func revoke(_ id: Int, actor: String, comment: String, now: Date) throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty else { throw RegisterError.invalid("revoking needs a comment (--comment) saying why") }
        return try store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .revoked, id: e.displayId) { throw RegisterError.refused(refusal) }
            if actor != e.requester, !isAdmin(actor), groupsOf(actor).isDisjoint(with: e.rule.groups) {
                throw RegisterError.refused("\(actor) cannot revoke \(e.displayId): only its requester, an administrator or members of \(e.rule.groups.joined(separator: ", ")) can")
            }
            e.status = .revoked
            e.decidedAt = e.decidedAt ?? now
            if let expires = e.expiresAt, expires > now { e.expiresAt = now }
            return [AuditDraft(actor: actor, action: "exception.revoked", subject: e.displayId, payload: ["comment": .string(comment)], time: now)]
        }
    }

    /// Adds an evidence file (already stored by its SHA-256) to an exception that is not final.
    public func addEvidence(_ id: Int, file: EvidenceFile, actor: String) throws -> ExceptionRecord {
        try store.modify(id: id) { e in
            guard !e.status.isFinal else { throw RegisterError.refused("\(e.displayId) is \(e.status.rawValue): evidence can no longer be added") }
            if !e.evidence.contains(where: { $0.sha256 == file.sha256 }) { e.evidence.append(file) }
            return [AuditDraft(actor: actor, action: "evidence.added", subject: e.displayId,
                               payload: ["sha256": .string(file.sha256), "name": .string(file.name), "size": .number(Double(file.size))], time: file.at)]
        }
    }

    // MARK: - Expiry

    /// Takes every approved exception at or past its expiry and re-checks its policy on its resources
    /// against the workspace's latest recorded check: compliant -> closed; still violating (or never
    /// checked, or a program exception) -> expired, and the pipeline blocks again.
    public func expire(now: Date, actor: String) throws -> [ExpiryOutcome] {
        let now = Register.second(now)
        let due = try store.exceptions(ExceptionFilter(statuses: [.approved], expiringBefore: now.addingTimeInterval(1)))
        var latest: [String: Evaluation?] = [:]
        var outcomes: [ExpiryOutcome] = []
        for candidate in due {
            if latest[candidate.workspace] == nil { latest[candidate.workspace] = try store.latestEvaluation(workspace: candidate.workspace) }
            let evaluation = latest[candidate.workspace] ?? nil
            var still: [String] = []
            var basis = "no recorded check of workspace \(candidate.workspace)"
            if candidate.subjectKind != .resource {
                still = candidate.resources
                basis = "program exception: no automatic check, the control is enforced again"
            } else if let evaluation {
                let violating = Set(evaluation.violations.filter { $0.policy == candidate.policy }.map(\.resource))
                still = candidate.resources.filter { violating.contains($0) }
                basis = "check #\(evaluation.id) of \(iso(evaluation.at))"
            } else {
                still = candidate.resources
            }
            let updated = try store.modify(id: candidate.id) { e in
                guard e.status == .approved, let expires = e.expiresAt, expires <= now else { return [] }
                e.status = still.isEmpty ? .closed : .expired
                return [AuditDraft(actor: actor, action: still.isEmpty ? "exception.closed" : "exception.expired", subject: e.displayId,
                                   payload: ["still_violating": .array(still.map(Value.string)), "basis": .string(basis)], time: now)]
            }
            if updated.status != .approved { outcomes.append(ExpiryOutcome(exception: updated, stillViolating: still)) }
        }
        return outcomes
    }

    // MARK: - Checks

    /// Marks the report's violations covered by the register: `excepted` under an active exception,
    /// `pending` under a request waiting for approval. Nothing is removed.
    public func applyExceptions(to report: inout CheckReport, now: Date) throws {
        let pairs = report.findings.filter { $0.status == .blocking || $0.status == .unknown }.map { (policy: $0.policy, resource: $0.resource) }
        guard !pairs.isEmpty else { return }
        let found = try store.covering(workspace: report.workspace, pairs: pairs)
        guard !found.isEmpty else { return }
        var active: [String: ExceptionRecord] = [:]
        var pending: [String: ExceptionRecord] = [:]
        for e in found {
            for r in e.resources {
                let key = e.policy + "\u{0}" + r
                if e.isActive(at: now) {
                    if let other = active[key], let a = other.expiresAt, let b = e.expiresAt, a >= b { continue }
                    active[key] = e
                } else if e.status == .pending {
                    if pending[key] == nil { pending[key] = e }
                }
            }
        }
        for i in report.findings.indices where report.findings[i].status == .blocking || report.findings[i].status == .unknown {
            let key = report.findings[i].policy + "\u{0}" + report.findings[i].resource
            if let e = active[key] {
                report.findings[i].status = .excepted
                report.findings[i].exception = e.displayId
                report.findings[i].expires = e.expiresAt
            } else if let e = pending[key], report.findings[i].status == .blocking {
                report.findings[i].status = .pending
                report.findings[i].exception = e.displayId
            }
        }
    }

    /// Records a check so the register knows the workspace's latest state.
    public func recordCheck(_ report: CheckReport, violations: [RecordedViolation], actor: String, now: Date) throws -> Int {
        let now = Register.second(now)
        let s = report.summary
        let evaluation = Evaluation(workspace: report.workspace, at: now, actor: actor, verdict: report.verdict,
                                    resourceCount: report.resourceCount, violations: violations)
        let payload: Value = [
            "workspace": .string(report.workspace), "verdict": .string(report.verdict),
            "resources": .number(Double(s.resources)), "violations": .number(Double(s.violations)),
            "blocking": .number(Double(s.blocking)), "excepted": .number(Double(s.excepted)),
            "pending": .number(Double(s.pending)), "unknown": .number(Double(s.unknown)),
        ]
        return try store.record(evaluation, event: AuditDraft(actor: actor, action: "check.recorded", subject: "workspace:\(report.workspace)", payload: payload, time: now),
                                pruneBefore: now.addingTimeInterval(-Double(configuration.keepEvaluations)))
    }
}

/// ISO 8601 in UTC to the second, as every date is shown and exported.
public func iso(_ date: Date) -> String { date.formatted(.iso8601) }

/// Parses an ISO 8601 instant (`2026-12-04T00:00:00Z`) or a date (`2026-12-04`, midnight UTC).
/// Anything else is nil: a malformed date is an error, never "forever".
public func parseInstant(_ text: String) -> Date? {
    let t = text.trimmingCharacters(in: .whitespaces)
    if let d = try? Date(t, strategy: .iso8601) { return d }
    let parts = t.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
          let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1...12).contains(m), (1...31).contains(d)
    else { return nil }
    var c = DateComponents()
    c.year = y; c.month = m; c.day = d
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone(identifier: "UTC")!
    guard let date = cal.date(from: c), cal.component(.day, from: date) == d else { return nil }
    return date
}
