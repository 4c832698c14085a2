import Foundation
import GRDB

/// Every migration of the SQLite register, in one ordered list: named steps, never edited once
/// shipped (GRDB records which ran; a register opens with those it lacks applied in order).
/// PostgreSQL's are `PostgresRegisterStore.migrations`.
extension SQLiteRegisterStore {
    /// The schema: named steps, in order, never edited once shipped.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: exceptions, evaluations and the audit log") { db in
            try db.create(table: "exception") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("policy", .text).notNull()
                t.column("category", .text).notNull()
                t.column("workspace", .text).notNull()
                t.column("subjectKind", .text).notNull()
                t.column("requester", .text).notNull()
                t.column("conflicted", .text).notNull()
                t.column("reason", .text).notNull()
                t.column("requestedDays", .integer).notNull()
                t.column("likelihood", .text).notNull()
                t.column("impact", .text).notNull()
                t.column("riskLevel", .text).notNull()
                t.column("mitigations", .text).notNull()
                t.column("approverGroups", .text).notNull()
                t.column("minApprovals", .integer).notNull()
                t.column("requiredGroups", .text).notNull()
                t.column("status", .text).notNull().indexed()
                t.column("createdAt", .integer).notNull().indexed()
                t.column("decidedAt", .integer)
                t.column("expiresAt", .integer).indexed()
                t.column("renews", .integer).references("exception")
            }
            try db.create(table: "exceptionResource") { t in
                t.column("exceptionId", .integer).notNull().references("exception", onDelete: .cascade)
                t.column("workspace", .text).notNull()
                t.column("policy", .text).notNull()
                t.column("resource", .text).notNull()
                t.column("position", .integer).notNull()
                t.primaryKey(["exceptionId", "resource"])
            }
            try db.create(index: "exceptionResource_lookup", on: "exceptionResource", columns: ["workspace", "policy", "resource"])
            try db.create(table: "approval") { t in
                t.column("exceptionId", .integer).notNull().references("exception", onDelete: .cascade)
                t.column("approver", .text).notNull()
                t.column("comment", .text)
                t.column("at", .integer).notNull()
                t.primaryKey(["exceptionId", "approver"])
            }
            try db.create(table: "evidence") { t in
                t.column("exceptionId", .integer).notNull().references("exception", onDelete: .cascade)
                t.column("sha256", .text).notNull()
                t.column("name", .text).notNull()
                t.column("size", .integer).notNull()
                t.column("addedBy", .text).notNull()
                t.column("at", .integer).notNull()
                t.primaryKey(["exceptionId", "sha256"])
            }
            try db.create(table: "evaluation") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("workspace", .text).notNull()
                t.column("at", .integer).notNull()
                t.column("actor", .text).notNull()
                t.column("verdict", .text).notNull()
                t.column("resourceCount", .integer).notNull()
            }
            try db.create(index: "evaluation_workspace", on: "evaluation", columns: ["workspace", "id"])
            try db.create(table: "evaluationViolation") { t in
                t.column("evaluationId", .integer).notNull().references("evaluation", onDelete: .cascade).indexed()
                t.column("policy", .text).notNull()
                t.column("resource", .text).notNull()
                t.column("status", .text).notNull()
                t.column("digest", .text).notNull()
            }
            try db.create(table: "auditEvent") { t in
                t.primaryKey("seq", .integer)
                t.column("time", .integer).notNull()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("subject", .text).notNull().indexed()
                t.column("payload", .text).notNull()
                t.column("prevHash", .text).notNull()
                t.column("hash", .text).notNull()
            }
            // The audit log is append-only: the database itself refuses edits and deletions.
            try db.execute(sql: """
                CREATE TRIGGER auditEvent_noUpdate BEFORE UPDATE ON auditEvent
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: events cannot be changed'); END;
                CREATE TRIGGER auditEvent_noDelete BEFORE DELETE ON auditEvent
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: events cannot be deleted'); END;
                """)
        }
        m.registerMigration("v2: users, tokens, reminders and the webhook outbox") { db in
            try db.create(table: "user") { t in
                t.primaryKey("name", .text)
                t.column("admin", .boolean).notNull().defaults(to: false)
                t.column("createdAt", .integer).notNull()
            }
            try db.create(table: "userGroup") { t in
                t.column("user", .text).notNull().references("user", onDelete: .cascade)
                t.column("groupName", .text).notNull()
                t.primaryKey(["user", "groupName"])
            }
            try db.create(table: "token") { t in
                t.primaryKey("id", .text)
                t.column("user", .text).notNull().references("user", onDelete: .cascade).indexed()
                t.column("secretHash", .text).notNull()
                t.column("createdAt", .integer).notNull()
                t.column("revokedAt", .integer)
            }
            try db.create(table: "reminderSent") { t in
                t.column("exceptionId", .integer).notNull().references("exception", onDelete: .cascade)
                t.column("offsetSeconds", .integer).notNull()
                t.column("sentAt", .integer).notNull()
                t.primaryKey(["exceptionId", "offsetSeconds"])
            }
            try db.create(table: "webhookDelivery") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("eventSeq", .integer).notNull()
                t.column("url", .text).notNull()
                t.column("format", .text).notNull()
                t.column("secretEnv", .text)
                t.column("action", .text).notNull()
                t.column("body", .text).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("nextAttemptAt", .integer).notNull()
                t.column("deliveredAt", .integer)
                t.column("lastError", .text)
            }
            try db.create(index: "webhookDelivery_due", on: "webhookDelivery", columns: ["deliveredAt", "nextAttemptAt"])
        }
        m.registerMigration("v3: web sessions and violation messages") { db in
            try db.alter(table: "evaluationViolation") { t in t.add(column: "message", .text).notNull().defaults(to: "") }
            try db.create(table: "session") { t in
                t.primaryKey("idHash", .text)
                t.column("user", .text).notNull().references("user", onDelete: .cascade)
                t.column("csrf", .text).notNull()
                t.column("expiresAt", .integer).notNull()
            }
        }
        m.registerMigration("v4: recorded checks by age, for retention") { db in
            try db.create(index: "evaluation_workspace_at", on: "evaluation", columns: ["workspace", "at"])
        }
        m.registerMigration("v5: idle timeout of web sessions") { db in
            // Sessions from before have never been seen: they end at once, and their users sign in again.
            try db.alter(table: "session") { t in t.add(column: "lastSeenAt", .integer).notNull().defaults(to: 0) }
        }
        m.registerMigration(loggedStatesMigration) { db in
            try db.alter(table: "exception") { t in
                t.add(column: "owner", .text)
                t.add(column: "proposedRisk", .text)
                t.add(column: "riskRaisedBy", .text)
            }
            try db.alter(table: "evaluationViolation") { t in
                t.add(column: "severity", .text).notNull().defaults(to: "medium")
                t.add(column: "category", .text).notNull().defaults(to: "security")
            }
            try db.create(index: "evaluationViolation_policy", on: "evaluationViolation", columns: ["policy"])
            // A session opened with a token lives only as long as the token: sessions from before end now.
            try db.execute(sql: "DELETE FROM session")
            try db.alter(table: "session") { t in t.add(column: "tokenId", .text).notNull().defaults(to: "").indexed() }
            try db.create(table: "checkpoint") { t in
                t.primaryKey("seq", .integer)
                t.column("hash", .text).notNull()
                t.column("time", .integer).notNull()
                t.column("keyId", .text).notNull()
                t.column("signature", .text).notNull()
            }
        }
        m.registerMigration("v7: tickets, request origins and evidence display text") { db in
            try db.alter(table: "exception") { t in
                t.add(column: "ticket", .text)
                t.add(column: "origin", .text)
            }
            try db.create(index: "exception_ticket", on: "exception", columns: ["ticket"])
            try db.alter(table: "evidence") { t in t.add(column: "displayText", .text) }
        }
        m.registerMigration("v8: review attestations of program exceptions") { db in
            try db.alter(table: "exception") { t in t.add(column: "reviewedAt", .integer) }
        }
        m.registerMigration("v9: the violating values an exception binds") { db in
            try db.alter(table: "exception") { t in t.add(column: "bound", .text) }
        }
        m.registerMigration("v10: the log's requests, indexed for verification") { db in
            // Verification asks which exceptions the log records a request of: read from this index,
            // it costs one entry per exception, not a scan of the whole log.
            try db.execute(sql: "CREATE INDEX auditEvent_requested ON auditEvent(subject) WHERE action = 'exception.requested'")
        }
        return m
    }
}
