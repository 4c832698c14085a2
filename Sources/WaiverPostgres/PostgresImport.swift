import Foundation
import PostgresNIO
import WaiverCore
import WaiverStore

extension PostgresRegisterStore {
    /// Loads a whole register into this one, which must be empty, in one transaction: the events
    /// verbatim (the same chain), exceptions with their numbers, recorded checks, users, tokens,
    /// reminders sent and checkpoints. Nothing is kept when any of it fails.
    public func load(_ dump: RegisterDump) async throws {
        try await writing { conn in
            let used = try await Self.rows(conn, "SELECT (SELECT count(*) FROM audit_event) + (SELECT count(*) FROM exception) + (SELECT count(*) FROM waiver_user) AS n", logger)
            guard let n = used.first, try Self.column(n, "n", "the destination") as Int64 == 0 else {
                throw RegisterError.conflict("\(url): the destination register is not empty (copy into a new database)")
            }
            // The log in batches of 1,000 rows per statement.
            var start = 0
            while start < dump.events.count {
                let part = dump.events[start..<min(start + 1_000, dump.events.count)]
                try await conn.query("""
                    INSERT INTO audit_event (seq, time, actor, action, subject, payload, prev_hash, hash)
                    SELECT * FROM unnest(\(part.map { Int64($0.seq) })::BIGINT[], \(part.map { StoreRules.seconds($0.time) })::BIGINT[],
                      \(part.map(\.actor))::TEXT[], \(part.map(\.action))::TEXT[], \(part.map(\.subject))::TEXT[], \(part.map(\.payload))::TEXT[],
                      \(part.map(\.prevHash))::TEXT[], \(part.map(\.hash))::TEXT[])
                    """, logger: logger)
                start += part.count
            }
            for r in dump.exceptions {
                try await conn.query("""
                    INSERT INTO exception (id, policy, category, workspace, subject_kind, requester, conflicted, reason, requested_days,
                      likelihood, impact, risk_level, mitigations, approver_groups, min_approvals, required_groups, status,
                      created_at, decided_at, expires_at, renews, owner, proposed_risk, risk_raised_by, ticket, origin, reviewed_at, bound)
                    VALUES (\(Int64(r.id)), \(r.policy), \(r.category), \(r.workspace), \(r.subjectKind.rawValue), \(r.requester), \(StoreRules.json(r.conflicted)),
                      \(r.reason), \(Int64(r.requestedDays)), \(r.likelihood.rawValue), \(r.impact.rawValue), \(r.riskLevel), \(StoreRules.json(r.mitigations)),
                      \(StoreRules.json(r.rule.groups)), \(Int64(r.rule.minApprovals)), \(StoreRules.json(r.rule.requiredGroups)), \(r.status.rawValue),
                      \(StoreRules.seconds(r.createdAt)), \(r.decidedAt.map(StoreRules.seconds)), \(r.expiresAt.map(StoreRules.seconds)), \(r.renews.map(Int64.init)),
                      \(r.owner), \(r.proposedRisk), \(r.riskRaisedBy), \(r.ticket), \(StoreRules.originText(r.origin)), \(r.reviewedAt.map(StoreRules.seconds)), \(StoreRules.boundText(r.bound)))
                    """, logger: logger)
                for (i, resource) in r.resources.enumerated() {
                    try await conn.query("""
                        INSERT INTO exception_resource (exception_id, workspace, policy, resource, position) VALUES (\(Int64(r.id)), \(r.workspace), \(r.policy), \(resource), \(Int64(i)))
                        """, logger: logger)
                }
                try await saveChildren(conn, r, old: nil)
            }
            for e in dump.evaluations {
                try await conn.query("""
                    INSERT INTO evaluation (id, workspace, at, actor, verdict, resource_count)
                    VALUES (\(Int64(e.id)), \(e.workspace), \(StoreRules.seconds(e.at)), \(e.actor), \(e.verdict), \(Int64(e.resourceCount)))
                    """, logger: logger)
                try await insertViolations(conn, evaluation: Int64(e.id), e.violations)
            }
            try await conn.query("SELECT setval(pg_get_serial_sequence('evaluation', 'id'), GREATEST((SELECT COALESCE(MAX(id), 0) FROM evaluation), 1))", logger: logger)
            for u in dump.users {
                try await conn.query("INSERT INTO waiver_user (name, admin, created_at) VALUES (\(u.name), \(u.admin), 0)", logger: logger)
                for g in u.groups { try await conn.query("INSERT INTO user_group (user_name, group_name) VALUES (\(u.name), \(g))", logger: logger) }
            }
            for t in dump.tokens {
                try await conn.query("""
                    INSERT INTO token (id, user_name, secret_hash, created_at, revoked_at)
                    VALUES (\(t.record.id), \(t.record.user), \(t.secretHash), \(StoreRules.seconds(t.record.createdAt)), \(t.record.revokedAt.map(StoreRules.seconds)))
                    """, logger: logger)
            }
            for r in dump.reminders {
                try await conn.query("""
                    INSERT INTO reminder_sent (exception_id, offset_seconds, sent_at) VALUES (\(Int64(r.exceptionId)), \(Int64(r.offset)), \(StoreRules.seconds(r.sentAt)))
                    """, logger: logger)
            }
            for c in dump.checkpoints {
                try await conn.query("""
                    INSERT INTO checkpoint (seq, hash, time, key_id, signature) VALUES (\(c.seq), \(c.hash), \(c.time), \(c.keyId), \(c.signature))
                    """, logger: logger)
            }
        }
    }
}
