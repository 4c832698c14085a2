import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// The client side of the API's bodies reads back exactly what the server writes.
@Suite("The API's bodies, read back (RegisterContract)")
struct RegisterContractTests {
    let t = Date(timeIntervalSince1970: 1_795_000_000)

    func record() -> ExceptionRecord {
        var e = ExceptionRecord(
            id: 12, policy: "NET-001", category: "security", workspace: "shop", subjectKind: .device, resources: ["laptop-7", "b"], requester: "dev",
            conflicted: ["author"], reason: "vendor \"range\" ünïcode", requestedDays: 9, likelihood: .high, impact: .low, riskLevel: "high",
            mitigations: ["WAF"], evidence: [EvidenceFile(sha256: String(repeating: "a", count: 64), name: "scan.pdf", size: 7, addedBy: "dev", at: t)],
            approvals: [Approval(approver: "sam", comment: nil, at: t), Approval(approver: "pat", comment: "ok", at: t.addingTimeInterval(5))],
            rule: ApprovalRule(groups: ["security", "ciso"], minApprovals: 2, requiredGroups: ["ciso"]), status: .approved, createdAt: t,
            decidedAt: t.addingTimeInterval(5), expiresAt: t.addingTimeInterval(9 * 86_400), renews: 3, owner: "lee", proposedRisk: "medium", riskRaisedBy: "sam")
        e.untrusted = "its stored state is not the one the audit log records"
        return e
    }

    @Test func anExceptionRoundTripsEveryField() throws {
        let e = record()
        #expect(try RegisterContract.record(RegisterOutput.value(e, now: t)) == e)
        var bare = e
        bare.decidedAt = nil; bare.expiresAt = nil; bare.renews = nil; bare.owner = nil; bare.proposedRisk = nil; bare.riskRaisedBy = nil
        bare.untrusted = nil; bare.status = .pending; bare.subjectKind = .resource
        #expect(try RegisterContract.record(RegisterOutput.value(bare, now: t)) == bare)
    }

    @Test func aReportAndAnOutcomeRoundTrip() throws {
        let r = RegisterReport(from: t, to: nil, now: t.addingTimeInterval(60), total: 4, perPolicy: [.init(key: "NET-001", count: 3)],
                               perWorkspace: [.init(key: "shop", count: 4)], perRequester: [.init(key: "dev", count: 4)], renewals: 1,
                               medianApprovedDays: 6.5, activeNow: 2, expiringWithin7Days: ["EX-2"], reviewThreshold: 3,
                               reviewPolicies: [.init(key: "NET-001", count: 3)], orphaned: ["EX-4"])
        #expect(try RegisterContract.report(RegisterOutput.reportValue(r)) == r)
        let o = ExpiryOutcome(exception: record(), stillViolating: ["b"])
        #expect(try RegisterContract.outcome(RegisterContract.outcomeValue(o, now: t)) == o)
    }

    @Test func anAnswerOutsideTheContractNamesTheField() throws {
        guard case .object(var o) = RegisterOutput.value(record(), now: t) else { Issue.record("not an object"); return }
        o["days"] = .string("nine")
        #expect(throws: RegisterContract.Mismatch.self) { try RegisterContract.record(.object(o)) }
        do { _ = try RegisterContract.record(.object(o)); Issue.record("a text days was read") } catch { #expect(error.description.hasSuffix("days is not a whole number")) }
        o["days"] = .number(9)
        o["approvals"] = .array([["approver": "sam", "at": "yesterday", "comment": .null]])
        do { _ = try RegisterContract.record(.object(o)); Issue.record("a bad instant was read") } catch { #expect(error.description.hasSuffix("approvals[0].at is not an instant")) }
    }
}
