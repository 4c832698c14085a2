import Foundation

/// A typed refusal or failure of a register operation; the CLI prints it and exits 2, the server
/// maps it to an HTTP status.
public enum RegisterError: Error, Equatable, CustomStringConvertible {
    /// No such exception (404).
    case notFound(String)
    /// A rule about who may act refused the operation: separation of duties, routing, who may
    /// revoke, raising never lowering the risk (403).
    case refused(String)
    /// The exception's state does not allow the operation: a final status, a transition the state
    /// machine has not, a second approval by the same person, a row the log does not back (409).
    case conflict(String)
    /// The request itself is invalid: duration past the cap, unknown policy, missing reason (422).
    case invalid(String)

    public var description: String {
        switch self {
        case .notFound(let m), .refused(let m), .conflict(let m), .invalid(let m): return m.clipped(String.maxMessage)
        }
    }
}

/// A stored row that cannot be read as what it should hold (a register file edited behind Waiver's
/// back): an error naming the row and the column, never a crash or a silent default. The CLI exits 2;
/// the server answers 500 and logs it.
public struct CorruptRegister: Error, Equatable, CustomStringConvertible {
    public let what: String
    public let column: String
    public init(what: String, column: String) {
        self.what = what
        self.column = column
    }
    public var description: String { "register: \(what) has an unreadable \(column) column (the file was changed behind Waiver's back?)" }
}

/// An audit event before the store numbers and chains it.
public struct AuditDraft: Sendable, Equatable {
    public var actor: String
    public var action: String
    public var subject: String
    public var payload: Value
    public var time: Date
    public init(actor: String, action: String, subject: String, payload: Value, time: Date) {
        self.actor = actor
        self.action = action
        self.subject = subject
        self.payload = payload
        self.time = time
    }
}

/// An event of the append-only, hash-chained audit log.
public struct AuditEvent: Sendable, Equatable {
    public var seq: Int
    public var time: Date
    public var actor: String
    public var action: String
    public var subject: String
    /// The payload as canonical JSON (keys sorted, compact): what the hash covers.
    public var payload: String
    public var prevHash: String
    public var hash: String
    public init(seq: Int, time: Date, actor: String, action: String, subject: String, payload: String, prevHash: String, hash: String) {
        self.seq = seq
        self.time = time
        self.actor = actor
        self.action = action
        self.subject = subject
        self.payload = payload
        self.prevHash = prevHash
        self.hash = hash
    }
}

/// The result of recomputing the audit chain.
public struct AuditVerification: Sendable, Equatable {
    public var events: Int
    /// The first event whose hash or link does not verify, with why; nil when the chain is intact.
    public var firstBad: Int?
    public var problem: String?
    /// The last event that verified, as an anchor to keep elsewhere.
    public var head: AuditAnchor?
    /// What the log does not support besides the chain: exceptions whose stored state is not the
    /// state the log records, evidence files whose bytes are not the recorded SHA-256, checkpoints
    /// that do not verify. Each names the exception (or checkpoint).
    public var findings: [String]
    /// Signed checkpoints the chain was verified against.
    public var checkpoints: Int
    /// Set when only the events after this one were verified: the chain up to it had verified before
    /// (in this process), and it still hashes as it did then.
    public var resumedAfter: Int?
    public var intact: Bool { firstBad == nil && findings.isEmpty }
    public init(events: Int, firstBad: Int? = nil, problem: String? = nil, head: AuditAnchor? = nil, findings: [String] = [], checkpoints: Int = 0) {
        self.events = events
        self.firstBad = firstBad
        self.problem = problem
        self.head = head
        self.findings = findings
        self.checkpoints = checkpoints
    }
}

/// An event's number and hash, written down outside the register (`SEQ:HASH`).
///
/// A hash chain shows any change, removal or reordering of events, but not events cut from its end:
/// the shorter log is a valid chain. Verifying against an anchor kept elsewhere (a ticket, a
/// pipeline artifact, a webhook receiver's log) shows that too, and any rewrite of the log up to it.
public struct AuditAnchor: Sendable, Equatable, CustomStringConvertible {
    public var seq: Int
    /// SHA-256 of the event, 64 lowercase hex digits.
    public var hash: String

    public init(seq: Int, hash: String) {
        self.seq = seq
        self.hash = hash
    }

    /// Parses `SEQ:HASH`; nil unless SEQ is a positive event number and HASH 64 hex digits.
    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let seq = Int(parts[0]), seq > 0, parts[1].utf8.count == 64, parts[1].utf8.allSatisfy(\.isHexDigitASCII)
        else { return nil }
        self.init(seq: seq, hash: parts[1].lowercased())
    }

    public var description: String { "\(seq):\(hash)" }

    public static let syntax = "SEQ:HASH (an event number, a colon and its 64-hex-digit hash, as `audit verify` prints it)"
}

/// One violation as a check saw it, recorded so the register knows each workspace's latest state.
public struct RecordedViolation: Sendable, Equatable {
    public var policy: String
    public var resource: String
    public var status: ResultStatus
    /// SHA-256 of the violating values as reported (sensitive ones masked).
    public var digest: String
    /// The values that broke the policy, as reported (sensitive ones masked).
    public var message: String
    /// The policy's (or scanner rule's) severity and category as the check saw them: a request
    /// filed later for a scanner rule is priced and routed with these.
    public var severity: Severity
    public var category: String
    public init(policy: String, resource: String, status: ResultStatus, digest: String, message: String = "",
                severity: Severity = .medium, category: String = "security") {
        self.policy = policy
        self.resource = resource
        self.status = status
        self.digest = digest
        self.message = message
        self.severity = severity
        self.category = category
    }
}

/// A recorded `check` run.
public struct Evaluation: Sendable, Equatable {
    public var id: Int
    public var workspace: String
    public var at: Date
    public var actor: String
    public var verdict: String
    public var resourceCount: Int
    public var violations: [RecordedViolation]
    public init(id: Int = 0, workspace: String, at: Date, actor: String, verdict: String, resourceCount: Int, violations: [RecordedViolation]) {
        self.id = id
        self.workspace = workspace
        self.at = at
        self.actor = actor
        self.verdict = verdict
        self.resourceCount = resourceCount
        self.violations = violations
    }
}

/// Which exceptions to list.
public struct ExceptionFilter: Sendable, Equatable {
    public var statuses: [ExceptionStatus]?
    public var policy: String?
    public var workspace: String?
    public var requester: String?
    /// Only approved exceptions expiring before this instant.
    public var expiringBefore: Date?
    public var createdFrom: Date?
    public var createdBefore: Date?
    /// Only exceptions filed with this ticket reference.
    public var ticket: String?
    public var limit: Int?
    public init(statuses: [ExceptionStatus]? = nil, policy: String? = nil, workspace: String? = nil, requester: String? = nil,
                expiringBefore: Date? = nil, createdFrom: Date? = nil, createdBefore: Date? = nil, ticket: String? = nil, limit: Int? = nil) {
        self.ticket = ticket
        self.statuses = statuses
        self.policy = policy
        self.workspace = workspace
        self.requester = requester
        self.expiringBefore = expiringBefore
        self.createdFrom = createdFrom
        self.createdBefore = createdBefore
        self.limit = limit
    }

    /// A filter on a text with a NUL character matches nothing: the register never stores one
    /// (`RequestLimits.storable`), and PostgreSQL cannot even compare it.
    public var matchesNothing: Bool {
        [policy, workspace, requester, ticket].contains { $0?.utf8.contains(0) == true }
    }
}

/// Where the register lives. Every multi-step write is one transaction; `modify` runs its closure
/// inside the write transaction, so rules are checked against the state they change (two approvers
/// at once serialize, and the second sees the first's approval).
public protocol RegisterStore: Sendable {
    /// Stores new exceptions (their `id`s are assigned) with their audit events, all in one transaction.
    func insert(_ requests: [PreparedRequest]) async throws -> [ExceptionRecord]
    /// Files requests and records a check in one transaction: `then` gets the stored requests and
    /// returns the check to record (its final statuses know the new requests).
    func insert(_ requests: [PreparedRequest], thenRecord: ([ExceptionRecord]) throws -> CheckRecording) async throws -> (filed: [ExceptionRecord], evaluation: Int)
    /// Reads an exception, lets `change` check the rules and modify it, and writes it back with the
    /// audit events `change` returns, all in one write transaction. Throws `RegisterError.notFound`.
    func modify(id: Int, _ change: (inout ExceptionRecord) throws -> [AuditDraft]) async throws -> ExceptionRecord
    func exception(id: Int) async throws -> ExceptionRecord?
    func exceptions(_ filter: ExceptionFilter) async throws -> [ExceptionRecord]
    /// Approved or pending exceptions in a workspace that cover any of these (policy, resource) pairs.
    func covering(workspace: String, pairs: [(policy: String, resource: String)]) async throws -> [ExceptionRecord]
    /// Records a check run and its audit event, in one transaction with deleting the workspace's
    /// recorded checks from before `pruneBefore` (their count goes in the event); returns the evaluation id.
    func record(_ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) async throws -> Int
    /// The latest recorded check of a workspace.
    func latestEvaluation(workspace: String) async throws -> Evaluation?
    /// The severity (the highest seen) and category a scanner rule had in the workspace's recorded checks, if any met it.
    func recordedRule(workspace: String, policy: String) async throws -> (category: String, severity: Severity)?
    /// Appends a free-standing audit event (e.g. an export or a verification).
    func append(_ event: AuditDraft) async throws
    /// Audit events, all or those about one subject, in order; with `last`, only the newest that many.
    func auditEvents(subject: String?, last: Int?) async throws -> [AuditEvent]
    /// Streams every audit event in order (for export and verification of large logs).
    func forEachAuditEvent(_ body: (AuditEvent) throws -> Void) async throws
    /// Streams the audit events numbered `seq` and after, by number (an incremental verification).
    func forEachAuditEvent(from seq: Int, _ body: (AuditEvent) throws -> Void) async throws
    /// The exceptions the log records a request of (`exception.requested` subjects), each once, by number.
    func requestedInLog() async throws -> [String]
    /// Whether an exception records the evidence file with this SHA-256 (only such files are served or kept).
    func evidenceReferenced(sha256: String) async throws -> Bool
}

/// A check to record: the evaluation, its audit event, and the retention cutoff.
public struct CheckRecording: Sendable {
    public var evaluation: Evaluation
    public var event: AuditDraft
    public var pruneBefore: Date?
    public init(evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) {
        self.evaluation = evaluation
        self.event = event
        self.pruneBefore = pruneBefore
    }
}

extension RegisterStore {
    public func auditEvents(subject: String?) async throws -> [AuditEvent] { try await auditEvents(subject: subject, last: nil) }
}
