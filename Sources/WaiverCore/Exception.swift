import Foundation

/// The life of an exception (README.md): an explicit state machine.
public enum ExceptionStatus: String, Sendable, CaseIterable, Codable {
    /// Requested, waiting for enough approvals.
    case pending
    /// Approved and active until its expiry instant.
    case approved
    case rejected
    /// Ended early by an approver or the requester.
    case revoked
    /// Past expiry, and the re-check found the violation still there: the pipeline blocks again.
    case expired
    /// Past expiry, and the re-check found the resource compliant.
    case closed

    /// The statuses each status may move to.
    public var next: [ExceptionStatus] {
        switch self {
        case .pending: return [.approved, .rejected, .revoked]
        case .approved: return [.revoked, .expired, .closed]
        case .rejected, .revoked, .expired, .closed: return []
        }
    }

    public var isFinal: Bool { next.isEmpty }

    /// Why a transition is refused, or nil when it is allowed.
    public func refusal(to target: ExceptionStatus, id: String) -> String? {
        if next.contains(target) { return nil }
        if isFinal { return "\(id) is \(rawValue), which is final; a renewal is a new request (waiver request --renews \(id))" }
        return "\(id) is \(rawValue): it cannot become \(target.rawValue) (from \(rawValue) it can become \(next.map(\.rawValue).joined(separator: " or ")))"
    }
}

/// Likelihood and impact of the risk an exception accepts.
public enum RiskFactor: String, Sendable, CaseIterable, Codable {
    case low, medium, high
    public var score: Int {
        switch self {
        case .low: return 1
        case .medium: return 2
        case .high: return 3
        }
    }
}

/// What an exception is about: resources in a workspace (pipeline exceptions), or a person, device
/// or account (program exceptions to controls that are not machine-checked).
public enum SubjectKind: String, Sendable, CaseIterable, Codable {
    case resource, person, device, account
}

public struct Approval: Sendable, Equatable, Codable {
    public var approver: String
    public var comment: String?
    public var at: Date
    public init(approver: String, comment: String?, at: Date) {
        self.approver = approver
        self.comment = comment
        self.at = at
    }
}

/// A file kept with an exception, addressed by its SHA-256.
public struct EvidenceFile: Sendable, Equatable, Codable {
    public var sha256: String
    public var name: String
    public var size: Int
    public var addedBy: String
    public var at: Date
    /// What the file shows, in words, shown with it everywhere ("User has signed a BYOD agreement").
    public var displayText: String?
    public init(sha256: String, name: String, size: Int, addedBy: String, at: Date, displayText: String? = nil) {
        self.sha256 = sha256
        self.name = name
        self.size = size
        self.addedBy = addedBy
        self.at = at
        self.displayText = displayText
    }
}

/// Where a request comes from: the change and the pipeline run an approver looks at before deciding.
/// Declared by the client (`check --commit --run-url --change-url`, or read from the CI's variables);
/// a verified pipeline's name is added by the server.
public struct RequestOrigin: Sendable, Equatable, Codable {
    public var commit: String?
    /// The pipeline run (GitHub Actions run, GitLab pipeline, Jenkins build, HCP Terraform run).
    public var runURL: String?
    /// The pull or merge request.
    public var changeURL: String?
    /// The commit author the client declared (conflicted: they may not approve).
    public var commitAuthor: String?
    /// The verified pipeline (`pipeline:owner/repo@ref`), when an OIDC token said so.
    public var pipeline: String?

    public init(commit: String? = nil, runURL: String? = nil, changeURL: String? = nil, commitAuthor: String? = nil, pipeline: String? = nil) {
        self.commit = commit
        self.runURL = runURL
        self.changeURL = changeURL
        self.commitAuthor = commitAuthor
        self.pipeline = pipeline
    }

    public var isEmpty: Bool { [commit, runURL, changeURL, commitAuthor, pipeline].allSatisfy { $0 == nil } }

    /// As the register's state and exports record it (only the fields present).
    public var value: Value {
        var o = Value.Object()
        for (k, v) in [("commit", commit), ("run_url", runURL), ("change_url", changeURL), ("commit_author", commitAuthor), ("pipeline", pipeline)] {
            if let v { o.append(k, .string(v)) }
        }
        return .object(o)
    }

    /// Reads `value` back (stores keep it as this JSON); nil for anything else.
    public static func from(_ v: Value?) -> RequestOrigin? {
        guard case .object(let o)? = v else { return nil }
        let r = RequestOrigin(commit: o["commit"]?.stringValue, runURL: o["run_url"]?.stringValue, changeURL: o["change_url"]?.stringValue,
                              commitAuthor: o["commit_author"]?.stringValue, pipeline: o["pipeline"]?.stringValue)
        return r.isEmpty ? nil : r
    }
}

/// What approving an exception takes: who may approve, how many, and whether a higher group must sign.
public struct ApprovalRule: Sendable, Equatable, Codable {
    /// Groups whose members may approve.
    public var groups: [String]
    /// Distinct approvers needed.
    public var minApprovals: Int
    /// When the risk level escalates to a higher group: at least one approval must come from it.
    public var requiredGroups: [String]

    public init(groups: [String], minApprovals: Int, requiredGroups: [String] = []) {
        self.groups = groups
        self.minApprovals = minApprovals
        self.requiredGroups = requiredGroups
    }
}

/// One exception in the register.
public struct ExceptionRecord: Sendable, Equatable, Codable {
    public var id: Int
    public var policy: String
    public var category: String
    public var workspace: String
    public var subjectKind: SubjectKind
    /// Resource addresses, or the person, device or account for program exceptions.
    public var resources: [String]
    public var requester: String
    /// Someone else who may not approve (e.g. the author of the commit the check ran for).
    public var conflicted: [String]
    public var reason: String
    public var requestedDays: Int
    public var likelihood: RiskFactor
    public var impact: RiskFactor
    public var riskLevel: String
    public var mitigations: [String]
    public var evidence: [EvidenceFile]
    public var approvals: [Approval]
    public var rule: ApprovalRule
    public var status: ExceptionStatus
    public var createdAt: Date
    public var decidedAt: Date?
    /// Set when approved: the exception is active until this instant, and not one second after.
    public var expiresAt: Date?
    /// The exception this one renews.
    public var renews: Int?
    /// The named owner of a device or account (program exceptions): conflicted like the requester.
    public var owner: String?
    /// The risk level the requester's likelihood x impact gave, when the policy's floor or an
    /// approver raised it (nil when `riskLevel` is what the requester proposed).
    public var proposedRisk: String?
    /// The approver who last raised the risk (nil when only the policy's floor did).
    public var riskRaisedBy: String?
    /// The ticket the request refers to (`INC-42` or a URL), searchable.
    public var ticket: String?
    /// The last review's attestation (program exceptions under `exceptions.review_every`).
    public var reviewedAt: Date?
    /// The change and run the request came from.
    public var origin: RequestOrigin?
    /// The violating values it was filed and approved for, by resource (as a check reported them,
    /// sensitive ones masked). A resource without an entry is covered whatever its values; nil when
    /// the policy binds the resource (`exceptions.bind: resource`) or no check had reported values.
    public var bound: [String: String]?
    /// Why the stored state is not trusted (it is not the state the audit log's last event about it
    /// records), or nil when it is backed by the log. Set by the store on every read.
    public var untrusted: String?

    public init(
        id: Int,
        policy: String,
        category: String,
        workspace: String,
        subjectKind: SubjectKind,
        resources: [String],
        requester: String,
        conflicted: [String],
        reason: String,
        requestedDays: Int,
        likelihood: RiskFactor,
        impact: RiskFactor,
        riskLevel: String,
        mitigations: [String],
        evidence: [EvidenceFile],
        approvals: [Approval],
        rule: ApprovalRule,
        status: ExceptionStatus,
        createdAt: Date,
        decidedAt: Date?,
        expiresAt: Date?,
        renews: Int?,
        owner: String? = nil,
        proposedRisk: String? = nil,
        riskRaisedBy: String? = nil,
        ticket: String? = nil,
        origin: RequestOrigin? = nil
    ) {
        self.ticket = ticket
        self.origin = origin
        self.id = id
        self.policy = policy
        self.category = category
        self.workspace = workspace
        self.subjectKind = subjectKind
        self.resources = resources
        self.requester = requester
        self.conflicted = conflicted
        self.reason = reason
        self.requestedDays = requestedDays
        self.likelihood = likelihood
        self.impact = impact
        self.riskLevel = riskLevel
        self.mitigations = mitigations
        self.evidence = evidence
        self.approvals = approvals
        self.rule = rule
        self.status = status
        self.createdAt = createdAt
        self.decidedAt = decidedAt
        self.expiresAt = expiresAt
        self.renews = renews
        self.owner = owner
        self.proposedRisk = proposedRisk
        self.riskRaisedBy = riskRaisedBy
    }

    public var displayId: String { ExceptionRecord.display(id) }
    public static func display(_ id: Int) -> String { "EX-\(id)" }

    /// Parses `EX-7` or `7`.
    public static func parseId(_ text: String) -> Int? {
        let t = text.uppercased().hasPrefix("EX-") ? text.utf8.dropFirst(3) : text.utf8[...]
        // Digits only (no sign, no spaces): the id syntax the API documents, `^(EX-)?[0-9]{1,18}$`.
        guard (1...18).contains(t.count), t.allSatisfy({ (0x30...0x39).contains($0) }), let n = Int(String(decoding: t, as: UTF8.self)), n > 0 else { return nil }
        return n
    }

    /// Active: approved, not yet at its expiry instant, and its state is the one the audit log records.
    public func isActive(at now: Date) -> Bool {
        guard status == .approved, untrusted == nil, let expiresAt else { return false }
        return now < expiresAt
    }

    /// The people the subject of a program exception names: a person exception is about the people
    /// it lists; a device or account exception about its owner.
    public var subjectPeople: [String] {
        switch subjectKind {
        case .resource: return []
        case .person: return resources
        case .device, .account: return owner.map { [$0] } ?? []
        }
    }

    /// Why this person may not approve or reject the exception, or nil when they may. People are
    /// compared as identities (`Identity.canonical`), never as raw strings.
    public func conflict(of person: String) -> String? {
        let p = Identity.canonical(person)
        if Identity.canonical(requester) == p { return "they requested it (no one approves their own request)" }
        if subjectKind == .person, resources.contains(where: { Identity.canonical($0) == p }) {
            return "it is about them (they are the person it excepts)"
        }
        if let owner, Identity.canonical(owner) == p { return "they own the \(subjectKind.rawValue) it is about" }
        if conflicted.contains(where: { Identity.canonical($0) == p }) {
            return renews == nil ? "they authored the change it covers"
                : "they authored the change it covers or were conflicted on \(ExceptionRecord.display(renews ?? 0)), which it renews"
        }
        return nil
    }

    /// Whether this person already approved it.
    public func approved(by person: String) -> Bool {
        let p = Identity.canonical(person)
        return approvals.contains { Identity.canonical($0.approver) == p }
    }

    /// Everything the register stores about the exception, as canonical JSON: what the audit log's
    /// last event about it records (as a SHA-256), so a row changed behind the log's back is caught.
    public var canonicalState: String { JSONWriter.canonical(stateValue) }

    /// The state as a JSON object (the `state` of the audit event that last changed the exception).
    public var stateValue: Value {
        func opt(_ d: Date?) -> Value { d.map { .number($0.timeIntervalSince1970.rounded(.down)) } ?? .null }
        func list(_ l: [String]) -> Value { .array(l.map(Value.string)) }
        let state: Value = .object(Value.Object([
            ("id", .number(Double(id))), ("policy", .string(policy)), ("category", .string(category)), ("workspace", .string(workspace)),
            ("subject_kind", .string(subjectKind.rawValue)), ("resources", list(resources)), ("requester", .string(requester)),
            ("conflicted", list(conflicted)), ("reason", .string(reason)), ("days", .number(Double(requestedDays))),
            ("likelihood", .string(likelihood.rawValue)), ("impact", .string(impact.rawValue)), ("risk", .string(riskLevel)),
            ("mitigations", list(mitigations)),
            // Display text is appended only when present, so states logged before it existed still match.
            ("evidence", .array(evidence.map { .array([.string($0.sha256), .string($0.name), .number(Double($0.size)), .string($0.addedBy), opt($0.at)]
                                                      + ($0.displayText.map { [.string($0)] } ?? [])) })),
            ("approvals", .array(approvals.map { .array([.string($0.approver), $0.comment.map(Value.string) ?? .null, opt($0.at)]) })),
            ("groups", list(rule.groups)), ("min_approvals", .number(Double(rule.minApprovals))), ("required_groups", list(rule.requiredGroups)),
            ("status", .string(status.rawValue)), ("created", opt(createdAt)), ("decided", opt(decidedAt)), ("expires", opt(expiresAt)),
            ("renews", renews.map { .number(Double($0)) } ?? .null), ("owner", owner.map(Value.string) ?? .null),
            ("proposed_risk", proposedRisk.map(Value.string) ?? .null), ("risk_raised_by", riskRaisedBy.map(Value.string) ?? .null),
        ]))
        // Fields added later are in the state only when set, so states logged before them still match.
        guard case .object(var o) = state else { return state }
        if let ticket { o.append("ticket", .string(ticket)) }
        if let origin, !origin.isEmpty { o.append("origin", origin.value) }
        if let reviewedAt { o.append("reviewed", opt(reviewedAt)) }
        if let bound { o.append("bound", ExceptionRecord.boundValue(bound)) }
        return .object(o)
    }

    /// The bound values as JSON: an object by resource address, in address order.
    public static func boundValue(_ bound: [String: String]) -> Value {
        .object(Value.Object(bound.keys.sorted().map { ($0, .string(bound[$0] ?? "")) }))
    }

    /// Reads `boundValue` back; nil for anything else.
    public static func bound(from v: Value?) -> [String: String]? {
        guard case .object(let o)? = v else { return nil }
        var out: [String: String] = [:]
        for (k, v) in o.pairs { guard let s = v.stringValue else { return nil }; out[k] = s }
        return out
    }

    /// Whether it covers a violation of its policy on `resource` with these values: always when it
    /// binds no values for the resource, else only for the values it was approved for.
    public func covers(resource: String, values: String) -> Bool {
        guard let approved = bound?[resource] else { return true }
        return approved == values
    }

    /// Requests filed together belong to one batch, decided together on one page: one pipeline run's
    /// (its run URL, else its commit), else one requester's filed at the same second in one workspace
    /// (what one `check --request` files).
    public var batch: String {
        let source = origin?.runURL ?? origin?.commit ?? "\(requester)@\(Int(createdAt.timeIntervalSince1970))"
        return workspace + "\u{0}" + source
    }

    /// When the next review is due under a review cycle of `every` seconds: a cycle after the last
    /// attestation, or after the approval.
    public func reviewDue(every: Int) -> Date? {
        guard status == .approved, let start = reviewedAt ?? decidedAt else { return nil }
        return start.addingTimeInterval(Double(every))
    }

    public func covers(policy: String, workspace: String, resource: String) -> Bool {
        self.policy == policy && self.workspace == workspace && resources.contains(resource)
    }
}
