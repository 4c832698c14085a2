import Foundation
import GRDB
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverPostgres
@testable import WaiverStore

/// Where a conformance test keeps its register.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite, postgres
    var testDescription: String { rawValue }
}

/// `$DATABASE_URL`: a PostgreSQL server the tests may create databases on (`.ci/run` starts one).
let postgresURL = ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
let inCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// Runs SQL on a PostgreSQL database with psql; its output, or an error with psql's message.
@discardableResult
func psql(_ url: String, _ sql: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw PsqlError(message: message) }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

struct PsqlError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A new, empty PostgreSQL database for one test; its URL. Nil (and a note) when no server is
/// configured outside CI; in CI a missing server fails the test.
func freshPostgresDatabase() throws -> String? {
    guard let base = postgresURL else {
        if inCI { Issue.record("DATABASE_URL is not set: CI must run the PostgreSQL conformance tests (.ci/run starts a server)") }
        else { print("note: DATABASE_URL is not set: the PostgreSQL cases of the conformance suite are skipped") }
        return nil
    }
    let name = "waiver_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
    try psql(base, "CREATE DATABASE \(name)")
    guard var c = URLComponents(string: base) else { throw PsqlError(message: "DATABASE_URL is not a URL") }
    c.path = "/" + name
    return c.string
}

/// A register on one kind of store with the example configuration and policies.
struct StoreFixture {
    let kind: StoreKind
    let dir: TempDir
    let store: any RegisterStore
    let register: Register
    /// The SQLite file or the PostgreSQL URL, for the tests that reach behind the store.
    let location: String

    /// Nil when the kind is PostgreSQL and no server is configured (outside CI).
    static func make(_ kind: StoreKind, configure: (inout WaiverCore.Configuration) -> Void = { _ in }) async throws -> StoreFixture? {
        var location = ""
        let store: any RegisterStore
        let dir = TempDir()
        switch kind {
        case .memory: store = InMemoryRegisterStore()
        case .sqlite:
            location = dir.path + "/register.sqlite"
            store = try SQLiteRegisterStore(path: location)
        case .postgres:
            guard let url = try freshPostgresDatabase() else { return nil }
            location = url
            store = try await PostgresRegisterStore(url: try PostgresURL(url))
        }
        return try StoreFixture(kind: kind, dir: dir, store: store, location: location, configure: configure)
    }

    private init(kind: StoreKind, dir: TempDir, store: any RegisterStore, location: String, configure: (inout WaiverCore.Configuration) -> Void) throws {
        self.kind = kind
        self.dir = dir
        self.store = store
        self.location = location
        var config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        config.groups = ["security": ["sam", "pat"], "finance": ["fin"], "engineering-managers": ["em"], "ciso": ["ciso"]]
        configure(&config)
        register = Register(store: store, configuration: config, policies: try PolicyLoader.load(directory: repoRoot + "/policies"))
    }

    func request(_ policy: String = "COST-001", resources: [String] = ["aws_instance.batch"], workspace: String = "shop",
                 by actor: String = "dev", days: Int? = nil, at now: Date = t0) async throws -> ExceptionRecord {
        try await register.request(ExceptionRequest(policy: policy, workspace: workspace, resources: resources,
                                                    reason: "Batch job needs the memory until the rewrite lands", days: days,
                                                    likelihood: .low, impact: .low), actor: actor, now: now)
    }

    func refusal(_ body: () async throws -> Void) async -> String? { await WaiverTests.refusal(body) }

    func events() async throws -> [AuditEvent] { try await store.auditEvents(subject: nil) }

    /// Changes a row behind the store's back (SQLite through GRDB, PostgreSQL through psql).
    func tamperRow(_ sqlite: String, postgres: String) throws {
        switch kind {
        case .memory: break
        case .sqlite: try tamper(location, sqlite)
        case .postgres: try psql(location, postgres)
        }
    }
}

/// The conformance suite: every test runs unchanged on the in-memory store, SQLite and PostgreSQL.
@Suite("Register store conformance (in-memory, SQLite, PostgreSQL)", .serialized)
struct RegisterStoreConformanceTests {
    @Test(arguments: StoreKind.allCases) func roundTripsEveryField(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.register.request(ExceptionRequest(
            policy: "NET-001", workspace: "shop", subjectKind: .resource, resources: ["a.b", "c.d"], reason: "vendor \"range\" ünïcode",
            days: 5, likelihood: .high, impact: .medium, mitigations: ["WAF", "alerting"], conflicted: ["pat"]), actor: "dev", now: t0)
        let read = try #require(try await f.store.exception(id: e.id))
        #expect(read == e)
        #expect(read.resources == ["a.b", "c.d"])
        #expect(read.mitigations == ["WAF", "alerting"])
        #expect(read.conflicted.contains("pat"))
        #expect(read.rule.groups == ["security"])
        #expect(read.riskLevel == "high")
        #expect(read.status == .pending && read.expiresAt == nil && read.untrusted == nil)
        let approved = try await f.register.approve(e.id, actor: "sam", comment: "ok", days: 3, now: t0.addingTimeInterval(60))
        #expect(try await f.store.exception(id: e.id) == approved)
        #expect(approved.approvals == [Approval(approver: "sam", comment: "ok", at: t0.addingTimeInterval(60))] && approved.requestedDays == 3)
        let cost = try await f.request(days: 4)
        let active = try await f.register.approve(cost.id, actor: "fin", comment: nil, days: nil, now: t0.addingTimeInterval(60))
        #expect(try await f.store.exception(id: cost.id) == active)
        #expect(active.status == .approved && active.expiresAt == t0.addingTimeInterval(60 + 4 * 86_400) && active.decidedAt == t0.addingTimeInterval(60))
    }

    /// The ticket, the request's origin and the evidence's display text are kept by every store, are
    /// part of the state the log records (a changed ticket is caught), and filter by ticket.
    @Test(arguments: StoreKind.allCases) func keepsTicketsOriginsAndEvidenceText(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let origin = Provenance(declaredCommitAuthor: "ann", commit: "9f1c2e7", runURL: "https://ci.example.com/runs/77",
                                changeURL: "https://git.example.com/shop/pull/12")
        let e = try await f.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.batch"],
                                                              reason: "quarter end", provenance: origin, ticket: "INC-42"), actor: "dev", now: t0)
        #expect(e.ticket == "INC-42")
        #expect(e.origin == RequestOrigin(commit: "9f1c2e7", runURL: "https://ci.example.com/runs/77", changeURL: "https://git.example.com/shop/pull/12",
                                          commitAuthor: "ann"))
        #expect(e.conflicted == ["ann"])
        let file = EvidenceFile(sha256: String(repeating: "a", count: 64), name: "byod.pdf", size: 10, addedBy: "dev", at: t0,
                                displayText: "User has signed a BYOD agreement")
        _ = try await f.register.addEvidence(e.id, file: file, actor: "dev")
        let read = try #require(try await f.store.exception(id: e.id))
        #expect(read.ticket == "INC-42" && read.origin == e.origin && read.untrusted == nil)
        #expect(read.evidence.map(\.displayText) == ["User has signed a BYOD agreement"])
        _ = try await f.request(resources: ["other"])
        #expect(try await f.store.exceptions(ExceptionFilter(ticket: "INC-42")).map(\.id) == [e.id])
        #expect(try await f.store.exceptions(ExceptionFilter(ticket: "INC-43")).isEmpty)
        // A ticket changed behind the log's back is named, and the exception is no longer trusted.
        try f.tamperRow("UPDATE exception SET ticket = 'INC-1' WHERE id = \(e.id)", postgres: "UPDATE exception SET ticket = 'INC-1' WHERE id = \(e.id)")
        if kind != .memory { #expect(try await f.store.exception(id: e.id)?.untrusted?.contains("ticket") == true) }
    }

    @Test(arguments: StoreKind.allCases) func aRefusedChangeWritesNothing(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.request()
        let before = try await f.events().count
        await #expect(throws: RegisterError.self) {
            _ = try await f.store.modify(id: e.id) { r in
                r.status = .approved
                throw RegisterError.refused("no")
            }
        }
        #expect(try await f.store.exception(id: e.id)?.status == .pending)
        #expect(try await f.events().count == before)
    }

    @Test(arguments: StoreKind.allCases) func aChangeOfScopeOrWithoutAnEventIsRefused(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.request()
        #expect(await f.refusal { _ = try await f.store.modify(id: e.id) { r in r.resources = ["other"]; return [] } }?.contains("scope") == true)
        #expect(await f.refusal { _ = try await f.store.modify(id: e.id) { r in r.status = .approved; return [] } }?.contains("without an audit event") == true)
        #expect(await f.refusal { _ = try await f.store.modify(id: 99) { _ in [] } } == "EX-99 not found")
        #expect(try await f.store.exception(id: e.id) == e)
    }

    @Test(arguments: StoreKind.allCases) func coveringFindsOnlyLiveExceptionsOfTheWorkspace(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let a = try await f.request(resources: ["r1"])
        _ = try await f.request(resources: ["r1"], workspace: "other")
        let c = try await f.request(resources: ["r2"])
        _ = try await f.register.reject(c.id, actor: "fin", comment: "no", now: t0)
        let d = try await f.request(resources: ["r4", "r3"])
        _ = try await f.register.approve(d.id, actor: "fin", comment: "ok", days: 7, now: t0)
        let found = try await f.store.covering(workspace: "shop", pairs: [("COST-001", "r1"), ("COST-001", "r2"), ("NET-001", "r1"), ("COST-001", "r3")])
        #expect(found.map(\.id) == [a.id, d.id])
        #expect(found.map(\.resources) == [["r1"], ["r4", "r3"]])
        #expect(found.map { $0.approvals.map(\.approver) } == [[], ["fin"]])
        #expect(found.map(\.status) == [.pending, .approved])
        #expect(try await f.store.covering(workspace: "shop", pairs: []).isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func filtersAndLimits(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let a = try await f.request(resources: ["r1", "r2"], at: t0)
        let b = try await f.request("NET-001", resources: ["r3"], workspace: "other", by: "ann", at: t0.addingTimeInterval(86_400))
        _ = try await f.register.approve(a.id, actor: "fin", comment: nil, days: 3, now: t0)
        #expect(try await f.store.exceptions(ExceptionFilter(statuses: [.approved])).map(\.id) == [a.id])
        #expect(try await f.store.exceptions(ExceptionFilter(statuses: [.approved, .pending])).map(\.id) == [a.id, b.id])
        #expect(try await f.store.exceptions(ExceptionFilter(policy: "NET-001")).map(\.id) == [b.id])
        #expect(try await f.store.exceptions(ExceptionFilter(workspace: "shop")).map(\.id) == [a.id])
        #expect(try await f.store.exceptions(ExceptionFilter(requester: "ann")).map(\.id) == [b.id])
        #expect(try await f.store.exceptions(ExceptionFilter(expiringBefore: t0.addingTimeInterval(4 * 86_400))).map(\.id) == [a.id])
        #expect(try await f.store.exceptions(ExceptionFilter(expiringBefore: t0.addingTimeInterval(3 * 86_400))).isEmpty)
        #expect(try await f.store.exceptions(ExceptionFilter(createdFrom: t0.addingTimeInterval(1))).map(\.id) == [b.id])
        #expect(try await f.store.exceptions(ExceptionFilter(createdBefore: t0.addingTimeInterval(1))).map(\.id) == [a.id])
        let first = try await f.store.exceptions(ExceptionFilter(limit: 1))
        #expect(first.map(\.id) == [a.id])
        #expect(first.map(\.resources) == [["r1", "r2"]])
        #expect(first.map { $0.approvals.map(\.approver) } == [["fin"]])
        #expect(try await f.store.exceptions(ExceptionFilter(limit: 0)).isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func recordsChecksKeepsTheLatestAndPrunesPastRetention(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let v = [RecordedViolation(policy: "P", resource: "r", status: .blocking, digest: "d", message: "m", severity: .high, category: "cost"),
                 RecordedViolation(policy: "Q", resource: "s", status: .excepted, digest: "e")]
        func record(_ w: String, _ days: Double, pruneBefore: Double? = nil, violations: [RecordedViolation]? = nil) async throws -> Int {
            let at = t0.addingTimeInterval(days * 86_400)
            return try await f.store.record(Evaluation(workspace: w, at: at, actor: "ci", verdict: "blocked", resourceCount: 3, violations: violations ?? v),
                                            event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:\(w)", payload: [:], time: at),
                                            pruneBefore: pruneBefore.map { t0.addingTimeInterval($0 * 86_400) })
        }
        _ = try await record("shop", 0)
        _ = try await record("shop", 10)
        _ = try await record("other", 0)
        #expect(try await f.store.recordedRule(workspace: "shop", policy: "P")?.severity == .high)
        #expect(try await f.store.recordedRule(workspace: "shop", policy: "P")?.category == "cost")
        #expect(try await f.store.recordedRule(workspace: "shop", policy: "none") == nil)
        let latest = try await record("shop", 100, pruneBefore: 10, violations: [])
        let read = try #require(try await f.store.latestEvaluation(workspace: "shop"))
        #expect(read.id == latest && read.violations.isEmpty && read.at == t0.addingTimeInterval(100 * 86_400))
        let event = try #require(try await f.events().last)
        #expect(event.payload.contains("\"pruned_evaluations\":1"))
        #expect(event.payload.contains("\"evaluation\":\(latest)"))
        // The pruned check's violations went with it; the others' stayed.
        switch kind {
        case .sqlite: #expect(try await DatabaseQueue(path: f.location).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM evaluationViolation") } == 4)
        case .postgres: #expect(try psql(f.location, "SELECT count(*) FROM evaluation_violation") == "4")
        case .memory: break
        }
        let other = try #require(try await f.store.latestEvaluation(workspace: "other"))
        #expect(other.violations == v)
        #expect(try await f.store.latestEvaluation(workspace: "none") == nil)
    }

    /// PostgreSQL's text cannot hold U+0000 and SQLite's can: the register refuses it in every text it
    /// keeps, naming the field, so no store accepts what another would fail on with a driver error.
    @Test(arguments: StoreKind.allCases) func aNULCharacterIsRefusedByNameOnEveryStore(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        func ask(_ change: (inout ExceptionRequest) -> Void) async -> String? {
            var r = ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.batch"], reason: "needed", likelihood: .low, impact: .low)
            change(&r)
            return await f.refusal { _ = try await f.register.request(r, actor: "dev", now: t0) }
        }
        #expect(await ask { $0.reason = "needed\u{0}" } == "the reason contains a NUL character (U+0000), which the register does not store")
        #expect(await ask { $0.resources = ["aws_instance.a\u{0}b"] }?.hasPrefix("a resource address contains a NUL character") == true)
        #expect(await ask { $0.mitigations = ["WAF\u{0}"] }?.hasPrefix("a mitigation contains a NUL character") == true)
        #expect(await ask { $0.workspace = "sh\u{0}op" }?.hasPrefix("a workspace is a name") == true)
        #expect(await ask { $0.policy = "COST\u{0}" }?.hasPrefix("the policy contains a NUL character") == true)
        // A filter or a subject with one matches nothing (PostgreSQL cannot compare it).
        #expect(try await f.store.exceptions(ExceptionFilter(workspace: "sh\u{0}op")).isEmpty)
        #expect(try await f.store.auditEvents(subject: "EX-1\u{0}").isEmpty)
        #expect(await f.refusal { _ = try await f.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["x"], reason: "r"), actor: "de\u{0}v", now: t0) }?
            .hasPrefix("the actor contains a NUL character") == true)
        let e = try await f.request()
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "fin", comment: "ok\u{0}", days: nil, now: t0) }?.hasPrefix("the comment contains a NUL character") == true)
        #expect(await f.refusal { _ = try await f.register.reject(e.id, actor: "fin", comment: "no\u{0}", now: t0) }?.hasPrefix("the comment contains a NUL character") == true)
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "dev", comment: "no\u{0}", now: t0) }?.hasPrefix("the comment contains a NUL character") == true)
        let file = EvidenceFile(sha256: String(repeating: "a", count: 64), name: "scan\u{0}.pdf", size: 1, addedBy: "dev", at: t0)
        #expect(await f.refusal { _ = try await f.register.addEvidence(e.id, file: file, actor: "dev") }?.hasPrefix("the evidence name contains a NUL character") == true)
        // A plan's violating values are shown as reported, with a NUL written as the visible escape \u0000;
        // an address with one is refused.
        let report = CheckReport(workspace: "shop", unknownMode: .warn, findings: [], resourceCount: 1, policies: [], compliant: [])
        let odd = RecordedViolation(policy: "COST-001", resource: "aws_instance.batch", status: .blocking, digest: "d", message: "user_data: \"a\u{0}b\"")
        _ = try await f.register.recordCheck(report, violations: [odd], actor: "ci", now: t0)
        #expect(try await f.store.latestEvaluation(workspace: "shop")?.violations.first?.message == "user_data: \"a\\u0000b\"")
        let badAddress = RecordedViolation(policy: "COST-001", resource: "aws_instance.\u{0}", status: .blocking, digest: "d")
        #expect(await f.refusal { _ = try await f.register.recordCheck(report, violations: [badAddress], actor: "ci", now: t0) }?
            .hasPrefix("a resource address contains a NUL character") == true)
        #expect(try await f.store.exceptions(ExceptionFilter()).count == 1)
        #expect(try await f.store.exception(id: e.id) == e)
    }

    @Test(arguments: StoreKind.allCases) func filingAndRecordingAreOneTransaction(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let prepared = try await f.register.prepare(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["x"], reason: "r"), actor: "dev", now: t0)
        struct Boom: Error {}
        await #expect(throws: Boom.self) { _ = try await f.store.insert([prepared]) { _ in throw Boom() } }
        #expect(try await f.store.exceptions(ExceptionFilter()).isEmpty)
        #expect(try await f.events().isEmpty)
        let (filed, evaluation) = try await f.store.insert([prepared]) { stored in
            CheckRecording(evaluation: Evaluation(workspace: "shop", at: t0, actor: "ci", verdict: "pending", resourceCount: 1, violations: []),
                           event: AuditDraft(actor: "ci", action: "check.recorded", subject: "workspace:shop", payload: ["filed": .number(Double(stored.count))], time: t0),
                           pruneBefore: nil)
        }
        #expect(filed.map(\.displayId) == ["EX-1"])
        #expect(try await f.store.latestEvaluation(workspace: "shop")?.id == evaluation)
        #expect(try await f.events().map(\.action) == ["exception.requested", "check.recorded"])
    }

    @Test(arguments: StoreKind.allCases) func everyChangeIsAnEventAndTheChainVerifies(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.request()
        _ = try await f.register.approve(e.id, actor: "fin", comment: "fine", days: nil, now: t0)
        try await f.store.append(AuditDraft(actor: "auditor", action: "audit.exported", subject: "audit", payload: [:], time: t0))
        let events = try await f.events()
        #expect(events.map(\.action) == ["exception.requested", "exception.approved", "audit.exported"])
        #expect(events.map(\.seq) == [1, 2, 3])
        #expect(events[0].prevHash == AuditChain.genesis)
        #expect(events[1].prevHash == events[0].hash)
        #expect(try await f.store.auditEvents(subject: "EX-1").map(\.seq) == [1, 2])
        #expect(try await f.store.auditEvents(subject: nil, last: 1).map(\.seq) == [3])
        let verified = try await RegisterVerification.verify(f.store, anchors: [AuditAnchor(seq: 2, hash: events[1].hash)])
        #expect(verified == AuditVerification(events: 3, head: AuditAnchor(seq: 3, hash: events[2].hash)))
        var streamed: [Int] = []
        try await f.store.forEachAuditEvent { streamed.append($0.seq) }
        #expect(streamed == [1, 2, 3])
    }

    @Test(arguments: StoreKind.allCases) func concurrentWritersKeepOneUnbrokenChain(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        // On PostgreSQL, a second store on the same database plays a second replica.
        let second: any RegisterStore = kind == .postgres ? try await PostgresRegisterStore(url: try PostgresURL(f.location)) : f.store
        let other = Register(store: second, configuration: f.register.configuration, policies: Array(f.register.policies.values))
        // High risk: two distinct security approvers, so the two approvals below land in either order.
        let e = try await f.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg"], reason: "vendor",
                                                              likelihood: .high, impact: .high), actor: "dev", now: t0)
        #expect(e.rule.minApprovals == 2)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                let register = i % 2 == 0 ? f.register : other
                group.addTask { _ = try await register.request(ExceptionRequest(policy: "COST-001", workspace: "w\(i % 3)", resources: ["r\(i)"], reason: "r"), actor: "dev", now: t0) }
            }
            // Two approvers of a two-approval request at once: both land, one after the other.
            group.addTask { _ = try await f.register.approve(e.id, actor: "sam", comment: nil, days: nil, now: t0) }
            group.addTask { _ = try await other.approve(e.id, actor: "pat", comment: nil, days: nil, now: t0) }
            try await group.waitForAll()
        }
        let events = try await f.events()
        #expect(events.count == 1 + 20 + 2)
        #expect(events.map(\.seq) == Array(1...events.count))
        #expect(try await RegisterVerification.verify(second).intact)
        #expect(try await f.store.exceptions(ExceptionFilter()).count == 21)
        let decided = try #require(try await f.store.exception(id: e.id))
        #expect(Set(decided.approvals.map(\.approver)) == ["sam", "pat"])
    }

    @Test(arguments: [StoreKind.sqlite, .postgres]) func aRowChangedBehindTheLogIsNotTrustedNorBuiltUpon(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.request()
        _ = try await f.request(resources: ["kept"])
        try f.tamperRow("UPDATE exception SET status = 'approved', expiresAt = 4102444800 WHERE id = 1",
                        postgres: "UPDATE exception SET status = 'approved', expires_at = 4102444800 WHERE id = 1")
        let read = try #require(try await f.store.exception(id: e.id))
        #expect(read.untrusted?.contains("status") == true)
        #expect(try await f.store.exception(id: 2)?.untrusted == nil)
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "fin", comment: "x", now: t0) }?.contains("cannot be changed") == true)
        let verified = try await RegisterVerification.verify(f.store)
        #expect(verified.firstBad == nil)
        #expect(verified.findings.count == 1 && verified.findings[0].hasPrefix("EX-1:"))
        // A corrupt list column is an error naming the row, never an empty list.
        try f.tamperRow("UPDATE exception SET conflicted = 'not json' WHERE id = 2", postgres: "UPDATE exception SET conflicted = 'not json' WHERE id = 2")
        await #expect(throws: CorruptRegister.self) { _ = try await f.store.exception(id: 2) }
    }

    /// A verification from the head verified before reads only what follows it; a head that no
    /// longer stands (changed or cut) makes it verify the whole chain, with that head as an anchor.
    @Test(arguments: [StoreKind.sqlite, .postgres]) func verifiesOnwardFromTheHeadVerifiedBefore(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let store = try #require(f.store as? any ServerRegisterStore)
        for i in 0..<4 { _ = try await f.request(resources: ["r\(i)"]) }
        let whole = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: nil)
        #expect(whole.intact && whole.events == 4 && whole.resumedAfter == nil)
        let head = try #require(whole.head)
        for i in 4..<7 { _ = try await f.request(resources: ["r\(i)"]) }
        let onward = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: head)
        #expect(onward.intact && onward.events == 7 && onward.resumedAfter == 4)
        #expect(onward.head?.seq == 7)
        // An anchor at or before the head needs the whole chain.
        let anchored = try await store.verifyAudit(anchors: [head], evidenceDirectory: nil, checkpoints: nil, resume: head)
        #expect(anchored.intact && anchored.resumedAfter == nil)

        // An event after the head changed: found from the head on.
        let setPayload = { (seq: Int) throws in
            try f.tamperRow("UPDATE auditEvent SET payload = '{\"x\":1}' WHERE seq = \(seq)",
                            postgres: "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change; UPDATE audit_event SET payload = '{\"x\":1}' WHERE seq = \(seq)")
        }
        try setPayload(6)
        let after = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: head)
        #expect(after.firstBad == 6 && after.resumedAfter == 4)
        // The head itself changed: it no longer stands, and the whole chain is verified.
        try setPayload(4)
        let headChanged = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: head)
        #expect(headChanged.firstBad == 4 && headChanged.resumedAfter == nil)
        // Events from the head on cut: the head is the anchor that shows it.
        try f.tamperRow("DELETE FROM auditEvent WHERE seq >= 3", postgres: "DELETE FROM audit_event WHERE seq >= 3")
        let cut = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: head)
        #expect(cut.firstBad == 3 && cut.problem?.contains("cut from the end") == true && cut.resumedAfter == nil)
        // What an onward verification cannot see, the whole one does: a change before the head.
        let g = try #require(try await StoreFixture.make(kind))
        let gStore = try #require(g.store as? any ServerRegisterStore)
        for i in 0..<3 { _ = try await g.request(resources: ["r\(i)"]) }
        let gHead = try #require(try await gStore.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: nil).head)
        try g.tamperRow("UPDATE auditEvent SET payload = '{}' WHERE seq = 1",
                        postgres: "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change; UPDATE audit_event SET payload = '{}' WHERE seq = 1")
        #expect(try await gStore.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: gHead).firstBad == nil)
        #expect(try await gStore.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: nil).firstBad == 1)
    }

    /// Rows deleted behind the log are named, by number, whole or onward.
    @Test(arguments: [StoreKind.sqlite, .postgres]) func deletedExceptionsAreNamedInOrder(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let store = try #require(f.store as? any ServerRegisterStore)
        for i in 0..<10 { _ = try await f.request(resources: ["r\(i)"]) }
        let head = try #require(try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: nil).head)
        #expect(try await f.store.requestedInLog() == (1...10).map { "EX-\($0)" })
        for table in ["exceptionResource", "approval", "evidence"] {
            try f.tamperRow("DELETE FROM \(table) WHERE exceptionId IN (2, 10)", postgres: "SELECT 1")
        }
        try f.tamperRow("DELETE FROM exception WHERE id IN (10, 2)", postgres: "DELETE FROM exception WHERE id IN (10, 2)")
        for resume in [nil, head] {
            let v = try await store.verifyAudit(anchors: [], evidenceDirectory: nil, checkpoints: nil, resume: resume)
            #expect(v.firstBad == nil && v.findings.map { $0.prefix(6) } == ["EX-2: ", "EX-10:"])
        }
    }

    @Test(arguments: [StoreKind.sqlite, .postgres]) func theDatabaseRefusesEditsOfTheAuditLog(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        _ = try await f.request()
        switch kind {
        case .sqlite:
            let q = try DatabaseQueue(path: f.location)
            #expect(throws: DatabaseError.self) { try q.write { try $0.execute(sql: "UPDATE auditEvent SET actor = 'x'") } }
            #expect(throws: DatabaseError.self) { try q.write { try $0.execute(sql: "DELETE FROM auditEvent") } }
        default:
            for sql in ["UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event", "TRUNCATE audit_event"] {
                #expect(throws: PsqlError.self) { try psql(f.location, sql) }
            }
            #expect(try psql(f.location, "SELECT count(*) FROM audit_event") == "1")
        }
    }

    @Test(arguments: [StoreKind.sqlite, .postgres]) func reopensAnExistingRegisterWithItsMigrationsOnce(_ kind: StoreKind) async throws {
        guard let f = try await StoreFixture.make(kind) else { return }
        let e = try await f.request()
        switch kind {
        case .sqlite:
            #expect(try await SQLiteRegisterStore(path: f.location).exception(id: e.id) == e)
        default:
            let again = try await PostgresRegisterStore(url: try PostgresURL(f.location))
            #expect(try await again.exception(id: e.id) == e)
            #expect(try await again.appliedMigrations() == PostgresRegisterStore.migrations.map(\.name))
        }
    }
}

@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test func parsesWhatTheReadmeShows() throws {
        let u = try PostgresURL("postgres://waiver:s%40cret@db.internal:6432/register?sslmode=require")
        #expect(u == PostgresURL(user: "waiver", password: "s@cret", host: "db.internal", port: 6432, database: "register", tls: .require))
        #expect(u.description == "postgres://waiver@db.internal:6432/register")
        #expect(try PostgresURL("postgresql://w@h/d").port == 5432)
        #expect(try PostgresURL("postgres://w@h/d", environmentPassword: "env").password == "env")
        let dir = TempDir()
        try "from-file\n".write(toFile: dir.path + "/pw", atomically: true, encoding: .utf8)
        #expect(try PostgresURL("postgres://w@h/d", passwordFile: dir.path + "/pw").password == "from-file")
        #expect(try PostgresURL("postgres://w:url@h/d", environmentPassword: "env").password == "url")
    }

    @Test(arguments: [
        ("mysql://w@h/d", "is not postgres://"), ("postgres://h/d", "no user"), ("postgres://w@h", "no database"),
        ("postgres://w@h/d?sslmode=maybe", "sslmode=maybe"), ("postgres://w@h/d?pool=3", "unknown URL parameter 'pool'"),
    ]) func refusesWhatItCannotUse(_ text: String, _ expected: String) {
        #expect(throws: PostgresURLError.self) { try PostgresURL(text) }
        do { _ = try PostgresURL(text) } catch { #expect(error.description.contains(expected)) }
    }
}
