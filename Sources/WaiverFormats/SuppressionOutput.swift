import Foundation
import WaiverCore

/// `waiver suppressions scan` reports: text, JSON, and SARIF (the check's SARIF writer, one result
/// per suppression, the governed ones suppressed by their exception).
public enum SuppressionOutput {
    public static func counts(_ rows: [GovernedSuppression]) -> (governed: Int, pending: Int, ungoverned: Int) {
        let g = rows.filter(\.governed).count
        let p = rows.filter { $0.status == .pending }.count
        return (g, p, rows.count - g - p)
    }

    public static func text(_ rows: [GovernedSuppression], files: Int) -> String {
        let c = counts(rows)
        var out = "waiver suppressions scan: \(rows.count) suppression\(rows.count == 1 ? "" : "s") in \(files) file\(files == 1 ? "" : "s") read\n"
        for r in rows {
            let s = r.suppression
            let state = r.label.uppercased().padding(toLength: 10, withPad: " ", startingAt: 0)
            out += "\n  \(state) \(s.location)  \(s.syntax) \(s.rule) on \(s.subject)\n"
            if let why = s.justification { out += "             justification: \(why.clipped(300))\n" }
            if let exp = s.expires { out += "             expires in \(s.tool): \(exp)\n" }
            switch r.status {
            case .excepted:
                out += "             governed by \(r.exception ?? "?")\(r.expires.map { " until \(iso($0))" } ?? "")\n"
                if r.outlivesException {
                    out += "             but \(s.tool) honours it until \(s.expires ?? "?"), after \(r.exception ?? "?") expires: shorten it, or write it with waiver export\n"
                }
            case .pending: out += "             exception \(r.exception ?? "?") waiting for approval\n"
            case .changed: out += "             \(r.exception ?? "?") was approved for another justification; request an amended exception\n"
            default: out += "             no active exception covers it\(s.names.map { " (it names \(ExceptionRecord.display($0)), which does not)" } ?? "")\n"
            }
        }
        out += "\n\(c.ungoverned > 0 ? "UNGOVERNED" : "GOVERNED"): \(rows.count) suppressions (\(c.governed) governed, \(c.pending) pending, \(c.ungoverned) ungoverned)\n"
        return out
    }

    public static func json(_ rows: [GovernedSuppression], files: Int) -> String {
        let c = counts(rows)
        var root = Value.Object()
        root.append("summary", .object(Value.Object([
            ("suppressions", .number(Double(rows.count))), ("governed", .number(Double(c.governed))), ("pending", .number(Double(c.pending))),
            ("ungoverned", .number(Double(c.ungoverned))), ("files", .number(Double(files))),
        ])))
        root.append("suppressions", .array(rows.map { r in
            let s = r.suppression
            var o = Value.Object([("status", .string(r.label)), ("tool", .string(s.tool)), ("syntax", .string(s.syntax)), ("rule", .string(s.rule)),
                                  ("file", .string(s.file)), ("line", .number(Double(s.line))), ("subject", .string(s.subject))])
            if let j = s.justification { o.append("justification", .string(j)) }
            if let e = s.expires { o.append("expires_in_tool", .string(e)) }
            if let n = s.names { o.append("names", .string(ExceptionRecord.display(n))) }
            if let e = r.exception { o.append("exception", .string(e)) }
            if let d = r.expires { o.append("exception_expires", .string(iso(d))) }
            if r.outlivesException { o.append("outlives_exception", .bool(true)) }
            return .object(o)
        }))
        return JSONWriter.write(.object(root))
    }

    /// The SARIF a check reads for `--suppressions DIR`, locally and on a server alike: one result per
    /// suppression, its rule on its subject (a logical location), its message the suppression's
    /// finding message, so the check binds and governs it as the scan does.
    public static func checkInput(_ suppressions: [Suppression]) -> Data {
        var rules: [String: Value] = [:]
        var results: [Value] = []
        for s in suppressions {
            let f = s.finding
            rules[s.rule] = .object(Value.Object([("id", .string(s.rule)), ("shortDescription", .object(Value.Object([("text", .string(f.title))]))),
                                                  ("help", .object(Value.Object([("text", .string(f.remediation))])))]))
            results.append(.object(Value.Object([
                ("ruleId", .string(s.rule)), ("level", .string("warning")), ("message", .object(Value.Object([("text", .string(f.message))]))),
                ("locations", .array([.object(Value.Object([("logicalLocations", .array([.object(Value.Object([("fullyQualifiedName", .string(s.subject))]))]))]))])),
            ])))
        }
        let driver = Value.Object([("name", .string("waiver suppressions")), ("rules", .array(rules.keys.sorted().compactMap { rules[$0] }))])
        return Data(JSONWriter.write(.object(Value.Object([
            ("version", .string("2.1.0")),
            ("runs", .array([.object(Value.Object([("tool", .object(Value.Object([("driver", .object(driver))]))), ("results", .array(results))]))])),
        ])), pretty: false).utf8)
    }

    /// SARIF through the check's writer: each suppression a result of its rule, at its file and line.
    public static func sarif(_ rows: [GovernedSuppression], workspace: String) -> String {
        var findings: [Finding] = []
        for r in rows {
            var f = r.suppression.finding
            f.status = r.status
            f.exception = r.exception
            f.expires = r.expires
            f.title = "Suppression of \(r.suppression.rule == "*" ? "every rule" : r.suppression.rule) (\(r.suppression.syntax))"
            findings.append(f)
        }
        let policies = Dictionary(grouping: findings, by: \.policy).map { id, fs in
            Policy(id: id, title: fs[0].title, category: "security", severity: .medium, remediation: fs[0].remediation, rule: .external, implicit: true)
        }
        var report = CheckReport(workspace: workspace, unknownMode: .warn, findings: [], resourceCount: 0, policies: policies, compliant: [])
        report.findings = findings
        return SarifOutput.render(report)
    }
}
