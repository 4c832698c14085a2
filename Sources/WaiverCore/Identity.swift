import Foundation

/// A person (or pipeline) known to the server, with the groups that route approvals to them.
public struct User: Sendable, Equatable, Codable {
    public var name: String
    public var groups: [String]
    public var admin: Bool
    public init(name: String, groups: [String], admin: Bool) {
        self.name = name
        self.groups = groups
        self.admin = admin
    }
}

/// An API token as stored: its public id and the SHA-256 of its secret, never the secret.
public struct TokenRecord: Sendable, Equatable {
    public var id: String
    public var user: String
    public var createdAt: Date
    public var revokedAt: Date?
    public init(id: String, user: String, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.user = user
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// A webhook delivery waiting in the outbox (or delivered).
public struct WebhookDelivery: Sendable, Equatable {
    public var id: Int
    public var url: String
    public var format: String
    public var secretEnv: String?
    public var action: String
    public var body: String
    public var attempts: Int
    public var nextAttemptAt: Date
    public var deliveredAt: Date?
    public var lastError: String?
    public init(id: Int, url: String, format: String, secretEnv: String?, action: String, body: String, attempts: Int,
                nextAttemptAt: Date, deliveredAt: Date?, lastError: String?) {
        self.id = id
        self.url = url
        self.format = format
        self.secretEnv = secretEnv
        self.action = action
        self.body = body
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastError = lastError
    }
}

/// How people are compared wherever a rule depends on who someone is (requester, approver, commit
/// author, the subject or owner of a program exception): surrounding space trimmed, the address
/// taken out of `Name <addr>`, and the whole case-folded, so `SAM@example.com`, `" sam@example.com"`
/// and `Sam <sam@example.com>` are one person.
public enum Identity {
    public static func canonical(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasSuffix(">"), let open = t.lastIndex(of: "<") {
            let inner = t[t.index(after: open)..<t.index(before: t.endIndex)].trimmingCharacters(in: .whitespaces)
            if !inner.isEmpty { t = inner }
        }
        if t.hasPrefix("mailto:") { t = String(t.dropFirst("mailto:".count)) }
        return t.lowercased()
    }

    /// Whether two texts name the same person.
    public static func same(_ a: String, _ b: String) -> Bool { canonical(a) == canonical(b) }
}

extension String {
    /// nil for the empty string.
    public var nilIfEmpty: String? { isEmpty ? nil : self }

    /// At most `limit` characters, ending in "…" when cut: what an error message may echo of an input.
    public func clipped(_ limit: Int = 120) -> String {
        guard count > limit else { return self }
        return String(prefix(Swift.max(1, limit - 1))) + "…"
    }

    /// The longest error line Waiver writes: every message is cut there, whatever it echoes.
    public static let maxMessage = 600
}

/// A pipeline run as its CI system's signed OIDC token states it (GitHub Actions, GitLab CI, HCP
/// Terraform). Every field comes from verified claims, never from what the client sends.
public struct PipelineIdentity: Sendable, Equatable, Codable {
    public var issuer: String
    public var subject: String
    /// `owner/repo` (GitHub), `group/project` (GitLab), `organization/workspace` (HCP Terraform).
    public var repository: String
    /// `refs/heads/main` or `refs/tags/v1` (GitLab's `ref` + `ref_type` are put in this form); nil when the token names none.
    public var ref: String?
    public var workflow: String?
    public var environment: String?
    /// The person who triggered the run (GitHub `triggering_actor`/`actor`, GitLab `user_login`).
    public var actor: String?
    public var actorEmail: String?
    /// The run's id in its CI system, for the audit record.
    public var run: String?

    public init(issuer: String, subject: String, repository: String, ref: String? = nil, workflow: String? = nil,
                environment: String? = nil, actor: String? = nil, actorEmail: String? = nil, run: String? = nil) {
        self.issuer = issuer
        self.subject = subject
        self.repository = repository
        self.ref = ref
        self.workflow = workflow
        self.environment = environment
        self.actor = actor
        self.actorEmail = actorEmail
        self.run = run
    }

    /// The name the register records as the actor: `pipeline:owner/repo@refs/heads/main`.
    public var name: String { "pipeline:\(repository)" + (ref.map { "@\($0)" } ?? "") }

    /// The people behind the run, who may not approve what it requests.
    public var people: [String] { [actor, actorEmail].compactMap { $0?.nilIfEmpty } }

    /// The verified claims as the audit log keeps them.
    public var value: Value {
        var o = Value.Object([("issuer", .string(issuer)), ("subject", .string(subject)), ("repository", .string(repository))])
        for (k, v) in [("ref", ref), ("workflow", workflow), ("environment", environment), ("actor", actor), ("actor_email", actorEmail), ("run", run)] {
            if let v { o.append(k, .string(v)) }
        }
        return .object(o)
    }
}

/// Who a check or a request comes from, beyond the actor's name: the verified pipeline, if any, and a
/// commit author the client declared (recorded as unverified). Both are conflicted on what it requests.
public struct Provenance: Sendable, Equatable {
    public var pipeline: PipelineIdentity?
    public var declaredCommitAuthor: String?
    /// The commit, pipeline run and pull request the client declared (shown to approvers).
    public var commit: String?
    public var runURL: String?
    public var changeURL: String?
    public init(pipeline: PipelineIdentity? = nil, declaredCommitAuthor: String? = nil, commit: String? = nil, runURL: String? = nil, changeURL: String? = nil) {
        self.pipeline = pipeline
        self.declaredCommitAuthor = declaredCommitAuthor
        self.commit = commit
        self.runURL = runURL
        self.changeURL = changeURL
    }

    /// What a request filed under this provenance records as its origin (nil when nothing is known).
    public var origin: RequestOrigin? {
        let o = RequestOrigin(commit: commit?.nilIfEmpty, runURL: runURL?.nilIfEmpty, changeURL: changeURL?.nilIfEmpty,
                              commitAuthor: declaredCommitAuthor?.nilIfEmpty, pipeline: pipeline?.name)
        return o.isEmpty ? nil : o
    }

    /// Checks what the client declared: a commit is a name of at most 200 characters, the URLs are
    /// http(s) URLs of at most 2,000 characters (they become links on the exception page).
    public func validated() throws(RegisterError) -> Provenance {
        if let c = commit?.nilIfEmpty {
            guard RequestLimits.oneLine(c, max: RequestLimits.name) else { throw .invalid("commit is a name of at most 200 characters on one line (got \(c.debugDescription.clipped(60)))") }
        }
        for (field, url) in [("run_url", runURL), ("change_url", changeURL)] {
            if let u = url?.nilIfEmpty { try RequestLimits.link(u, field: field) }
        }
        if let a = declaredCommitAuthor?.nilIfEmpty {
            guard RequestLimits.oneLine(a, max: RequestLimits.name) else { throw .invalid("commit_author is a name of at most 200 characters on one line") }
        }
        return self
    }

    /// The people who may not approve what is requested under this provenance.
    public var conflicted: [String] { (pipeline?.people ?? []) + [declaredCommitAuthor].compactMap { $0?.nilIfEmpty } }

    /// What the audit event records of it (nil when there is nothing to record).
    public var value: Value? {
        var o = Value.Object([])
        if let p = pipeline { o.append("pipeline", p.value) }
        if let a = declaredCommitAuthor?.nilIfEmpty {
            o.append("commit_author", .object(Value.Object([("name", .string(a)), ("verified", .bool(false))])))
        }
        for (k, v) in [("commit", commit), ("run_url", runURL), ("change_url", changeURL)] {
            if let v = v?.nilIfEmpty { o.append(k, .string(v)) }
        }
        return o.isEmpty ? nil : .object(o)
    }
}

/// `identity.pipelines` in waiver.yaml: which repositories and refs, signed by which issuer, may
/// evaluate and request for which workspaces. A pipeline no rule admits is refused (403).
public struct PipelineTrustRule: Sendable, Equatable {
    public var issuer: String
    public var repository: Glob
    /// nil: any ref.
    public var ref: Glob?
    public var workspaces: [Glob]
    public init(issuer: String, repository: Glob, ref: Glob? = nil, workspaces: [Glob]) {
        self.issuer = issuer
        self.repository = repository
        self.ref = ref
        self.workspaces = workspaces
    }

    public func admits(_ p: PipelineIdentity) -> Bool {
        guard p.issuer == issuer, repository.matches(p.repository) else { return false }
        guard let ref else { return true }
        return p.ref.map(ref.matches) ?? false
    }

    /// The workspaces the rules admitting `p` allow, in rule order (empty: no rule admits it).
    public static func workspaces(for p: PipelineIdentity, in rules: [PipelineTrustRule]) -> [Glob] {
        rules.filter { $0.admits(p) }.flatMap(\.workspaces)
    }

    /// Whether `p` may evaluate or request for `workspace`; the refusal names what would admit it.
    public static func check(_ p: PipelineIdentity, workspace: String, rules: [PipelineTrustRule]) throws(RegisterError) {
        let allowed = workspaces(for: p, in: rules)
        guard allowed.contains(where: { $0.matches(workspace) }) else {
            let why = allowed.isEmpty ? "no identity.pipelines rule admits \(p.repository)\(p.ref.map { " at \($0)" } ?? "") from \(p.issuer)"
                : "its identity.pipelines rules allow \(allowed.map(\.pattern).joined(separator: ", "))"
            throw .refused("\(p.name) may not act on workspace \(workspace.debugDescription.clipped()): \(why)")
        }
    }
}

/// `identity` in waiver.yaml: the pipelines the server trusts and, for people, single sign-on.
public struct IdentitySettings: Sendable, Equatable {
    /// The audience pipelines' tokens must carry (`aud`).
    public var audience: String = "waiver"
    public var pipelines: [PipelineTrustRule] = []
    /// Single sign-on for people on the pages.
    public var oidc: OIDCSettings?
    public init() {}
    /// The issuers whose tokens the server verifies at all (each fetched only because it is named here).
    public var pipelineIssuers: [String] { Array(Set(pipelines.map(\.issuer))).sorted() }
}

/// `identity.oidc` in waiver.yaml: single sign-on for people through an OpenID Connect provider
/// (authorization code flow with PKCE).
public struct OIDCSettings: Sendable, Equatable {
    public var issuer: String
    public var clientId: String
    /// The environment variable holding the client secret (none: a public client, PKCE only).
    public var clientSecretEnv: String?
    /// The provider's name on the sign-in button.
    public var name: String = "single sign-on"
    /// The claim that names the user (a verified e-mail by default).
    public var userClaim: String = "email"
    /// The claim listing the user's groups at the provider.
    public var groupsClaim: String = "groups"
    /// Provider group -> Waiver groups. Empty: the provider's group names are Waiver's.
    public var groupMap: [String: [String]] = [:]
    public var scopes: [String] = ["openid", "email", "profile"]

    public init(issuer: String, clientId: String) {
        self.issuer = issuer
        self.clientId = clientId
    }

    /// The Waiver groups of someone the provider puts in `provided`: mapped through `groupMap`
    /// (a group it does not map gives none), or as they are when there is no map. Sorted, distinct.
    public func groups(from provided: [String]) -> [String] {
        let out = groupMap.isEmpty ? provided : provided.flatMap { groupMap[$0] ?? [] }
        return Array(Set(out.filter { !$0.isEmpty && $0.count <= RequestLimits.name })).sorted()
    }
}
