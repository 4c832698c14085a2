import Foundation
import WaiverCore
import WaiverFormats

/// Scanner suppressions under governance, over any register (local or a server's, through
/// `RegisterService`): a suppression is governed exactly when an active exception to its rule covers
/// its subject in the workspace, by the check's own rule of coverage (`Register.cover`).
public enum SuppressionService {
    /// Each suppression with its standing among the workspace's approved and pending exceptions.
    public static func govern(_ suppressions: [Suppression], service: any RegisterService, workspace: String, now: Date) async throws -> [GovernedSuppression] {
        let exceptions = try await service.list(ListQuery(status: .approved, workspace: workspace))
            + service.list(ListQuery(status: .pending, workspace: workspace))
        return govern(suppressions, exceptions: exceptions, workspace: workspace, now: now)
    }

    public static func govern(_ suppressions: [Suppression], exceptions: [ExceptionRecord], workspace: String, now: Date) -> [GovernedSuppression] {
        var report = CheckReport(workspace: workspace, unknownMode: .warn, findings: [], resourceCount: 0, policies: [], compliant: [])
        // Kept in scan order (a CheckReport sorts its findings): one finding per suppression, by position.
        report.findings = suppressions.map(\.finding)
        // Whether a policy binds values was settled when each exception was filed (`bound` is nil for
        // a policy that binds the resource), so the exceptions' own binding is what counts here.
        Register.cover(&report, with: exceptions, now: now, binds: { _ in true })
        return zip(suppressions, report.findings).map { s, f in
            GovernedSuppression(suppression: s, status: f.status, exception: f.exception, expires: f.expires)
        }
    }

    /// One request per ungoverned suppression of a named rule, with its justification as the reason
    /// (else `reason`), bound to what the suppression says (as a check of it would bind it). A
    /// suppression of every rule (`# nosemgrep` alone, `.semgrepignore`) is named in `skipped`: an
    /// exception is to one rule.
    public static func requests(_ governed: [GovernedSuppression], workspace: String, reason: String?, days: Int?, likelihood: RiskFactor?,
                                impact: RiskFactor?, ticket: String?) throws(RegisterError) -> (requests: [ExceptionRequest], skipped: [String]) {
        var out: [ExceptionRequest] = []
        var skipped: [String] = []
        for g in governed where g.status == .blocking || g.status == .changed {
            let s = g.suppression
            guard s.rule != "*" else {
                skipped.append("\(s.location): \(s.syntax) silences every rule; name the rule to request an exception for it")
                continue
            }
            guard let why = s.justification ?? reason.flatMap({ $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }) else {
                throw .invalid("\(s.location): \(s.syntax) \(s.rule) has no justification; give --reason")
            }
            var r = ExceptionRequest(policy: s.rule, workspace: workspace, resources: [s.subject], reason: why, days: days,
                                     likelihood: likelihood, impact: impact, ticket: ticket)
            r.scannerRule = true
            r.bound = [s.subject: s.finding.boundValues]
            out.append(r)
        }
        return (out, skipped)
    }
}
