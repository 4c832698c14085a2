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

    func refusal(_ body: () async throws -> Void) async -> String? { await WaiverTests.refusal(body) }

    func events() async throws -> [AuditEvent] { try await store.auditEvents(subject: nil) }
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
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("content does not match its hash") == true)
    }

    @Test func anEditWithARecomputedHashBreaksTheNextLink() async throws {
        let (f, path) = try await registerWithEvents()
        let e = try await #require(try f.events().first { $0.seq == 2 })
        let forged = AuditChain.hash(seq: 2, time: Int64(e.time.timeIntervalSince1970), actor: "mallory", action: e.action,
                                     subject: e.subject, payload: e.payload, prevHash: e.prevHash)
        try tamper(path, "UPDATE auditEvent SET actor = 'mallory', hash = '\(forged)' WHERE seq = 2")
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("link to event 2") == true)
    }

    @Test func eventsCutFromTheEndNeedAnAnchorToBeSeen() async throws {
        let (f, path) = try await registerWithEvents()
        let before = try await f.store.verifyAudit()
        let anchor = try #require(before.head)
        let last = try await f.events().last?.hash
        #expect(anchor.seq == 5 && anchor.hash == last)
        try tamper(path, "DELETE FROM auditEvent WHERE seq >= 4")
        // The shorter log is still a valid chain (but the exceptions the cut events changed no longer match it)...
        await #expect(try f.store.verifyAudit().firstBad == nil)
        await #expect(try f.store.verifyAudit().findings.isEmpty == false)
        await #expect(try f.store.verifyAudit().head?.seq == 3)
        // ...but not against the anchor kept from before.
        let v = try await f.store.verifyAudit(anchors: [anchor])
        #expect(v.firstBad == 4)
        #expect(v.problem == "the log ends at event 3, but event 5 was anchored: events were cut from the end")
    }

    @Test func aRewrittenTailDoesNotMatchItsAnchor() async throws {
        let (f, path) = try await registerWithEvents()
        let anchor = try await #require(try f.store.verifyAudit().head)
        let early = try await #require(try f.store.verifyAudit(anchors: [anchor]).head)
        #expect(early == anchor)
        // Cut the last event and write a new, valid fifth event in its place.
        try tamper(path, "DELETE FROM auditEvent WHERE seq = 5")
        _ = try await f.request(resources: ["forged"])
        await #expect(try f.store.verifyAudit().firstBad == nil)
        let v = try await f.store.verifyAudit(anchors: [AuditAnchor(seq: 2, hash: try await f.events()[1].hash), anchor])
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
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 3)
        #expect(v.problem?.contains("event 2 is missing") == true)
    }

    @Test func reorderedEventsAreNamed() async throws {
        let (f, path) = try await registerWithEvents()
        // Swap the contents of events 2 and 3 (keeping sequence numbers in place).
        try tamper(path, """
            UPDATE auditEvent SET seq = -2 WHERE seq = 2; UPDATE auditEvent SET seq = 2 WHERE seq = 3; UPDATE auditEvent SET seq = 3 WHERE seq = -2;
            """)
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 2)
    }

    @Test func anUntouchedLogVerifies() async throws {
        let (f, _) = try await registerWithEvents()
        let last = try await #require(try f.events().last)
        await #expect(try f.store.verifyAudit() == AuditVerification(events: 5, head: AuditAnchor(seq: 5, hash: last.hash)))
    }
}
