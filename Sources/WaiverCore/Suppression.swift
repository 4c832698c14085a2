import Foundation

/// A scanner suppression found in a repository: an inline comment (`#checkov:skip=`, `#tfsec:ignore:`,
/// `#trivy:ignore:`, `# nosemgrep`, `# kics-scan ignore-line`) or an entry of an ignore file
/// (`.trivyignore`, `.trivyignore.yaml`, `.snyk`, `.checkov.yaml`, `.tfsec/config.yml`, `.semgrepignore`).
/// Each is an exception nobody approved unless an active Waiver exception governs it.
public struct Suppression: Sendable, Equatable {
    /// The scanner that honours it: checkov, tfsec, trivy, semgrep, kics or snyk.
    public var tool: String
    /// How it is written, e.g. `checkov:skip`, `.trivyignore`, `nosemgrep`.
    public var syntax: String
    /// The rule it silences, or `*` for every rule.
    public var rule: String
    /// The file it is written in (relative to the scanned folder) and its line.
    public var file: String
    public var line: Int
    /// What it silences the rule on: a resource address (`aws_s3_bucket.logs`) when it sits in a
    /// Terraform block, a path or package the entry names, else its own location (`main.tf:12`); `*`
    /// for an entry that applies everywhere.
    public var subject: String
    /// The justification written with it, when there is one.
    public var justification: String?
    /// The expiry written with it (`exp:2026-12-31`, `expired_at`, `expires`), as written.
    public var expires: String?
    /// The Waiver exception it names (`EX-12` in its justification or the comment above it, as
    /// `waiver export` writes), if any: reported beside what governs it, never a governance of its own.
    public var names: Int?

    public init(tool: String, syntax: String, rule: String, file: String, line: Int, subject: String,
                justification: String? = nil, expires: String? = nil, names: Int? = nil) {
        self.tool = tool
        self.syntax = syntax
        self.rule = rule
        self.file = file
        self.line = line
        self.subject = subject
        self.justification = justification
        self.expires = expires
        self.names = names
    }

    public var location: String { "\(file):\(line)" }

    /// The first `EX-N` a text names.
    public static func namedException(in text: String?) -> Int? {
        guard let text else { return nil }
        let upper = Array(text.uppercased().utf8)
        var i = 0
        while i + 3 < upper.count {
            if upper[i] == 0x45, upper[i + 1] == 0x58, upper[i + 2] == 0x2D, (i == 0 || !Self.isWord(upper[i - 1])) {
                var j = i + 3
                while j < upper.count, j - i - 3 < 18, (0x30...0x39).contains(upper[j]) { j += 1 }
                if j > i + 3, j == upper.count || !Self.isWord(upper[j]),
                   let n = Int(String(decoding: upper[(i + 3)..<j], as: UTF8.self)), n > 0 { return n }
            }
            i += 1
        }
        return nil
    }

    static func isWord(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || b == 0x5F || (0x61...0x7A).contains(b) }

    /// The finding a suppression is in a check and in a scan: its rule on its subject, governed
    /// (excepted) exactly when an active exception covers that pair (`Register.cover`). A suppression
    /// of every rule (`*`) or everywhere (`*`) needs an exception to exactly that.
    public var finding: Finding {
        Finding(policy: rule, title: "\(syntax) suppresses \(rule == "*" ? "every rule" : rule)", severity: .medium, category: "security",
                        resource: subject, status: .blocking,
                        message: "\(syntax) in \(file)" + (justification.map { ": \($0)" } ?? " with no justification")
                            + (expires.map { " (expires \($0) in \(tool))" } ?? ""),
                        remediation: "Bring it under governance: request an exception (waiver suppressions scan --request) or remove the suppression and fix the finding.",
                        origin: .sarif(file: file, tool: tool, uri: file, line: line))
    }
}

/// A suppression and whether the register governs it.
public struct GovernedSuppression: Sendable, Equatable {
    public var suppression: Suppression
    /// `excepted`: an active exception governs it; `pending`: a request for it waits; `changed`: the
    /// exception was approved for another justification; else `blocking` (ungoverned).
    public var status: ResultStatus
    public var exception: String?
    public var expires: Date?
    public init(suppression: Suppression, status: ResultStatus, exception: String? = nil, expires: Date? = nil) {
        self.suppression = suppression
        self.status = status
        self.exception = exception
        self.expires = expires
    }

    public var governed: Bool { status == .excepted }

    /// Whether the scanner would go on honouring it after the exception that governs it expires: its
    /// own expiry (a date, `2027-01-31`, or an instant) is later than the exception's day.
    public var outlivesException: Bool {
        guard governed, let own = suppression.expires, let until = expires else { return false }
        let day = String(own.prefix(10))
        guard day.count == 10, day.allSatisfy({ $0.isNumber || $0 == "-" }) else { return false }
        return day > String(iso(until).prefix(10))
    }
    /// governed, pending or ungoverned, as the reports say it.
    public var label: String { governed ? "governed" : status == .pending ? "pending" : "ungoverned" }
}
