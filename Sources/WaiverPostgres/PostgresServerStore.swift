import Foundation
import PostgresNIO
import WaiverCore
import WaiverStore

/// Users, tokens, sessions, reminders, the webhook outbox and checkpoints on PostgreSQL: what the
/// shared register adds, as on SQLite (`ServerStore.swift`), every write under the chain lock.
extension PostgresRegisterStore: ServerRegisterStore {
    public var location: String { url.description }

    static func users(_ conn: PostgresConnection, _ query: PostgresQuery, _ logger: Logger) async throws -> [User] {
        var out: [User] = []
        for r in try await rows(conn, query, logger) {
            let name: String = try column(r, "name", "a user")
            let groups: [String] = try column(r, "groups", "user \(name.clipped())")
            out.append(User(name: name, groups: groups.sorted(), admin: try column(r, "admin", "user \(name.clipped())")))
        }
        return out
    }

    static let userColumns = "u.name, u.admin, ARRAY(SELECT g.group_name FROM user_group g WHERE g.user_name = u.name ORDER BY g.group_name) AS groups"

    func user(_ conn: PostgresConnection, _ name: String) async throws -> User? {
        try await Self.users(conn, PostgresQuery(unsafeSQL: "SELECT \(Self.userColumns) FROM waiver_user u WHERE u.name = $1", binds: Self.binds(name)), logger).first
    }

    static func binds(_ values: String...) -> PostgresBindings {
        var b = PostgresBindings()
        for v in values { b.append(v) }
        return b
    }

    public func putUser(_ user: User, actor: String, now: Date) async throws {
        try await writing { conn in
            try await conn.query("""
                INSERT INTO waiver_user (name, admin, created_at) VALUES (\(user.name), \(user.admin), \(StoreRules.seconds(now)))
                ON CONFLICT (name) DO UPDATE SET admin = excluded.admin
                """, logger: logger)
            try await conn.query("DELETE FROM user_group WHERE user_name = \(user.name)", logger: logger)
            for g in user.groups { try await conn.query("INSERT INTO user_group (user_name, group_name) VALUES (\(user.name), \(g))", logger: logger) }
            try await appendEvent(conn, AuditDraft(actor: actor, action: "user.saved", subject: "user:\(user.name)",
                                                   payload: ["groups": .array(user.groups.map(Value.string)), "admin": .bool(user.admin)], time: now))
        }
    }

    public func user(named name: String) async throws -> User? {
        try await reading { conn in try await user(conn, name) }
    }

    public func users() async throws -> [User] {
        try await reading { conn in try await Self.users(conn, PostgresQuery(unsafeSQL: "SELECT \(Self.userColumns) FROM waiver_user u ORDER BY u.name"), logger) }
    }

    public func people() async throws -> People { People(users: try await users()) }

    public func removeUser(_ name: String, actor: String, now: Date) async throws {
        try await writing { conn in
            guard try await user(conn, name) != nil else { throw RegisterError.notFound("no user '\(name)'") }
            try await conn.query("DELETE FROM waiver_user WHERE name = \(name)", logger: logger)
            try await appendEvent(conn, AuditDraft(actor: actor, action: "user.removed", subject: "user:\(name)", payload: [:], time: now))
        }
    }

    public func addToken(id: String, secretHash: String, user name: String, actor: String, now: Date) async throws {
        try await writing { conn in
            guard try await user(conn, name) != nil else { throw RegisterError.notFound("no user '\(name)' (add it with `waiver admin add-user`)") }
            try await conn.query("INSERT INTO token (id, user_name, secret_hash, created_at) VALUES (\(id), \(name), \(secretHash), \(StoreRules.seconds(now)))", logger: logger)
            try await appendEvent(conn, AuditDraft(actor: actor, action: "token.added", subject: "user:\(name)", payload: ["token": .string(id)], time: now))
        }
    }

    public func revokeToken(id: String, actor: String, now: Date) async throws {
        try await writing { conn in
            guard let owner = try await Self.rows(conn, "SELECT user_name FROM token WHERE id = \(id) AND revoked_at IS NULL", logger).first else {
                throw RegisterError.notFound("no active token '\(id)'")
            }
            let name: String = try Self.column(owner, "user_name", "token \(id.clipped())")
            try await conn.query("UPDATE token SET revoked_at = \(StoreRules.seconds(now)) WHERE id = \(id)", logger: logger)
            let ended = try await Self.rows(conn, "DELETE FROM web_session WHERE token_id = \(id) RETURNING id_hash", logger).count
            try await appendEvent(conn, AuditDraft(actor: actor, action: "token.revoked", subject: "user:\(name)",
                                                   payload: ["token": .string(id), "sessions_ended": .number(Double(ended))], time: now))
        }
    }

    public func token(id: String) async throws -> (user: User, secretHash: String)? {
        let found: TokenHit? = try await reading { conn in
            guard let r = try await Self.rows(conn, "SELECT user_name, secret_hash FROM token WHERE id = \(id) AND revoked_at IS NULL", logger).first else { return nil }
            let name: String = try Self.column(r, "user_name", "token \(id.clipped())")
            guard let u = try await user(conn, name) else { return nil }
            return TokenHit(user: u, hash: try Self.column(r, "secret_hash", "token \(id.clipped())"))
        }
        return found.map { ($0.user, $0.hash) }
    }

    struct TokenHit: Sendable {
        let user: User
        let hash: String
    }

    public func tokens() async throws -> [TokenRecord] {
        try await reading { conn in
            try await Self.rows(conn, "SELECT id, user_name, created_at, revoked_at FROM token ORDER BY created_at, id", logger).map {
                TokenRecord(id: try Self.column($0, "id", "a token"), user: try Self.column($0, "user_name", "a token"),
                            createdAt: StoreRules.date(try Self.column($0, "created_at", "a token")),
                            revokedAt: StoreRules.date(try Self.column($0, "revoked_at", "a token") as Int64?))
            }
        }
    }

    public func createSession(idHash: String, user: String, tokenId: String, csrf: String, expiresAt: Date, now: Date) async throws {
        try await writing { conn in
            try await conn.query("DELETE FROM web_session WHERE expires_at <= \(StoreRules.seconds(now))", logger: logger)
            try await conn.query("""
                INSERT INTO web_session (id_hash, user_name, token_id, csrf, expires_at, last_seen_at)
                VALUES (\(idHash), \(user), \(tokenId), \(csrf), \(StoreRules.seconds(expiresAt)), \(StoreRules.seconds(now)))
                """, logger: logger)
            try await appendEvent(conn, AuditDraft(actor: user, action: "session.started", subject: "user:\(user)", payload: [:], time: now))
        }
    }

    public func session(idHash: String, now: Date, idle: TimeInterval) async throws -> (user: User, csrf: String)? {
        let seconds = StoreRules.seconds(now)
        let found: SessionHit? = try await reading { conn in
            guard let r = try await Self.rows(conn, """
                SELECT s.user_name, s.csrf, s.last_seen_at FROM web_session s LEFT JOIN token t ON t.id = s.token_id AND t.user_name = s.user_name
                WHERE s.id_hash = \(idHash) AND s.expires_at > \(seconds) AND s.last_seen_at > \(seconds - Int64(idle))
                  AND (s.token_id = \(ssoSession) OR (t.id IS NOT NULL AND t.revoked_at IS NULL))
                """, logger).first, let u = try await user(conn, try Self.column(r, "user_name", "a session")) else { return nil }
            return SessionHit(user: u, csrf: try Self.column(r, "csrf", "a session"), lastSeen: try Self.column(r, "last_seen_at", "a session"))
        }
        guard let found else { return nil }
        if seconds - found.lastSeen >= 60 {
            try await client.query("UPDATE web_session SET last_seen_at = GREATEST(last_seen_at, \(seconds)) WHERE id_hash = \(idHash)", logger: logger)
        }
        return (found.user, found.csrf)
    }

    struct SessionHit: Sendable {
        let user: User
        let csrf: String
        let lastSeen: Int64
    }

    public func endSession(idHash: String) async throws {
        try await client.query("DELETE FROM web_session WHERE id_hash = \(idHash)", logger: logger)
    }

    public func endSessions(user name: String, actor: String, now: Date) async throws -> Int {
        try await writing { conn in
            guard try await user(conn, name) != nil else { throw RegisterError.notFound("no user '\(name)'") }
            let ended = try await Self.rows(conn, "DELETE FROM web_session WHERE user_name = \(name) RETURNING id_hash", logger).count
            try await appendEvent(conn, AuditDraft(actor: actor, action: "sessions.ended", subject: "user:\(name)",
                                                   payload: ["sessions": .number(Double(ended))], time: now))
            return ended
        }
    }

    public func markReminder(exceptionId: Int, offset: Int, event: AuditDraft) async throws -> Bool {
        try await writing { conn in
            let inserted = try await Self.rows(conn, """
                INSERT INTO reminder_sent (exception_id, offset_seconds, sent_at) VALUES (\(Int64(exceptionId)), \(Int64(offset)), \(StoreRules.seconds(event.time)))
                ON CONFLICT DO NOTHING RETURNING exception_id
                """, logger).count
            guard inserted == 1 else { return false }
            try await appendEvent(conn, event)
            return true
        }
    }

    static func delivery(_ r: PostgresRandomAccessRow) throws -> WebhookDelivery {
        let id: Int64 = try column(r, "id", "a webhook delivery")
        let what = "webhook delivery \(id)"
        return WebhookDelivery(id: Int(id), url: try column(r, "url", what), format: try column(r, "format", what), secretEnv: try column(r, "secret_env", what),
                               action: try column(r, "action", what), body: try column(r, "body", what),
                               attempts: Int(clamping: try column(r, "attempts", what) as Int64), nextAttemptAt: StoreRules.date(try column(r, "next_attempt_at", what)),
                               deliveredAt: StoreRules.date(try column(r, "delivered_at", what) as Int64?), lastError: try column(r, "last_error", what))
    }

    public func claimDeliveries(now: Date, limit: Int, maxAttempts: Int, lease: TimeInterval) async throws -> [WebhookDelivery] {
        // Row by row: replicas claiming at once skip each other's rows (SKIP LOCKED) instead of
        // waiting or sending twice; the claim is a lease on next_attempt_at.
        let seconds = StoreRules.seconds(now)
        return try await client.withConnection { conn in
            try await Self.rows(conn, """
                UPDATE webhook_delivery SET next_attempt_at = \(seconds + Int64(max(1, lease))) WHERE id IN (
                  SELECT id FROM webhook_delivery WHERE delivered_at IS NULL AND next_attempt_at <= \(seconds) AND attempts < \(Int64(maxAttempts))
                  ORDER BY id LIMIT \(Int64(max(0, limit))) FOR UPDATE SKIP LOCKED)
                RETURNING *
                """, logger).map(Self.delivery).sorted { $0.id < $1.id }
        }
    }

    /// The scheduler's lock: a session-level advisory lock on one connection, held for the pass and
    /// released after it, or by the server when the replica's connection drops (a replica killed
    /// mid-pass hands over at the next pass of another).
    static let schedulerLock: Int64 = 0x5741_4956_5343

    public func asLeader<T: Sendable>(_ body: () async throws -> T) async throws -> T? {
        try await withoutActuallyEscaping(body) { body in
            let body = Unsafe(body)
            return try await client.withConnection { conn -> T? in
                let got = try await Self.rows(conn, "SELECT pg_try_advisory_lock(\(Self.schedulerLock)) AS got", logger).first
                guard let got, try Self.column(got, "got", "the scheduler lock") as Bool else { return nil }
                do {
                    let result = try await body.value()
                    _ = try? await conn.query("SELECT pg_advisory_unlock(\(Self.schedulerLock))", logger: logger)
                    return result
                } catch {
                    _ = try? await conn.query("SELECT pg_advisory_unlock(\(Self.schedulerLock))", logger: logger)
                    throw error
                }
            }
        }
    }

    public func deliveries(limit: Int) async throws -> [WebhookDelivery] {
        try await reading { conn in
            try await Self.rows(conn, "SELECT * FROM webhook_delivery ORDER BY id DESC LIMIT \(Int64(max(0, limit)))", logger).map(Self.delivery)
        }
    }

    public func markDelivered(_ ids: [Int], at: Date) async throws {
        guard !ids.isEmpty else { return }
        try await client.query("""
            UPDATE webhook_delivery SET delivered_at = \(StoreRules.seconds(at)), attempts = attempts + 1, last_error = NULL WHERE id = ANY(\(ids.map(Int64.init)))
            """, logger: logger)
    }

    public func markFailed(_ id: Int, error: String, retryAt: Date) async throws {
        try await client.query("""
            UPDATE webhook_delivery SET attempts = attempts + 1, last_error = \(String(error.prefix(500))), next_attempt_at = \(StoreRules.seconds(retryAt)) WHERE id = \(Int64(id))
            """, logger: logger)
    }

    public func deliveryCounts(maxAttempts: Int) async throws -> (delivered: Int, waiting: Int, failed: Int) {
        let n = try await reading { conn in
            try await Self.rows(conn, """
                SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                       count(*) FILTER (WHERE delivered_at IS NULL AND attempts < \(Int64(maxAttempts))) AS waiting,
                       count(*) FILTER (WHERE delivered_at IS NULL AND attempts >= \(Int64(maxAttempts))) AS failed
                FROM webhook_delivery
                """, logger).first.map { r in
                [try Self.column(r, "delivered", "outbox counts") as Int64, try Self.column(r, "waiting", "outbox counts"), try Self.column(r, "failed", "outbox counts")]
            } ?? [0, 0, 0]
        }
        return (Int(n[0]), Int(n[1]), Int(n[2]))
    }

    public func prune(deliveredBefore before: Date, sessionsIdleBefore idleBefore: Date, now: Date) async throws -> (deliveries: Int, sessions: Int) {
        let n = try await writing { conn in
            [try await Self.rows(conn, "DELETE FROM webhook_delivery WHERE delivered_at IS NOT NULL AND delivered_at < \(StoreRules.seconds(before)) RETURNING id", logger).count,
             try await Self.rows(conn, """
                DELETE FROM web_session WHERE expires_at <= \(StoreRules.seconds(now)) OR last_seen_at <= \(StoreRules.seconds(idleBefore)) RETURNING id_hash
                """, logger).count]
        }
        return (n[0], n[1])
    }

    public func statusCounts() async throws -> [String: Int] {
        try await reading { conn in
            var out: [String: Int] = [:]
            for r in try await Self.rows(conn, "SELECT status, count(*) AS n FROM exception GROUP BY status", logger) {
                out[try Self.column(r, "status", "a status count")] = Int(try Self.column(r, "n", "a status count") as Int64)
            }
            return out
        }
    }

    public func evidenceReferenced(sha256: String) async throws -> Bool {
        try await reading { conn in !(try await Self.rows(conn, "SELECT 1 FROM evidence WHERE sha256 = \(sha256) LIMIT 1", logger).isEmpty) }
    }

    public func checkpoints() async throws -> [Checkpoint] {
        try await reading { conn in
            try await Self.rows(conn, "SELECT * FROM checkpoint ORDER BY seq", logger).map {
                Checkpoint(seq: try Self.column($0, "seq", "a checkpoint"), hash: try Self.column($0, "hash", "a checkpoint"), time: try Self.column($0, "time", "a checkpoint"),
                           keyId: try Self.column($0, "key_id", "a checkpoint"), signature: try Self.column($0, "signature", "a checkpoint"))
            }
        }
    }

    public func checkpoint(with key: SigningKey, now: Date) async throws -> Checkpoint? {
        let last = try await checkpoints().last
        let chain = try await RegisterVerification.verify(self, anchors: last.map { [AuditAnchor(seq: Int($0.seq), hash: $0.hash)] } ?? [])
        if let bad = chain.firstBad {
            throw RegisterError.conflict("the audit log does not verify at event \(bad) (\(chain.problem ?? "")): no checkpoint is signed over it")
        }
        guard let head = chain.head else { return nil }
        if let last, last.seq == Int64(head.seq), last.keyId == key.publicKey.id { return last }
        let c = try Checkpoint.sign(head, at: now, with: key)
        try await writing { conn in
            try await conn.query("""
                INSERT INTO checkpoint (seq, hash, time, key_id, signature) VALUES (\(c.seq), \(c.hash), \(c.time), \(c.keyId), \(c.signature))
                ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, time = excluded.time, key_id = excluded.key_id, signature = excluded.signature
                """, logger: logger)
            for hook in webhooks {
                try await conn.query("""
                    INSERT INTO webhook_delivery (event_seq, url, format, secret_env, action, body, next_attempt_at)
                    VALUES (\(c.seq), \(hook.url), \(hook.format), \(hook.secretEnv), 'audit.checkpoint', \(WebhookBody.render(c, format: hook.format)), \(c.time))
                    """, logger: logger)
            }
        }
        return c
    }

    public func verifyAudit(anchors: [AuditAnchor], evidenceDirectory: String?, checkpoints check: CheckpointCheck?,
                            resume: AuditAnchor?) async throws -> AuditVerification {
        let stored = check == nil || check?.given != nil ? [] : try await checkpoints()
        return try await RegisterVerification.verifyAudit(self, anchors: anchors, evidenceDirectory: evidenceDirectory, checkpoints: check, stored: stored,
                                                          resume: resume)
    }
}
