import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// What a person can do with a register, wherever it lives: one protocol, a local implementation
/// over the register's rules and a store (the CLI on a file, the server's API and pages), and a
/// remote one over HTTP (`waiver --server`). The actor is bound into the implementation: the CLI's
/// user locally, the token's user on the server; no call takes a name from the caller.
public protocol RegisterService: Sendable {
    func request(_ request: ExceptionRequest, evidence: [EvidenceUpload]) async throws -> Filed
    /// Files several requests, all or none (`waiver suppressions scan --request`).
    func requestAll(_ requests: [ExceptionRequest]) async throws -> [Filed]
    func approve(_ id: Int, comment: String?, days: Int?, risk: String?) async throws -> Decided
    func reject(_ id: Int, comment: String) async throws -> Decided
    func revoke(_ id: Int, comment: String) async throws -> Decided
    /// A review's re-attestation of a program exception (still needed, mitigations in place).
    func attest(_ id: Int, comment: String) async throws -> Decided
    /// Closes an active exception as remediated, with the evidence added for it.
    func closeRemediated(_ id: Int, comment: String) async throws -> Decided
    func addEvidence(_ id: Int, _ upload: EvidenceUpload) async throws -> ExceptionRecord
    func list(_ query: ListQuery) async throws -> [ExceptionRecord]
    /// The listed exceptions each with its history: what the CSV and JSON exports are made of
    /// (decisions with their comments, rejections and revocations with their reasons, the risk history).
    func exportRows(_ query: ListQuery) async throws -> [ExportRow]
    func show(_ id: Int) async throws -> Shown
    func report(from: Date?, to: Date?) async throws -> RegisterReport
    /// Records a policy's quarterly review (`waiver review record`).
    func recordReview(quarter: String, policy: String, decision: String, link: String?) async throws -> PolicyReview
    func expire() async throws -> [ExpiryOutcome]
    /// An evidence file's bytes, only when an exception records it (a stray file in the folder is not served); nil otherwise.
    func evidence(sha256: String) async throws -> Data?
    /// The audit log as JSON Lines, one event a line with its hashes (`AuditChain.exportLine`).
    func exportAudit() async throws -> String
    /// Verifies the register as evidence: the chain, anchors kept elsewhere, signed checkpoints (with
    /// `publicKey`: the register's own, or `given` ones kept elsewhere), stored states against the
    /// log, evidence bytes. `incremental`: only the events after the head last verified, when it still stands.
    func verifyAudit(anchors: [AuditAnchor], publicKey: PublicSigningKey?, given: [Checkpoint]?, incremental: Bool) async throws -> AuditVerification
    /// Signs the log's head now: locally with the key given to the service, on a server with its own.
    func checkpoint() async throws -> Checkpoint
    /// The instant the answers were computed at (for "active", "days left").
    var now: Date { get }
}

/// A file given as evidence: its name as shown, and its bytes (kept under their SHA-256).
public struct EvidenceUpload: Sendable {
    public var name: String
    public var data: Data
    /// What the file shows, in words (kept and shown with it).
    public var displayText: String?
    public init(name: String, data: Data, displayText: String? = nil) {
        self.name = name
        self.data = data
        self.displayText = displayText
    }
}

/// A filed request, with the warning that no one can approve it as the groups stand.
public struct Filed: Sendable, Equatable {
    public var record: ExceptionRecord
    public var warning: String?
    public init(record: ExceptionRecord, warning: String?) {
        self.record = record
        self.warning = warning
    }
}

/// A decision: the exception after it, who decided, and (for an approval not yet enough) what it still needs.
public struct Decided: Sendable, Equatable {
    public var record: ExceptionRecord
    public var actor: String
    public var stillNeeds: String?
    public init(record: ExceptionRecord, actor: String, stillNeeds: String? = nil) {
        self.record = record
        self.actor = actor
        self.stillNeeds = stillNeeds
    }
}

/// One exception with its history.
public struct Shown: Sendable, Equatable {
    public var record: ExceptionRecord
    public var history: [AuditEvent]
    public init(record: ExceptionRecord, history: [AuditEvent]) {
        self.record = record
        self.history = history
    }
}

/// Which exceptions to list. `expiringWithin` (seconds) keeps only active exceptions expiring within it.
public struct ListQuery: Sendable, Equatable {
    public var status: ExceptionStatus?
    public var policy: String?
    public var workspace: String?
    public var requester: String?
    public var expiringWithin: Int?
    public var ticket: String?
    /// Only the acting user's own requests (`list --mine`, "My requests").
    public var mine: Bool
    public var limit: Int?
    public init(status: ExceptionStatus? = nil, policy: String? = nil, workspace: String? = nil, requester: String? = nil,
                expiringWithin: Int? = nil, ticket: String? = nil, mine: Bool = false, limit: Int? = nil) {
        self.ticket = ticket
        self.mine = mine
        self.status = status
        self.policy = policy
        self.workspace = workspace
        self.requester = requester
        self.expiringWithin = expiringWithin
        self.limit = limit
    }
}

/// Evidence files kept in one folder under their SHA-256 (replicas share it).
public struct EvidenceFolder: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    func file(_ sha: String) -> String { (path as NSString).appendingPathComponent(sha) }

    /// Stores the bytes under their SHA-256; whether the file is new.
    func put(_ data: Data) throws -> (sha256: String, new: Bool) {
        let sha = AuditChain.sha256(data)
        let target = file(sha)
        if FileManager.default.fileExists(atPath: target) { return (sha, false) }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: target), options: [.atomic])
        } catch {
            throw EvidenceFolderError(message: "\(path): cannot store evidence: \(error.localizedDescription)")
        }
        return (sha, true)
    }

    func remove(_ sha: String) { try? FileManager.default.removeItem(atPath: file(sha)) }
}

public struct EvidenceFolderError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The register's use cases on a store, with the rules of `Register`: the CLI on a local register,
/// the server's API and pages (one per request, bound to its user).
public struct LocalRegisterService: RegisterService {
    public let register: Register
    public let evidence: EvidenceFolder
    public let actor: String
    public let now: Date
    /// The store's verification and checkpoint side (SQLite and PostgreSQL have one; the in-memory store does not).
    public let audit: (any ServerRegisterStore)?
    /// The key that signs checkpoints, when this register has one.
    public let signingKey: SigningKey?
    /// The pipeline acting, when the caller proved one with its CI system's token: what it requests is
    /// bound to its trust rules' workspaces, and the people who triggered it may not approve it.
    public let pipeline: PipelineIdentity?
    var store: any RegisterStore { register.store }

    public init(register: Register, evidence: EvidenceFolder, actor: String, now: Date,
                audit: (any ServerRegisterStore)? = nil, signingKey: SigningKey? = nil, pipeline: PipelineIdentity? = nil) {
        self.pipeline = pipeline
        self.register = register
        self.evidence = evidence
        self.actor = actor
        self.now = now
        self.audit = audit ?? register.store as? any ServerRegisterStore
        self.signingKey = signingKey
    }

    /// Files the request (the rules of `Register.prepare`, renewal inheritance included), then adds its evidence.
    public func request(_ request: ExceptionRequest, evidence uploads: [EvidenceUpload]) async throws -> Filed {
        for u in uploads { try Self.checkName(u.name) }
        var request = request
        if let pipeline {
            var p = request.provenance ?? Provenance()
            p.pipeline = pipeline
            request.provenance = p
        }
        let prepared = try await register.prepare(request, actor: actor, now: now)
        var e = try await store.insert([prepared])[0]
        for u in uploads { e = try await addEvidence(e.id, u) }
        return Filed(record: e, warning: prepared.warning)
    }

    /// Every request validated first, then all stored in one transaction.
    public func requestAll(_ requests: [ExceptionRequest]) async throws -> [Filed] {
        var prepared: [PreparedRequest] = []
        let latest = LatestViolations()
        for var r in requests {
            if let pipeline {
                var p = r.provenance ?? Provenance()
                p.pipeline = pipeline
                r.provenance = p
            }
            prepared.append(try await register.prepare(r, actor: actor, now: now, latest: latest))
        }
        guard !prepared.isEmpty else { return [] }
        return zip(try await store.insert(prepared), prepared).map { Filed(record: $0, warning: $1.warning) }
    }

    public func approve(_ id: Int, comment: String?, days: Int?, risk: String?) async throws -> Decided {
        let e = try await register.approve(id, actor: actor, comment: comment, days: days, risk: risk, now: now)
        return Decided(record: e, actor: actor, stillNeeds: e.status == .pending ? register.missingApprovals(e) : nil)
    }

    public func reject(_ id: Int, comment: String) async throws -> Decided {
        Decided(record: try await register.reject(id, actor: actor, comment: comment, now: now), actor: actor)
    }

    public func revoke(_ id: Int, comment: String) async throws -> Decided {
        Decided(record: try await register.revoke(id, actor: actor, comment: comment, now: now), actor: actor)
    }

    public func attest(_ id: Int, comment: String) async throws -> Decided {
        Decided(record: try await register.attest(id, actor: actor, comment: comment, now: now), actor: actor)
    }

    public func closeRemediated(_ id: Int, comment: String) async throws -> Decided {
        Decided(record: try await register.closeRemediated(id, actor: actor, comment: comment, now: now), actor: actor)
    }

    /// The largest evidence file (the server also bounds it by its body limit).
    public static let maxEvidenceBytes = 100 << 20

    static func checkName(_ name: String) throws(RegisterError) {
        guard !name.isEmpty, name.count <= 255, !name.contains("/") else {
            throw .invalid("an evidence name is a file name of 1 to 255 characters without '/' (got \(name.debugDescription.clipped(80)))")
        }
    }

    /// Adds an evidence file: the exception is checked first, so nothing reaches the disk for one
    /// that does not exist or can no longer take evidence; a file refused after all is removed
    /// again unless another exception records it.
    public func addEvidence(_ id: Int, _ upload: EvidenceUpload) async throws -> ExceptionRecord {
        try Self.checkName(upload.name)
        guard upload.data.count <= Self.maxEvidenceBytes else {
            throw RegisterError.invalid("\(upload.name): evidence file over \(Self.maxEvidenceBytes >> 20) MiB")
        }
        guard let target = try await store.exception(id: id) else { throw RegisterError.notFound("\(ExceptionRecord.display(id)) not found") }
        try register.mayAddEvidence(target, actor: actor)
        let text = try Register.evidenceText(upload.displayText)
        guard !upload.data.isEmpty else { throw RegisterError.invalid("\(upload.name): the evidence file is empty") }
        let (sha, new) = try evidence.put(upload.data)
        let file = EvidenceFile(sha256: sha, name: upload.name, size: upload.data.count, addedBy: actor, at: Register.second(now), displayText: text)
        do {
            return try await register.addEvidence(id, file: file, actor: actor)
        } catch {
            if new, let referenced = try? await store.evidenceReferenced(sha256: sha), !referenced { evidence.remove(sha) }
            throw error
        }
    }

    public func list(_ q: ListQuery) async throws -> [ExceptionRecord] {
        var filter = ExceptionFilter(statuses: q.status.map { [$0] }, policy: q.policy, workspace: q.workspace, requester: q.mine ? actor : q.requester,
                                     ticket: q.ticket?.trimmingCharacters(in: .whitespaces).nilIfEmpty, limit: q.limit)
        if let within = q.expiringWithin {
            filter.statuses = [.approved]
            filter.expiringBefore = now.addingTimeInterval(Double(within) + 1)
        }
        let items = try await store.exceptions(filter)
        return filter.expiringBefore == nil ? items : items.filter { $0.isActive(at: now) }
    }

    public func exportRows(_ q: ListQuery) async throws -> [ExportRow] {
        var rows: [ExportRow] = []
        for e in try await list(q) { rows.append(ExportRow(record: e, history: try await store.auditEvents(subject: e.displayId))) }
        return rows
    }

    public func show(_ id: Int) async throws -> Shown {
        guard let e = try await store.exception(id: id) else { throw RegisterError.notFound("\(ExceptionRecord.display(id)) not found") }
        return Shown(record: e, history: try await store.auditEvents(subject: e.displayId))
    }

    public func report(from: Date?, to: Date?) async throws -> RegisterReport {
        if let from, let to, to <= from { throw RegisterError.invalid("the report's period ends (to) before it starts (from)") }
        let inPeriod = try await store.exceptions(ExceptionFilter(createdFrom: from, createdBefore: to))
        let active = try await store.exceptions(ExceptionFilter(statuses: [.approved]))
        var latest: [String: Evaluation] = [:]
        for w in Set(active.map(\.workspace)) { latest[w] = try await store.latestEvaluation(workspace: w) }
        var report = RegisterReport.build(inPeriod: inPeriod, active: active, latest: latest, from: from, to: to, now: now,
                                          reviewThreshold: register.configuration.reviewThreshold)
        var events: [AuditEvent] = []
        try await store.forEachAuditEvent { e in if e.action == Register.reviewAction { events.append(e) } }
        report.reviews = Register.reviews(in: events).filter { r in (from.map { r.at >= $0 } ?? true) && (to.map { r.at < $0 } ?? true) }
        return report
    }

    public func recordReview(quarter: String, policy: String, decision: String, link: String?) async throws -> PolicyReview {
        try await register.recordReview(quarter: quarter, policy: policy, decision: decision, link: link, actor: actor, now: now)
    }

    public func expire() async throws -> [ExpiryOutcome] {
        try await register.expire(now: now, actor: actor)
    }

    public func evidence(sha256 sha: String) async throws -> Data? {
        guard sha.utf8.count == 64, sha.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw RegisterError.invalid("evidence is addressed by its SHA-256 (64 lower-case hex digits)")
        }
        guard try await store.evidenceReferenced(sha256: sha) else { return nil }
        return FileManager.default.contents(atPath: evidence.file(sha))
    }

    func auditStore() throws -> any ServerRegisterStore {
        guard let audit else { throw RegisterError.invalid("this register keeps no verifiable log (an in-memory register)") }
        return audit
    }

    /// Verifies the audit log and the register against it. `incremental` (a page view, the API by
    /// default) verifies only the events after the head this process last verified, while that head
    /// still stands and no anchor or checkpoint is asked for; else the whole chain.
    public func verifyAudit(anchors: [AuditAnchor], publicKey: PublicSigningKey?, given: [Checkpoint]?,
                            incremental: Bool) async throws -> AuditVerification {
        let store = try auditStore()
        let resume = incremental && anchors.isEmpty && publicKey == nil ? store.auditMemo.verified : nil
        let result = try await store.verifyAudit(anchors: anchors, evidenceDirectory: evidence.path,
                                                 checkpoints: publicKey.map { CheckpointCheck(publicKey: $0, given: given) }, resume: resume)
        store.auditMemo.remember(result)
        return result
    }

    public func checkpoint() async throws -> Checkpoint {
        guard let signingKey else {
            throw RegisterError.conflict("no signing key: a local register signs with --signing-key FILE or $WAIVER_SIGNING_KEY, a server with the one it was started with")
        }
        guard let c = try await auditStore().checkpoint(with: signingKey, now: now) else {
            throw RegisterError.conflict("the audit log is empty: there is nothing to sign")
        }
        return c
    }

    public func exportAudit() async throws -> String {
        var out: [UInt8] = []
        try await store.forEachAuditEvent { e in
            out.append(contentsOf: AuditChain.exportLine(e).utf8)
            out.append(0x0A)
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// An exported exception: the record and its history (from the audit log).
public struct ExportRow: Sendable, Equatable {
    public var record: ExceptionRecord
    public var history: [AuditEvent]
    public init(record: ExceptionRecord, history: [AuditEvent]) {
        self.record = record
        self.history = history
    }
}

/// One of "my requests": the exception, and its decision in words (who decided and their comment).
public struct MyRequest: Sendable, Equatable {
    public var record: ExceptionRecord
    /// "rejected by sam at 2026-12-02T10:00:00Z: too broad"; nil while pending.
    public var decision: String?
    public init(record: ExceptionRecord, decision: String?) {
        self.record = record
        self.decision = decision
    }
}

extension RegisterService {
    /// The whole chain verified.
    public func verifyAudit(anchors: [AuditAnchor], publicKey: PublicSigningKey?, given: [Checkpoint]?) async throws -> AuditVerification {
        try await verifyAudit(anchors: anchors, publicKey: publicKey, given: given, incremental: false)
    }

    /// The acting user's own requests, newest first, each decided one with its decision's comment
    /// (from the audit log: rejections and revocations keep their reason there). The same for
    /// `list --mine` and the "My requests" page.
    public func myRequests(limit: Int = 200) async throws -> [MyRequest] {
        let mine = try await list(ListQuery(mine: true)).sorted { $0.id > $1.id }.prefix(limit)
        var out: [MyRequest] = []
        for e in mine {
            guard e.status != .pending else { out.append(MyRequest(record: e, decision: nil)); continue }
            let history = try await show(e.id).history
            out.append(MyRequest(record: e, decision: MyRequest.decision(of: e, history: history)))
        }
        return out
    }
}

extension MyRequest {
    static let decisive = ["exception.approved", "exception.rejected", "exception.revoked", "exception.expired", "exception.closed"]

    /// The last decision about an exception, in words.
    static func decision(of e: ExceptionRecord, history: [AuditEvent]) -> String? {
        guard let ev = history.last(where: { decisive.contains($0.action) }) else { return nil }
        let verb = String(ev.action.dropFirst("exception.".count))
        let payload = try? JSONReader.parse(Data(ev.payload.utf8))
        var text = ev.action == "exception.expired" || ev.action == "exception.closed" ? "\(verb) at \(iso(ev.time))" : "\(verb) by \(ev.actor) at \(iso(ev.time))"
        let comment = payload?["comment"]?.stringValue ?? (ev.action == "exception.approved" ? e.approvals.last?.comment : nil) ?? payload?["basis"]?.stringValue
        if let comment, !comment.isEmpty { text += ": \(comment)" }
        return text
    }
}

/// A decision taken on several requests at once (the inbox's batch form, `waiver approve EX-1 EX-2`).
public enum BatchAction: String, Sendable, CaseIterable {
    case approve, reject
}

/// What deciding one request of a batch did: the decision, or the rule that refused it.
public struct BatchOutcome: Sendable, Equatable {
    public var id: Int
    public var decided: Decided?
    public var refusal: String?
}

extension RegisterService {
    /// Decides each request on its own: every rule is checked per exception and every decision is its
    /// own audit event, so one refused request (the approver's own, another group's, already decided)
    /// neither stops nor undoes the others. Errors other than a rule's refusal end the batch.
    public func decideAll(_ ids: [Int], action: BatchAction, comment: String?) async throws -> [BatchOutcome] {
        var out: [BatchOutcome] = []
        var seen = Set<Int>()
        for id in ids where seen.insert(id).inserted {
            do {
                let d: Decided
                switch action {
                case .approve: d = try await approve(id, comment: comment, days: nil, risk: nil)
                case .reject: d = try await reject(id, comment: comment ?? "")
                }
                out.append(BatchOutcome(id: id, decided: d, refusal: nil))
            } catch let e as RegisterError {
                out.append(BatchOutcome(id: id, decided: nil, refusal: e.description))
            }
        }
        return out
    }
}

extension BatchOutcome {
    /// "EX-3 approved by fin until …", "EX-4: approval recorded; still needs …", "EX-5 refused: …".
    public var line: String {
        let shown = ExceptionRecord.display(id)
        guard let d = decided else { return "\(shown) refused: \(refusal ?? "")" }
        let e = d.record
        switch e.status {
        case .approved: return "\(shown) approved by \(d.actor)\(e.expiresAt.map { ": active until \(iso($0))" } ?? "")"
        case .rejected: return "\(shown) rejected by \(d.actor)"
        default: return "\(shown): approval by \(d.actor) recorded; still needs \(d.stillNeeds ?? "nothing")"
        }
    }
}
