import Foundation
import GRDB
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

let t0 = Date(timeIntervalSince1970: 1_795_348_800)  // 2026-11-22T08:00:00Z

/// A register on a real SQLite file in a temporary directory, with the repository's policies and
/// groups: security = sam, pat; finance = fin; engineering-managers = em; ciso = ciso.
struct Fixture {
    let dir = TempDir()
    let store: SQLiteRegisterStore
    let register: Register

    init(configure: (inout WaiverCore.Configuration) -> Void = { _ in }) throws {
        var config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        config.groups = ["security": ["sam", "pat"], "finance": ["fin"], "engineering-managers": ["em"], "ciso": ["ciso"]]
        configure(&config)
        store = try SQLiteRegisterStore(path: dir.path + "/register.sqlite")
        let extra = Policy(id: "CTRL-BGCHECK", title: "Background check before hire", category: "security", severity: .high, rule: .external)
        register = Register(store: store, configuration: config, policies: try PolicyLoader.load(directory: repoRoot + "/policies") + [extra])
    }

    func request(_ policy: String = "COST-001", resources: [String] = ["aws_instance.batch"], workspace: String = "shop",
                 by actor: String = "dev", days: Int? = nil, likelihood: RiskFactor? = .low, impact: RiskFactor? = .low,
                 renews: Int? = nil, reason: String = "Batch job needs the memory until the rewrite lands",
                 kind: SubjectKind = .resource, at now: Date = t0) async throws -> ExceptionRecord {
        try await register.request(ExceptionRequest(policy: policy, workspace: workspace, subjectKind: kind, resources: resources, reason: reason,
                                              days: days, likelihood: likelihood, impact: impact, renews: renews), actor: actor, now: now)
    }

    func refusal(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let e as RegisterError {
            return e.description
        } catch {
            return "unexpected \(error)"
        }
    }

    func events() async throws -> [AuditEvent] { try await store.auditEvents(subject: nil) }
}

@Suite("Register store (conformance suite for every RegisterStore)", .serialized)
struct RegisterStoreTests {
    @Test func roundTripsEveryField() async throws {
        let f = try Fixture()
        let e = try await f.request("NET-001", resources: ["a.b", "c.d"], likelihood: .high, impact: .medium)
        let read = try await #require(try await f.store.exception(id: e.id))
        #expect(read == e)
        #expect(read.resources == ["a.b", "c.d"])
        #expect(read.rule.groups == ["security"])
        #expect(read.riskLevel == "high")
        #expect(read.status == .pending && read.expiresAt == nil)
    }

    @Test func aRefusedChangeWritesNothing() async throws {
        let f = try Fixture()
        let e = try await f.request()
        let before = try await f.events().count
        await #expect(throws: RegisterError.self) {
            _ = try await f.store.modify(id: e.id) { r in
                r.status = .approved
                throw RegisterError.refused("no")
            }
        }
        await #expect(try await f.store.exception(id: e.id)?.status == .pending)
        await #expect(try f.events().count == before)
    }

    @Test func modifyingAMissingExceptionIsNotFound() async throws {
        let f = try Fixture()
        #expect(await f.refusal { _ = try await f.store.modify(id: 99) { _ in [] } } == "EX-99 not found")
    }

    @Test func coveringFindsOnlyLiveExceptionsOfTheWorkspace() async throws {
        let f = try Fixture()
        let a = try await f.request(resources: ["r1"])
        _ = try await f.request(resources: ["r1"], workspace: "other")
        let c = try await f.request(resources: ["r2"])
        _ = try await f.register.reject(c.id, actor: "fin", comment: "no", now: t0)
        let d = try await f.request(resources: ["r4", "r3"])
        _ = try await f.register.approve(d.id, actor: "fin", comment: "ok", days: 7, now: t0)
        let found = try await f.store.covering(workspace: "shop", pairs: [("COST-001", "r1"), ("COST-001", "r2"), ("NET-001", "r1"), ("COST-001", "r3")])
        #expect(found.map(\.id) == [a.id, d.id])
        // Each exception comes back whole: its resources in their order, and its approvals.
        #expect(found.map(\.resources) == [["r1"], ["r4", "r3"]])
        #expect(found.map { $0.approvals.map(\.approver) } == [[], ["fin"]])
        #expect(found.map(\.status) == [.pending, .approved])
    }

    @Test func aLimitedListLoadsTheChildRowsOfTheListedExceptionsOnly() async throws {
        let f = try Fixture()
        let a = try await f.request(resources: ["r1", "r2"])
        let b = try await f.request(resources: ["r3"])
        _ = try await f.register.approve(b.id, actor: "fin", comment: nil, days: 3, now: t0)
        let first = try await f.store.exceptions(ExceptionFilter(limit: 1))
        #expect(first.map(\.id) == [a.id])
        #expect(first.map(\.resources) == [["r1", "r2"]])
        let approved = try await f.store.exceptions(ExceptionFilter(statuses: [.approved], limit: 5))
        #expect(approved.map(\.id) == [b.id])
        #expect(approved.map { $0.approvals.map(\.approver) } == [["fin"]])
    }

    @Test func filtersExceptions() async throws {
        let f = try Fixture()
        let a = try await f.request(resources: ["r1"], at: t0)
        let b = try await f.request("NET-001", resources: ["r2"], workspace: "other", at: t0.addingTimeInterval(86_400))
        _ = try await f.register.approve(a.id, actor: "fin", comment: nil, days: 3, now: t0)
        await #expect(try await f.store.exceptions(ExceptionFilter(statuses: [.approved])).map(\.id) == [a.id])
        await #expect(try await f.store.exceptions(ExceptionFilter(policy: "NET-001")).map(\.id) == [b.id])
        await #expect(try await f.store.exceptions(ExceptionFilter(workspace: "shop")).map(\.id) == [a.id])
        await #expect(try await f.store.exceptions(ExceptionFilter(expiringBefore: t0.addingTimeInterval(4 * 86_400))).map(\.id) == [a.id])
        await #expect(try await f.store.exceptions(ExceptionFilter(expiringBefore: t0.addingTimeInterval(3 * 86_400))).isEmpty)
        await #expect(try await f.store.exceptions(ExceptionFilter(createdFrom: t0.addingTimeInterval(1))).map(\.id) == [b.id])
        await #expect(try await f.store.exceptions(ExceptionFilter(limit: 1)).count == 1)
    }

    @Test func recordsEvaluationsAndReturnsTheLatest() async throws {
        let f = try Fixture()
        let v = [RecordedViolation(policy: "P", resource: "r", status: .blocking, digest: "d")]
        _ = try await f.store.record(Evaluation(workspace: "shop", at: t0, actor: "ci", verdict: "blocked", resourceCount: 3, violations: v),
                               event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:shop", payload: [:], time: t0))
        let second = try await f.store.record(Evaluation(workspace: "shop", at: t0, actor: "ci", verdict: "pass", resourceCount: 3, violations: []),
                                        event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:shop", payload: [:], time: t0))
        let latest = try await #require(try await f.store.latestEvaluation(workspace: "shop"))
        #expect(latest.id == second && latest.verdict == "pass" && latest.violations.isEmpty)
        await #expect(try await f.store.latestEvaluation(workspace: "none") == nil)
    }

    @Test func recordingACheckDropsTheWorkspacesChecksPastRetention() async throws {
        let f = try Fixture()
        let v = [RecordedViolation(policy: "P", resource: "r", status: .blocking, digest: "d")]
        func record(_ w: String, _ days: Double, pruneBefore: Double? = nil) async throws -> Int {
            let at = t0.addingTimeInterval(days * 86_400)
            return try await f.store.record(Evaluation(workspace: w, at: at, actor: "ci", verdict: "blocked", resourceCount: 1, violations: v),
                                      event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:\(w)", payload: [:], time: at),
                                      pruneBefore: pruneBefore.map { t0.addingTimeInterval($0 * 86_400) })
        }
        _ = try await record("shop", 0)
        let kept = try await record("shop", 10)
        _ = try await record("other", 0)
        let latest = try await record("shop", 100, pruneBefore: 10)
        let q = try DatabaseQueue(path: f.store.path)
        let (perWorkspace, violations) = try await q.read { db in
            (try Row.fetchAll(db, sql: "SELECT workspace, group_concat(id) FROM evaluation GROUP BY workspace ORDER BY workspace")
                .map { "\($0[0] as String)=\($0[1] as String)" },
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM evaluationViolation") ?? -1)
        }
        // Only shop's check from before the cutoff went, with its violation; other workspaces keep theirs.
        #expect(perWorkspace == ["other=3", "shop=\(kept),\(latest)"])
        #expect(violations == 3)
        let event = try await #require(try f.events().last)
        #expect(event.payload.contains("\"pruned_evaluations\":1"))
        // A workspace's latest check survives any retention: it is the one just recorded.
        _ = try await record("other", 1000, pruneBefore: 1000)
        await #expect(try await f.store.latestEvaluation(workspace: "other")?.at == t0.addingTimeInterval(1000 * 86_400))
    }

    @Test func everyChangeIsAnEventAndTheChainVerifies() async throws {
        let f = try Fixture()
        let e = try await f.request()
        _ = try await f.register.approve(e.id, actor: "fin", comment: "fine", days: nil, now: t0)
        let events = try await f.events()
        #expect(events.map(\.action) == ["exception.requested", "exception.approved"])
        #expect(events.map(\.seq) == [1, 2])
        #expect(events[0].prevHash == AuditChain.genesis)
        #expect(events[1].prevHash == events[0].hash)
        #expect(events.allSatisfy { $0.subject == "EX-1" })
        #expect(try f.store.verifyAudit() == AuditVerification(events: 2, head: AuditAnchor(seq: 2, hash: events[1].hash)))
    }

    @Test func reopensAnExistingRegister() async throws {
        let f = try Fixture()
        let e = try await f.request()
        let again = try SQLiteRegisterStore(path: f.store.path)
        await #expect(try again.exception(id: e.id) == e)
    }

    @Test func theDatabaseRefusesEditsOfTheAuditLog() async throws {
        let f = try Fixture()
        _ = try await f.request()
        let q = try DatabaseQueue(path: f.store.path)
        #expect(throws: DatabaseError.self) { try q.write { try $0.execute(sql: "UPDATE auditEvent SET actor = 'x'") } }
        #expect(throws: DatabaseError.self) { try q.write { try $0.execute(sql: "DELETE FROM auditEvent") } }
    }
}

@Suite("Tampering with the SQLite file is detected", .serialized)
struct TamperTests {
    /// A register with five events; returns the file path.
    func registerWithEvents() async throws -> (Fixture, String) {
        let f = try Fixture()
        for i in 0..<5 { _ = try await f.request(resources: ["r\(i)"]) }
        return (f, f.store.path)
    }


    @Test func anEditedEventIsNamed() async throws {
        let (f, path) = try await registerWithEvents()
        try tamper(path, "UPDATE auditEvent SET actor = 'mallory' WHERE seq = 3")
        let v = try f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("content does not match its hash") == true)
    }

    @Test func anEditWithARecomputedHashBreaksTheNextLink() async throws {
        let (f, path) = try await registerWithEvents()
        let e = try await #require(try f.events().first { $0.seq == 2 })
        let forged = AuditChain.hash(seq: 2, time: Int64(e.time.timeIntervalSince1970), actor: "mallory", action: e.action,
                                     subject: e.subject, payload: e.payload, prevHash: e.prevHash)
        try tamper(path, "UPDATE auditEvent SET actor = 'mallory', hash = '\(forged)' WHERE seq = 2")
        let v = try f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("link to event 2") == true)
    }

    @Test func eventsCutFromTheEndNeedAnAnchorToBeSeen() async throws {
        let (f, path) = try await registerWithEvents()
        let before = try f.store.verifyAudit()
        let anchor = try #require(before.head)
        let last = try await f.events().last?.hash
        #expect(anchor.seq == 5 && anchor.hash == last)
        try tamper(path, "DELETE FROM auditEvent WHERE seq >= 4")
        // The shorter log is still a valid chain (but the exceptions the cut events changed no longer match it)...
        #expect(try f.store.verifyAudit().firstBad == nil)
        #expect(try f.store.verifyAudit().findings.isEmpty == false)
        #expect(try f.store.verifyAudit().head?.seq == 3)
        // ...but not against the anchor kept from before.
        let v = try f.store.verifyAudit(anchors: [anchor])
        #expect(v.firstBad == 4)
        #expect(v.problem == "the log ends at event 3, but event 5 was anchored: events were cut from the end")
    }

    @Test func aRewrittenTailDoesNotMatchItsAnchor() async throws {
        let (f, path) = try await registerWithEvents()
        let anchor = try #require(try f.store.verifyAudit().head)
        let early = try #require(try f.store.verifyAudit(anchors: [anchor]).head)
        #expect(early == anchor)
        // Cut the last event and write a new, valid fifth event in its place.
        try tamper(path, "DELETE FROM auditEvent WHERE seq = 5")
        _ = try await f.request(resources: ["forged"])
        #expect(try f.store.verifyAudit().firstBad == nil)
        let v = try f.store.verifyAudit(anchors: [AuditAnchor(seq: 2, hash: try await f.events()[1].hash), anchor])
        #expect(v.firstBad == 5)
        #expect(v.problem?.contains("not the one anchored as 5:") == true)
        #expect(v.head?.seq == 4)
    }

    @Test(arguments: [
        ("12:" + String(repeating: "ab", count: 32), true), ("1:" + String(repeating: "AB", count: 32), true),
        ("0:" + String(repeating: "a", count: 64), false), ("12:" + String(repeating: "a", count: 63), false),
        ("12:" + String(repeating: "g", count: 64), false), ("12" + String(repeating: "a", count: 64), false),
        ("x:" + String(repeating: "a", count: 64), false), ("", false),
    ])
    func anchorsParseOnlyWellFormed(_ text: String, _ valid: Bool) {
        let a = AuditAnchor(text)
        #expect((a != nil) == valid)
        if let a { #expect(a.description == text.lowercased()) }
    }

    @Test func aDeletedEventIsNamed() async throws {
        let (f, path) = try await registerWithEvents()
        try tamper(path, "DELETE FROM auditEvent WHERE seq = 2")
        let v = try f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("event 2 is missing") == true)
    }

    @Test func reorderedEventsAreNamed() async throws {
        let (f, path) = try await registerWithEvents()
        // Swap the contents of events 2 and 3 (keeping sequence numbers in place).
        try tamper(path, """
            UPDATE auditEvent SET seq = -2 WHERE seq = 2; UPDATE auditEvent SET seq = 2 WHERE seq = 3; UPDATE auditEvent SET seq = 3 WHERE seq = -2;
            """)
        let v = try f.store.verifyAudit()
        #expect(v.firstBad == 2)
    }

    @Test func anUntouchedLogVerifies() async throws {
        let (f, _) = try await registerWithEvents()
        let last = try await #require(try f.events().last)
        #expect(try f.store.verifyAudit() == AuditVerification(events: 5, head: AuditAnchor(seq: 5, hash: last.hash)))
    }
}
