import Foundation

/// `waiver report`: how exceptions were used over a period, and which policies need review.
public struct RegisterReport: Sendable, Equatable {
    public struct Count: Sendable, Equatable {
        public var key: String
        public var count: Int
        public init(key: String, count: Int) {
            self.key = key
            self.count = count
        }
    }

    public var from: Date?
    public var to: Date?
    public var now: Date
    public var total: Int
    public var perPolicy: [Count]
    public var perWorkspace: [Count]
    public var perRequester: [Count]
    public var renewals: Int
    /// Median days between approval and expiry of the exceptions approved in the period.
    public var medianApprovedDays: Double?
    public var activeNow: Int
    public var expiringWithin7Days: [String]
    public var reviewThreshold: Int
    /// Policies with at least `reviewThreshold` exceptions in the period: review the policy.
    public var reviewPolicies: [Count]
    /// Active exceptions whose violation no longer appears in the workspace's latest check.
    public var orphaned: [String]
    /// Quarterly reviews of policies recorded in the period.
    public var reviews: [PolicyReview] = []

    public init(from: Date?, to: Date?, now: Date, total: Int, perPolicy: [Count], perWorkspace: [Count], perRequester: [Count],
                renewals: Int, medianApprovedDays: Double?, activeNow: Int, expiringWithin7Days: [String], reviewThreshold: Int,
                reviewPolicies: [Count], orphaned: [String]) {
        self.from = from
        self.to = to
        self.now = now
        self.total = total
        self.perPolicy = perPolicy
        self.perWorkspace = perWorkspace
        self.perRequester = perRequester
        self.renewals = renewals
        self.medianApprovedDays = medianApprovedDays
        self.activeNow = activeNow
        self.expiringWithin7Days = expiringWithin7Days
        self.reviewThreshold = reviewThreshold
        self.reviewPolicies = reviewPolicies
        self.orphaned = orphaned
    }

    /// Builds the report from the exceptions created in the period, the active ones, and each
    /// workspace's latest recorded check.
    public static func build(
        inPeriod: [ExceptionRecord], active: [ExceptionRecord], latest: [String: Evaluation],
        from: Date?, to: Date?, now: Date, reviewThreshold: Int
    ) -> RegisterReport {
        func counts(_ key: (ExceptionRecord) -> String) -> [Count] {
            Dictionary(grouping: inPeriod, by: key).map { Count(key: $0.key, count: $0.value.count) }
                .sorted { ($1.count, $0.key) < ($0.count, $1.key) }
        }
        let perPolicy = counts(\.policy)
        let durations = inPeriod.compactMap { e -> Double? in
            guard let d = e.decidedAt, let x = e.expiresAt, [.approved, .expired, .closed, .revoked].contains(e.status) else { return nil }
            if e.status == .revoked, e.approvals.isEmpty { return nil }
            return x.timeIntervalSince(d) / 86_400
        }.sorted()
        let median: Double? = durations.isEmpty ? nil
            : durations.count % 2 == 1 ? durations[durations.count / 2]
            : (durations[durations.count / 2 - 1] + durations[durations.count / 2]) / 2
        let live = active.filter { $0.isActive(at: now) }
        let soon = live.filter { ($0.expiresAt ?? now) < now.addingTimeInterval(7 * 86_400) }
            .sorted { ($0.expiresAt ?? now) < ($1.expiresAt ?? now) }.map(\.displayId)
        var orphaned: [String] = []
        for e in live where e.subjectKind == .resource {
            guard let evaluation = latest[e.workspace] else { continue }
            let violating = Set(evaluation.violations.filter { $0.policy == e.policy }.map(\.resource))
            if !e.resources.contains(where: violating.contains) { orphaned.append(e.displayId) }
        }
        return RegisterReport(
            from: from, to: to, now: now, total: inPeriod.count, perPolicy: perPolicy, perWorkspace: counts(\.workspace),
            perRequester: counts(\.requester), renewals: inPeriod.filter { $0.renews != nil }.count,
            medianApprovedDays: median, activeNow: live.count, expiringWithin7Days: soon, reviewThreshold: reviewThreshold,
            reviewPolicies: perPolicy.filter { $0.count >= reviewThreshold }, orphaned: orphaned)
    }
}

/// A calendar quarter in UTC, written `2026-Q4`.
public struct Quarter: Sendable, Equatable, CustomStringConvertible {
    public var year: Int
    public var number: Int

    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).uppercased().split(separator: "-")
        guard parts.count == 2, parts[0].count == 4, let y = Int(parts[0]), (1970...9999).contains(y), parts[1].count == 2, parts[1].hasPrefix("Q"),
              let q = Int(parts[1].dropFirst()), (1...4).contains(q) else { return nil }
        year = y
        number = q
    }

    public var description: String { "\(year)-Q\(number)" }

    /// Its first instant.
    public var start: Date {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(secondsFromGMT: 0) ?? cal.timeZone
        return cal.date(from: DateComponents(year: year, month: (number - 1) * 3 + 1, day: 1)) ?? Date(timeIntervalSince1970: 0)
    }
}

/// A policy's quarterly review, as recorded (`waiver review record`): what was decided about the
/// policy, by whom, with a link to the change that carries it out.
public struct PolicyReview: Sendable, Equatable {
    public var quarter: String
    public var policy: String
    public var decision: String
    public var link: String?
    public var by: String
    public var at: Date
    public init(quarter: String, policy: String, decision: String, link: String?, by: String, at: Date) {
        self.quarter = quarter
        self.policy = policy
        self.decision = decision
        self.link = link
        self.by = by
        self.at = at
    }
}

extension Register {
    public static let reviewAction = "review.recorded"

    /// Records a quarterly review of a policy in the audit log (subject `policy:ID`). Members of the
    /// groups that approve the policy's exceptions and administrators may record one.
    public func recordReview(quarter: String, policy id: String, decision: String, link: String?, actor: String, now: Date) async throws -> PolicyReview {
        let now = Register.second(now)
        try mayAct(actor)
        guard let q = Quarter(quarter) else { throw RegisterError.invalid("--quarter: '\(quarter.clipped(20))' is not a quarter (2026-Q4)") }
        guard q.start <= now else { throw RegisterError.invalid("--quarter \(q) has not begun: a review is recorded for a quarter that has") }
        let p = try policy(id)
        let text = decision.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, text.count <= RequestLimits.text else { throw RegisterError.invalid("--decision: say what was decided, in 1 to 2,000 characters") }
        try RequestLimits.storable(text, "the decision")
        let link = link?.trimmingCharacters(in: .whitespaces).nilIfEmpty
        if let link { try RequestLimits.link(link, field: "--link") }
        let groups = approvalRule(for: p, level: riskFloor(for: p) ?? riskOrder.first ?? "low").groups
        guard isAdmin(actor) || !groupsOf(actor).isDisjoint(with: groups) else {
            throw RegisterError.refused("\(actor) cannot record a review of \(p.id): its approvers (\(groups.joined(separator: ", "))) or an administrator can")
        }
        var payload = Value.Object([("quarter", .string(q.description)), ("policy", .string(p.id)), ("decision", .string(text))])
        if let link { payload.append("link", .string(link)) }
        try await store.append(AuditDraft(actor: actor, action: Register.reviewAction, subject: "policy:\(p.id)", payload: .object(payload), time: now))
        return PolicyReview(quarter: q.description, policy: p.id, decision: text, link: link, by: actor, at: now)
    }

    /// The reviews among audit events, in order.
    public static func reviews(in events: [AuditEvent]) -> [PolicyReview] {
        events.compactMap { e in
            guard e.action == reviewAction, let v = try? JSONReader.parse(Data(e.payload.utf8)),
                  let q = v["quarter"]?.stringValue, let p = v["policy"]?.stringValue, let d = v["decision"]?.stringValue else { return nil }
            return PolicyReview(quarter: q, policy: p, decision: d, link: v["link"]?.stringValue, by: e.actor, at: e.time)
        }
    }
}
