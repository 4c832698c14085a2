import Foundation
import Logging
import NIOSSL
import PostgresNIO
import WaiverCore
import WaiverStore

/// The register on a PostgreSQL server, shared by every replica of `waiver serve` that points at it.
///
/// Every write is one transaction that first takes the chain lock (a transaction-scoped advisory
/// lock), so writers on every replica append to one unbroken audit chain in turn and each sees the
/// state it changes. Every read is one REPEATABLE READ snapshot, so an exception and the event that
/// backs it are read as of the same instant. The rules (chaining, what a change may touch, when a
/// row is backed by the log) are `StoreRules`, the same as SQLite's and the in-memory store's.
public final class PostgresRegisterStore: RegisterStore, Sendable {
    /// The head of the audit log as this process last verified it (`ServerRegisterStore`).
    public let auditMemo = AuditMemo()
    public let url: PostgresURL
    let client: PostgresClient
    let runner: Task<Void, Never>
    let webhooks: [WaiverCore.Configuration.Webhook]
    /// The SMTP server people are told through (`MailRules`), queued in the same outbox.
    let email: WaiverCore.Configuration.Email?
    let logger: Logger

    /// The advisory lock every write transaction holds: the audit chain's.
    static let chainLock: Int64 = 0x5741_4956_4552  // "WAIVER"
    /// The advisory lock migrations hold, so replicas starting at once migrate once.
    static let migrationLock: Int64 = 0x5741_4956_4D49

    /// Connects, and brings the schema up to date. Fails at once (within `connectTimeout`) when the
    /// server cannot be reached, rather than retrying in the background.
    public init(url: PostgresURL, webhooks: [WaiverCore.Configuration.Webhook] = [], email: WaiverCore.Configuration.Email? = nil,
                maxConnections: Int = 8, connectTimeout: Duration = .seconds(10), logger: Logger = Logger(label: "waiver.postgres")) async throws {
        self.url = url
        self.webhooks = webhooks
        self.email = email
        self.logger = logger
        let tls: PostgresClient.Configuration.TLS
        switch url.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(.makeClientConfiguration())
        case .require: tls = .require(.makeClientConfiguration())
        }
        var config = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user, password: url.password, database: url.database, tls: tls)
        config.options.maximumConnections = max(1, maxConnections)
        config.options.connectTimeout = connectTimeout
        let client = PostgresClient(configuration: config, backgroundLogger: logger)
        self.client = client
        self.runner = Task { await client.run() }
        do {
            // One connection first, directly, so an unreachable server or a wrong password is one
            // clear error now (the pool would retry quietly).
            let probe = try await PostgresConnection.connect(
                configuration: PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                                database: url.database, tls: try Self.connectionTLS(url.tls)),
                id: 0, logger: logger)
            try await probe.close()
            try await migrate()
        } catch {
            runner.cancel()
            throw PostgresStoreError.wrap(error, url: url)
        }
    }

    static func connectionTLS(_ mode: PostgresURL.TLSMode) throws -> PostgresConnection.Configuration.TLS {
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: return .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }

    /// Stops the connection pool.
    public func close() { runner.cancel() }

    deinit { runner.cancel() }

    // MARK: - Transactions

    /// A write: one transaction holding the chain lock.
    func writing<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN", lock: Self.chainLock, body)
    }

    /// A read: one snapshot.
    func reading<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", lock: nil, body)
    }

    func transaction<T: Sendable>(begin: String, lock: Int64?, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withoutActuallyEscaping(body) { body in
            let box = Unsafe(body)
            return try await client.withConnection { conn in
                try await conn.query(PostgresQuery(unsafeSQL: begin), logger: logger)
                do {
                    if let lock { try await conn.query("SELECT pg_advisory_xact_lock(\(lock))", logger: logger) }
                    let result = try await box.value(conn)
                    try await conn.query("COMMIT", logger: logger)
                    return result
                } catch {
                    _ = try? await conn.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }

    struct Unsafe<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }

    // MARK: - Schema

    /// The schema: named steps, in order, never edited once shipped (as SQLite's migrator).
    static let migrations: [(name: String, statements: [String])] = [
        ("v1: exceptions, checks, the audit log and the webhook outbox", [
            """
            CREATE TABLE exception (
              id BIGINT PRIMARY KEY, policy TEXT NOT NULL, category TEXT NOT NULL, workspace TEXT NOT NULL,
              subject_kind TEXT NOT NULL, requester TEXT NOT NULL, conflicted TEXT NOT NULL, reason TEXT NOT NULL,
              requested_days BIGINT NOT NULL, likelihood TEXT NOT NULL, impact TEXT NOT NULL, risk_level TEXT NOT NULL,
              mitigations TEXT NOT NULL, approver_groups TEXT NOT NULL, min_approvals BIGINT NOT NULL, required_groups TEXT NOT NULL,
              status TEXT NOT NULL, created_at BIGINT NOT NULL, decided_at BIGINT, expires_at BIGINT,
              renews BIGINT REFERENCES exception(id), owner TEXT, proposed_risk TEXT, risk_raised_by TEXT)
            """,
            "CREATE INDEX exception_status ON exception (status, expires_at)",
            "CREATE INDEX exception_created ON exception (created_at)",
            """
            CREATE TABLE exception_resource (
              exception_id BIGINT NOT NULL REFERENCES exception(id) ON DELETE CASCADE, workspace TEXT NOT NULL,
              policy TEXT NOT NULL, resource TEXT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (exception_id, resource))
            """,
            "CREATE INDEX exception_resource_lookup ON exception_resource (workspace, policy, resource)",
            """
            CREATE TABLE approval (
              exception_id BIGINT NOT NULL REFERENCES exception(id) ON DELETE CASCADE, approver TEXT NOT NULL, comment TEXT,
              at BIGINT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (exception_id, approver))
            """,
            """
            CREATE TABLE evidence (
              exception_id BIGINT NOT NULL REFERENCES exception(id) ON DELETE CASCADE, sha256 TEXT NOT NULL, name TEXT NOT NULL,
              size BIGINT NOT NULL, added_by TEXT NOT NULL, at BIGINT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (exception_id, sha256))
            """,
            """
            CREATE TABLE evaluation (
              id BIGSERIAL PRIMARY KEY, workspace TEXT NOT NULL, at BIGINT NOT NULL, actor TEXT NOT NULL, verdict TEXT NOT NULL,
              resource_count BIGINT NOT NULL)
            """,
            "CREATE INDEX evaluation_workspace ON evaluation (workspace, id)",
            "CREATE INDEX evaluation_workspace_at ON evaluation (workspace, at)",
            """
            CREATE TABLE evaluation_violation (
              evaluation_id BIGINT NOT NULL REFERENCES evaluation(id) ON DELETE CASCADE, position BIGINT NOT NULL,
              policy TEXT NOT NULL, resource TEXT NOT NULL, status TEXT NOT NULL, digest TEXT NOT NULL, message TEXT NOT NULL,
              severity TEXT NOT NULL, category TEXT NOT NULL)
            """,
            "CREATE INDEX evaluation_violation_evaluation ON evaluation_violation (evaluation_id, position)",
            "CREATE INDEX evaluation_violation_policy ON evaluation_violation (policy)",
            """
            CREATE TABLE audit_event (
              seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
              payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)
            """,
            "CREATE INDEX audit_event_subject ON audit_event (subject, seq)",
            // The audit log is append-only: the database itself refuses edits, deletions and truncation.
            """
            CREATE FUNCTION waiver_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'the audit log is append-only: events cannot be %', CASE TG_OP WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END;
            END $$
            """,
            "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW EXECUTE FUNCTION waiver_audit_append_only()",
            "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event FOR EACH STATEMENT EXECUTE FUNCTION waiver_audit_append_only()",
            """
            CREATE TABLE webhook_delivery (
              id BIGSERIAL PRIMARY KEY, event_seq BIGINT NOT NULL, url TEXT NOT NULL, format TEXT NOT NULL, secret_env TEXT,
              action TEXT NOT NULL, body TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL,
              delivered_at BIGINT, last_error TEXT)
            """,
            "CREATE INDEX webhook_delivery_due ON webhook_delivery (delivered_at, next_attempt_at)",
        ]),
        ("v2: users, tokens, web sessions, reminders and signed checkpoints", [
            "CREATE TABLE waiver_user (name TEXT PRIMARY KEY, admin BOOLEAN NOT NULL DEFAULT FALSE, created_at BIGINT NOT NULL)",
            "CREATE TABLE user_group (user_name TEXT NOT NULL REFERENCES waiver_user(name) ON DELETE CASCADE, group_name TEXT NOT NULL, PRIMARY KEY (user_name, group_name))",
            "CREATE INDEX user_group_group ON user_group (group_name)",
            "CREATE TABLE token (id TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES waiver_user(name) ON DELETE CASCADE, secret_hash TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)",
            "CREATE TABLE web_session (id_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES waiver_user(name) ON DELETE CASCADE, token_id TEXT NOT NULL, csrf TEXT NOT NULL, expires_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL)",
            "CREATE INDEX web_session_token ON web_session (token_id)",
            "CREATE TABLE reminder_sent (exception_id BIGINT NOT NULL REFERENCES exception(id) ON DELETE CASCADE, offset_seconds BIGINT NOT NULL, sent_at BIGINT NOT NULL, PRIMARY KEY (exception_id, offset_seconds))",
            "CREATE TABLE checkpoint (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, time BIGINT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL)",
        ]),
        ("v3: tickets, request origins and evidence display text", [
            "ALTER TABLE exception ADD COLUMN ticket TEXT, ADD COLUMN origin TEXT",
            "CREATE INDEX exception_ticket ON exception (ticket)",
            "ALTER TABLE evidence ADD COLUMN display_text TEXT",
        ]),
        ("v4: review attestations of program exceptions", [
            "ALTER TABLE exception ADD COLUMN reviewed_at BIGINT",
        ]),
        ("v5: the violating values an exception binds", [
            "ALTER TABLE exception ADD COLUMN bound TEXT",
        ]),
        ("v6: the log's requests, indexed for verification", [
            "CREATE INDEX audit_event_requested ON audit_event (subject) WHERE action = 'exception.requested'",
        ]),
    ]

    /// The migrations applied, in order.
    public func appliedMigrations() async throws -> [String] {
        try await reading { conn in
            var names: [String] = []
            for try await name in try await conn.query("SELECT name FROM waiver_migration ORDER BY position", logger: logger).decode(String.self) {
                names.append(name)
            }
            return names
        }
    }

    func migrate() async throws {
        try await client.withConnection { conn in
            try await conn.query("BEGIN", logger: logger)
            do {
                try await conn.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
                try await conn.query("CREATE TABLE IF NOT EXISTS waiver_migration (position BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE)", logger: logger)
                var applied = Set<String>()
                for try await name in try await conn.query("SELECT name FROM waiver_migration", logger: logger).decode(String.self) { applied.insert(name) }
                for (i, m) in Self.migrations.enumerated() where !applied.contains(m.name) {
                    for statement in m.statements { try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    try await conn.query("INSERT INTO waiver_migration (position, name) VALUES (\(Int64(i + 1)), \(m.name))", logger: logger)
                }
                try await conn.query("COMMIT", logger: logger)
            } catch {
                _ = try? await conn.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    // MARK: - Reading rows

    /// A column of a row as `T`, or `CorruptRegister` naming the row and the column.
    static func column<T: PostgresDecodable>(_ row: PostgresRandomAccessRow, _ name: String, _ what: @autoclosure () -> String) throws -> T {
        do { return try row[name].decode(T.self) } catch { throw CorruptRegister(what: what(), column: name) }
    }

    static func rows(_ conn: PostgresConnection, _ query: PostgresQuery, _ logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var out: [PostgresRandomAccessRow] = []
        for try await row in try await conn.query(query, logger: logger) { out.append(row.makeRandomAccess()) }
        return out
    }

    static func event(_ r: PostgresRandomAccessRow) throws -> AuditEvent {
        let seq: Int64 = try column(r, "seq", "an audit event")
        let what = "audit event \(seq)"
        return AuditEvent(seq: Int(seq), time: StoreRules.date(try column(r, "time", what)), actor: try column(r, "actor", what),
                          action: try column(r, "action", what), subject: try column(r, "subject", what), payload: try column(r, "payload", what),
                          prevHash: try column(r, "prev_hash", what), hash: try column(r, "hash", what))
    }

    /// Exceptions by id, with their resources, approvals and evidence, each checked against the log.
    func load(_ conn: PostgresConnection, ids: [Int64]) async throws -> [ExceptionRecord] {
        guard !ids.isEmpty else { return [] }
        var resources: [Int64: [String]] = [:]
        var approvals: [Int64: [Approval]] = [:]
        var evidence: [Int64: [EvidenceFile]] = [:]
        for r in try await Self.rows(conn, "SELECT exception_id, resource FROM exception_resource WHERE exception_id = ANY(\(ids)) ORDER BY exception_id, position", logger) {
            let id: Int64 = try Self.column(r, "exception_id", "a resource row")
            resources[id, default: []].append(try Self.column(r, "resource", "a resource of exception \(id)"))
        }
        for r in try await Self.rows(conn, "SELECT exception_id, approver, comment, at FROM approval WHERE exception_id = ANY(\(ids)) ORDER BY exception_id, position", logger) {
            let id: Int64 = try Self.column(r, "exception_id", "an approval row"), what = "an approval of exception \(id)"
            approvals[id, default: []].append(Approval(approver: try Self.column(r, "approver", what), comment: try Self.column(r, "comment", what),
                                                       at: StoreRules.date(try Self.column(r, "at", what))))
        }
        for r in try await Self.rows(conn, "SELECT exception_id, sha256, name, size, added_by, at, display_text FROM evidence WHERE exception_id = ANY(\(ids)) ORDER BY exception_id, position", logger) {
            let id: Int64 = try Self.column(r, "exception_id", "an evidence row"), what = "evidence of exception \(id)"
            evidence[id, default: []].append(EvidenceFile(
                sha256: try Self.column(r, "sha256", what), name: try Self.column(r, "name", what), size: Int(clamping: try Self.column(r, "size", what) as Int64),
                addedBy: try Self.column(r, "added_by", what), at: StoreRules.date(try Self.column(r, "at", what)),
                displayText: try Self.column(r, "display_text", what)))
        }
        var records: [ExceptionRecord] = []
        for r in try await Self.rows(conn, "SELECT * FROM exception WHERE id = ANY(\(ids)) ORDER BY id", logger) {
            let id: Int64 = try Self.column(r, "id", "an exception")
            let what = "exception \(id)"
            func text(_ c: String) throws -> String { try Self.column(r, c, what) }
            func list(_ c: String) throws -> [String] { try StoreRules.list(try text(c), of: what, column: c) }
            func parse<T: RawRepresentable>(_ c: String) throws -> T where T.RawValue == String { try StoreRules.parse(try text(c), of: what, column: c) }
            func count(_ c: String) throws -> Int { try StoreRules.count(try Self.column(r, c, what), of: what, column: c) }
            func instant(_ c: String) throws -> Date? { StoreRules.date(try Self.column(r, c, what) as Int64?) }
            var record = ExceptionRecord(
                id: Int(id), policy: try text("policy"), category: try text("category"), workspace: try text("workspace"),
                subjectKind: try parse("subject_kind"), resources: resources[id] ?? [], requester: try text("requester"),
                conflicted: try list("conflicted"), reason: try text("reason"), requestedDays: try count("requested_days"),
                likelihood: try parse("likelihood"), impact: try parse("impact"), riskLevel: try text("risk_level"),
                mitigations: try list("mitigations"), evidence: evidence[id] ?? [], approvals: approvals[id] ?? [],
                rule: ApprovalRule(groups: try list("approver_groups"), minApprovals: try count("min_approvals"), requiredGroups: try list("required_groups")),
                status: try parse("status"), createdAt: StoreRules.date(try Self.column(r, "created_at", what)),
                decidedAt: try instant("decided_at"), expiresAt: try instant("expires_at"),
                renews: (try Self.column(r, "renews", what) as Int64?).map { Int(clamping: $0) }, owner: try Self.column(r, "owner", what),
                proposedRisk: try Self.column(r, "proposed_risk", what), riskRaisedBy: try Self.column(r, "risk_raised_by", what),
                ticket: try Self.column(r, "ticket", what), origin: try StoreRules.origin(try Self.column(r, "origin", what), of: what))
            record.reviewedAt = try instant("reviewed_at")
            record.bound = try StoreRules.bound(try Self.column(r, "bound", what), of: what)
            record.untrusted = StoreRules.trustProblem(record, latest: try await latestStateEvent(conn, subject: record.displayId))
            records.append(record)
        }
        return records
    }

    /// The newest event about a subject that records its state (every event about an exception does, but reminders).
    func latestStateEvent(_ conn: PostgresConnection, subject: String) async throws -> AuditEvent? {
        try await Self.rows(conn, """
            SELECT * FROM audit_event WHERE subject = \(subject) AND action <> \(StoreRules.stateless) ORDER BY seq DESC LIMIT 1
            """, logger).first.map(Self.event)
    }

    func ids(_ conn: PostgresConnection, _ query: PostgresQuery) async throws -> [Int64] {
        var out: [Int64] = []
        for try await id in try await conn.query(query, logger: logger).decode(Int64.self) { out.append(id) }
        return out
    }

    // MARK: - Writing rows

    /// Appends an event to the chain (and queues it for the webhooks); the caller holds the chain lock.
    @discardableResult
    func appendEvent(_ conn: PostgresConnection, _ draft: AuditDraft, state: ExceptionRecord? = nil) async throws -> AuditEvent {
        let last = try await Self.rows(conn, "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1", logger).first
        let event = StoreRules.chain(draft, state: state, after: try last.map { try Self.column($0, "seq", "the last audit event") } ?? 0,
                                     lastHash: try last.map { try Self.column($0, "hash", "the last audit event") })
        let seq = Int64(event.seq), time = StoreRules.seconds(event.time)
        try await conn.query("""
            INSERT INTO audit_event (seq, time, actor, action, subject, payload, prev_hash, hash)
            VALUES (\(seq), \(time), \(event.actor), \(event.action), \(event.subject), \(event.payload), \(event.prevHash), \(event.hash))
            """, logger: logger)
        if !webhooks.isEmpty, StoreRules.notifies(draft.action) {
            for hook in webhooks {
                try await conn.query("""
                    INSERT INTO webhook_delivery (event_seq, url, format, secret_env, action, body, next_attempt_at)
                    VALUES (\(seq), \(hook.url), \(hook.format), \(hook.secretEnv), \(draft.action), \(WebhookBody.render(event, format: hook.format)), \(time))
                    """, logger: logger)
            }
        }
        // And to the people `MailRules` names, by e-mail, in the same outbox.
        if let email, StoreRules.notifies(draft.action) {
            var members: [String: [String]] = [:]
            for g in Set(MailRules.groups(action: draft.action, payload: draft.payload, state: state)) {
                members[g] = try await Self.rows(conn, "SELECT user_name FROM user_group WHERE group_name = \(g) ORDER BY user_name", logger)
                    .map { try Self.column($0, "user_name", "a group member") }
            }
            let to = MailRules.recipients(action: draft.action, payload: draft.payload, state: state) { members[$0] ?? [] }
            let body = to.isEmpty ? "" : WebhookBody.render(event, format: "json")
            for address in to.compactMap(email.address(of:)) {
                try await conn.query("""
                    INSERT INTO webhook_delivery (event_seq, url, format, secret_env, action, body, next_attempt_at)
                    VALUES (\(seq), \("mailto:" + address), 'email', NULL, \(draft.action), \(body), \(time))
                    """, logger: logger)
            }
        }
        return event
    }

    func insert(_ conn: PostgresConnection, _ request: PreparedRequest) async throws -> ExceptionRecord {
        let r = request.record
        // Exception numbers are dense, as on SQLite: the next one is taken under the chain lock, so a
        // rolled-back request leaves no gap (a sequence would).
        let id = try await ids(conn, """
            INSERT INTO exception (id, policy, category, workspace, subject_kind, requester, conflicted, reason, requested_days,
              likelihood, impact, risk_level, mitigations, approver_groups, min_approvals, required_groups, status,
              created_at, decided_at, expires_at, renews, owner, proposed_risk, risk_raised_by, ticket, origin, reviewed_at, bound)
            SELECT COALESCE(MAX(id), 0) + 1, \(r.policy), \(r.category), \(r.workspace), \(r.subjectKind.rawValue), \(r.requester), \(StoreRules.json(r.conflicted)),
              \(r.reason), \(Int64(r.requestedDays)), \(r.likelihood.rawValue), \(r.impact.rawValue), \(r.riskLevel), \(StoreRules.json(r.mitigations)),
              \(StoreRules.json(r.rule.groups)), \(Int64(r.rule.minApprovals)), \(StoreRules.json(r.rule.requiredGroups)), \(r.status.rawValue),
              \(StoreRules.seconds(r.createdAt)), \(r.decidedAt.map(StoreRules.seconds)), \(r.expiresAt.map(StoreRules.seconds)), \(r.renews.map(Int64.init)),
              \(r.owner), \(r.proposedRisk), \(r.riskRaisedBy), \(r.ticket), \(StoreRules.originText(r.origin)), \(r.reviewedAt.map(StoreRules.seconds)), \(StoreRules.boundText(r.bound))
            FROM exception
            RETURNING id
            """).first
        guard let id else { throw CorruptRegister(what: "a new exception", column: "id") }
        var stored = r
        stored.id = Int(id)
        stored.untrusted = nil
        for (i, resource) in r.resources.enumerated() {
            try await conn.query("""
                INSERT INTO exception_resource (exception_id, workspace, policy, resource, position) VALUES (\(id), \(r.workspace), \(r.policy), \(resource), \(Int64(i)))
                """, logger: logger)
        }
        try await saveChildren(conn, stored, old: nil)
        var e = request.event
        e.subject = stored.displayId
        try await appendEvent(conn, e, state: stored)
        return stored
    }

    func saveChildren(_ conn: PostgresConnection, _ r: ExceptionRecord, old: ExceptionRecord?) async throws {
        let id = Int64(r.id)
        for (i, a) in r.approvals.enumerated() where !(old?.approvals.contains(a) ?? false) {
            try await conn.query("""
                INSERT INTO approval (exception_id, approver, comment, at, position) VALUES (\(id), \(a.approver), \(a.comment), \(StoreRules.seconds(a.at)), \(Int64(i)))
                """, logger: logger)
        }
        for (i, f) in r.evidence.enumerated() where !(old?.evidence.contains(f) ?? false) {
            try await conn.query("""
                INSERT INTO evidence (exception_id, sha256, name, size, added_by, at, position, display_text)
                VALUES (\(id), \(f.sha256), \(f.name), \(Int64(f.size)), \(f.addedBy), \(StoreRules.seconds(f.at)), \(Int64(i)), \(f.displayText))
                """, logger: logger)
        }
    }

    func record(_ conn: PostgresConnection, _ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) async throws -> Int {
        var pruned = 0
        if let pruneBefore {
            pruned = try await ids(conn, """
                DELETE FROM evaluation WHERE workspace = \(evaluation.workspace) AND at < \(StoreRules.seconds(pruneBefore)) RETURNING id
                """).count
        }
        guard let id = try await ids(conn, """
            INSERT INTO evaluation (workspace, at, actor, verdict, resource_count)
            VALUES (\(evaluation.workspace), \(StoreRules.seconds(evaluation.at)), \(evaluation.actor), \(evaluation.verdict), \(Int64(evaluation.resourceCount)))
            RETURNING id
            """).first else { throw CorruptRegister(what: "a new recorded check", column: "id") }
        try await insertViolations(conn, evaluation: id, evaluation.violations)
        var e = event
        if case .object(var o) = e.payload {
            o.append("evaluation", .number(Double(id)))
            if pruned > 0 { o.append("pruned_evaluations", .number(Double(pruned))) }
            e.payload = .object(o)
        }
        try await appendEvent(conn, e)
        return Int(id)
    }

    /// A check's violations, in batches of one statement each (unnest), not one round trip per row.
    func insertViolations(_ conn: PostgresConnection, evaluation id: Int64, _ violations: [RecordedViolation]) async throws {
        let batch = 1_000
        var start = 0
        while start < violations.count {
            let part = violations[start..<min(start + batch, violations.count)]
            let positions = (start..<(start + part.count)).map(Int64.init)
            try await conn.query("""
                INSERT INTO evaluation_violation (evaluation_id, position, policy, resource, status, digest, message, severity, category)
                SELECT \(id), * FROM unnest(\(positions)::BIGINT[], \(part.map(\.policy))::TEXT[], \(part.map(\.resource))::TEXT[],
                  \(part.map(\.status.rawValue))::TEXT[], \(part.map(\.digest))::TEXT[], \(part.map(\.message))::TEXT[],
                  \(part.map(\.severity.rawValue))::TEXT[], \(part.map(\.category))::TEXT[])
                """, logger: logger)
            start += part.count
        }
    }

    // MARK: - RegisterStore

    public func insert(_ requests: [PreparedRequest]) async throws -> [ExceptionRecord] {
        try await writing { conn in
            var out: [ExceptionRecord] = []
            for r in requests { out.append(try await insert(conn, r)) }
            return out
        }
    }

    public func insert(_ requests: [PreparedRequest], thenRecord: ([ExceptionRecord]) throws -> CheckRecording) async throws -> (filed: [ExceptionRecord], evaluation: Int) {
        try await withoutActuallyEscaping(thenRecord) { thenRecord in
            let then = Unsafe(thenRecord)
            return try await writing { conn in
                var filed: [ExceptionRecord] = []
                for r in requests { filed.append(try await insert(conn, r)) }
                let r = try then.value(filed)
                return (filed, try await record(conn, r.evaluation, event: r.event, pruneBefore: r.pruneBefore))
            }
        }
    }

    public func modify(id: Int, _ change: (inout ExceptionRecord) throws -> [AuditDraft]) async throws -> ExceptionRecord {
        try await withoutActuallyEscaping(change) { change in
            let change = Unsafe(change)
            return try await writing { conn in
                guard var record = try await load(conn, ids: [Int64(id)]).first else {
                    throw RegisterError.notFound("\(ExceptionRecord.display(id)) not found")
                }
                try StoreRules.mayChange(record)
                let old = record
                let events = try change.value(&record)
                try StoreRules.checkChange(from: old, to: record, events: events)
                if record != old {
                    try await conn.query("""
                        UPDATE exception SET status = \(record.status.rawValue), decided_at = \(record.decidedAt.map(StoreRules.seconds)),
                          expires_at = \(record.expiresAt.map(StoreRules.seconds)), requested_days = \(Int64(record.requestedDays)),
                          risk_level = \(record.riskLevel), approver_groups = \(StoreRules.json(record.rule.groups)),
                          min_approvals = \(Int64(record.rule.minApprovals)), required_groups = \(StoreRules.json(record.rule.requiredGroups)),
                          proposed_risk = \(record.proposedRisk), risk_raised_by = \(record.riskRaisedBy),
                          reviewed_at = \(record.reviewedAt.map(StoreRules.seconds))
                        WHERE id = \(Int64(id))
                        """, logger: logger)
                    try await saveChildren(conn, record, old: old)
                }
                for (i, e) in events.enumerated() { try await appendEvent(conn, e, state: i == events.count - 1 ? record : nil) }
                return record
            }
        }
    }

    public func exception(id: Int) async throws -> ExceptionRecord? {
        try await reading { conn in try await load(conn, ids: [Int64(id)]).first }
    }

    public func exceptions(_ f: ExceptionFilter) async throws -> [ExceptionRecord] {
        if f.matchesNothing { return [] }
        var binds = PostgresBindings()
        var conditions: [String] = []
        func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
            binds.append(value)
            return "$\(binds.count)"
        }
        if let statuses = f.statuses, !statuses.isEmpty { conditions.append("status = ANY(\(bind(statuses.map(\.rawValue))))") }
        if let p = f.policy { conditions.append("policy = \(bind(p))") }
        if let w = f.workspace { conditions.append("workspace = \(bind(w))") }
        if let r = f.requester { conditions.append("requester = \(bind(r))") }
        if let t = f.ticket { conditions.append("ticket = \(bind(t))") }
        if let d = f.expiringBefore { conditions.append("status = 'approved' AND expires_at < \(bind(StoreRules.seconds(d)))") }
        if let d = f.createdFrom { conditions.append("created_at >= \(bind(StoreRules.seconds(d)))") }
        if let d = f.createdBefore { conditions.append("created_at < \(bind(StoreRules.seconds(d)))") }
        var sql = "SELECT id FROM exception" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")) + " ORDER BY id"
        if let limit = f.limit { sql += " LIMIT \(bind(Int64(max(0, limit))))" }
        let query = PostgresQuery(unsafeSQL: sql, binds: binds)
        return try await reading { conn in try await load(conn, ids: try await ids(conn, query)) }
    }

    public func covering(workspace: String, pairs: [(policy: String, resource: String)]) async throws -> [ExceptionRecord] {
        guard !pairs.isEmpty else { return [] }
        let policies = pairs.map(\.policy), resources = pairs.map(\.resource)
        return try await reading { conn in
            let found = try await ids(conn, """
                SELECT DISTINCT r.exception_id FROM exception_resource r JOIN exception e ON e.id = r.exception_id
                JOIN unnest(\(policies)::TEXT[], \(resources)::TEXT[]) AS p(policy, resource) ON p.policy = r.policy AND p.resource = r.resource
                WHERE r.workspace = \(workspace) AND e.status IN ('approved', 'pending')
                ORDER BY r.exception_id
                """)
            return try await load(conn, ids: found)
        }
    }

    public func record(_ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) async throws -> Int {
        try await writing { conn in try await record(conn, evaluation, event: event, pruneBefore: pruneBefore) }
    }

    public func latestEvaluation(workspace: String) async throws -> Evaluation? {
        try await reading { conn in
            guard let row = try await Self.rows(conn, "SELECT * FROM evaluation WHERE workspace = \(workspace) ORDER BY id DESC LIMIT 1", logger).first else { return nil }
            let id: Int64 = try Self.column(row, "id", "a recorded check")
            let what = "recorded check \(id)"
            var violations: [RecordedViolation] = []
            for v in try await Self.rows(conn, "SELECT * FROM evaluation_violation WHERE evaluation_id = \(id) ORDER BY position", logger) {
                let of = "a violation of \(what)"
                violations.append(RecordedViolation(
                    policy: try Self.column(v, "policy", of), resource: try Self.column(v, "resource", of),
                    status: try StoreRules.parse(try Self.column(v, "status", of), of: of, column: "status"), digest: try Self.column(v, "digest", of),
                    message: try Self.column(v, "message", of), severity: try StoreRules.parse(try Self.column(v, "severity", of), of: of, column: "severity"),
                    category: try Self.column(v, "category", of)))
            }
            return Evaluation(id: Int(id), workspace: try Self.column(row, "workspace", what), at: StoreRules.date(try Self.column(row, "at", what)),
                              actor: try Self.column(row, "actor", what), verdict: try Self.column(row, "verdict", what),
                              resourceCount: Int(clamping: try Self.column(row, "resource_count", what) as Int64), violations: violations)
        }
    }

    public func recordedRule(workspace: String, policy: String) async throws -> (category: String, severity: Severity)? {
        let seen = try await reading { conn in
            try await Self.rows(conn, """
                SELECT DISTINCT v.severity, v.category FROM evaluation_violation v JOIN evaluation e ON e.id = v.evaluation_id
                WHERE v.policy = \(policy) AND e.workspace = \(workspace)
                """, logger).map { r in
                Seen(severity: try Self.column(r, "severity", "a recorded violation"), category: try Self.column(r, "category", "a recorded violation"))
            }
        }
        return StoreRules.recordedRule(seen.map { ($0.severity, $0.category) })
    }

    struct Seen: Sendable {
        let severity: String
        let category: String
    }

    public func append(_ event: AuditDraft) async throws {
        try await writing { conn in _ = try await appendEvent(conn, event) }
    }

    public func auditEvents(subject: String?, last: Int?) async throws -> [AuditEvent] {
        if subject?.utf8.contains(0) == true { return [] }  // never stored (see ExceptionFilter.matchesNothing)
        return try await reading { conn in
            let limit = Int64(max(0, last ?? Int(Int32.max)))
            let rows: [PostgresRandomAccessRow]
            if let subject {
                rows = try await Self.rows(conn, "SELECT * FROM audit_event WHERE subject = \(subject) ORDER BY seq DESC LIMIT \(limit)", logger)
            } else {
                rows = try await Self.rows(conn, "SELECT * FROM audit_event ORDER BY seq DESC LIMIT \(limit)", logger)
            }
            return try rows.map(Self.event).reversed()
        }
    }

    public func forEachAuditEvent(_ body: (AuditEvent) throws -> Void) async throws {
        try await forEachAuditEvent(after: .min, body)
    }

    public func requestedInLog() async throws -> [String] {
        try await reading { conn in
            try await Self.rows(conn, """
                SELECT subject FROM audit_event WHERE action = 'exception.requested'
                GROUP BY subject ORDER BY length(subject), subject
                """, logger)
                .map { try Self.column($0, "subject", "an audit event") as String }
        }
    }

    public func forEachAuditEvent(from seq: Int, _ body: (AuditEvent) throws -> Void) async throws {
        try await forEachAuditEvent(after: Int64(seq) &- 1, body)
    }

    func forEachAuditEvent(after start: Int64, _ body: (AuditEvent) throws -> Void) async throws {
        // In pages of 10,000 by seq from one snapshot, so a log of millions never sits in memory whole.
        try await withoutActuallyEscaping(body) { body in
            let body = Unsafe(body)
            try await reading { conn in
                var after: Int64 = start
                while true {
                    let page = try await Self.rows(conn, "SELECT * FROM audit_event WHERE seq > \(after) ORDER BY seq LIMIT 10000", logger)
                    guard let last = page.last else { return }
                    for r in page { try body.value(try Self.event(r)) }
                    after = try Self.column(last, "seq", "an audit event")
                }
            }
        }
    }
}

/// PostgreSQL errors as users see them: one line, no data from the server's message beyond its kind.
public enum PostgresStoreError: Error, CustomStringConvertible {
    case unavailable(String)

    public var description: String {
        switch self { case .unavailable(let m): return m }
    }

    static func wrap(_ error: any Error, url: PostgresURL) -> any Error {
        if error is CorruptRegister || error is RegisterError { return error }
        return PostgresStoreError.unavailable("\(url): cannot open the register: \(userMessage(for: error) ?? String(describing: error).prefix(200).description)")
    }

    /// A one-line message for a PostgreSQL error, or nil when it is not one.
    public static func userMessage(for error: any Error) -> String? {
        if let e = error as? PostgresStoreError { return e.description }
        guard let e = error as? PSQLError else { return nil }
        if let state = e.serverInfo?[.sqlState] {
            let message = e.serverInfo?[.message] ?? ""
            switch state {
            case "28P01", "28000": return "PostgreSQL refused the credentials (\(state))"
            case "3D000": return "the database does not exist (\(state))"
            case "40001", "40P01": return "the register is busy (a concurrent change); try again"
            case "P0001": return "the register refused the change (\(message.prefix(120)))"
            default: return "register database error (PostgreSQL \(state)); nothing was written"
            }
        }
        switch e.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown: return "cannot reach the PostgreSQL server"
        default: return "register database error (\(e.code))"
        }
    }
}
