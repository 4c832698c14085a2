import Foundation

/// `waiver.yaml`: where policies live, how exceptions are granted, routed and escalated.
public struct Configuration: Sendable, Equatable {
    public struct Escalation: Sendable, Equatable {
        public var approvers: [String]?
        public var minApprovals: Int?
        public init(approvers: [String]? = nil, minApprovals: Int? = nil) {
            self.approvers = approvers
            self.minApprovals = minApprovals
        }
    }

    public struct Webhook: Sendable, Equatable {
        public var url: String
        public var secretEnv: String?
        public var format: String
        public init(url: String, secretEnv: String? = nil, format: String = "json") {
            self.url = url
            self.secretEnv = secretEnv
            self.format = format
        }
    }

    /// `run_tasks.terraform`: HCP Terraform / Terraform Enterprise calls the server as a run task.
    public struct TerraformRunTask: Sendable, Equatable {
        /// The environment variable holding the HMAC key set on the run task in HCP Terraform.
        public var hmacKeyEnv: String
        /// HCP Terraform's (or Terraform Enterprise's) address: plans are fetched from, and results
        /// sent to, URLs under it only.
        public var address: String
        /// The register workspace a run's workspace maps to: `{organization}` and `{workspace}` filled in.
        public var workspace: String
        public init(hmacKeyEnv: String, address: String = "https://app.terraform.io", workspace: String = "{organization}/{workspace}") {
            self.hmacKeyEnv = hmacKeyEnv
            self.address = address
            self.workspace = workspace
        }

        /// The register workspace of a run in this organization and workspace.
        public func workspace(organization: String, workspace name: String) -> String {
            workspace.replacingOccurrences(of: "{organization}", with: organization).replacingOccurrences(of: "{workspace}", with: name)
        }
    }

    /// `notify.email`: the SMTP server approvers and requesters are told through.
    public struct Email: Sendable, Equatable {
        public enum Security: String, Sendable, Equatable { case starttls, implicit, none }
        public var host: String
        public var port: Int
        public var security: Security = .starttls
        public var username: String?
        public var passwordEnv: String?
        public var from: String
        /// PEM file of the certificate authorities to trust for the server (default: the system's).
        public var caFile: String?
        /// User name -> address, for users whose name is not an address.
        public var addresses: [String: String] = [:]
        public init(host: String, port: Int, from: String) {
            self.host = host
            self.port = port
            self.from = from
        }

        /// The address a user is told at: their name when it is one, else `addresses`.
        public func address(of user: String) -> String? {
            if let a = addresses[user] { return a }
            return user.contains("@") ? user : nil
        }
    }

    /// The hard limit no configuration or policy may raise an exception's duration past.
    public static let absoluteMaxDays = 90
    /// The longest a program exception under a review cycle may run (`exceptions.review_every`).
    public static let programMaxDays = 366

    public var policies: String = "policies/"
    public var defaultDays: Int = 14
    public var maxDays: Int = 30
    /// Reminder offsets before expiry, in seconds.
    public var reminders: [Int] = [7 * 86_400, 86_400]
    public var groups: [String: [String]] = [:]
    public var routing: [String: [String]] = ["default": ["security"]]
    /// Risk level name -> the likelihood x impact products (1...9) that give it.
    public var riskLevels: [String: [Int]] = ["low": [1, 2], "medium": [3, 4], "high": [6], "critical": [9]]
    public var escalation: [String: Escalation] = [
        "high": Escalation(minApprovals: 2),
        "critical": Escalation(approvers: ["ciso"], minApprovals: 2),
    ]
    public var notify: [Webhook] = []
    public var email: Email?
    /// A request still pending this long after it was made is sent again to its approvers (seconds).
    public var nudgeAfter: Int?
    /// ... and this long after, to the groups `escalateTo` names for its approver groups.
    public var escalateAfter: Int?
    public var escalateTo: [String: [String]] = [:]
    /// SARIF rule id globs -> category, in file order.
    public var sarif: [(Glob, String)] = []
    /// Policies with at least this many exceptions in a report's period are flagged for review.
    public var reviewThreshold: Int = 5
    /// How long recorded checks (each violation of each run) are kept, in seconds. A workspace's
    /// latest check is always kept, and the audit log (with each check's summary) never shrinks.
    public var keepEvaluations: Int = 90 * 86_400
    /// How long delivered webhook rows are kept, in seconds (undelivered ones stay until they are).
    public var keepDeliveries: Int = 7 * 86_400
    /// Who may sign in how: trusted pipeline issuers and their rules (`identity`).
    public var identity = IdentitySettings()
    /// HCP Terraform run tasks (`run_tasks.terraform`), when configured.
    public var terraformRunTask: TerraformRunTask?
    /// `server.metrics: open`: `/metrics` answers without a token (default: it needs one, as the API does).
    public var metricsOpen = false
    /// Members of this group read everything and act on nothing (`roles.auditors`, default `auditors`).
    public var auditorGroup = "auditors"

    public init() {}

    public static func == (a: Configuration, b: Configuration) -> Bool {
        a.policies == b.policies && a.defaultDays == b.defaultDays && a.maxDays == b.maxDays
            && a.reminders == b.reminders && a.groups == b.groups && a.routing == b.routing
            && a.riskLevels == b.riskLevels && a.escalation == b.escalation && a.notify == b.notify
            && a.sarif.map { "\($0.0.pattern)=\($0.1)" } == b.sarif.map { "\($0.0.pattern)=\($0.1)" }
            && a.reviewThreshold == b.reviewThreshold && a.keepEvaluations == b.keepEvaluations && a.keepDeliveries == b.keepDeliveries
            && a.identity == b.identity && a.email == b.email && a.nudgeAfter == b.nudgeAfter
            && a.escalateAfter == b.escalateAfter && a.escalateTo == b.escalateTo && a.terraformRunTask == b.terraformRunTask
    }
}

/// Parses durations such as `30m`, `12h`, `7d`, `2w` or `90s` into seconds. Anything else is nil:
/// a malformed duration is an error for the caller, never "forever".
public func parseDuration(_ text: String) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces)
    guard let unit = t.last, let n = Int(t.dropLast()), n >= 0, n <= 10_000_000 else { return nil }
    switch unit {
    case "s": return n
    case "m": return n * 60
    case "h": return n * 3600
    case "d": return n * 86_400
    case "w": return n * 7 * 86_400
    default: return nil
    }
}

/// Formats seconds as the largest whole unit: `7d`, `12h`, `30m`, `45s`.
public func formatDuration(_ seconds: Int) -> String {
    if seconds % 86_400 == 0, seconds > 0 { return "\(seconds / 86_400)d" }
    if seconds % 3600 == 0, seconds > 0 { return "\(seconds / 3600)h" }
    if seconds % 60 == 0, seconds > 0 { return "\(seconds / 60)m" }
    return "\(seconds)s"
}
