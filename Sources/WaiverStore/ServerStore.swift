import Foundation
import GRDB
import WaiverCore

/// Users, tokens, reminders and the webhook outbox: what the shared register adds.
extension SQLiteRegisterStore {
    // MARK: - Users and tokens

    /// Adds (or updates) a user; logged.
    public func putUser(_ user: User, actor: String, now: Date) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO user (name, admin, createdAt) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET admin = excluded.admin",
                           arguments: [user.name, user.admin, Self.seconds(now)])
            try db.execute(sql: "DELETE FROM userGroup WHERE user = ?", arguments: [user.name])
            for g in user.groups { try db.execute(sql: "INSERT INTO userGroup (user, groupName) VALUES (?, ?)", arguments: [user.name, g]) }
            try appendEvent(db, AuditDraft(actor: actor, action: "user.saved", subject: "user:\(user.name)",
                                           payload: ["groups": .array(user.groups.map(Value.string)), "admin": .bool(user.admin)], time: now))
        }
    }

    public func user(named name: String) throws -> User? {
        try pool.read { db in try Self.user(db, name) }
    }

    static func user(_ db: Database, _ name: String) throws -> User? {
        guard let row = try Row.fetchOne(db, sql: "SELECT name, admin FROM user WHERE name = ?", arguments: [name]) else { return nil }
        let groups = try String.fetchAll(db, sql: "SELECT groupName FROM userGroup WHERE user = ? ORDER BY groupName", arguments: [name])
        return User(name: try row.read(at: 0, of: "user \(name.clipped())"), groups: groups, admin: try row.read(at: 1, of: "user \(name.clipped())"))
    }

    /// The members of a group.
    public func members(of group: String) throws -> Set<String> {
        try pool.read { db in
            Set(try String.fetchAll(db.cachedStatement(sql: "SELECT user FROM userGroup WHERE groupName = ?"), arguments: [group]))
        }
    }

    /// Removes a user: their tokens and sessions go with them (foreign keys), so they are refused on
    /// their next request, on every route. Logged.
    public func removeUser(_ name: String, actor: String, now: Date) throws {
        try pool.write { db in
            guard try Self.user(db, name) != nil else { throw RegisterError.notFound("no user '\(name)'") }
            try db.execute(sql: "DELETE FROM user WHERE name = ?", arguments: [name])
            try appendEvent(db, AuditDraft(actor: actor, action: "user.removed", subject: "user:\(name)", payload: [:], time: now))
        }
    }

    /// Ends every web session of a user (they sign in again); returns how many ended. Logged.
    @discardableResult
    public func endSessions(user: String, actor: String, now: Date) throws -> Int {
        try pool.write { db in
            guard try Self.user(db, user) != nil else { throw RegisterError.notFound("no user '\(user)'") }
            try db.execute(sql: "DELETE FROM session WHERE user = ?", arguments: [user])
            let ended = db.changesCount
            try appendEvent(db, AuditDraft(actor: actor, action: "sessions.ended", subject: "user:\(user)",
                                           payload: ["sessions": .number(Double(ended))], time: now))
            return ended
        }
    }

    public func users() throws -> [User] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM user ORDER BY name").compactMap { try Self.user(db, $0) }
        }
    }

    /// Stores a token (its id and the hash of its secret) for a user; logged without the secret.
    public func addToken(id: String, secretHash: String, user: String, actor: String, now: Date) throws {
        try pool.write { db in
            guard try Self.user(db, user) != nil else { throw RegisterError.notFound("no user '\(user)' (add it with `waiver admin add-user`)") }
            try db.execute(sql: "INSERT INTO token (id, user, secretHash, createdAt) VALUES (?, ?, ?, ?)",
                           arguments: [id, user, secretHash, Self.seconds(now)])
            try appendEvent(db, AuditDraft(actor: actor, action: "token.added", subject: "user:\(user)", payload: ["token": .string(id)], time: now))
        }
    }

    public func revokeToken(id: String, actor: String, now: Date) throws {
        try pool.write { db in
            guard let user = try String.fetchOne(db, sql: "SELECT user FROM token WHERE id = ? AND revokedAt IS NULL", arguments: [id]) else {
                throw RegisterError.notFound("no active token '\(id)'")
            }
            try db.execute(sql: "UPDATE token SET revokedAt = ? WHERE id = ?", arguments: [Self.seconds(now), id])
            // The sessions signed in with the token end with it.
            try db.execute(sql: "DELETE FROM session WHERE tokenId = ?", arguments: [id])
            let ended = db.changesCount
            try appendEvent(db, AuditDraft(actor: actor, action: "token.revoked", subject: "user:\(user)",
                                           payload: ["token": .string(id), "sessions_ended": .number(Double(ended))], time: now))
        }
    }

    /// The user a live token belongs to and the stored hash of its secret (one query: this runs on every request).
    public func token(id: String) throws -> (user: User, secretHash: String)? {
        try pool.read { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT t.user, t.secretHash, u.admin, (SELECT group_concat(groupName, char(10)) FROM userGroup g WHERE g.user = t.user)
                FROM token t JOIN user u ON u.name = t.user WHERE t.id = ? AND t.revokedAt IS NULL
                """), arguments: [id]) else { return nil }
            let what = "token \(id.clipped())"
            let groups = (try row.read(at: 3, of: what) as String?)?.split(separator: "\n").map(String.init).sorted() ?? []
            return (User(name: try row.read(at: 0, of: what), groups: groups, admin: try row.read(at: 2, of: what)), try row.read(at: 1, of: what))
        }
    }

    public func tokens() throws -> [TokenRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, user, createdAt, revokedAt FROM token ORDER BY createdAt, id").map {
                TokenRecord(id: try $0.read(at: 0, of: "a token"), user: try $0.read(at: 1, of: "a token"), createdAt: Self.date(try $0.read(at: 2, of: "a token") as Int64),
                            revokedAt: Self.date(try $0.read(at: 3, of: "a token") as Int64?))
            }
        }
    }

    // MARK: - Web sessions

    /// Starts a session: only the SHA-256 of its id is stored.
    public func createSession(idHash: String, user: String, tokenId: String, csrf: String, expiresAt: Date, now: Date) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM session WHERE expiresAt <= ?", arguments: [Self.seconds(now)])
            try db.execute(sql: "INSERT INTO session (idHash, user, tokenId, csrf, expiresAt, lastSeenAt) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [idHash, user, tokenId, csrf, Self.seconds(expiresAt), Self.seconds(now)])
            try appendEvent(db, AuditDraft(actor: user, action: "session.started", subject: "user:\(user)", payload: [:], time: now))
        }
    }

    /// The user and CSRF token of a live session: not past its lifetime, used within `idle` seconds,
    /// and signed in with a token that is still live, or through single sign-on (`ssoSession`). The user and their groups are read afresh, so
    /// a revoked token, a removed user or a removed group counts on the next request. Use moves the
    /// idle deadline on (written at most once a minute, not on every request).
    public func session(idHash: String, now: Date, idle: TimeInterval) throws -> (user: User, csrf: String)? {
        let seconds = Self.seconds(now)
        let found: (User, String, Int64)? = try pool.read { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                    SELECT s.user, s.csrf, s.lastSeenAt FROM session s LEFT JOIN token t ON t.id = s.tokenId AND t.user = s.user
                    WHERE s.idHash = ? AND s.expiresAt > ? AND s.lastSeenAt > ?
                      AND (s.tokenId = '\(ssoSession)' OR (t.id IS NOT NULL AND t.revokedAt IS NULL))
                    """), arguments: [idHash, seconds, seconds - Int64(idle)]),
                  let user = try Self.user(db, try row.read(at: 0, of: "a session")) else { return nil }
            return (user, try row.read(at: 1, of: "a session"), try row.read(at: 2, of: "a session"))
        }
        guard let (user, csrf, lastSeen) = found else { return nil }
        if seconds - lastSeen >= 60 {
            try pool.write { db in
                try db.execute(sql: "UPDATE session SET lastSeenAt = MAX(lastSeenAt, ?) WHERE idHash = ?", arguments: [seconds, idHash])
            }
        }
        return (user, csrf)
    }

    public func endSession(idHash: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM session WHERE idHash = ?", arguments: [idHash]) }
    }

    // MARK: - Reminders

    /// Records that the reminder at `offset` before expiry was sent, with its audit event, unless it
    /// already was: returns false then (so a reminder is sent once, across restarts).
    public func markReminder(exceptionId: Int, offset: Int, event: AuditDraft) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO reminderSent (exceptionId, offsetSeconds, sentAt) VALUES (?, ?, ?)",
                           arguments: [exceptionId, offset, Self.seconds(event.time)])
            guard db.changesCount == 1 else { return false }
            try appendEvent(db, event)
            return true
        }
    }

    // MARK: - Webhook outbox

    /// Deliveries due at `now`, oldest first.
    public func dueDeliveries(now: Date, limit: Int, maxAttempts: Int) throws -> [WebhookDelivery] {
        try pool.read { db in
            try DeliveryRow.fetchAll(db, sql: """
                SELECT * FROM webhookDelivery WHERE deliveredAt IS NULL AND nextAttemptAt <= ? AND attempts < ? ORDER BY id LIMIT ?
                """, arguments: [Self.seconds(now), maxAttempts, limit]).map(\.delivery)
        }
    }

    public func deliveries(limit: Int = 100) throws -> [WebhookDelivery] {
        try pool.read { db in try DeliveryRow.fetchAll(db, sql: "SELECT * FROM webhookDelivery ORDER BY id DESC LIMIT ?", arguments: [limit]).map(\.delivery) }
    }

    /// Deletes webhook rows delivered before `before` and web sessions past their lifetime or idle
    /// since before `idleBefore`; returns the counts. The scheduler runs it on every pass.
    @discardableResult
    public func prune(deliveredBefore before: Date, sessionsIdleBefore idleBefore: Date, now: Date) throws -> (deliveries: Int, sessions: Int) {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM webhookDelivery WHERE deliveredAt IS NOT NULL AND deliveredAt < ?", arguments: [Self.seconds(before)])
            let deliveries = db.changesCount
            try db.execute(sql: "DELETE FROM session WHERE expiresAt <= ? OR lastSeenAt <= ?", arguments: [Self.seconds(now), Self.seconds(idleBefore)])
            return (deliveries, db.changesCount)
        }
    }

    /// Marks many deliveries delivered in one transaction.
    public func markDelivered(_ ids: [Int], at: Date) throws {
        guard !ids.isEmpty else { return }
        try pool.write { db in
            let statement = try db.cachedStatement(sql: "UPDATE webhookDelivery SET deliveredAt = ?, attempts = attempts + 1, lastError = NULL WHERE id = ?")
            for id in ids { try statement.execute(arguments: [Self.seconds(at), id]) }
        }
    }

    public func markDelivered(_ id: Int, at: Date) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE webhookDelivery SET deliveredAt = ?, attempts = attempts + 1, lastError = NULL WHERE id = ?",
                           arguments: [Self.seconds(at), id])
        }
    }

    public func markFailed(_ id: Int, error: String, retryAt: Date) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE webhookDelivery SET attempts = attempts + 1, lastError = ?, nextAttemptAt = ? WHERE id = ?",
                           arguments: [String(error.prefix(500)), Self.seconds(retryAt), id])
        }
    }

    /// Counts of deliveries: delivered, waiting, failed for good.
    public func deliveryCounts(maxAttempts: Int) throws -> (delivered: Int, waiting: Int, failed: Int) {
        try pool.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhookDelivery WHERE deliveredAt IS NOT NULL") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhookDelivery WHERE deliveredAt IS NULL AND attempts < ?", arguments: [maxAttempts]) ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhookDelivery WHERE deliveredAt IS NULL AND attempts >= ?", arguments: [maxAttempts]) ?? 0)
        }
    }

    /// Exceptions counted by status (for metrics).
    public func statusCounts() throws -> [String: Int] {
        try pool.read { db in
            var out: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) FROM exception GROUP BY status") { out[try row.read(at: 0, of: "a status count")] = try row.read(at: 1, of: "a status count") }
            return out
        }
    }
}
