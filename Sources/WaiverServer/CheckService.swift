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

    /// Marks what the register covers and files requests for what still blocks; returns the new requests.
    public static func applyRegister(
        _ evaluated: CheckReport, register: Register, actor: String, commitAuthor: String?, request: RequestSpec?, now: Date
    ) throws -> (report: CheckReport, filed: [ExceptionRecord]) {
        var report = evaluated
        try register.applyExceptions(to: &report, now: now)
        var filed: [ExceptionRecord] = []
        if let request {
            for finding in report.findings where finding.status == .blocking {
                filed.append(try register.request(
                    ExceptionRequest(policy: finding.policy, workspace: report.workspace, resources: [finding.resource], reason: request.reason,
                                     days: request.days, likelihood: request.likelihood, impact: request.impact,
                                     mitigations: request.mitigations, conflicted: commitAuthor.map { [$0] } ?? []),
                    actor: actor, now: now))
            }
            if !filed.isEmpty {
                report = evaluated
                try register.applyExceptions(to: &report, now: now)
            }
        }
        return (report, filed)
    }

    /// Records the check in the register (its violations with a digest of the values that broke them).
    public static func record(_ report: CheckReport, register: Register, actor: String, now: Date) throws -> Int {
        let violations = report.findings.map { f in
            RecordedViolation(policy: f.policy, resource: f.resource, status: f.status, digest: AuditChain.sha256(Data(f.message.utf8)),
                              message: String(f.message.prefix(2000)))
        }
        return try register.recordCheck(report, violations: violations, actor: actor, now: now)
    }
}
