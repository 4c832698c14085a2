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
