import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// What a check asks for besides its inputs: requests to file for blocking violations.
public struct RequestSpec: Sendable {
    public var reason: String
    public var days: Int?
    public var likelihood: RiskFactor?
    public var impact: RiskFactor?
    public var mitigations: [String]
    public init(reason: String, days: Int? = nil, likelihood: RiskFactor? = nil, impact: RiskFactor? = nil, mitigations: [String] = []) {
        self.reason = reason
        self.days = days
        self.likelihood = likelihood
        self.impact = impact
        self.mitigations = mitigations
    }
}

/// The steps of `waiver check`, shared by the CLI (local register) and the server.
public enum CheckService {
    /// Evaluates resources already read from a plan, plus SARIF reports.
    public static func evaluate(
        policies: [Policy], configuration: Configuration, resources: [(Resource, file: String)], sarif: [(name: String, data: Data)],
        workspace: String, unknown: UnknownMode, keepCompliant: Bool
    ) throws -> CheckReport {
        var external: [ExternalFinding] = []
        for s in sarif { external += try SarifReader.parse(s.data, file: s.name) }
        let engine = CheckEngine(policies: policies, sarifCategories: configuration.sarif, unknownMode: unknown, keepCompliant: keepCompliant)
        return engine.check(resources: resources, external: external, workspace: workspace)
    }

    /// The requests a check files for its blocking violations.
    static func requests(_ report: CheckReport, register: Register, commitAuthor: String?, request: RequestSpec?) -> [ExceptionRequest] {
        guard let request else { return [] }
        return register.requests(for: report, reason: request.reason, days: request.days, likelihood: request.likelihood,
                                 impact: request.impact, mitigations: request.mitigations, commitAuthor: commitAuthor)
    }

    /// Marks what the register covers and files requests for what still blocks, all or none; the
    /// check is not recorded (for `check --wait`, which records once the wait is over).
    public static func applyRegister(
        _ evaluated: CheckReport, register: Register, actor: String, commitAuthor: String?, request: RequestSpec?, now: Date
    ) async throws -> (report: CheckReport, filed: [ExceptionRecord]) {
        var report = evaluated
        try await register.applyExceptions(to: &report, now: now)
        let filed = try await register.requestAll(requests(report, register: register, commitAuthor: commitAuthor, request: request), actor: actor, now: now)
        Register.markPending(&report, filed: filed)
        return (report, filed)
    }

    /// The whole register step of a check in one transaction: what the register covers, the requests
    /// for what still blocks (all or none), and the recorded check with its final statuses.
    public static func checkIn(
        _ evaluated: CheckReport, register: Register, actor: String, commitAuthor: String?, request: RequestSpec?, now: Date
    ) async throws -> (report: CheckReport, filed: [ExceptionRecord], evaluation: Int) {
        try await register.checkIn(evaluated, requests: { requests($0, register: register, commitAuthor: commitAuthor, request: request) },
                             actor: actor, now: now, violations: violations)
    }

    /// What a check records of each finding: a digest of the values that broke it, the masked message, severity and category.
    public static func violations(_ report: CheckReport) -> [RecordedViolation] {
        report.findings.map { f in
            RecordedViolation(policy: f.policy, resource: f.resource, status: f.status, digest: AuditChain.sha256(Data(f.message.utf8)),
                              message: String(f.message.prefix(2000)), severity: f.severity, category: f.category)
        }
    }

    /// Records the check in the register.
    public static func record(_ report: CheckReport, register: Register, actor: String, now: Date) async throws -> Int {
        try await register.recordCheck(report, violations: violations(report), actor: actor, now: now)
    }
}
