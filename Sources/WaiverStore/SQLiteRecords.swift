import Foundation
import GRDB
import WaiverCore

// The SQLite register's rows as GRDB record types: each row shape is mapped here, once, and read
// with `Record.fetchAll/fetchOne/fetchCursor`. Every column goes through `Row.read(_:of:)`, so a
// register file edited behind Waiver's back is a `CorruptRegister` naming the row and the column,
// never a crash (GRDB's plain subscripts trap on a value of the wrong type).

/// A row of `auditEvent` (`seq, time, actor, action, subject, payload, prevHash, hash`).
struct AuditEventRow: FetchableRecord {
    let event: AuditEvent
    init(row: Row) throws {
        let seq: Int64 = try row.read("seq", of: "an audit event")
        let what = "audit event \(seq)"
        event = AuditEvent(seq: Int(seq), time: StoreRules.date(try row.read("time", of: what) as Int64), actor: try row.read("actor", of: what),
                           action: try row.read("action", of: what), subject: try row.read("subject", of: what),
                           payload: try row.read("payload", of: what), prevHash: try row.read("prevHash", of: what), hash: try row.read("hash", of: what))
    }
}

/// A row of `exceptionResource` (`exceptionId, resource`).
struct ResourceRow: FetchableRecord {
    let exceptionId: Int64
    let resource: String
    init(row: Row) throws {
        exceptionId = try row.read("exceptionId", of: "a resource row")
        resource = try row.read("resource", of: "a resource of exception \(exceptionId)")
    }
}

/// A row of `approval` (`exceptionId, approver, comment, at`).
struct ApprovalRow: FetchableRecord {
    let exceptionId: Int64
    let approval: Approval
    init(row: Row) throws {
        exceptionId = try row.read("exceptionId", of: "an approval row")
        let what = "an approval of exception \(exceptionId)"
        approval = Approval(approver: try row.read("approver", of: what), comment: try row.read("comment", of: what),
                            at: StoreRules.date(try row.read("at", of: what) as Int64))
    }
}

/// A row of `evidence` (`exceptionId, sha256, name, size, addedBy, at`).
struct EvidenceRow: FetchableRecord {
    let exceptionId: Int64
    let file: EvidenceFile
    init(row: Row) throws {
        exceptionId = try row.read("exceptionId", of: "an evidence row")
        let what = "evidence of exception \(exceptionId)"
        file = EvidenceFile(sha256: try row.read("sha256", of: what), name: try row.read("name", of: what),
                            size: Int(clamping: try row.read("size", of: what) as Int64),
                            addedBy: try row.read("addedBy", of: what), at: StoreRules.date(try row.read("at", of: what) as Int64),
                            displayText: try row.read("displayText", of: what))
    }
}

/// A row of `exception`, without its child rows (resources, evidence, approvals), which `load` adds.
struct ExceptionRow: FetchableRecord {
    var record: ExceptionRecord
    init(row: Row) throws {
        let id: Int64 = try row.read("id", of: "an exception")
        let what = "exception \(id)"
        func parse<T: RawRepresentable>(_ column: String) throws -> T where T.RawValue == String {
            try StoreRules.parse(try row.read(column, of: what), of: what, column: column)
        }
        func read<T: DatabaseValueConvertible>(_ column: String) throws -> T { try row.read(column, of: what) }
        func list(_ column: String) throws -> [String] { try SQLiteRegisterStore.list(row, column, of: what) }
        func count(_ column: String) throws -> Int { try StoreRules.count(try read(column), of: what, column: column) }
        record = ExceptionRecord(
            id: Int(id), policy: try read("policy"), category: try read("category"), workspace: try read("workspace"),
            subjectKind: try parse("subjectKind"), resources: [], requester: try read("requester"),
            conflicted: try list("conflicted"), reason: try read("reason"), requestedDays: try count("requestedDays"),
            likelihood: try parse("likelihood"), impact: try parse("impact"), riskLevel: try read("riskLevel"),
            mitigations: try list("mitigations"), evidence: [], approvals: [],
            rule: ApprovalRule(groups: try list("approverGroups"), minApprovals: try count("minApprovals"), requiredGroups: try list("requiredGroups")),
            status: try parse("status"), createdAt: StoreRules.date(try read("createdAt") as Int64),
            decidedAt: StoreRules.date(try read("decidedAt") as Int64?), expiresAt: StoreRules.date(try read("expiresAt") as Int64?),
            renews: (try read("renews") as Int64?).map { Int(clamping: $0) }, owner: try read("owner"), proposedRisk: try read("proposedRisk"),
            riskRaisedBy: try read("riskRaisedBy"), ticket: try read("ticket"),
            origin: try StoreRules.origin(try read("origin"), of: what))
        record.reviewedAt = StoreRules.date(try read("reviewedAt") as Int64?)
        record.bound = try StoreRules.bound(try read("bound"), of: what)
    }
}

/// A row of `evaluationViolation` (`policy, resource, status, digest, message, severity, category`).
struct ViolationRow: FetchableRecord {
    let violation: RecordedViolation
    init(row: Row) throws {
        let what = "a recorded violation"
        func read<T: DatabaseValueConvertible>(_ column: String) throws -> T { try row.read(column, of: what) }
        violation = RecordedViolation(policy: try read("policy"), resource: try read("resource"),
                                      status: try StoreRules.parse(try read("status"), of: what, column: "status"), digest: try read("digest"),
                                      message: try read("message"), severity: try StoreRules.parse(try read("severity"), of: what, column: "severity"),
                                      category: try read("category"))
    }
}

/// A row of `evaluation`, without its violations.
struct EvaluationRow: FetchableRecord {
    let evaluation: Evaluation
    init(row: Row) throws {
        let id: Int64 = try row.read("id", of: "a recorded check")
        let what = "recorded check \(id)"
        evaluation = Evaluation(id: Int(id), workspace: try row.read("workspace", of: what), at: StoreRules.date(try row.read("at", of: what) as Int64),
                                actor: try row.read("actor", of: what), verdict: try row.read("verdict", of: what),
                                resourceCount: Int(clamping: try row.read("resourceCount", of: what) as Int64), violations: [])
    }
}

/// A row of `webhookDelivery`.
struct DeliveryRow: FetchableRecord {
    let delivery: WebhookDelivery
    init(row: Row) throws {
        let id: Int64 = try row.read("id", of: "a webhook delivery")
        func read<T: DatabaseValueConvertible>(_ column: String) throws -> T { try row.read(column, of: "webhook delivery \(id)") }
        delivery = WebhookDelivery(id: Int(id), url: try read("url"), format: try read("format"), secretEnv: try read("secretEnv"), action: try read("action"),
                                   body: try read("body"), attempts: Int(clamping: try read("attempts") as Int64),
                                   nextAttemptAt: StoreRules.date(try read("nextAttemptAt") as Int64),
                                   deliveredAt: StoreRules.date(try read("deliveredAt") as Int64?), lastError: try read("lastError"))
    }
}

/// A row of `checkpoint` (`seq, hash, time, keyId, signature`).
struct CheckpointRow: FetchableRecord {
    let checkpoint: Checkpoint
    init(row: Row) throws {
        checkpoint = Checkpoint(seq: try row.read("seq", of: "a checkpoint"), hash: try row.read("hash", of: "a checkpoint"),
                                time: try row.read("time", of: "a checkpoint"), keyId: try row.read("keyId", of: "a checkpoint"),
                                signature: try row.read("signature", of: "a checkpoint"))
    }
}
