import Foundation
import GRDB
import GRDBSQLite
import WaiverCore

/// The register in one SQLite file (WAL), through GRDB. Every operation is one transaction; writes
/// are IMMEDIATE transactions, so concurrent processes serialize (with a busy timeout) and each
/// sees the state it changes.
public final class SQLiteRegisterStore: RegisterStore, @unchecked Sendable {
    /// The head of the audit log as this process last verified it (`ServerRegisterStore`).
    public let auditMemo = AuditMemo()
    public let path: String
    let pool: any DatabaseWriter
    /// Webhooks every audit event is queued for, in the same transaction as the event.
    let webhooks: [WaiverCore.Configuration.Webhook]
    /// The SMTP server people are told through (`MailRules`), queued in the same outbox.
    let email: WaiverCore.Configuration.Email?

    /// Opens (creating when needed) the register at `path` and brings its schema up to date.
    public init(path: String, webhooks: [WaiverCore.Configuration.Webhook] = [], email: WaiverCore.Configuration.Email? = nil,
                busyTimeout: TimeInterval = 30) throws {
        self.path = path
        self.webhooks = webhooks
        self.email = email
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        var config = GRDB.Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        config.label = "waiver.register"
        pool = try DatabasePool(path: path, configuration: config)
        let applied = try pool.read { db in try Self.migrator.appliedIdentifiers(db) }
        try Self.migrator.migrate(pool)
        // Once, when a register from before logged states is upgraded (not on every open).
        if !applied.isEmpty, !applied.contains(Self.loggedStatesMigration) { try attestUnbackedStates() }
    }

    /// Opens an existing register for reading only (`check --no-record`, or a register this user
    /// cannot write): nothing is created, migrated or written; a write fails.
    public init(readingOnly path: String) throws {
        self.path = path
        webhooks = []
        email = nil
        var config = GRDB.Configuration()
        config.readonly = true
        config.foreignKeysEnabled = true
        config.label = "waiver.register (read only)"
        // A WAL database needs its shared-memory file written even to read; a user who cannot write
        // the folder reads the file as immutable (SQLite's URI parameter) instead.
        let folder = (path as NSString).deletingLastPathComponent
        if FileManager.default.isWritableFile(atPath: folder.isEmpty ? "." : folder) {
            pool = try DatabaseQueue(path: path, configuration: config)
        } else {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            let uri = "file:" + (absolute.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? absolute) + "?immutable=1"
            pool = try DatabaseQueue(path: uri, configuration: config)
        }
        let applied = try pool.read { db in try Self.migrator.appliedIdentifiers(db) }
        let known = Set(Self.migrator.migrations)
        guard known.isSubset(of: applied) else {
            throw RegisterError.invalid("\(path): the register's schema is older than this waiver; open it once with write access to upgrade it")
        }
    }

    static let loggedStatesMigration = "v6: owners, risk re-rating, rules met by checks, sessions tied to tokens, signed checkpoints"

    /// Registers from before the log recorded each exception's state get one `exception.state_recorded`
    /// event per exception at upgrade, so that from then on every state is backed by the log.
    func attestUnbackedStates() throws {
        let needed = try pool.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM exception e WHERE NOT EXISTS (
                  SELECT 1 FROM auditEvent a WHERE a.subject = 'EX-' || e.id AND a.action <> 'exception.reminder' AND a.payload LIKE '%"state":{%'))
                """) ?? false
        }
        guard needed else { return }
        try pool.write { db in
            for record in try load(db, where: "1 ORDER BY id", [], verify: false) {
                guard try Self.latestStateEvent(db, subject: record.displayId)?.state == nil else { continue }
                let time = try Int64.fetchOne(db, sql: "SELECT MAX(time) FROM auditEvent") ?? Self.seconds(record.createdAt)
                try appendEvent(db, AuditDraft(actor: "waiver", action: "exception.state_recorded", subject: record.displayId,
                                               payload: ["note": "state as stored when the register was upgraded to logged states"],
                                               time: Self.date(time)), state: record)
            }
        }
    }

    // MARK: - Transactions

    /// A write transaction, run on the calling thread as every SQLite access of Waiver is. (GRDB's
    /// async `write`/`read` were tried here: mixed with the synchronous reads the server makes for
    /// tokens and sessions, a load of 16 connections on 2 cores left every cooperative thread
    /// waiting for a reader connection that never came back. One mode, the synchronous one, is the
    /// one the server benchmarks measure.)
    func writing<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.write { db in try body(db) }
    }

    /// A read on one of GRDB's reader connections (a snapshot), the same way.
    func reading<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.read { db in try body(db) }
    }

    // MARK: - Encoding helpers

    static func json(_ list: [String]) -> String { StoreRules.json(list) }

    static func list(_ row: Row, _ column: String, of what: @autoclosure () -> String) throws -> [String] {
        try StoreRules.list(try row.read(column, of: what()), of: what(), column: column)
    }

    static func seconds(_ d: Date) -> Int64 { StoreRules.seconds(d) }
    static func date(_ s: Int64) -> Date { StoreRules.date(s) }
    static func date(_ s: Int64?) -> Date? { StoreRules.date(s) }

    // MARK: - Audit

    /// Appends an event to the chain (and queues it for the webhooks). With `state`, the event
    /// records the exception's whole state after the change: what `load` checks the stored row against.
    @discardableResult
    func appendEvent(_ db: Database, _ draft: AuditDraft, state: ExceptionRecord? = nil) throws -> Int64 {
        // Every write appends an event: its statements are compiled once per connection.
        let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM auditEvent ORDER BY seq DESC LIMIT 1"))
        let event = StoreRules.chain(draft, state: state, after: try last?.read("seq", of: "the last audit event") ?? 0,
                                     lastHash: try last?.read("hash", of: "the last audit event"))
        let seq = Int64(event.seq), time = Self.seconds(event.time)
        try db.cachedStatement(sql: "INSERT INTO auditEvent (seq, time, actor, action, subject, payload, prevHash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .execute(arguments: [seq, time, event.actor, event.action, event.subject, event.payload, event.prevHash, event.hash])
        // Lifecycle events go to the webhooks, queued in this same transaction (the outbox).
        if !webhooks.isEmpty, StoreRules.notifies(draft.action) {
            for hook in webhooks {
                try db.execute(sql: """
                    INSERT INTO webhookDelivery (eventSeq, url, format, secretEnv, action, body, nextAttemptAt) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [seq, hook.url, hook.format, hook.secretEnv, draft.action, WebhookBody.render(event, format: hook.format), time])
            }
        }
        // And to the people `MailRules` names, by e-mail, in the same outbox.
        if let email, StoreRules.notifies(draft.action) {
            let to = try MailRules.recipients(action: draft.action, payload: draft.payload, state: state) { group in
                try String.fetchAll(db.cachedStatement(sql: "SELECT user FROM userGroup WHERE groupName = ? ORDER BY user"), arguments: [group])
            }
            let body = to.isEmpty ? "" : WebhookBody.render(event, format: "json")
            for address in to.compactMap(email.address(of:)) {
                try db.execute(sql: """
                    INSERT INTO webhookDelivery (eventSeq, url, format, secretEnv, action, body, nextAttemptAt) VALUES (?, ?, 'email', NULL, ?, ?, ?)
                    """, arguments: [seq, "mailto:" + address, draft.action, body, time])
            }
        }
        return seq
    }

    public func append(_ event: AuditDraft) async throws {
        try writing { db in _ = try appendEvent(db, event) }
    }

    public func auditEvents(subject: String?, last: Int?) async throws -> [AuditEvent] {
        try reading { db in
            // Four SQL texts at most, so each is compiled once per connection.
            var arguments: StatementArguments = subject.map { [$0] } ?? []
            if let last { arguments += [max(0, last)] }
            let sql = "SELECT * FROM auditEvent \(subject == nil ? "" : "WHERE subject = ?") ORDER BY seq DESC\(last == nil ? "" : " LIMIT ?")"
            return try AuditEventRow.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map(\.event).reversed()
        }
    }

    public func forEachAuditEvent(_ body: (AuditEvent) throws -> Void) async throws {
        try reading { db in try forEachAuditEvent(db, body) }
    }

    public func requestedInLog() async throws -> [String] {
        try reading { db in try requestedInLog(db) }
    }

    func requestedInLog(_ db: Database) throws -> [String] {
        // By number: EX-9 before EX-10 (shorter first, then as text).
        try String.fetchAll(db, sql: """
            SELECT DISTINCT subject FROM auditEvent INDEXED BY auditEvent_requested WHERE action = 'exception.requested'
            ORDER BY length(subject), subject
            """)
    }

    public func forEachAuditEvent(from seq: Int, _ body: (AuditEvent) throws -> Void) async throws {
        try reading { db in try forEachAuditEvent(db, from: seq, body) }
    }

    func forEachAuditEvent(_ db: Database, from seq: Int, _ body: (AuditEvent) throws -> Void) throws {
        let rows = try AuditEventRow.fetchCursor(db, sql: "SELECT seq, time, actor, action, subject, payload, prevHash, hash FROM auditEvent WHERE seq >= ? ORDER BY seq",
                                                 arguments: [seq])
        while let row = try rows.next() { try body(row.event) }
    }

    func forEachAuditEvent(_ db: Database, _ body: (AuditEvent) throws -> Void) throws {
        do {
            let rows = try AuditEventRow.fetchCursor(db, sql: "SELECT seq, time, actor, action, subject, payload, prevHash, hash FROM auditEvent ORDER BY rowid")
            while let row = try rows.next() {
                try body(row.event)
            }
        }
    }

    /// Verifies the register as evidence: the whole chain (every row of the event table, whatever its
    /// `seq`, in O(rows)), anchors kept elsewhere, signed checkpoints, that every exception's stored
    /// state is the one the log records last about it, and (with `evidenceDirectory`) that every
    /// evidence file still hashes to its recorded SHA-256.
    public func verifyAudit(anchors: [AuditAnchor] = [], evidenceDirectory: String? = nil,
                            checkpoints: CheckpointCheck? = nil, resume: AuditAnchor? = nil) throws -> AuditVerification {
        let (signed, checkpointFindings, verifiedCheckpoints) = try RegisterVerification.checkpointAnchors(checkpoints, stored: try self.checkpoints())
        var findings = checkpointFindings
        let anchors = anchors + signed
        // From a head verified before when it still stands; else whole, with that head as an anchor.
        var result = try resume.flatMap { head in
            try pool.read { db in
                var v = AuditChain.ResumingVerifier(head: head, anchors: anchors)
                try forEachAuditEvent(db, from: head.seq) { v.feed($0) }
                return v.result
            }
        } ?? verifyChain(anchors: anchors + (resume.map { [$0] } ?? []))
        result.checkpoints = verifiedCheckpoints
        findings += try verifyStates()
        if let evidenceDirectory { findings += try verifyEvidence(in: evidenceDirectory) }
        result.findings = findings
        return result
    }

    /// The chain alone. Dense logs (seq 1...n, the only shape Waiver writes) are read in ranges and
    /// hashed on all cores; any other shape (a row with seq 0, a negative or huge seq, a gap) is read
    /// once in order, and the first row out of place is named at once.
    func verifyChain(anchors: [AuditAnchor]) throws -> AuditVerification {
        let (count, minSeq, maxSeq) = try pool.read { db -> (Int64, Int64, Int64) in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM auditEvent")
            return (row?[0] ?? 0, row?[1] ?? 0, row?[2] ?? 0)
        }
        var verifier = AuditChain.Verifier(anchors: anchors)
        guard count > 0, minSeq == 1, maxSeq == count else {
            do {
                try pool.read { db in
                    try forEachAuditEvent(db) { e in
                        verifier.feed(e)
                        if verifier.firstBad != nil { throw StopIteration() }
                    }
                }
            } catch is StopIteration {}
            return verifier.result
        }
        final class Slot: @unchecked Sendable {
            var links: [AuditChain.Link] = []
            var error: (any Error)?
        }
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        let chunk: Int64 = 32_768
        var lo: Int64 = 1
        while lo <= maxSeq, verifier.firstBad == nil {
            let slots = (0..<workers).map { _ in Slot() }
            let start = lo
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let slot = slots[w]
                let from = start + Int64(w) * chunk, to = from + chunk - 1
                guard from <= maxSeq else { return }
                do {
                    try pool.read { db in
                        let statement = try db.makeStatement(sql: """
                            SELECT seq, time, actor, action, subject, payload, prevHash, hash FROM auditEvent
                            WHERE seq BETWEEN ? AND ? ORDER BY seq
                            """)
                        try statement.setArguments([from, to])
                        let s = statement.sqliteStatement
                        var scratch: [UInt8] = []
                        scratch.reserveCapacity(4096)
                        func column(_ i: Int32) -> UnsafeRawBufferPointer {
                            guard let p = sqlite3_column_text(s, i) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
                            return UnsafeRawBufferPointer(start: p, count: Int(sqlite3_column_bytes(s, i)))
                        }
                        slot.links.reserveCapacity(Int(chunk))
                        while true {
                            let rc = sqlite3_step(s)
                            if rc == SQLITE_DONE { break }
                            guard rc == SQLITE_ROW else { throw DatabaseError(resultCode: ResultCode(rawValue: rc)) }
                            let seq = sqlite3_column_int64(s, 0)
                            let prev = column(6), hash = column(7)
                            let ok = AuditChain.rawContentMatches(
                                seq: seq, time: sqlite3_column_int64(s, 1),
                                fields: (column(2), column(3), column(4), column(5), prev), hash: hash, scratch: &scratch)
                            slot.links.append(AuditChain.Link(seq: Int(seq), prevHash: AuditChain.Hex64(prev), hash: AuditChain.Hex64(hash), contentOK: ok))
                        }
                        sqlite3_reset(s)
                    }
                } catch {
                    slot.error = error
                }
            }
            for slot in slots {
                if let error = slot.error { throw error }
                for link in slot.links where verifier.firstBad == nil { verifier.feed(link) }
            }
            lo += Int64(workers) * chunk
        }
        return verifier.result
    }

    struct StopIteration: Error {}

    /// Replays the log's record of exception states against the register: every exception row must
    /// be the state the newest event about it records, and every exception the log speaks of must exist.
    func verifyStates() throws -> [String] {
        try pool.read { db in
            var findings: [String] = []
            let records = try load(db, where: "1 ORDER BY id", [])
            for r in records { if let why = r.untrusted { findings.append("\(r.displayId): \(why)") } }
            let known = Set(records.map(\.displayId))
            for subject in try requestedInLog(db) where !known.contains(subject) {
                findings.append("\(subject): the log records its request, but the register has no such exception (the row was deleted)")
            }
            return findings
        }
    }

    /// Re-hashes every evidence file against the SHA-256 recorded for it.
    func verifyEvidence(in folder: String) throws -> [String] {
        let rows = try pool.read { db in try Row.fetchAll(db, sql: "SELECT exceptionId, sha256, name FROM evidence ORDER BY exceptionId, rowid") }
        var findings: [String] = []
        var checked: [String: Bool] = [:]
        for row in rows {
            let id = ExceptionRecord.display(Int(try row.read("exceptionId", of: "an evidence row") as Int64))
            let sha: String = try row.read("sha256", of: "evidence of \(id)"), name: String = try row.read("name", of: "evidence of \(id)")
            let path = (folder as NSString).appendingPathComponent(sha)
            let ok: Bool
            if let known = checked[sha] { ok = known } else {
                ok = FileManager.default.fileExists(atPath: path) && (try? AuditChain.sha256(file: path)) == sha
                checked[sha] = ok
            }
            if !ok {
                let missing = !FileManager.default.fileExists(atPath: path)
                findings.append("\(id): evidence \(name) (\(sha.prefix(12))…) \(missing ? "is missing from \(folder)" : "no longer hashes to its recorded SHA-256: its bytes were replaced")")
            }
        }
        return findings
    }

    // MARK: - Exceptions

    public func insert(_ requests: [WaiverCore.PreparedRequest]) async throws -> [ExceptionRecord] {
        try writing { db in try requests.map { try insert(db, $0) } }
    }

    public func insert(_ requests: [WaiverCore.PreparedRequest], thenRecord: ([ExceptionRecord]) throws -> CheckRecording) async throws -> (filed: [ExceptionRecord], evaluation: Int) {
        try writing { db in
            let filed = try requests.map { try insert(db, $0) }
            let r = try thenRecord(filed)
            return (filed, try record(db, r.evaluation, event: r.event, pruneBefore: r.pruneBefore))
        }
    }

    func insert(_ db: Database, _ request: WaiverCore.PreparedRequest) throws -> ExceptionRecord {
        let record = request.record
        try db.execute(sql: """
            INSERT INTO exception (policy, category, workspace, subjectKind, requester, conflicted, reason, requestedDays,
              likelihood, impact, riskLevel, mitigations, approverGroups, minApprovals, requiredGroups, status,
              createdAt, decidedAt, expiresAt, renews, owner, proposedRisk, riskRaisedBy, ticket, origin, reviewedAt, bound)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [
                record.policy, record.category, record.workspace, record.subjectKind.rawValue, record.requester,
                Self.json(record.conflicted), record.reason, record.requestedDays, record.likelihood.rawValue,
                record.impact.rawValue, record.riskLevel, Self.json(record.mitigations), Self.json(record.rule.groups),
                record.rule.minApprovals, Self.json(record.rule.requiredGroups), record.status.rawValue,
                Self.seconds(record.createdAt), record.decidedAt.map(Self.seconds), record.expiresAt.map(Self.seconds), record.renews,
                record.owner, record.proposedRisk, record.riskRaisedBy, record.ticket, StoreRules.originText(record.origin),
                record.reviewedAt.map(Self.seconds), StoreRules.boundText(record.bound),
            ])
        var stored = record
        stored.id = Int(db.lastInsertedRowID)
        for (i, r) in record.resources.enumerated() {
            try db.execute(sql: "INSERT INTO exceptionResource (exceptionId, workspace, policy, resource, position) VALUES (?, ?, ?, ?, ?)",
                           arguments: [stored.id, record.workspace, record.policy, r, i])
        }
        try saveChildren(db, stored, old: nil)
        var e = request.event
        e.subject = stored.displayId
        try appendEvent(db, e, state: stored)
        return stored
    }

    func saveChildren(_ db: Database, _ r: ExceptionRecord, old: ExceptionRecord?) throws {
        for a in r.approvals where !(old?.approvals.contains(a) ?? false) {
            try db.execute(sql: "INSERT INTO approval (exceptionId, approver, comment, at) VALUES (?, ?, ?, ?)",
                           arguments: [r.id, a.approver, a.comment, Self.seconds(a.at)])
        }
        for f in r.evidence where !(old?.evidence.contains(f) ?? false) {
            try db.execute(sql: "INSERT INTO evidence (exceptionId, sha256, name, size, addedBy, at, displayText) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [r.id, f.sha256, f.name, f.size, f.addedBy, Self.seconds(f.at), f.displayText])
        }
    }

    public func modify(id: Int, _ change: (inout ExceptionRecord) throws -> [AuditDraft]) async throws -> ExceptionRecord {
        try writing { db in
            guard var record = try load(db, where: "id = ?", [id]).first else {
                throw RegisterError.notFound("\(ExceptionRecord.display(id)) not found")
            }
            // A row the log does not back is never built upon: a change would launder it.
            try StoreRules.mayChange(record)
            let old = record
            let events = try change(&record)
            try StoreRules.checkChange(from: old, to: record, events: events)
            if record != old {
                try db.execute(sql: """
                    UPDATE exception SET status = ?, decidedAt = ?, expiresAt = ?, requestedDays = ?, riskLevel = ?, approverGroups = ?,
                      minApprovals = ?, requiredGroups = ?, proposedRisk = ?, riskRaisedBy = ?, reviewedAt = ? WHERE id = ?
                    """, arguments: [record.status.rawValue, record.decidedAt.map(Self.seconds), record.expiresAt.map(Self.seconds), record.requestedDays,
                                    record.riskLevel, Self.json(record.rule.groups), record.rule.minApprovals, Self.json(record.rule.requiredGroups),
                                    record.proposedRisk, record.riskRaisedBy, record.reviewedAt.map(Self.seconds), id])
                try saveChildren(db, record, old: old)
            }
            for (i, e) in events.enumerated() { try appendEvent(db, e, state: i == events.count - 1 ? record : nil) }
            return record
        }
    }

    public func exception(id: Int) async throws -> ExceptionRecord? {
        try reading { db in try load(db, where: "id = ?", [id]).first }
    }

    public func exceptions(_ f: ExceptionFilter) async throws -> [ExceptionRecord] {
        var conditions: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let statuses = f.statuses, !statuses.isEmpty {
            conditions.append("status IN (\(statuses.map { _ in "?" }.joined(separator: ",")))")
            args += statuses.map { $0.rawValue }
        }
        if let p = f.policy { conditions.append("policy = ?"); args.append(p) }
        if let w = f.workspace { conditions.append("workspace = ?"); args.append(w) }
        if let r = f.requester { conditions.append("requester = ?"); args.append(r) }
        if let t = f.ticket { conditions.append("ticket = ?"); args.append(t) }
        if let d = f.expiringBefore { conditions.append("status = 'approved' AND expiresAt < ?"); args.append(Self.seconds(d)) }
        if let d = f.createdFrom { conditions.append("createdAt >= ?"); args.append(Self.seconds(d)) }
        if let d = f.createdBefore { conditions.append("createdAt < ?"); args.append(Self.seconds(d)) }
        var sql = conditions.isEmpty ? "1" : conditions.joined(separator: " AND ")
        sql += " ORDER BY id"
        if let limit = f.limit { sql += " LIMIT ?"; args.append(max(0, limit)) }
        let arguments = StatementArguments(args)
        return try reading { db in try load(db, where: sql, arguments) }
    }

    public func covering(workspace: String, pairs: [(policy: String, resource: String)]) async throws -> [ExceptionRecord] {
        try reading { db in
            // Most checks run in workspaces with no live exception: one indexed probe answers them.
            let any = try Bool.fetchOne(db.cachedStatement(sql: """
                SELECT EXISTS (SELECT 1 FROM exceptionResource r JOIN exception e ON e.id = r.exceptionId
                               WHERE r.workspace = ? AND e.status IN ('approved', 'pending'))
                """), arguments: [workspace]) ?? true
            guard any else { return [] }
            // Every pair in one statement: the pairs travel as one JSON array, each looked up by the index.
            let list = JSONWriter.write(.array(pairs.map { .array([.string($0.policy), .string($0.resource)]) }), pretty: false)
            let ids = try Int64.fetchAll(db.cachedStatement(sql: """
                SELECT DISTINCT r.exceptionId FROM json_each(?) j
                JOIN exceptionResource r INDEXED BY exceptionResource_lookup
                  ON r.workspace = ? AND r.policy = j.value ->> 0 AND r.resource = j.value ->> 1
                JOIN exception e ON e.id = r.exceptionId
                WHERE e.status IN ('approved', 'pending')
                """), arguments: [list, workspace])
            guard !ids.isEmpty else { return [] }
            // The ids travel as one JSON array argument, so the statements stay the same (and cached).
            let idList = "[" + ids.sorted().map(String.init).joined(separator: ",") + "]"
            return try load(db, where: "id IN (SELECT value FROM json_each(?)) ORDER BY id", [idList])
        }
    }

    /// Loads exceptions matching a WHERE clause with their resources, approvals and evidence.
    ///
    /// The child tables are read with the same clause as a subquery, so each clause shape is four SQL
    /// texts that never change, compiled once per connection (compiling was a fifth of the CPU of
    /// `GET /api/v1/exceptions/{id}`). Clauses take their values as arguments, never as literals, so
    /// the statement cache stays small.
    func load(_ db: Database, where clause: String, _ arguments: StatementArguments, verify: Bool = true) throws -> [ExceptionRecord] {
        func fetch<R: FetchableRecord>(_: R.Type, _ sql: String) throws -> [R] {
            try R.fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
        }
        let rows = try fetch(ExceptionRow.self, "SELECT * FROM exception WHERE \(clause)")
        guard !rows.isEmpty else { return [] }
        var resources: [Int64: [String]] = [:]
        var approvals: [Int64: [Approval]] = [:]
        var evidence: [Int64: [EvidenceFile]] = [:]
        let owned = "exceptionId IN (SELECT id FROM exception WHERE \(clause))"
        for r in try fetch(ResourceRow.self, "SELECT exceptionId, resource FROM exceptionResource WHERE \(owned) ORDER BY exceptionId, position") {
            resources[r.exceptionId, default: []].append(r.resource)
        }
        for r in try fetch(ApprovalRow.self, "SELECT exceptionId, approver, comment, at FROM approval WHERE \(owned) ORDER BY at, rowid") {
            approvals[r.exceptionId, default: []].append(r.approval)
        }
        for r in try fetch(EvidenceRow.self, "SELECT exceptionId, sha256, name, size, addedBy, at, displayText FROM evidence WHERE \(owned) ORDER BY at, rowid") {
            evidence[r.exceptionId, default: []].append(r.file)
        }
        var records = rows.map { row in
            var e = row.record
            let id = Int64(e.id)
            e.resources = resources[id] ?? []
            e.approvals = approvals[id] ?? []
            e.evidence = evidence[id] ?? []
            return e
        }
        if verify {
            for i in records.indices { records[i].untrusted = try Self.trustProblem(db, records[i]) }
        }
        return records
    }

    /// Whether any exception records evidence with this SHA-256 (only such files are served).
    public func evidenceReferenced(sha256: String) throws -> Bool {
        try pool.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM evidence WHERE sha256 = ?)", arguments: [sha256]) ?? false }
    }

    // MARK: - State backed by the log

    /// The newest event about a subject that records its state (every event about an exception does,
    /// but reminders), with that state.
    static func latestStateEvent(_ db: Database, subject: String) throws -> (event: AuditEvent, state: Value?)? {
        guard let e = try AuditEventRow.fetchOne(db.cachedStatement(sql: """
            SELECT seq, time, actor, action, subject, payload, prevHash, hash FROM auditEvent
            WHERE subject = ? AND action <> ? ORDER BY seq DESC LIMIT 1
            """), arguments: [subject, StoreRules.stateless])?.event else { return nil }
        return (e, StoreRules.loggedState(e))
    }

    /// Why a stored exception is not backed by the log (`StoreRules.trustProblem`): one indexed
    /// lookup and one hash per exception read; the whole chain is `audit verify`'s job.
    static func trustProblem(_ db: Database, _ record: ExceptionRecord) throws -> String? {
        StoreRules.trustProblem(record, latest: try latestStateEvent(db, subject: record.displayId)?.event)
    }

    // MARK: - Evaluations

    public func record(_ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date? = nil) async throws -> Int {
        try writing { db in try record(db, evaluation, event: event, pruneBefore: pruneBefore) }
    }

    func record(_ db: Database, _ evaluation: Evaluation, event: AuditDraft, pruneBefore: Date?) throws -> Int {
        // Retention: the workspace's older recorded checks go (their violations with them, by the
        // foreign key); the new one is its latest, so the workspace always keeps one.
        var pruned = 0
        if let pruneBefore {
            try db.cachedStatement(sql: "DELETE FROM evaluation WHERE workspace = ? AND at < ?")
                .execute(arguments: [evaluation.workspace, Self.seconds(pruneBefore)])
            pruned = db.changesCount
        }
        try db.cachedStatement(sql: "INSERT INTO evaluation (workspace, at, actor, verdict, resourceCount) VALUES (?, ?, ?, ?, ?)")
            .execute(arguments: [evaluation.workspace, Self.seconds(evaluation.at), evaluation.actor, evaluation.verdict, evaluation.resourceCount])
        let id = db.lastInsertedRowID
        let insert = try db.cachedStatement(sql: """
            INSERT INTO evaluationViolation (evaluationId, policy, resource, status, digest, message, severity, category) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for v in evaluation.violations {
            try insert.execute(arguments: [id, v.policy, v.resource, v.status.rawValue, v.digest, v.message, v.severity.rawValue, v.category])
        }
        var e = event
        if case .object(var o) = e.payload {
            o.append("evaluation", .number(Double(id)))
            if pruned > 0 { o.append("pruned_evaluations", .number(Double(pruned))) }
            e.payload = .object(o)
        }
        try appendEvent(db, e)
        return Int(id)
    }

    public func recordedRule(workspace: String, policy: String) async throws -> (category: String, severity: Severity)? {
        try reading { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT DISTINCT v.severity, v.category FROM evaluationViolation v JOIN evaluation e ON e.id = v.evaluationId
                WHERE v.policy = ? AND e.workspace = ?
                """, arguments: [policy, workspace])
            return StoreRules.recordedRule(try rows.map { (try $0.read(at: 0, of: "a recorded violation"), try $0.read(at: 1, of: "a recorded violation")) })
        }
    }

    public func latestEvaluation(workspace: String) async throws -> Evaluation? {
        try reading { db in
            guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM evaluation WHERE workspace = ? ORDER BY id DESC LIMIT 1", arguments: [workspace]) else {
                return nil
            }
            return try Self.evaluation(db, id: id)
        }
    }

    /// A recorded check with its violations in the order recorded.
    static func evaluation(_ db: Database, id: Int64) throws -> Evaluation? {
        guard var e = try EvaluationRow.fetchOne(db, sql: "SELECT * FROM evaluation WHERE id = ?", arguments: [id])?.evaluation else { return nil }
        e.violations = try ViolationRow.fetchAll(db, sql: "SELECT policy, resource, status, digest, message, severity, category FROM evaluationViolation WHERE evaluationId = ? ORDER BY rowid", arguments: [id])
            .map(\.violation)
        return e
    }
}

/// Database errors are shown to users generically (their text can carry data); the code says what kind.
extension Row {
    /// A column's value as `T`, or `CorruptRegister` naming the row and the column: a register file
    /// edited behind Waiver's back may hold anything in any column, and reading it must not crash.
    func read<T: DatabaseValueConvertible>(_ column: String, of what: @autoclosure () -> String) throws -> T {
        do { return try decode(T.self, forColumn: column) } catch { throw CorruptRegister(what: what(), column: column) }
    }

    /// The value at a position of a `SELECT` list, the same way.
    func read<T: DatabaseValueConvertible>(at index: Int, of what: @autoclosure () -> String) throws -> T {
        do { return try decode(T.self, atIndex: index) } catch {
            throw CorruptRegister(what: what(), column: index < count ? Array(columnNames)[index] : "#\(index)")
        }
    }
}

public enum StoreError {
    public static func userMessage(for error: any Error) -> String? {
        guard let e = error as? DatabaseError else { return nil }
        switch e.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED: return "the register is busy (another process holds it); try again"
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: return "the register file is damaged or not a Waiver register"
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM: return "the register file cannot be written (permissions?)"
        case .SQLITE_FULL: return "the disk is full: nothing was written"
        case .SQLITE_CONSTRAINT: return "the register refused the change (\(e.message ?? "constraint"))"
        default: return "register database error (SQLite \(e.resultCode.rawValue)); nothing was written"
        }
    }
}
