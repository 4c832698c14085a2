import Foundation
import WaiverCore
import WaiverFormats

/// Scanner suppressions under governance: which ones an active exception covers, and requests for
/// the rest. A suppression is governed exactly as a check's finding is excepted (`Register.applyExceptions`):
/// an active exception to its rule on its subject, or the exception its comment names.
public enum SuppressionService {
    /// Each suppression with its standing in the register.
    public static func govern(_ suppressions: [Suppression], register: Register, workspace: String, now: Date) async throws -> [GovernedSuppression] {
        var report = CheckReport(workspace: workspace, unknownMode: .warn, findings: [], resourceCount: 0, policies: [], compliant: [])
        // Kept in scan order (a CheckReport sorts its findings): one finding per suppression, by position.
        report.findings = suppressions.map(\.finding)
        try await register.applyExceptions(to: &report, now: now)
        return zip(suppressions, report.findings).map { s, f in
            GovernedSuppression(suppression: s, status: f.status, exception: f.exception, expires: f.expires)
        }
    }

    /// One request per ungoverned suppression of a named rule, with its justification as the reason
    /// (else `reason`). A suppression of every rule (`# nosemgrep` alone, `.semgrepignore`) cannot be
    /// excepted as it stands: it is named in `skipped`.
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
            out.append(r)
        }
        return (out, skipped)
    }
}
