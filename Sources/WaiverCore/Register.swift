import Foundation

/// A request for an exception, as the requester states it.
///
/// On a renewal (`renews`), an empty policy, workspace or resource list, a nil kind and a nil owner
/// are the renewed exception's. Otherwise a nil kind is `resource`, and a program exception (person,
/// device, account) without a workspace is in workspace `program`.
public struct ExceptionRequest: Sendable, Equatable {
    public var policy: String
    public var workspace: String
    public var subjectKind: SubjectKind?
    public var resources: [String]
    public var reason: String
    public var days: Int?
    public var likelihood: RiskFactor?
    public var impact: RiskFactor?
    public var mitigations: [String]
    public var renews: Int?
    /// People who may not approve besides the requester (e.g. the commit author).
    public var conflicted: [String]
    /// The named owner of a device or account (required for those kinds; conflicted like the requester).
    public var owner: String?
    /// The pipeline and declared commit author behind it (recorded in its audit event); its people
    /// are expected in `conflicted` too.
    public var provenance: Provenance?
    /// A ticket reference (`INC-42`) or URL.
    public var ticket: String?
    /// A scanner rule no policy file defines and no recorded check met (a suppression brought under
    /// governance): routed as a medium-severity security rule.
    public var scannerRule = false
    /// The violating values by resource, as the check that files the request reported them; for a
    /// resource not in it, the register takes the values its workspace's latest check recorded.
    public var bound: [String: String]?

    public init(policy: String, workspace: String, subjectKind: SubjectKind? = nil, resources: [String], reason: String,
                days: Int? = nil, likelihood: RiskFactor? = nil, impact: RiskFactor? = nil, mitigations: [String] = [],
                renews: Int? = nil, conflicted: [String] = [], owner: String? = nil, provenance: Provenance? = nil, ticket: String? = nil) {
        self.ticket = ticket
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
        self.owner = owner
        self.provenance = provenance
    }
}

/// What `waiver expire` did to one exception.
public struct ExpiryOutcome: Sendable, Equatable {
    public var exception: ExceptionRecord
    /// Resources still violating the policy in the workspace's latest recorded check.
    public var stillViolating: [String]
    public init(exception: ExceptionRecord, stillViolating: [String]) {
        self.exception = exception
        self.stillViolating = stillViolating
    }
}

/// A request validated, priced and routed, not yet stored.
public struct PreparedRequest: Sendable {
    public var record: ExceptionRecord
    public var event: AuditDraft
    /// Why its approval rule can never be met by the people who may approve it (nil when it can).
    public var warning: String?
}

/// The limits on what a request may carry: every text is bounded, so no one grows the register without bound.
public enum RequestLimits {
    public static let reason = 10_000
    public static let text = 2_000
    public static let resources = 10_000
    public static let mitigations = 100
    /// Names: workspaces, people, owners.
    public static let name = 200

    /// A link the register shows (a run, a pull request, a ticket): an absolute http(s) URL of at most
    /// 2,000 characters on one line.
    public static func link(_ text: String, field: String) throws(RegisterError) {
        let lower = text.lowercased()
        guard oneLine(text, max: Self.text), lower.hasPrefix("https://") || lower.hasPrefix("http://"), !text.contains(" "),
              let u = URL(string: text), u.host?.isEmpty == false else {
            throw .invalid("\(field) must be an http(s) URL of at most 2,000 characters (got \(text.debugDescription.clipped(80)))")
        }
    }

    /// A ticket reference, `INC-42` or an http(s) URL: at most 500 characters on one line.
    public static func ticket(_ raw: String) throws(RegisterError) -> String? {
        let t = raw.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { return nil }
        guard oneLine(t, max: 500) else {
            throw .invalid("the ticket is a reference (INC-42) or a URL of at most 500 characters on one line (got \(t.debugDescription.clipped(60)))")
        }
        if t.lowercased().hasPrefix("http://") || t.lowercased().hasPrefix("https://") { try link(t, field: "the ticket") }
        return t
    }

    /// Text that is a name: at most `max` characters on one line, without control characters or
    /// noncharacters (what workspaces, file names and names from identity claims must be).
    public static func oneLine(_ text: String, max: Int) -> Bool {
        text.count <= max && !text.unicodeScalars.contains(where: {
            $0.properties.generalCategory == .control || $0.properties.isNoncharacterCodePoint || CharacterSet.newlines.contains($0)
        })
    }

    /// A workspace name as every entry point takes it: trimmed, 1 to 200 characters, one line,
    /// no control characters.
    public static func workspace(_ raw: String) throws(RegisterError) -> String {
        let w = raw.trimmingCharacters(in: .whitespaces)
        guard !w.isEmpty else { throw .invalid("a workspace is required (--workspace)") }
        guard oneLine(w, max: name) else {
            throw .invalid("a workspace is a name of 1 to 200 characters on one line, without control characters (got \(w.debugDescription.clipped(120)))")
        }
        return w
    }

    /// The name a client gives a document it sends (`plan_file`, `sarif_files`): how the report names
    /// the file, so a check through a server names it as a local check does. 1 to 1000 characters on
    /// one line, without control characters.
    public static func fileName(_ raw: String, field: String) throws(RegisterError) -> String {
        guard !raw.isEmpty, oneLine(raw, max: 1_000) else {
            throw .invalid("\(field) is a file name of 1 to 1000 characters on one line, without control characters (got \(raw.debugDescription.clipped(120)))")
        }
        return raw
    }

    /// Text the register keeps, checked once for every store: PostgreSQL's `text` cannot hold U+0000
    /// (SQLite's can), so a NUL is refused by name here rather than as a driver error in one store.
    public static func storable(_ text: String, _ field: String) throws(RegisterError) {
        if text.utf8.contains(0) { throw .invalid("\(field) contains a NUL character (U+0000), which the register does not store") }
    }

    /// A violating value as the register shows it: a NUL becomes the visible escape `\u0000` (the
    /// check's digest, taken over the values as read, still binds the original).
    public static func shown(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacingOccurrences(of: "\u{0}", with: "\\u0000") : text
    }
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
    /// The members of a group (for telling a rule that can never be met).
    public let membersOf: @Sendable (String) -> Set<String>
    /// Whether a person is an administrator (may revoke any exception; never approve their own).
    public let isAdmin: @Sendable (String) -> Bool

    public init(store: any RegisterStore, configuration: Configuration, policies: [Policy],
                groupsOf: (@Sendable (String) -> Set<String>)? = nil, membersOf: (@Sendable (String) -> Set<String>)? = nil,
                isAdmin: @escaping @Sendable (String) -> Bool = { _ in false }) {
        self.isAdmin = isAdmin
        self.store = store
        self.configuration = configuration
        var byId: [String: Policy] = [:]
        for p in policies { byId[p.id] = p }
        self.policies = byId
        let groups = configuration.groups
        self.groupsOf = groupsOf ?? { person in
            let p = Identity.canonical(person)
            return Set(groups.filter { $0.value.contains { Identity.canonical($0) == p } }.map(\.key))
        }
        self.membersOf = membersOf ?? { group in Set((groups[group] ?? []).map(Identity.canonical)) }
    }

    public static func second(_ d: Date) -> Date { Date(timeIntervalSince1970: d.timeIntervalSince1970.rounded(.down)) }

    // MARK: - Risk

    /// The risk level for likelihood x impact, from `risk.levels`.
    public func riskLevel(_ likelihood: RiskFactor, _ impact: RiskFactor) throws -> String {
        try riskLevel(score: likelihood.score * impact.score, what: "likelihood \(likelihood.rawValue) x impact \(impact.rawValue)")
    }

    func riskLevel(score: Int, what: String) throws -> String {
        guard let level = configuration.riskLevels.first(where: { $0.value.contains(score) })?.key else {
            throw RegisterError.invalid("no risk level in waiver.yaml covers \(what) (score \(score))")
        }
        return level
    }

    /// Risk levels in order, lowest first (by the highest score each covers).
    public var riskOrder: [String] { configuration.riskLevels.sorted { ($0.value.max() ?? 0) < ($1.value.max() ?? 0) }.map(\.key) }

    /// A level's place in `riskOrder` (-1 when waiver.yaml does not define it).
    public func rank(_ level: String) -> Int { riskOrder.firstIndex(of: level) ?? -1 }

    /// The impact a policy's severity gives when the requester names none.
    public static func defaultImpact(_ severity: Severity) -> RiskFactor {
        switch severity {
        case .low: return .low
        case .medium: return .medium
        case .high, .critical: return .high
        }
    }

    /// The lowest risk an exception to this policy may carry: `exceptions.min_risk`, else derived
    /// from severity — the level of the default impact at likelihood low, and at likelihood medium
    /// for `critical` policies (with the default levels: critical -> high, high -> medium).
    public func riskFloor(for policy: Policy) -> String? {
        if let named = policy.exceptions?.minRisk { return named }
        let likelihood: RiskFactor = policy.severity == .critical ? .medium : .low
        return try? riskLevel(likelihood, Register.defaultImpact(policy.severity))
    }

    // MARK: - Routing

    /// Who must approve an exception to this policy at this risk level.
    public func approvalRule(for policy: Policy, level: String) -> ApprovalRule {
        approvalRule(category: policy.category, exceptions: policy.exceptions, level: level)
    }

    func approvalRule(category: String, exceptions: ExceptionRule?, level: String) -> ApprovalRule {
        let base = exceptions?.approvers ?? configuration.routing[category] ?? configuration.routing["default"] ?? ["security"]
        var min = exceptions?.minApprovals ?? 1
        var required: [String] = []
        if let esc = configuration.escalation[level] {
            if let m = esc.minApprovals { min = max(min, m) }
            required = esc.approvers ?? []
        }
        var groups = base
        for g in required where !groups.contains(g) { groups.append(g) }
        return ApprovalRule(groups: groups, minApprovals: min, requiredGroups: required)
    }

    /// Why no set of eligible people can ever meet this rule, or nil when some can. `excluding` are
    /// the people conflicted on one exception (compared as identities).
    public func impossibility(of rule: ApprovalRule, excluding: [String] = []) -> String? {
        let out = Set(excluding.map(Identity.canonical))
        let eligible = rule.groups.reduce(into: Set<String>()) { $0.formUnion(membersOf($1)) }.subtracting(out)
        var problems: [String] = []
        if eligible.count < rule.minApprovals {
            problems.append("needs \(rule.minApprovals) distinct approver\(rule.minApprovals == 1 ? "" : "s") from \(rule.groups.joined(separator: ", ")), which \(rule.groups.count == 1 ? "has" : "have") \(eligible.count) \(out.isEmpty ? "" : "eligible ")member\(eligible.count == 1 ? "" : "s")")
        }
        if !rule.requiredGroups.isEmpty, rule.requiredGroups.reduce(into: Set<String>(), { $0.formUnion(membersOf($1)) }).subtracting(out).isEmpty {
            problems.append("needs an approval from \(rule.requiredGroups.joined(separator: " or ")), which has no \(out.isEmpty ? "" : "eligible ")member")
        }
        return problems.isEmpty ? nil : problems.joined(separator: " and ")
    }

    /// Every approval rule of the loaded policies that can never be met, one line per rule: the
    /// policies, the risk level, the groups and the numbers. Said at start and whenever users change.
    public func unmeetableRules() -> [String] {
        var byProblem: [String: [String]] = [:]
        var order: [String] = []
        let levels = riskOrder
        for policy in policies.values.sorted(by: { $0.id < $1.id }) where !policy.implicit {
            let floor = riskFloor(for: policy).map(rank) ?? 0
            for level in levels where rank(level) >= floor {
                guard let why = impossibility(of: approvalRule(for: policy, level: level)) else { continue }
                let key = "at \(level) risk " + why
                if byProblem[key] == nil { order.append(key) }
                byProblem[key, default: []].append(policy.id)
            }
        }
        return order.map { key in
            let ids = byProblem[key] ?? []
            let named = ids.prefix(6).joined(separator: ", ") + (ids.count > 6 ? " and \(ids.count - 6) more" : "")
            return "exceptions to \(named) \(key): such requests would stay pending forever"
        }
    }

    // MARK: - Policies

    public func policy(_ id: String) throws -> Policy {
        if let p = policies[id] { return p }
        let hint = closestMatch(to: id, in: Array(policies.keys)).map { " (did you mean '\($0)'?)" } ?? ""
        throw RegisterError.invalid("unknown policy '\(id.clipped())'\(hint)")
    }

    /// A policy by id, or a scanner rule the workspace's recorded checks have met (with the category
    /// and severity the check gave it, routed as `check --request` would route it).
    public func policy(_ id: String, workspace: String) async throws -> Policy {
        if let p = policies[id] { return p }
        if let met = try await store.recordedRule(workspace: workspace, policy: id) {
            return Policy(id: id, title: id, category: met.category, severity: met.severity, rule: .external, implicit: true)
        }
        let hint = closestMatch(to: id, in: Array(policies.keys)).map { " (did you mean '\($0)'?)" } ?? ""
        throw RegisterError.invalid("unknown policy '\(id.clipped())'\(hint): not in the policy files, and no recorded check of workspace \(workspace.clipped()) met a scanner rule of that id")
    }

    // MARK: - Request

    /// Files a request: validated, priced for risk, routed, logged. It is pending until approved.
    public func request(_ r: ExceptionRequest, actor: String, now: Date) async throws -> ExceptionRecord {
        try await store.insert([try await prepare(r, actor: actor, now: now)])[0]
    }

    /// Files several requests, all or none: every one is validated first, then all are stored in one transaction.
    public func requestAll(_ requests: [ExceptionRequest], actor: String, now: Date) async throws -> [ExceptionRecord] {
        var prepared: [PreparedRequest] = []
        let latest = LatestViolations()
        for r in requests { prepared.append(try await prepare(r, actor: actor, now: now, latest: latest)) }
        return prepared.isEmpty ? [] : try await store.insert(prepared)
    }

    /// Auditors read everything and act on nothing: whoever is in `roles.auditors` is refused every
    /// change to the register (requests, decisions, evidence, recorded checks), wherever it comes from.
    public func mayAct(_ actor: String) throws(RegisterError) {
        if groupsOf(actor).contains(configuration.auditorGroup) {
            throw .refused("\(actor) is an auditor (group \(configuration.auditorGroup)): auditors see the whole record and change nothing in it")
        }
    }

    /// Validates, prices and routes a request without storing it.
    public func prepare(_ request: ExceptionRequest, actor: String, now: Date, latest: LatestViolations? = nil) async throws -> PreparedRequest {
        let now = Register.second(now)
        let actor = actor.trimmingCharacters(in: .whitespacesAndNewlines)
        try mayAct(actor)
        guard !actor.isEmpty, actor.count <= 200 else { throw RegisterError.invalid("the actor must be a name of 1 to 200 characters") }
        try RequestLimits.storable(actor, "the actor")
        // A renewal inherits what it does not say from the exception it renews.
        var r = request
        let previous: ExceptionRecord?
        if let old = r.renews {
            guard let p = try await store.exception(id: old) else { throw RegisterError.notFound("\(ExceptionRecord.display(old)) not found (--renews)") }
            previous = p
            if r.policy.trimmingCharacters(in: .whitespaces).isEmpty { r.policy = p.policy }
            if r.workspace.trimmingCharacters(in: .whitespaces).isEmpty { r.workspace = p.workspace }
            if r.resources.isEmpty { r.resources = p.resources }
            if r.subjectKind == nil { r.subjectKind = p.subjectKind }
            if r.owner == nil { r.owner = p.owner }
            if (r.ticket ?? "").trimmingCharacters(in: .whitespaces).isEmpty { r.ticket = p.ticket }
        } else {
            previous = nil
        }
        let kind = r.subjectKind ?? .resource
        if kind != .resource, r.workspace.trimmingCharacters(in: .whitespaces).isEmpty { r.workspace = "program" }
        let workspace = try RequestLimits.workspace(r.workspace)
        if let p = r.provenance?.pipeline { try PipelineTrustRule.check(p, workspace: workspace, rules: configuration.identity.pipelines) }
        let policyId = r.policy.trimmingCharacters(in: .whitespaces)
        guard !policyId.isEmpty else { throw RegisterError.invalid("a request needs a policy (--policy)") }
        try RequestLimits.storable(policyId, "the policy")
        let policy: Policy
        do { policy = try await self.policy(policyId, workspace: workspace) } catch let e as RegisterError {
            guard r.scannerRule, kind == .resource else { throw e }
            policy = Policy(id: policyId, title: policyId, category: "security", severity: .medium, rule: .external, implicit: true)
        }
        let reason = r.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw RegisterError.invalid("a request needs a reason (--reason)") }
        guard reason.count <= RequestLimits.reason else { throw RegisterError.invalid("the reason is longer than 10,000 characters") }
        try RequestLimits.storable(reason, "the reason")
        var resources: [String] = []
        for res in r.resources.map({ $0.trimmingCharacters(in: .whitespaces) }) where !resources.contains(res) {
            guard !res.isEmpty else { throw RegisterError.invalid("an empty resource address") }
            guard res.count <= RequestLimits.text else { throw RegisterError.invalid("a resource address is longer than 2,000 characters") }
            try RequestLimits.storable(res, "a resource address")
            resources.append(res)
        }
        guard !resources.isEmpty else {
            throw RegisterError.invalid(kind == .resource
                ? "a request needs at least one resource (--resource ADDRESS)"
                : "a program exception needs its subject (--resource: the \(kind.rawValue))")
        }
        guard resources.count <= RequestLimits.resources else { throw RegisterError.invalid("more than 10,000 resources in one request") }
        let owner = r.owner?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty
        switch kind {
        case .device, .account:
            guard let owner else {
                throw RegisterError.invalid("a \(kind.rawValue) exception names its owner (--owner): the owner, like the requester, may not approve it")
            }
            guard owner.count <= 200 else { throw RegisterError.invalid("the owner is longer than 200 characters") }
            try RequestLimits.storable(owner, "the owner")
        case .resource, .person:
            if owner != nil { throw RegisterError.invalid("--owner is for device and account exceptions (a person exception is about its subject)") }
        }
        let ticket = try r.ticket.flatMap { (t: String) throws(RegisterError) -> String? in try RequestLimits.ticket(t) }
        let origin = try r.provenance?.validated().origin
        let mitigations = r.mitigations.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        guard mitigations.count <= RequestLimits.mitigations, mitigations.allSatisfy({ $0.count <= RequestLimits.text }) else {
            throw RegisterError.invalid("at most 100 mitigations of at most 2,000 characters each")
        }
        for m in mitigations { try RequestLimits.storable(m, "a mitigation") }
        let cap = maxDays(for: policy)
        let days = r.days ?? min(configuration.defaultDays, cap)
        guard days >= 1 else { throw RegisterError.invalid("--days must be at least 1: every exception expires") }
        guard days <= cap else {
            let why = policy.exceptions?.maxDays.map { _ in "policy \(policy.id) exceptions.max_days" } ?? "waiver.yaml exceptions.max_days"
            throw RegisterError.invalid("\(days) days is past the cap of \(cap) days for \(policy.id) (\(why))")
        }
        let likelihood = r.likelihood ?? .medium
        let impact = r.impact ?? Register.defaultImpact(policy.severity)
        let proposed = try riskLevel(likelihood, impact)
        var level = proposed
        if let floor = riskFloor(for: policy), rank(floor) > rank(level) { level = floor }
        // Conflicted people, as identities: the commit author, and on a renewal everyone who was
        // conflicted on the exception it renews (its requester, subject, owner and commit author).
        var conflicted: [String] = []
        func conflict(_ person: String) {
            let p = Identity.canonical(person)
            if !p.isEmpty, p != Identity.canonical(actor), !conflicted.contains(p) { conflicted.append(p) }
        }
        for person in r.conflicted + (r.provenance?.conflicted ?? []) {
            guard person.count <= 200 else { throw RegisterError.invalid("a conflicted person's name is longer than 200 characters") }
            conflict(person)
        }
        if let previous {
            guard previous.policy == policy.id, previous.workspace == workspace else {
                throw RegisterError.invalid("\(previous.displayId) is for \(previous.policy) in \(previous.workspace): a renewal keeps the policy and workspace")
            }
            guard [.approved, .expired, .closed].contains(previous.status) else {
                throw RegisterError.invalid("\(previous.displayId) is \(previous.status.rawValue): only an approved or expired exception can be renewed")
            }
            // "Still needed." is not news: the reasons are compared by their words alone (case,
            // whitespace and punctuation aside), so adding a full stop does not make a new reason.
            guard Self.words(reason) != Self.words(previous.reason) else {
                throw RegisterError.invalid("a renewal needs a reason of its own, not \(previous.displayId)'s again: say what changed and why the exception is still needed")
            }
            for person in [previous.requester] + previous.conflicted + previous.subjectPeople { conflict(person) }
        }
        let rule = approvalRule(for: policy, level: level)
        let bound = kind == .resource ? try await boundValues(r.bound, policy: policy, workspace: workspace, resources: resources, latest: latest ?? LatestViolations()) : nil
        var record = ExceptionRecord(
            id: 0, policy: policy.id, category: policy.category, workspace: workspace, subjectKind: kind,
            resources: resources, requester: actor, conflicted: conflicted, reason: reason,
            requestedDays: days, likelihood: likelihood, impact: impact, riskLevel: level,
            mitigations: mitigations, evidence: [], approvals: [], rule: rule, status: .pending,
            createdAt: now, decidedAt: nil, expiresAt: nil, renews: r.renews, owner: owner,
            proposedRisk: level == proposed ? nil : proposed, ticket: ticket, origin: origin)
        record.bound = bound
        var payload: Value.Object = Value.Object([
            ("policy", .string(record.policy)), ("workspace", .string(workspace)), ("subject_kind", .string(kind.rawValue)),
            ("resources", .array(resources.map(Value.string))), ("reason", .string(reason)), ("days", .number(Double(days))),
            ("likelihood", .string(likelihood.rawValue)), ("impact", .string(impact.rawValue)), ("risk", .string(level)),
            ("mitigations", .array(record.mitigations.map(Value.string))),
            ("approvers", .array(record.rule.groups.map(Value.string))), ("min_approvals", .number(Double(record.rule.minApprovals))),
        ])
        if level != proposed { payload.append("risk_floor", .string("\(proposed) raised to \(level), the floor of \(policy.id)")) }
        if let owner { payload.append("owner", .string(owner)) }
        if !conflicted.isEmpty { payload.append("conflicted", .array(conflicted.map(Value.string))) }
        if let old = r.renews { payload.append("renews", .string(ExceptionRecord.display(old))) }
        if let p = r.provenance?.value { payload.append("provenance", p) }
        if let ticket { payload.append("ticket", .string(ticket)) }
        if let bound { payload.append("bound", ExceptionRecord.boundValue(bound)) }
        let warning = impossibility(of: rule, excluding: [actor] + conflicted + record.subjectPeople).map {
            "exceptions to \(policy.id) at \(level) risk \($0): this request would stay pending forever"
        }
        if let warning { payload.append("warning", .string(warning)) }
        return PreparedRequest(record: record, event: AuditDraft(actor: actor, action: "exception.requested", subject: "", payload: .object(payload), time: now),
                               warning: warning)
    }

    /// The violating values a request binds (see `ExceptionRecord.bound`): the ones its check
    /// reported, else the ones its workspace's latest recorded check saw on each resource; nil when
    /// the policy binds the resource (`exceptions.bind: resource`) or no values are known.
    func boundValues(_ given: [String: String]?, policy: Policy, workspace: String, resources: [String], latest: LatestViolations) async throws -> [String: String]? {
        guard (policy.exceptions?.bind ?? .values) == .values else { return nil }
        var bound: [String: String] = [:]
        for res in resources {
            if let v = given?[res] { bound[res] = RequestLimits.shown(v); continue }
            if let v = try await latest.values(workspace: workspace, store: store)[policy.id + "\u{0}" + res] { bound[res] = v }
        }
        return bound.isEmpty ? nil : bound
    }

    /// The longest exception this policy allows, in days.
    public func maxDays(for policy: Policy) -> Int {
        // A program control under a review cycle may name its own longer cap (an annual exception
        // reviewed quarterly); everything else keeps the configured cap, never past 90 days.
        if case .control = policy.rule, policy.exceptions?.reviewEvery != nil, let own = policy.exceptions?.maxDays {
            return min(own, Configuration.programMaxDays)
        }
        return min(configuration.maxDays, policy.exceptions?.maxDays ?? configuration.maxDays, Configuration.absoluteMaxDays)
    }

    // MARK: - Decisions

    func mayDecide(_ e: ExceptionRecord, actor: String, verb: String) throws {
        try mayAct(actor)
        if let why = e.untrusted {
            throw RegisterError.conflict("\(e.displayId) cannot be decided: \(why)")
        }
        if let why = e.conflict(of: actor) {
            throw RegisterError.refused("\(actor) cannot \(verb) \(e.displayId): \(why)")
        }
        let mine = groupsOf(actor)
        if mine.isDisjoint(with: e.rule.groups) {
            throw RegisterError.refused("\(actor) cannot \(verb) \(e.displayId): exceptions to \(e.policy) (\(e.category), \(e.riskLevel) risk) are decided by members of \(e.rule.groups.joined(separator: ", "))")
        }
    }

    /// Whether this person may approve or reject the exception now (for inboxes and pages: the same rule as the decision).
    public func mayDecide(_ e: ExceptionRecord, person: String) -> Bool {
        e.status == .pending && (try? mayDecide(e, actor: person, verb: "approve")) != nil && !e.approved(by: person)
    }

    func satisfied(_ e: ExceptionRecord) -> (Bool, String) {
        let approvers = Set(e.approvals.map { Identity.canonical($0.approver) })
        var missing: [String] = []
        if approvers.count < e.rule.minApprovals {
            missing.append("\(e.rule.minApprovals - approvers.count) more approval\(e.rule.minApprovals - approvers.count == 1 ? "" : "s")")
        }
        if !e.rule.requiredGroups.isEmpty, !e.approvals.contains(where: { !groupsOf($0.approver).isDisjoint(with: e.rule.requiredGroups) }) {
            missing.append("an approval from \(e.rule.requiredGroups.joined(separator: " or ")) (\(e.riskLevel) risk)")
        }
        return (missing.isEmpty, missing.joined(separator: " and "))
    }

    /// Approves (or adds one approval to) a pending request. When the approvals suffice, the
    /// exception becomes active until now + its duration (an approver may shorten it with `days`).
    /// An approver may re-rate the risk upward (`risk`): the rule for the higher level applies at once.
    public func approve(_ id: Int, actor: String, comment: String?, days: Int?, risk: String? = nil, now: Date) async throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty
        if let comment, comment.count > RequestLimits.text { throw RegisterError.invalid("the comment is longer than 2,000 characters") }
        if let comment { try RequestLimits.storable(comment, "the comment") }
        return try await store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .approved, id: e.displayId) { throw RegisterError.conflict(refusal) }
            try mayDecide(e, actor: actor, verb: "approve")
            if e.approved(by: actor) {
                throw RegisterError.conflict("\(actor) already approved \(e.displayId); it needs \(e.rule.minApprovals) distinct approvers")
            }
            if let days {
                guard days >= 1, days <= e.requestedDays else {
                    throw RegisterError.invalid("--days \(days): an approver may shorten the requested \(e.requestedDays) days, not lengthen them")
                }
                e.requestedDays = days
            }
            var events: [AuditDraft] = []
            if let risk, risk != e.riskLevel {
                guard rank(risk) >= 0 else {
                    throw RegisterError.invalid("--risk: '\(risk)' is not a risk level of waiver.yaml (\(riskOrder.joined(separator: ", ")))")
                }
                guard rank(risk) > rank(e.riskLevel) else {
                    throw RegisterError.refused("\(e.displayId) is \(e.riskLevel) risk: an approver may raise the risk, never lower it")
                }
                let from = e.riskLevel
                let fresh = approvalRule(category: e.category, exceptions: policies[e.policy]?.exceptions, level: risk)
                e.proposedRisk = e.proposedRisk ?? from
                e.riskLevel = risk
                e.riskRaisedBy = actor
                e.rule = ApprovalRule(groups: e.rule.groups + fresh.groups.filter { !e.rule.groups.contains($0) },
                                      minApprovals: max(e.rule.minApprovals, fresh.minApprovals),
                                      requiredGroups: fresh.requiredGroups.isEmpty ? e.rule.requiredGroups : fresh.requiredGroups)
                events.append(AuditDraft(actor: actor, action: "exception.risk_raised", subject: e.displayId, payload: [
                    "from": .string(from), "to": .string(risk), "approvers": .array(e.rule.groups.map(Value.string)),
                    "min_approvals": .number(Double(e.rule.minApprovals)),
                ], time: now))
            }
            e.approvals.append(Approval(approver: actor, comment: comment, at: now))
            let (done, missing) = satisfied(e)
            var payload = Value.Object([("comment", comment.map(Value.string) ?? .null), ("approvals", .number(Double(e.approvals.count)))])
            if done {
                let expires = now.addingTimeInterval(Double(e.requestedDays) * 86_400)
                e.status = .approved
                e.decidedAt = now
                e.expiresAt = expires
                payload.append("expires", .string(iso(expires)))
                payload.append("days", .number(Double(e.requestedDays)))
                events.append(AuditDraft(actor: actor, action: "exception.approved", subject: e.displayId, payload: .object(payload), time: now))
                return events
            }
            payload.append("still_needs", .string(missing))
            events.append(AuditDraft(actor: actor, action: "exception.approval_added", subject: e.displayId, payload: .object(payload), time: now))
            return events
        }
    }

    /// What an approval would still need, for messages.
    public func missingApprovals(_ e: ExceptionRecord) -> String? {
        let (done, missing) = satisfied(e)
        return done ? nil : missing
    }

    public func reject(_ id: Int, actor: String, comment: String, now: Date) async throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty else { throw RegisterError.invalid("rejecting needs a comment (--comment) saying why") }
        guard comment.count <= RequestLimits.text else { throw RegisterError.invalid("the comment is longer than 2,000 characters") }
        try RequestLimits.storable(comment, "the comment")
        return try await store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .rejected, id: e.displayId) { throw RegisterError.conflict(refusal) }
            try mayDecide(e, actor: actor, verb: "reject")
            e.status = .rejected
            e.decidedAt = now
            return [AuditDraft(actor: actor, action: "exception.rejected", subject: e.displayId, payload: ["comment": .string(comment)], time: now)]
        }
    }

    /// Ends an exception early. An approver of its policy may revoke; the requester may withdraw their own.
    public func revoke(_ id: Int, actor: String, comment: String, now: Date) async throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty else { throw RegisterError.invalid("revoking needs a comment (--comment) saying why") }
        guard comment.count <= RequestLimits.text else { throw RegisterError.invalid("the comment is longer than 2,000 characters") }
        try RequestLimits.storable(comment, "the comment")
        return try await store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .revoked, id: e.displayId) { throw RegisterError.conflict(refusal) }
            try mayAct(actor)
            if !Identity.same(actor, e.requester), !isAdmin(actor), groupsOf(actor).isDisjoint(with: e.rule.groups) {
                throw RegisterError.refused("\(actor) cannot revoke \(e.displayId): only its requester, an administrator or members of \(e.rule.groups.joined(separator: ", ")) can")
            }
            e.status = .revoked
            e.decidedAt = e.decidedAt ?? now
            if let expires = e.expiresAt, expires > now { e.expiresAt = now }
            return [AuditDraft(actor: actor, action: "exception.revoked", subject: e.displayId, payload: ["comment": .string(comment)], time: now)]
        }
    }

    // MARK: - Review cycles and remediation (program exceptions)

    /// How long a missed review may wait for its attestation before the exception expires.
    public static let reviewGrace = 7 * 86_400

    /// The review cycle of an exception's policy, in seconds, or nil when it has none.
    public func reviewEvery(_ e: ExceptionRecord) -> Int? { policies[e.policy]?.exceptions?.reviewEvery }

    /// A review's re-attestation: an approver of the exception says it is still needed and its
    /// mitigations are still in place; the next review falls due a cycle from now. Refused for an
    /// exception that is not active, whose policy has no review cycle, or for anyone who may not decide it.
    public func attest(_ id: Int, actor: String, comment: String, now: Date) async throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty, comment.count <= RequestLimits.text else {
            throw RegisterError.invalid("attesting needs a comment (--comment) saying the exception is still needed and its mitigations still in place")
        }
        try RequestLimits.storable(comment, "the comment")
        return try await store.modify(id: id) { e in
            guard let every = reviewEvery(e) else {
                throw RegisterError.invalid("\(e.policy) has no review cycle (exceptions.review_every): \(e.displayId) simply expires")
            }
            guard e.isActive(at: now) else { throw RegisterError.conflict("\(e.displayId) is not active (\(e.status.rawValue)): there is nothing to attest") }
            try mayDecide(e, actor: actor, verb: "attest")
            e.reviewedAt = now
            let next = now.addingTimeInterval(Double(every))
            return [AuditDraft(actor: actor, action: "exception.attested", subject: e.displayId,
                               payload: ["comment": .string(comment), "next_review": .string(iso(min(next, e.expiresAt ?? next)))], time: now)]
        }
    }

    /// Closes an active exception as remediated (`closed`), with the evidence that shows it (added
    /// before, e.g. "background check cleared"): by its requester, its deciding groups or an administrator.
    public func closeRemediated(_ id: Int, actor: String, comment: String, now: Date) async throws -> ExceptionRecord {
        let now = Register.second(now)
        let comment = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !comment.isEmpty, comment.count <= RequestLimits.text else { throw RegisterError.invalid("closing needs a comment (--comment) saying how it was remediated") }
        try RequestLimits.storable(comment, "the comment")
        return try await store.modify(id: id) { e in
            if let refusal = e.status.refusal(to: .closed, id: e.displayId) { throw RegisterError.conflict(refusal) }
            try mayAct(actor)
            if let why = e.untrusted { throw RegisterError.conflict("\(e.displayId) cannot be closed: \(why)") }
            if !Identity.same(actor, e.requester), !isAdmin(actor), groupsOf(actor).isDisjoint(with: e.rule.groups) {
                throw RegisterError.refused("\(actor) cannot close \(e.displayId): only its requester, an administrator or members of \(e.rule.groups.joined(separator: ", ")) can")
            }
            guard let decided = e.decidedAt, e.evidence.contains(where: { $0.at >= decided }) else {
                throw RegisterError.invalid("closing \(e.displayId) as remediated needs the evidence that shows it: add it first (waiver evidence add \(e.displayId) FILE --display-text TEXT)")
            }
            e.status = .closed
            if let expires = e.expiresAt, expires > now { e.expiresAt = now }
            return [AuditDraft(actor: actor, action: "exception.closed", subject: e.displayId,
                               payload: ["comment": .string(comment), "basis": .string("remediated")], time: now)]
        }
    }

    /// Expires every active exception whose review is more than `grace` seconds overdue: a missed
    /// review ends the exception (the control is enforced again), as an expiry does.
    public func expireMissedReviews(now: Date, grace: Int, actor: String) async throws -> [ExceptionRecord] {
        let now = Register.second(now)
        var out: [ExceptionRecord] = []
        for candidate in try await store.exceptions(ExceptionFilter(statuses: [.approved])) where candidate.untrusted == nil {
            guard let every = reviewEvery(candidate), let due = candidate.reviewDue(every: every), due.addingTimeInterval(Double(grace)) <= now,
                  candidate.isActive(at: now) else { continue }
            let updated = try await store.modify(id: candidate.id) { e in
                guard e.isActive(at: now), let due = e.reviewDue(every: every), due.addingTimeInterval(Double(grace)) <= now else { return [] }
                e.status = .expired
                return [AuditDraft(actor: actor, action: "exception.expired", subject: e.displayId,
                                   payload: ["still_violating": .array(e.resources.map(Value.string)),
                                             "basis": .string("review missed: due \(iso(due)), no attestation within \(formatDuration(grace))")], time: now)]
            }
            if updated.status == .expired { out.append(updated) }
        }
        return out
    }

    /// Who may add evidence to an exception: its requester, the owner or person it is about, the
    /// members of the groups that decide it, and administrators. Evidence may be added in any state:
    /// after a decision it is closure evidence ("background check cleared"), recorded as such.
    public func mayAddEvidence(_ e: ExceptionRecord, actor: String) throws(RegisterError) {
        try mayAct(actor)
        if let why = e.untrusted { throw .conflict("\(e.displayId) cannot take evidence: \(why)") }
        let involved = Identity.same(actor, e.requester) || e.subjectPeople.contains { Identity.same($0, actor) }
        guard involved || isAdmin(actor) || !groupsOf(actor).isDisjoint(with: e.rule.groups) else {
            throw .refused("\(actor) cannot add evidence to \(e.displayId): only its requester, the person or owner it is about, members of \(e.rule.groups.joined(separator: ", ")) or an administrator can")
        }
    }

    /// An evidence item's display text: trimmed, at most 2,000 characters, nil when empty.
    public static func evidenceText(_ raw: String?) throws(RegisterError) -> String? {
        guard let t = raw?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else { return nil }
        guard t.count <= RequestLimits.text else { throw .invalid("the evidence's display text is longer than 2,000 characters") }
        try RequestLimits.storable(t, "the evidence's display text")
        return t
    }

    /// Adds an evidence file (already stored by its SHA-256), with its display text.
    public func addEvidence(_ id: Int, file: EvidenceFile, actor: String) async throws -> ExceptionRecord {
        try RequestLimits.storable(file.name, "the evidence name")
        guard file.size > 0 else { throw RegisterError.invalid("\(file.name): the evidence file is empty") }
        var file = file
        file.displayText = try Register.evidenceText(file.displayText)
        return try await store.modify(id: id) { e in
            try mayAddEvidence(e, actor: actor)
            // The same bytes twice are kept once (the first name and text stand).
            if e.evidence.contains(where: { $0.sha256 == file.sha256 }) { return [] }
            e.evidence.append(file)
            var payload = Value.Object([("sha256", .string(file.sha256)), ("name", .string(file.name)), ("size", .number(Double(file.size)))])
            if let text = file.displayText { payload.append("display_text", .string(text)) }
            if e.status != .pending { payload.append("after_decision", .string(e.status.rawValue)) }
            return [AuditDraft(actor: actor, action: "evidence.added", subject: e.displayId, payload: .object(payload), time: file.at)]
        }
    }

    // MARK: - Expiry

    /// Takes every approved exception at or past its expiry and re-checks its policy on its resources
    /// against the workspace's latest recorded check: compliant -> closed; still violating (or never
    /// checked, or a program exception) -> expired, and the pipeline blocks again.
    public func expire(now: Date, actor: String) async throws -> [ExpiryOutcome] {
        let now = Register.second(now)
        let due = try await store.exceptions(ExceptionFilter(statuses: [.approved], expiringBefore: now.addingTimeInterval(1)))
        var latest: [String: Evaluation?] = [:]
        var outcomes: [ExpiryOutcome] = []
        for candidate in due where candidate.untrusted == nil {
            if latest[candidate.workspace] == nil { latest[candidate.workspace] = try await store.latestEvaluation(workspace: candidate.workspace) }
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
            let updated = try await store.modify(id: candidate.id) { e in
                guard e.status == .approved, let expires = e.expiresAt, expires <= now else { return [] }
                e.status = still.isEmpty ? .closed : .expired
                return [AuditDraft(actor: actor, action: still.isEmpty ? "exception.closed" : "exception.expired", subject: e.displayId,
                                   payload: ["still_violating": .array(still.map(Value.string)), "basis": .string(basis)], time: now)]
            }
            if updated.status != .approved { outcomes.append(ExpiryOutcome(exception: updated, stillViolating: still)) }
        }
        // Program exceptions whose review was missed past its grace expire too.
        for e in try await expireMissedReviews(now: now, grace: Register.reviewGrace, actor: actor) {
            outcomes.append(ExpiryOutcome(exception: e, stillViolating: e.resources))
        }
        return outcomes
    }

    // MARK: - Checks

    /// Marks the report's violations covered by the register: `excepted` under an active exception,
    /// `pending` under a request waiting for approval. Nothing is removed.
    public func applyExceptions(to report: inout CheckReport, now: Date) async throws {
        let pairs = report.findings.filter { $0.status == .blocking || $0.status == .unknown }.map { (policy: $0.policy, resource: $0.resource) }
        guard !pairs.isEmpty else { return }
        let found = try await store.covering(workspace: report.workspace, pairs: pairs)
        guard !found.isEmpty else { return }
        Register.cover(&report, with: found, now: now, binds: binds(values:))
    }

    /// The rule of coverage, one home for the check and the suppression scan: of the exceptions on a
    /// finding's policy and resource in its workspace, an active one that binds no values or these
    /// values excepts it; else a pending request makes it pending; else an active exception approved
    /// for other values makes it `changed`. An exception whose state the audit log does not back is
    /// named in a warning and applies to nothing. `binds` says whether a policy binds values.
    public static func cover(_ report: inout CheckReport, with exceptions: [ExceptionRecord], now: Date, binds: (String) -> Bool) {
        var active: [String: [ExceptionRecord]] = [:]
        var pending: [String: ExceptionRecord] = [:]
        for e in exceptions where e.workspace == report.workspace {
            if let why = e.untrusted {
                report.warnings.append("\(e.displayId) is not applied: \(why)")
                continue
            }
            for r in e.resources {
                let key = e.policy + "\u{0}" + r
                if e.isActive(at: now) {
                    active[key, default: []].append(e)
                } else if e.status == .pending {
                    if pending[key] == nil { pending[key] = e }
                }
            }
        }
        for i in report.findings.indices where report.findings[i].status == .blocking || report.findings[i].status == .unknown {
            let f = report.findings[i]
            let key = f.policy + "\u{0}" + f.resource
            // The exceptions on the pair, latest expiry first; one covers the finding if it binds
            // these values (or none). An unknown outcome has no values to compare: any covers it.
            // Most findings have no exception on their pair: their values are not even built.
            let onPair = (active[key] ?? []).sorted { ($0.expiresAt ?? .distantPast) > ($1.expiresAt ?? .distantPast) }
            let values = onPair.isEmpty ? "" : RequestLimits.shown(f.boundValues)
            if let e = onPair.first(where: { f.status == .unknown || !binds($0.policy) || $0.covers(resource: f.resource, values: values) }) {
                report.findings[i].status = .excepted
                report.findings[i].exception = e.displayId
                report.findings[i].expires = e.expiresAt
            } else if let e = pending[key], f.status == .blocking {
                report.findings[i].status = .pending
                report.findings[i].exception = e.displayId
            } else if let e = onPair.first {
                report.findings[i].status = .changed
                report.findings[i].exception = e.displayId
                report.findings[i].expires = e.expiresAt
                report.findings[i].approved = e.bound?[f.resource]
            }
        }
    }

    /// Whether exceptions to this policy bind the violating values (`exceptions.bind`, default values).
    func binds(values policy: String) -> Bool {
        (policies[policy]?.exceptions?.bind ?? .values) == .values
    }

    /// Records a check so the register knows the workspace's latest state.
    public func recordCheck(_ report: CheckReport, violations: [RecordedViolation], actor: String, provenance: Provenance = Provenance(),
                            now: Date) async throws -> Int {
        try mayAct(actor)
        _ = try RequestLimits.workspace(report.workspace)
        if let p = provenance.pipeline { try PipelineTrustRule.check(p, workspace: report.workspace, rules: configuration.identity.pipelines) }
        let r = try recording(report, violations: violations, actor: actor, provenance: provenance, now: now)
        return try await store.record(r.evaluation, event: r.event, pruneBefore: r.pruneBefore)
    }

    /// What a check records; a NUL in an address or rule id is refused, in a violating value shown as `\u0000`.
    func recording(_ report: CheckReport, violations: [RecordedViolation], actor: String, provenance: Provenance, now: Date) throws(RegisterError) -> CheckRecording {
        let now = Register.second(now)
        let s = report.summary
        var kept = violations
        for i in kept.indices {
            try RequestLimits.storable(kept[i].resource, "a resource address")
            try RequestLimits.storable(kept[i].policy, "a policy or rule id")
            // Written only when it changes: the list (a million entries in a large check) is not copied for nothing.
            let shown = RequestLimits.shown(kept[i].message)
            if shown.utf8.count != kept[i].message.utf8.count { kept[i].message = shown }
        }
        let evaluation = Evaluation(workspace: report.workspace, at: now, actor: actor, verdict: report.verdict,
                                    resourceCount: report.resourceCount, violations: kept)
        var payload = Value.Object([
            ("workspace", .string(report.workspace)), ("verdict", .string(report.verdict)),
            ("resources", .number(Double(s.resources))), ("violations", .number(Double(s.violations))),
            ("blocking", .number(Double(s.blocking))), ("excepted", .number(Double(s.excepted))),
            ("pending", .number(Double(s.pending))), ("unknown", .number(Double(s.unknown))),
        ])
        if s.changed > 0 { payload.append("changed", .number(Double(s.changed))) }
        if let p = provenance.value { payload.append("provenance", p) }
        return CheckRecording(evaluation: evaluation,
                              event: AuditDraft(actor: actor, action: "check.recorded", subject: "workspace:\(report.workspace)", payload: .object(payload), time: now),
                              pruneBefore: now.addingTimeInterval(-Double(configuration.keepEvaluations)))
    }

    /// The requests `check --request` files: one per blocking violation, with the people of its
    /// provenance (the pipeline's triggering actor, a declared commit author) conflicted.
    ///
    /// With `renewing` (`check --request --renews EX-N`), the blocking findings of the renewed
    /// exception's policy on its resources are one request that renews it (inheriting what it does
    /// not say); it is an error when none blocks, since there is then nothing to renew.
    public func requests(for report: CheckReport, reason: String, days: Int?, likelihood: RiskFactor?, impact: RiskFactor?,
                         mitigations: [String], provenance: Provenance, ticket: String? = nil,
                         renewing: ExceptionRecord? = nil) throws(RegisterError) -> [ExceptionRequest] {
        // A changed finding is requested like a blocking one: the request amends the exception for the new values.
        let blocking = report.findings.filter { $0.status == .blocking || $0.status == .changed }
        var values: [String: String] = [:]
        for f in blocking { values[f.policy + "\u{0}" + f.resource] = f.boundValues }
        func request(_ policy: String, _ resources: [String], renews: Int?) -> ExceptionRequest {
            var r = ExceptionRequest(policy: policy, workspace: report.workspace, resources: resources, reason: reason, days: days,
                                     likelihood: likelihood, impact: impact, mitigations: mitigations, renews: renews,
                                     provenance: provenance.value == nil ? nil : provenance, ticket: ticket)
            var bound: [String: String] = [:]
            for res in resources { bound[res] = values[policy + "\u{0}" + res] }
            r.bound = bound
            return r
        }
        guard let old = renewing else { return blocking.map { request($0.policy, [$0.resource], renews: nil) } }
        let renewed = blocking.filter { old.workspace == report.workspace && $0.policy == old.policy && old.resources.contains($0.resource) }
        guard !renewed.isEmpty else {
            throw .invalid("--renews \(old.displayId): nothing in this check renews it (no blocking violation of \(old.policy) in workspace \(report.workspace) on its resources)\(old.status == .approved ? "; while it is approved its findings are excepted, not blocking: renew it with waiver request --renews \(old.displayId)" : "")")
        }
        var out = [request(old.policy, renewed.map(\.resource), renews: old.id)]
        for f in blocking where !(f.policy == old.policy && old.resources.contains(f.resource)) { out.append(request(f.policy, [f.resource], renews: nil)) }
        return out
    }

    /// A check's register step, in one transaction: the report marked with what the register covers,
    /// the requests filed (all or none, each validated before anything is written), and the check
    /// recorded with its final statuses. `violations` turns the final report into what is recorded.
    public func checkIn(_ evaluated: CheckReport, requests: (CheckReport) throws -> [ExceptionRequest], actor: String,
                        provenance: Provenance = Provenance(), now: Date,
                        violations: (CheckReport) -> [RecordedViolation]) async throws -> (report: CheckReport, filed: [ExceptionRecord], evaluation: Int) {
        try mayAct(actor)
        _ = try RequestLimits.workspace(evaluated.workspace)
        if let p = provenance.pipeline { try PipelineTrustRule.check(p, workspace: evaluated.workspace, rules: configuration.identity.pipelines) }
        var report = evaluated
        try await applyExceptions(to: &report, now: now)
        var prepared: [PreparedRequest] = []
        let latest = LatestViolations()
        for r in try requests(report) { prepared.append(try await prepare(r, actor: actor, now: now, latest: latest)) }
        var final = report
        let (filed, evaluation) = try await store.insert(prepared) { stored in
            Register.markPending(&final, filed: stored)
            return try recording(final, violations: violations(final), actor: actor, provenance: provenance, now: now)
        }
        return (final, filed, evaluation)
    }

    /// A text's words, lower-cased, without whitespace or punctuation between them.
    static func words(_ text: String) -> [String] {
        text.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    /// Marks the blocking findings new requests cover as pending under them.
    public static func markPending(_ report: inout CheckReport, filed: [ExceptionRecord]) {
        guard !filed.isEmpty else { return }
        var byKey: [String: String] = [:]
        for e in filed { for r in e.resources { byKey[e.policy + "\u{0}" + r] = byKey[e.policy + "\u{0}" + r] ?? e.displayId } }
        for i in report.findings.indices where report.findings[i].status == .blocking || report.findings[i].status == .changed {
            if let id = byKey[report.findings[i].policy + "\u{0}" + report.findings[i].resource] {
                report.findings[i].status = .pending
                report.findings[i].exception = id
            }
        }
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

/// The violating values of each workspace's latest recorded check, by policy and resource, read once
/// for a batch of requests (a batch of a thousand requests reads the check once, not a thousand times).
public actor LatestViolations {
    private var byWorkspace: [String: [String: String]] = [:]
    public init() {}

    func values(workspace: String, store: any RegisterStore) async throws -> [String: String] {
        if let known = byWorkspace[workspace] { return known }
        var values: [String: String] = [:]
        for v in try await store.latestEvaluation(workspace: workspace)?.violations ?? [] where v.status != .advisory {
            values[v.policy + "\u{0}" + v.resource] = v.message
        }
        byWorkspace[workspace] = values
        return values
    }
}
