import Foundation
import WaiverCore

/// The result a run task sends back (a JSON:API `task-results` document): passed or failed with the
/// check's tally, and one outcome per violation with its status (blocking, excepted, pending,
/// unknown), severity, why and how to fix, and the exception's page when there is one.
public enum RunTaskResult {
    /// HCP Terraform shows outcomes in a table; past this many the message says how many more there are.
    static let maxOutcomes = 250

    static func level(_ s: ResultStatus, blocks: Bool) -> String {
        switch s {
        case .excepted, .advisory: return "info"
        case .pending: return "warning"
        case .unknown: return blocks ? "error" : "warning"
        case .blocking, .changed: return "error"
        }
    }

    public static func body(_ report: CheckReport, url: String?) -> Value {
        var outcomes: [Value] = []
        let ordered = report.findings.sorted { (report.blocks($0) ? 1 : 0, $0.severity.rank) > (report.blocks($1) ? 1 : 0, $1.severity.rank) }
        for f in ordered.prefix(maxOutcomes) {
            var body = "**\(MarkdownOutput.cell(f.title))**\n\nResource: `\(MarkdownOutput.code(f.resource))`"
            if !f.message.isEmpty { body += "\n\nWhy: \(MarkdownOutput.cell(f.message))" }
            if let note = f.exceptionNote { body += "\n\nException: \(MarkdownOutput.cell(note))" }
            if !f.remediation.isEmpty, f.status != .excepted { body += "\n\nFix: \(MarkdownOutput.cell(f.remediation))" }
            var attributes = Value.Object([
                ("outcome-id", .string(String(SarifOutput.fingerprint(f).prefix(32)))),
                ("description", .string("\(f.policy): \(f.resource)".clipped(200))),
                ("body", .string(body.clipped(4_000))),
            ])
            if let link = f.link { attributes.append("url", .string(link)) }
            let severity = f.severity.rawValue.prefix(1).uppercased() + f.severity.rawValue.dropFirst()
            attributes.append("tags", [
                "Status": [["label": .string(f.status.rawValue.prefix(1).uppercased() + f.status.rawValue.dropFirst()), "level": .string(level(f.status, blocks: report.blocks(f)))]],
                "Severity": [["label": .string(severity), "level": .string(f.severity >= .high ? "error" : f.severity == .medium ? "warning" : "info")]],
            ])
            outcomes.append(["type": "task-result-outcomes", "attributes": .object(attributes)])
        }
        var message = "\(report.passed ? "PASS" : "BLOCKED"): \(report.summary.line)"
        if report.findings.count > maxOutcomes { message += "; \(report.findings.count - maxOutcomes) more not shown" }
        var attributes = Value.Object([("status", .string(report.passed ? "passed" : "failed")), ("message", .string(message))])
        if let url { attributes.append("url", .string(url)) }
        return ["data": [
            "type": "task-results", "attributes": .object(attributes),
            "relationships": ["outcomes": ["data": .array(outcomes)]],
        ]]
    }

    /// A result saying the run could not be checked (the plan could not be fetched or read).
    public static func error(_ message: String) -> Value {
        ["data": ["type": "task-results", "attributes": ["status": "failed", "message": .string("Waiver could not check this run: \(message)".clipped(500))]]]
    }
}

