import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

@Suite("Register rules, enforced in the core", .serialized)
struct RegisterRuleTests {
    @Test func nobodyApprovesTheirOwnRequest() async throws {
        let f = try Fixture()
        let e = try await f.request("NET-001", resources: ["sg"], by: "sam")  // sam is in security
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "sam", comment: nil, days: nil, now: t0) }
            == "sam cannot approve EX-1: they requested it (no one approves their own request)")
        #expect(await f.refusal { _ = try await f.register.reject(e.id, actor: "sam", comment: "x", now: t0) }?.contains("they requested it") == true)
    }

    @Test func theCommitAuthorCannotApprove() async throws {
        let f = try Fixture()
        let e = try await f.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg"], reason: "r", conflicted: ["pat"]),
                                       actor: "ci-bot", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "pat", comment: nil, days: nil, now: t0) }
            == "pat cannot approve EX-1: they authored the change it covers")
    }

    @Test func onlyRoutedGroupsMayApprove() async throws {
        let f = try Fixture()
        // Cost policies route to finance or engineering managers; security cannot approve them.
        let cost = try await f.request("COST-001")
        #expect(await f.refusal { _ = try await f.register.approve(cost.id, actor: "sam", comment: nil, days: nil, now: t0) }
            == "sam cannot approve EX-1: exceptions to COST-001 (cost, low risk) are decided by members of finance, engineering-managers")
        #expect(try await f.register.approve(cost.id, actor: "em", comment: nil, days: nil, now: t0).status == .approved)
        // A policy's own `exceptions.approvers` wins over routing: COST-002 names finance only.
        let big = try await f.request("COST-002")
        #expect(await f.refusal { _ = try await f.register.approve(big.id, actor: "em", comment: nil, days: nil, now: t0) }?.contains("members of finance") == true)
        // Unknown people are in no group.
        #expect(await f.refusal { _ = try await f.register.approve(big.id, actor: "stranger", comment: nil, days: nil, now: t0) } != nil)
    }

    @Test func riskLevelsComeFromLikelihoodTimesImpact() async throws {
        let f = try Fixture()
        let cases: [(RiskFactor, RiskFactor, String)] = [
            (.low, .low, "low"), (.low, .medium, "low"), (.medium, .low, "low"), (.high, .low, "medium"),
            (.medium, .medium, "medium"), (.medium, .high, "high"), (.high, .high, "critical"),
        ]
        for (l, i, level) in cases { #expect(try f.register.riskLevel(l, i) == level, "\(l) x \(i)") }
    }

    @Test func highRiskNeedsTwoDistinctApprovers() async throws {
        let f = try Fixture()
        let e = try await f.request("NET-001", likelihood: .medium, impact: .high)
        #expect(e.riskLevel == "high" && e.rule.minApprovals == 2)
        let once = try await f.register.approve(e.id, actor: "sam", comment: nil, days: nil, now: t0)
        #expect(once.status == .pending)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "sam", comment: nil, days: nil, now: t0) }
            == "sam already approved EX-1; it needs 2 distinct approvers")
        #expect(try await f.register.approve(e.id, actor: "pat", comment: nil, days: nil, now: t0).status == .approved)
    }

    @Test func criticalRiskEscalatesToTheCISO() async throws {
        let f = try Fixture()
        let e = try await f.request("NET-001", likelihood: .high, impact: .high)
        #expect(e.riskLevel == "critical")
        #expect(e.rule == ApprovalRule(groups: ["security", "ciso"], minApprovals: 2, requiredGroups: ["ciso"]))
        _ = try await f.register.approve(e.id, actor: "sam", comment: nil, days: nil, now: t0)
        let two = try await f.register.approve(e.id, actor: "pat", comment: nil, days: nil, now: t0)
        #expect(two.status == .pending)  // two approvers, but none from ciso
        #expect(f.register.missingApprovals(two) == "an approval from ciso (critical risk)")
        #expect(try await f.register.approve(e.id, actor: "ciso", comment: "accepted", days: nil, now: t0).status == .approved)
    }

    @Test func durationsAreCapped() async throws {
        let f = try Fixture()
        #expect(await f.refusal { _ = try await f.request("COST-001", days: 31) } == "31 days is past the cap of 30 days for COST-001 (waiver.yaml exceptions.max_days)")
        // NET-001 lowers the cap in its own exceptions block.
        let cap = f.register.maxDays(for: try await f.register.policy("NET-001"))
        #expect(cap < 30)
        #expect(await f.refusal { _ = try await f.request("NET-001", days: cap + 1) } == "\(cap + 1) days is past the cap of \(cap) days for NET-001 (policy NET-001 exceptions.max_days)")
        #expect(await f.refusal { _ = try await f.request(days: 0) } == "--days must be at least 1: every exception expires")
        #expect(try await f.request(days: nil).requestedDays == 14)  // default_days
    }

    @Test func requestsAreValidated() async throws {
        let f = try Fixture()
        #expect(await f.refusal { _ = try await f.request("NET-01") } == "unknown policy 'NET-01' (did you mean 'NET-001'?): not in the policy files, and no recorded check of workspace shop met a scanner rule of that id")
        #expect(await f.refusal { _ = try await f.request(reason: "  ") } == "a request needs a reason (--reason)")
        #expect(await f.refusal { _ = try await f.request(resources: []) } == "a request needs at least one resource (--resource ADDRESS)")
        #expect(await f.refusal { _ = try await f.request(workspace: "") } == "a workspace is required (--workspace)")
    }

    @Test func anApproverMayShortenButNotLengthen() async throws {
        let f = try Fixture()
        let e = try await f.request(days: 10)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: 20, now: t0) }?.contains("not lengthen") == true)
        let ok = try await f.register.approve(e.id, actor: "fin", comment: nil, days: 3, now: t0)
        #expect(ok.expiresAt == t0.addingTimeInterval(3 * 86_400))
    }

    @Test func theStateMachineRefusesIllegalTransitions() async throws {
        let f = try Fixture()
        let e = try await f.request()
        _ = try await f.register.reject(e.id, actor: "fin", comment: "use a smaller type", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "em", comment: nil, days: nil, now: t0) }
            == "EX-1 is rejected, which is final; a renewal is a new request (waiver request --renews EX-1)")
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "em", comment: "x", now: t0) }?.contains("is rejected, which is final") == true)
        let a = try await f.request()
        _ = try await f.register.approve(a.id, actor: "fin", comment: nil, days: nil, now: t0)
        #expect(await f.refusal { _ = try await f.register.reject(a.id, actor: "em", comment: "x", now: t0) }
            == "EX-2 is approved: it cannot become rejected (from approved it can become revoked or expired or closed)")
        for s in ExceptionStatus.allCases {
            for target in ExceptionStatus.allCases {
                #expect((s.refusal(to: target, id: "EX-1") == nil) == s.next.contains(target))
            }
        }
    }

    @Test func revokingAndRejectingNeedAComment() async throws {
        let f = try Fixture()
        let e = try await f.request()
        #expect(await f.refusal { _ = try await f.register.reject(e.id, actor: "fin", comment: " ", now: t0) } == "rejecting needs a comment (--comment) saying why")
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "fin", comment: "", now: t0) } == "revoking needs a comment (--comment) saying why")
    }

    @Test func revokeByApproverOrRequesterOnly() async throws {
        let f = try Fixture()
        let e = try await f.request()
        _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "sam", comment: "x", now: t0) }?.contains("only its requester, an administrator or members of finance") == true)
        let revoked = try await f.register.revoke(e.id, actor: "dev", comment: "migrated early", now: t0.addingTimeInterval(60))
        #expect(revoked.status == .revoked)
        #expect(revoked.expiresAt == t0.addingTimeInterval(60))
        #expect(!revoked.isActive(at: t0.addingTimeInterval(60)))
    }

    @Test func renewalIsANewRequestWithItsOwnReason() async throws {
        let f = try Fixture()
        let e = try await f.request()
        #expect(await f.refusal { _ = try await f.request(renews: e.id) }?.contains("only an approved or expired exception can be renewed") == true)
        _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        let same = "a renewal needs a reason of its own, not EX-1's again: say what changed and why the exception is still needed"
        #expect(await f.refusal { _ = try await f.request(renews: e.id) } == same)
        // Punctuation, case and spacing do not make a reason new.
        let previous = try #require(try await f.store.exception(id: e.id)?.reason)
        #expect(await f.refusal { _ = try await f.request(renews: e.id, reason: previous + ".") } == same)
        #expect(await f.refusal { _ = try await f.request(renews: e.id, reason: "  " + previous.uppercased() + "!!") } == same)
        #expect(await f.refusal { _ = try await f.request("NET-001", renews: e.id, reason: "new") }?.contains("keeps the policy and workspace") == true)
        #expect(await f.refusal { _ = try await f.request(renews: 42, reason: "new") } == "EX-42 not found (--renews)")
        let renewal = try await f.request(renews: e.id, reason: "The rewrite slipped to next sprint")
        #expect(renewal.renews == e.id && renewal.status == .pending)
        #expect(try await f.store.exception(id: e.id)?.status == .approved)  // never extended in place
    }

    @Test func aRenewalInheritsWhatItDoesNotSayFromTheRenewedException() async throws {
        let f = try Fixture()
        let person = try await f.register.request(ExceptionRequest(policy: "CTRL-HR-001", workspace: "", subjectKind: .person, resources: ["alex@example.com"],
                                                             reason: "background check pending"), actor: "dev", now: t0)
        #expect(person.workspace == "program")  // a program exception without a workspace
        _ = try await f.register.approve(person.id, actor: "sam", comment: nil, days: nil, now: t0)
        _ = try? await f.register.approve(person.id, actor: "pat", comment: nil, days: nil, now: t0)
        let renewal = try await f.register.request(ExceptionRequest(policy: "", workspace: "", resources: [], reason: "still pending", renews: person.id),
                                             actor: "dev", now: t0.addingTimeInterval(60))
        #expect(renewal.policy == "CTRL-HR-001" && renewal.workspace == "program" && renewal.subjectKind == .person)
        #expect(renewal.resources == ["alex@example.com"] && renewal.renews == person.id)
        // The subject of the renewed exception stays conflicted on its renewal.
        #expect(renewal.conflict(of: "alex@example.com") != nil)
        #expect(await f.refusal { _ = try await f.register.request(ExceptionRequest(policy: "", workspace: "shop", resources: ["r"], reason: "r"), actor: "dev", now: t0) }
                == "a request needs a policy (--policy)")
    }

    @Test func activeUntilTheExpiryInstantAndNotOneSecondAfter() async throws {
        let f = try Fixture()
        let e = try await f.request(days: 7)
        let approved = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        let expiry = t0.addingTimeInterval(7 * 86_400)
        #expect(approved.expiresAt == expiry)
        #expect(approved.isActive(at: expiry.addingTimeInterval(-1)))
        #expect(!approved.isActive(at: expiry))
        // The check sees the same boundary.
        func status(at now: Date) async throws -> ResultStatus {
            var report = CheckReport(workspace: "shop", unknownMode: .warn, findings: [
                Finding(policy: "COST-001", title: "t", severity: .medium, category: "cost", resource: "aws_instance.batch",
                        status: .blocking, message: "m", remediation: "", origin: .plan(file: "p")),
            ], resourceCount: 1, policies: [], compliant: [])
            try await f.register.applyExceptions(to: &report, now: now)
            return report.findings[0].status
        }
        await #expect(try status(at: expiry.addingTimeInterval(-1)) == .excepted)
        await #expect(try status(at: expiry) == .blocking)
        // Nothing to expire one second early; at the instant it is re-checked.
        #expect(try await f.register.expire(now: expiry.addingTimeInterval(-1), actor: "cron").isEmpty)
        #expect(try await f.register.expire(now: expiry, actor: "cron").count == 1)
    }

    @Test func pendingRequestsMarkFindingsPendingAndBlock() async throws {
        let f = try Fixture()
        _ = try await f.request()
        var report = CheckReport(workspace: "shop", unknownMode: .warn, findings: [
            Finding(policy: "COST-001", title: "t", severity: .medium, category: "cost", resource: "aws_instance.batch",
                    status: .blocking, message: "m", remediation: "", origin: .plan(file: "p")),
            Finding(policy: "COST-001", title: "t", severity: .medium, category: "cost", resource: "aws_instance.other",
                    status: .blocking, message: "m", remediation: "", origin: .plan(file: "p")),
        ], resourceCount: 2, policies: [], compliant: [])
        try await f.register.applyExceptions(to: &report, now: t0)
        #expect(report.findings.map(\.status) == [.pending, .blocking])
        #expect(report.findings[0].exception == "EX-1")
        #expect(!report.passed)
    }

    func record(_ f: Fixture, violations: [(String, String)], at: Date) async throws {
        _ = try await f.store.record(
            Evaluation(workspace: "shop", at: at, actor: "ci", verdict: "blocked", resourceCount: 2,
                       violations: violations.map { RecordedViolation(policy: $0.0, resource: $0.1, status: .blocking, digest: "d") }),
            event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:shop", payload: [:], time: at))
    }

    @Test func expiryReChecksAgainstTheLatestRecordedCheck() async throws {
        let f = try Fixture()
        let fixed = try await f.request(resources: ["aws_instance.fixed"], days: 1)
        let still = try await f.request(resources: ["aws_instance.still"], days: 1)
        let unchecked = try await f.request(resources: ["x"], workspace: "never-checked", days: 1)
        let person = try await f.request("CTRL-BGCHECK", resources: ["alice@example.com"], workspace: "program", days: 1, kind: .person)
        for e in [fixed, still, unchecked] { _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, now: t0) }
        _ = try await f.register.approve(person.id, actor: "sam", comment: nil, days: nil, now: t0)
        try await record(f, violations: [("COST-001", "aws_instance.still"), ("NET-001", "aws_instance.fixed")], at: t0.addingTimeInterval(3600))
        let outcomes = try await f.register.expire(now: t0.addingTimeInterval(86_400), actor: "cron")
        let byId = Dictionary(uniqueKeysWithValues: outcomes.map { ($0.exception.id, $0.exception.status) })
        #expect(byId == [fixed.id: .closed, still.id: .expired, unchecked.id: .expired, person.id: .expired])
        let actions = try await f.events().suffix(4).map(\.action)
        #expect(actions == ["exception.closed", "exception.expired", "exception.expired", "exception.expired"])
        await #expect(try f.store.verifyAudit().intact)
        #expect(try await f.register.expire(now: t0.addingTimeInterval(86_400), actor: "cron").isEmpty)  // nothing twice
    }

    @Test func reportCountsAndFlags() async throws {
        let f = try Fixture { $0.reviewThreshold = 2 }
        let a = try await f.request(resources: ["r1"], days: 4)
        let b = try await f.request(resources: ["r2"], days: 10)
        _ = try await f.request("NET-001", resources: ["sg"], by: "ops")
        _ = try await f.register.approve(a.id, actor: "fin", comment: nil, days: nil, now: t0)
        _ = try await f.register.approve(b.id, actor: "fin", comment: nil, days: nil, now: t0)
        let renewal = try await f.request(resources: ["r1"], renews: a.id, reason: "still needed")
        try await record(f, violations: [("COST-001", "r1")], at: t0)  // r2 no longer violates: b is orphaned
        let all = try await f.store.exceptions(ExceptionFilter())
        let active = try await f.store.exceptions(ExceptionFilter(statuses: [.approved]))
        let report = await RegisterReport.build(inPeriod: all, active: active, latest: ["shop": try #require(try await f.store.latestEvaluation(workspace: "shop"))],
                                          from: nil, to: nil, now: t0, reviewThreshold: 2)
        #expect(report.total == 4)
        #expect(report.perPolicy.map { "\($0.key)=\($0.count)" } == ["COST-001=3", "NET-001=1"])
        #expect(report.perRequester.map { "\($0.key)=\($0.count)" } == ["dev=3", "ops=1"])
        #expect(report.renewals == 1 && renewal.renews == a.id)
        #expect(report.medianApprovedDays == 7)
        #expect(report.activeNow == 2)
        #expect(report.expiringWithin7Days == ["EX-1"])
        #expect(report.reviewPolicies.map(\.key) == ["COST-001"])
        #expect(report.orphaned == ["EX-2"])
        let text = RegisterOutput.reportText(report, markdown: false)
        #expect(text.contains("Orphaned") && text.contains("COST-001"))
        #expect(RegisterOutput.reportValue(report)["orphaned"] == ["EX-2"])
    }

    @Test func instantsAndDurationsFailClosed() {
        #expect(parseInstant("2026-12-04") == Date(timeIntervalSince1970: 1_796_342_400))
        #expect(parseInstant("2026-12-04T00:00:00Z") == Date(timeIntervalSince1970: 1_796_342_400))
        for bad in ["", "never", "2026-13-01", "2026-02-30", "12/04/2026", "2026-12-4"] { #expect(parseInstant(bad) == nil, "\(bad)") }
    }
}
