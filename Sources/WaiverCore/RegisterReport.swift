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
