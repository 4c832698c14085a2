import Foundation
import WaiverCore

/// What every `RegisterStore` does the same way, whatever holds the rows: how an event is chained,
/// what a `modify` may change, when a stored exception is backed by the log, how list columns are
/// read. SQLite, PostgreSQL and the in-memory store call these; none restates them.
public enum StoreRules {
    /// Events about an exception that record no state of it.
    public static let stateless = "exception.reminder"

    /// Whole seconds since 1970, as every store keeps instants.
    public static func seconds(_ d: Date) -> Int64 { Int64(d.timeIntervalSince1970.rounded(.down)) }
    public static func date(_ s: Int64) -> Date { Date(timeIntervalSince1970: Double(s)) }
    public static func date(_ s: Int64?) -> Date? { s.map { date($0) } }

    /// The next event of the chain after (`lastSeq`, `lastHash`): numbered, its payload canonical
    /// (with the exception's whole state when `state` is given), hashed over its content and the
    /// previous hash.
    public static func chain(_ draft: AuditDraft, state: ExceptionRecord?, after lastSeq: Int64, lastHash: String?) -> AuditEvent {
        let seq = Int(lastSeq + 1)
        let prev = lastHash ?? AuditChain.genesis
        var body = draft.payload
        if let state, case .object(var o) = body {
            o.append("state", state.stateValue)
            body = .object(o)
        }
        let payload = JSONWriter.canonical(body)
        let time = seconds(draft.time)
        let hash = AuditChain.hash(seq: seq, time: time, actor: draft.actor, action: draft.action, subject: draft.subject, payload: payload, prevHash: prev)
        return AuditEvent(seq: seq, time: date(time), actor: draft.actor, action: draft.action, subject: draft.subject,
                          payload: payload, prevHash: prev, hash: hash)
    }

    /// Whether an event goes to the webhooks (lifecycle events of exceptions and their evidence).
    public static func notifies(_ action: String) -> Bool { action.hasPrefix("exception.") || action == "evidence.added" }

    /// What `modify` refuses before its closure runs: a row the log does not back is never built
    /// upon (a change would launder it).
    public static func mayChange(_ record: ExceptionRecord) throws {
        if let why = record.untrusted { throw RegisterError.conflict("\(record.displayId) cannot be changed: \(why)") }
    }

    /// What `modify` refuses after its closure ran: a change of scope, and a change without an event.
    /// A request's origin as a column holds it (canonical JSON), and back; a column that is not such
    /// JSON is a corrupt register naming the row.
    public static func originText(_ o: RequestOrigin?) -> String? {
        guard let o, !o.isEmpty else { return nil }
        return JSONWriter.canonical(o.value)
    }

    public static func origin(_ text: String?, of what: String) throws -> RequestOrigin? {
        guard let text else { return nil }
        guard let v = try? JSONReader.parse(Data(text.utf8), maxDepth: 4), let o = RequestOrigin.from(v) else {
            throw CorruptRegister(what: what, column: "origin")
        }
        return o
    }

    /// The values an exception binds as a column holds them (canonical JSON), and back.
    public static func boundText(_ b: [String: String]?) -> String? {
        b.map { JSONWriter.canonical(ExceptionRecord.boundValue($0)) }
    }

    public static func bound(_ text: String?, of what: String) throws -> [String: String]? {
        guard let text else { return nil }
        guard let v = try? JSONReader.parse(Data(text.utf8), maxDepth: 4), let b = ExceptionRecord.bound(from: v) else {
            throw CorruptRegister(what: what, column: "bound")
        }
        return b
    }

    public static func checkChange(from old: ExceptionRecord, to new: ExceptionRecord, events: [AuditDraft]) throws {
        guard new.id == old.id, new.resources == old.resources, new.policy == old.policy, new.workspace == old.workspace, new.bound == old.bound else {
            throw RegisterError.invalid("an exception's scope (policy, workspace, resources) cannot change; file a new request")
        }
        guard new == old || !events.isEmpty else {
            throw RegisterError.invalid("\(new.displayId): a change without an audit event is refused")
        }
    }

    /// The state an event records, when it records one.
    public static func loggedState(_ e: AuditEvent) -> Value? {
        guard e.payload.contains("\"state\":{"), let v = try? JSONReader.parse(Data(e.payload.utf8), maxDepth: 64),
              case .object(let o)? = v["state"] else { return nil }
        return .object(o)
    }

    /// Why a stored exception is not backed by the log, or nil when `latest` (the newest event about
    /// it that is not a reminder) records exactly its stored state and still hashes to its hash.
    public static func trustProblem(_ record: ExceptionRecord, latest: AuditEvent?) -> String? {
        let fix = "run `waiver audit verify`"
        guard let event = latest else {
            return "no audit event records it (the row was added behind the log's back; \(fix))"
        }
        guard AuditChain.contentMatches(event) else {
            return "audit event \(event.seq), which records its state, was changed (\(fix))"
        }
        guard let logged = loggedState(event) else {
            return "audit event \(event.seq) (\(event.action)) records no state of it (\(fix))"
        }
        let stored = record.stateValue
        guard JSONWriter.canonical(stored) != JSONWriter.canonical(logged) else { return nil }
        return "its stored \(stateDifferences(stored, logged)) not what audit event \(event.seq) records (changed behind the log's back; \(fix))"
    }

    /// The fields in which two states differ, for messages: `status (approved; the log says rejected)`.
    static func stateDifferences(_ stored: Value, _ logged: Value) -> String {
        guard case .object(let a) = stored, case .object(let b) = logged else { return "state is" }
        var names: [String] = []
        for (key, value) in a.pairs where JSONWriter.canonical(value) != JSONWriter.canonical(b[key] ?? .null) {
            func shown(_ v: Value?) -> String { String(JSONWriter.canonical(v ?? .null).prefix(60)) }
            names.append("\(key) \(shown(value)) (the log says \(shown(b[key])))")
        }
        if names.isEmpty { return "state is" }
        return names.joined(separator: ", ") + (names.count == 1 ? " is" : " are")
    }

    /// A list column as stored (a JSON array of strings).
    public static func json(_ list: [String]) -> String { JSONWriter.write(.array(list.map(Value.string)), pretty: false) }

    /// A list column read back. Anything else is `CorruptRegister`, never an empty list: a dropped
    /// `conflicted` entry would drop a separation-of-duties rule.
    public static func list(_ text: String, of what: @autoclosure () -> String, column: String) throws -> [String] {
        guard let data = text.data(using: .utf8), let items = try? JSONDecoder().decode([String].self, from: data) else {
            throw CorruptRegister(what: what(), column: column)
        }
        return items
    }

    /// An enumeration column read back, or `CorruptRegister`.
    public static func parse<T: RawRepresentable>(_ text: String, of what: @autoclosure () -> String, column: String) throws -> T where T.RawValue == String {
        guard let v = T(rawValue: text) else { throw CorruptRegister(what: what(), column: column) }
        return v
    }

    /// A count column read back (0 to Int32.max), or `CorruptRegister`.
    public static func count(_ n: Int64, of what: @autoclosure () -> String, column: String) throws -> Int {
        guard n >= 0, n <= Int64(Int32.max) else { throw CorruptRegister(what: what(), column: column) }
        return Int(n)
    }

    /// The latest evaluation's violations per policy, as `expire` and `recordedRule` read them:
    /// the highest severity seen and the first category.
    public static func recordedRule(_ seen: [(severity: String, category: String)]) -> (category: String, severity: Severity)? {
        guard !seen.isEmpty else { return nil }
        let severity = seen.compactMap { Severity(rawValue: $0.severity) }.max() ?? .medium
        return (seen.first?.category ?? "security", severity)
    }
}
