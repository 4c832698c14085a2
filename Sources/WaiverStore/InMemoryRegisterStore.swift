import Foundation
import WaiverCore

/// The register in memory: for rule tests that need no database, and the reference the conformance
/// suite holds SQLite and PostgreSQL to. Each operation runs under one lock and is all or nothing,
/// like a transaction; the audit log is chained exactly as on disk (`StoreRules.chain`).
public final class InMemoryRegisterStore: RegisterStore, @unchecked Sendable {
    struct State {
        var exceptions: [Int: ExceptionRecord] = [:]
        var nextException = 1
        var events: [AuditEvent] = []
        var evaluations: [Evaluation] = []
        var nextEvaluation = 1
    }
    private let lock = NSLock()
    private var state = State()

    public init() {}

    /// Runs `body` on a copy of the state and keeps the copy only when it returns: a throw leaves
    /// the register as it was.
    private func transaction<T>(_ body: (inout State) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        var copy = state
        let result = try body(&copy)
        state = copy
        return result
    }

    private func read<T>(_ body: (State) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(state)
    }

    @discardableResult
    private static func append(_ s: inout State, _ draft: AuditDraft, state record: ExceptionRecord? = nil) -> AuditEvent {
        let e = StoreRules.chain(draft, state: record, after: Int64(s.events.last?.seq ?? 0), lastHash: s.events.last?.hash)
        s.events.append(e)
        return e
    }

    private static func trusted(_ s: State, _ r: ExceptionRecord) -> ExceptionRecord {
        var r = r
        r.untrusted = StoreRules.trustProblem(r, latest: s.events.last { $0.subject == r.displayId && $0.action != StoreRules.stateless })
        return r
    }

    private static func insert(_ s: inout State, _ request: PreparedRequest) -> ExceptionRecord {
        var stored = request.record
        stored.id = s.nextException
        s.nextException += 1
        stored.untrusted = nil
        s.exceptions[stored.id] = stored
        var e = request.event
        e.subject = stored.displayId
        append(&s, e, state: stored)
        return stored
    }

    public func insert(_ requests: [PreparedRequest]) throws -> [ExceptionRecord] {
        try transaction { s in requests.map { Self.insert(&s, $0) } }
    }

    public func insert(_ requests: [PreparedRequest], thenRecord: ([ExceptionRecord]) throws -> CheckRecording) throws -> (filed: [ExceptionRecord], evaluation: Int) {
        try transaction { s in
            let filed = requests.map { Self.insert(&s, $0) }
            let r = try thenRecord(filed)
            return (filed, Self.record(&s, r.evaluation, event: r.event, pruneBefore: r.pruneBefore))
        }
    }

    public func modify(id: Int, _ change: (inout ExceptionRecord) throws -> [AuditDraft]) throws -> ExceptionRecord {
        try transaction { s in
            guard let found = s.exceptions[id] else { throw RegisterError.notFound("\(ExceptionRecord.display(id)) not found") }
            var record = Self.trusted(s, found)
            try StoreRules.mayChange(record)
            let old = record
            let events = try change(&record)
            try StoreRules.checkChange(from: old, to: record, events: events)
            record.untrusted = nil
            s.exceptions[id] = record
            for (i, e) in events.enumerated() { Self.append(&s, e, state: i == events.count - 1 ? record : nil) }
            return record
        }
    }

    public func exception(id: Int) throws -> ExceptionRecord? {
        read { s in s.exceptions[id].map { Self.trusted(s, $0) } }
    }

    public func evidenceReferenced(sha256: String) throws -> Bool {
        read { s in s.exceptions.values.contains { $0.evidence.contains { $0.sha256 == sha256 } } }
    }

    public func exceptions(_ f: ExceptionFilter) throws -> [ExceptionRecord] {
        read { s in
            var out = s.exceptions.values.filter { e in
                if let statuses = f.statuses, !statuses.isEmpty, !statuses.contains(e.status) { return false }
                if let p = f.policy, e.policy != p { return false }
                if let w = f.workspace, e.workspace != w { return false }
                if let r = f.requester, e.requester != r { return false }
                if let t = f.ticket, e.ticket != t { return false }
                if let d = f.expiringBefore, !(e.status == .approved && (e.expiresAt.map { $0 < d } ?? false)) { return false }
                if let d = f.createdFrom, e.createdAt < d { return false }
                if let d = f.createdBefore, e.createdAt >= d { return false }
                return true
            }.sorted { $0.id < $1.id }
            if let limit = f.limit { out = Array(out.prefix(max(0, limit))) }
            return out.map { Self.trusted(s, $0) }
        }
    }

    public func covering(workspace: String, pairs: [(policy: String, resource: String)]) throws -> [ExceptionRecord] {
        let wanted = Set(pairs.map { $0.policy + "\u{0}" + $0.resource })
        return read { s in
            s.exceptions.values.filter { e in
                e.workspace == workspace && (e.status == .approved || e.status == .pending)
                    && e.resources.contains { wanted.contains(e.policy + "\u{0}" + $0) }
            }.sorted { $0.id < $1.id }.map { Self.trusted(s, $0) }
        }
    }

    private static func record(_ s: inout State, _ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) -> Int {
        var pruned = 0
        if let pruneBefore {
            let before = s.evaluations.count
            s.evaluations.removeAll { $0.workspace == evaluation.workspace && StoreRules.seconds($0.at) < StoreRules.seconds(pruneBefore) }
            pruned = before - s.evaluations.count
        }
        var stored = evaluation
        stored.id = s.nextEvaluation
        stored.at = StoreRules.date(StoreRules.seconds(evaluation.at))
        s.nextEvaluation += 1
        s.evaluations.append(stored)
        var e = event
        if case .object(var o) = e.payload {
            o.append("evaluation", .number(Double(stored.id)))
            if pruned > 0 { o.append("pruned_evaluations", .number(Double(pruned))) }
            e.payload = .object(o)
        }
        append(&s, e)
        return stored.id
    }

    public func record(_ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) throws -> Int {
        try transaction { s in Self.record(&s, evaluation, event: event, pruneBefore: pruneBefore) }
    }

    public func latestEvaluation(workspace: String) throws -> Evaluation? {
        read { s in s.evaluations.last { $0.workspace == workspace } }
    }

    public func recordedRule(workspace: String, policy: String) throws -> (category: String, severity: Severity)? {
        read { s in
            var seen: [(severity: String, category: String)] = []
            for e in s.evaluations where e.workspace == workspace {
                for v in e.violations where v.policy == policy && !seen.contains(where: { $0 == (v.severity.rawValue, v.category) }) {
                    seen.append((v.severity.rawValue, v.category))
                }
            }
            return StoreRules.recordedRule(seen)
        }
    }

    public func append(_ event: AuditDraft) throws {
        try transaction { s in _ = Self.append(&s, event) }
    }

    public func auditEvents(subject: String?, last: Int?) throws -> [AuditEvent] {
        read { s in
            let matching = subject.map { subject in s.events.filter { $0.subject == subject } } ?? s.events
            return last.map { Array(matching.suffix(max(0, $0))) } ?? matching
        }
    }

    public func forEachAuditEvent(_ body: (AuditEvent) throws -> Void) throws {
        let events = read { $0.events }
        for e in events { try body(e) }
    }

    public func requestedInLog() throws -> [String] {
        read { s in Set(s.events.filter { $0.action == "exception.requested" }.map(\.subject)).sorted { ($0.count, $0) < ($1.count, $1) } }
    }

    public func forEachAuditEvent(from seq: Int, _ body: (AuditEvent) throws -> Void) throws {
        let events = read { $0.events }
        for e in events.sorted(by: { $0.seq < $1.seq }) where e.seq >= seq { try body(e) }
    }
}
