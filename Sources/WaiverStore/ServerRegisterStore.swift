import Foundation
import WaiverCore

/// What the shared register behind `waiver serve` keeps besides exceptions and the log: users and
/// their groups, API tokens, web sessions, reminders sent, the webhook outbox, signed checkpoints.
/// The server depends on this protocol only; SQLite and PostgreSQL implement it.
public protocol ServerRegisterStore: RegisterStore {
    /// Where the register is, for messages (a file path or a URL without its password).
    var location: String { get }

    func putUser(_ user: User, actor: String, now: Date) async throws
    func user(named name: String) async throws -> User?
    func users() async throws -> [User]
    func removeUser(_ name: String, actor: String, now: Date) async throws
    /// Every user with their groups at one instant: what a decision's rules read.
    func people() async throws -> People

    func addToken(id: String, secretHash: String, user: String, actor: String, now: Date) async throws
    func revokeToken(id: String, actor: String, now: Date) async throws
    func token(id: String) async throws -> (user: User, secretHash: String)?
    func tokens() async throws -> [TokenRecord]

    /// `tokenId` is the token signed in with, or `ssoSession` for a single sign-on session (which
    /// lives its lifetime and idle time, and ends with its user or `end-sessions`).
    func createSession(idHash: String, user: String, tokenId: String, csrf: String, expiresAt: Date, now: Date) async throws
    func session(idHash: String, now: Date, idle: TimeInterval) async throws -> (user: User, csrf: String)?
    func endSession(idHash: String) async throws
    @discardableResult
    func endSessions(user: String, actor: String, now: Date) async throws -> Int

    func markReminder(exceptionId: Int, offset: Int, event: AuditDraft) async throws -> Bool

    /// Claims up to `limit` due deliveries for this replica: no other replica gets them until they
    /// are marked delivered or failed, or until `lease` seconds pass (a replica that died while
    /// sending: its claims are retried, so a delivery is made at least once).
    func claimDeliveries(now: Date, limit: Int, maxAttempts: Int, lease: TimeInterval) async throws -> [WebhookDelivery]
    /// Runs `body` unless another replica is running it at this moment (the scheduler's pass):
    /// nil then. On SQLite there is one server, and `body` always runs.
    func asLeader<T: Sendable>(_ body: () async throws -> T) async throws -> T?
    func deliveries(limit: Int) async throws -> [WebhookDelivery]
    func markDelivered(_ ids: [Int], at: Date) async throws
    func markFailed(_ id: Int, error: String, retryAt: Date) async throws
    func deliveryCounts(maxAttempts: Int) async throws -> (delivered: Int, waiting: Int, failed: Int)
    @discardableResult
    func prune(deliveredBefore: Date, sessionsIdleBefore: Date, now: Date) async throws -> (deliveries: Int, sessions: Int)

    func statusCounts() async throws -> [String: Int]

    func checkpoint(with key: SigningKey, now: Date) async throws -> Checkpoint?
    func checkpoints() async throws -> [Checkpoint]
    /// `resume`: a head this process verified before (`auditMemo`); only what follows it is verified
    /// while it still hashes as it did, else the whole chain is, with it as an anchor.
    func verifyAudit(anchors: [AuditAnchor], evidenceDirectory: String?, checkpoints: CheckpointCheck?, resume: AuditAnchor?) async throws -> AuditVerification
    /// The head of the log as this process last verified it.
    var auditMemo: AuditMemo { get }
}

/// The head of the audit log as last verified by this process (whole, or onward from such a head),
/// so a page view verifies what was appended since instead of the whole log. A chain that did not
/// verify forgets it, and the next verification is whole again.
public final class AuditMemo: @unchecked Sendable {
    private let lock = NSLock()
    private var head: AuditAnchor?
    public init() {}
    public var verified: AuditAnchor? { lock.withLock { head } }
    public func remember(_ v: AuditVerification) {
        lock.withLock { head = v.firstBad == nil ? v.head : nil }
    }
}

/// Users and groups as of one read: the rules of a decision consult it instead of the database,
/// so they can run inside the write transaction.
public struct People: Sendable, Equatable {
    public var users: [User]
    public init(users: [User]) { self.users = users }

    /// A register whose rules read these people (the configuration's static groups are not used).
    public func bind(_ register: Register) -> Register {
        var groups: [String: Set<String>] = [:], members: [String: Set<String>] = [:]
        var admins = Set<String>()
        // As the server read them before: a person's groups and admin flag by their exact name, a
        // group's members by canonical name.
        for u in users {
            groups[u.name, default: []].formUnion(u.groups)
            for g in u.groups { members[g, default: []].insert(Identity.canonical(u.name)) }
            if u.admin { admins.insert(u.name) }
        }
        let byPerson = groups, byGroup = members, admin = admins
        return Register(store: register.store, configuration: register.configuration, policies: Array(register.policies.values),
                        groupsOf: { byPerson[$0] ?? [] }, membersOf: { byGroup[$0] ?? [] }, isAdmin: { admin.contains($0) })
    }
}

extension SQLiteRegisterStore: ServerRegisterStore {
    public var location: String { path }

    /// One server uses a SQLite register: what is due is its own.
    public func claimDeliveries(now: Date, limit: Int, maxAttempts: Int, lease: TimeInterval) throws -> [WebhookDelivery] {
        try dueDeliveries(now: now, limit: limit, maxAttempts: maxAttempts)
    }

    public func asLeader<T: Sendable>(_ body: () async throws -> T) async throws -> T? { try await body() }

    public func people() throws -> People {
        try pool.read { db in
            People(users: try String.fetchAll(db, sql: "SELECT name FROM user ORDER BY name").compactMap { try Self.user(db, $0) })
        }
    }
}

extension ServerRegisterStore {
    public func deliveries() async throws -> [WebhookDelivery] { try await deliveries(limit: 100) }
    public func verifyAudit(anchors: [AuditAnchor] = [], evidenceDirectory: String? = nil) async throws -> AuditVerification {
        try await verifyAudit(anchors: anchors, evidenceDirectory: evidenceDirectory, checkpoints: nil, resume: nil)
    }
}

/// The token id a single sign-on session is stored with: no token is `sso` (tokens are 12 hex digits).
public let ssoSession = "sso"
