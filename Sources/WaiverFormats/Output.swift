import Foundation
import WaiverCore

/// The output formats of `waiver check`.
public enum OutputFormat: String, CaseIterable, Sendable {
    case text, json, sarif, junit, markdown, codequality

    /// Renders a report in this format.
    public func render(_ report: CheckReport) -> String {
        switch self {
        case .text: return TextOutput.render(report)
        case .json: return JSONOutput.render(report)
        case .sarif: return SarifOutput.render(report)
        case .junit: return JUnitOutput.render(report)
        case .markdown: return MarkdownOutput.render(report)
        case .codequality: return CodeQualityOutput.render(report)
        }
    }
}

/// Version of Waiver as written into reports.
public let waiverVersion = "0.1.0"

func iso8601(_ date: Date) -> String { date.formatted(.iso8601) }

extension ResultStatus {
    var label: String { rawValue.uppercased() }
}

extension Finding {
    var exceptionNote: String? {
        guard let id = exception else { return nil }
        switch status {
        case .excepted: return "excepted by \(id)" + (expires.map { " until \(iso8601($0))" } ?? "")
        case .pending: return "exception \(id) waiting for approval"
        case .changed: return "\(id) was approved for other values (approved: \(approved ?? "?")); request an amended exception"
        default: return id
        }
    }

    var sourceFile: String {
        switch origin {
        case .plan(let file): return file
        case .sarif(let file, _, let uri, _): return uri ?? file
        }
    }
}

extension CheckReport {
    var tally: String { summary.line }
}

// MARK: - JSON

/// `check --format json`, the shape pipelines rely on (cli.md).
public enum JSONOutput {
    public static func value(_ report: CheckReport, trailing: [(String, Value)] = []) -> Value {
        .object(Value.Object(members(report, trailing: trailing).map { key, member -> (String, Value) in
            switch member {
            case .value(let v): return (key, v)
            case .items(let count, let item): return (key, .array((0..<count).map(item)))
            }
        }))
    }

    /// The report's JSON written result by result (`value` built whole, written, gives the same text).
    public static func render(_ report: CheckReport, trailing: [(String, Value)]) -> String {
        JSONWriter.writeObject(members(report, trailing: trailing))
    }

    /// The members of the report's JSON, in order, then `trailing` ones (what a check adds).
    static func members(_ report: CheckReport, trailing: [(String, Value)]) -> [(String, JSONWriter.Member)] {
        let s = report.summary
        var root: [(String, JSONWriter.Member)] = [
            ("verdict", .value(.string(report.verdict))),
            ("workspace", .value(.string(report.workspace))),
            ("summary", .value([
                "resources": .number(Double(s.resources)), "violations": .number(Double(s.violations)),
                "blocking": .number(Double(s.blocking)), "excepted": .number(Double(s.excepted)),
                "pending": .number(Double(s.pending)), "unknown": .number(Double(s.unknown)), "advisory": .number(Double(s.advisory)),
                "changed": .number(Double(s.changed)),
            ])),
            ("results", .items(report.findings.count) { result(report.findings[$0]) }),
        ]
        if !report.warnings.isEmpty { root.append(("warnings", .value(.array(report.warnings.map(Value.string))))) }
        return root + trailing.map { ($0.0, .value($0.1)) }
    }

    static func result(_ f: Finding) -> Value {
        var o = Value.Object()
        o.append("policy", .string(f.policy))
        o.append("title", .string(f.title))
        o.append("severity", .string(f.severity.rawValue))
        o.append("category", .string(f.category))
        o.append("resource", .string(f.resource))
        o.append("status", .string(f.status.rawValue))
        if let e = f.exception { o.append("exception", .string(e)) }
        if let l = f.link { o.append("link", .string(l)) }
        if let d = f.expires { o.append("expires", .string(iso8601(d))) }
        if let a = f.approved { o.append("approved_values", .string(a)) }
        o.append("message", .string(f.message))
        if !f.remediation.isEmpty { o.append("remediation", .string(f.remediation)) }
        switch f.origin {
        case .plan(let file):
            o.append("source", ["kind": "plan", "file": .string(file)])
        case .sarif(let file, let tool, let uri, let line):
            var src: Value.Object = Value.Object([("kind", "sarif"), ("file", .string(file)), ("tool", .string(tool))])
            if let uri { src.append("uri", .string(uri)) }
            if let line { src.append("line", .number(Double(line))) }
            o.append("source", .object(src))
        }
        return .object(o)
    }

    public static func render(_ report: CheckReport) -> String { render(report, trailing: []) }
}

// MARK: - Text

/// Text for a CI log: violations grouped by severity, each with what, where, why and how to fix.
public enum TextOutput {
    public static func render(_ report: CheckReport) -> String {
        // The policies that applied: those whose resource types the plan has, and the scanners' rules reported.
        var out = "waiver check: workspace \(report.workspace), \(report.resourceCount) resources, \(report.policies.count) \(report.policies.count == 1 ? "policy" : "policies") applied to them\n"
        if report.findings.isEmpty { out += "\nNo violations.\n" }
        for severity in Severity.allCases.reversed() {
            let group = report.findings.filter { $0.severity == severity }
            if group.isEmpty { continue }
            out += "\n\(severity.rawValue.uppercased()) (\(group.count))\n"
            for f in group {
                out += "  \(f.status.label.padding(toLength: 9, withPad: " ", startingAt: 0)) \(f.policy)  \(f.title)\n"
                out += "            resource: \(f.resource)\n"
                if let note = f.exceptionNote { out += "            exception: \(note)\(f.link.map { " — \($0)" } ?? "")\n" }
                if !f.message.isEmpty { out += "            why: \(f.message)\n" }
                if !f.remediation.isEmpty, f.status != .excepted { out += "            fix: \(oneLine(f.remediation))\n" }
            }
        }
        if report.summary.unknown > 0 {
            out += report.unknownMode == .block
                ? "\nUnknown outcomes block this check (--unknown=block).\n"
                : "\nUnknown outcomes do not block (use --unknown=block to make them block).\n"
        }
        for w in report.warnings { out += "\nwarning: \(w)\n" }
        out += "\n\(report.passed ? "PASS" : "BLOCKED"): \(report.tally)\n"
        return out
    }

    /// The text report with ANSI colours for a terminal: statuses, severity headings and the verdict.
    /// It works on the rendered text, so a report a server rendered is coloured the same way.
    public static func colored(_ text: String) -> String {
        let reset = "\u{1B}[0m"
        let statuses: [(String, String)] = [("BLOCKING", "\u{1B}[1;31m"), ("PENDING", "\u{1B}[33m"), ("EXCEPTED", "\u{1B}[32m"), ("UNKNOWN", "\u{1B}[35m"), ("CHANGED", "\u{1B}[1;31m")]
        var out: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var l = String(line)
            if let (word, code) = statuses.first(where: { l.hasPrefix("  \($0.0) ") }) {
                l = "  " + code + word + reset + l.dropFirst(2 + word.count)
            } else if l.hasPrefix("PASS:") {
                l = "\u{1B}[1;32mPASS\(reset)" + l.dropFirst(4)
            } else if l.hasPrefix("BLOCKED:") {
                l = "\u{1B}[1;31mBLOCKED\(reset)" + l.dropFirst(7)
            } else if Severity.allCases.contains(where: { l.hasPrefix($0.rawValue.uppercased() + " (") }) {
                l = "\u{1B}[1m" + l + reset
            }
            out.append(l)
        }
        return out.joined(separator: "\n")
    }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}

// MARK: - Markdown

/// A pull-request comment: verdict, tally, a table of violations, and how to fix each policy.
public enum MarkdownOutput {
    static let maxRows = 100

    public static func render(_ report: CheckReport) -> String {
        var out = "### Waiver: \(report.passed ? "✅ pass" : "❌ blocked")\n\n"
        out += "Workspace `\(code(report.workspace))`: \(report.tally).\n"
        if report.findings.isEmpty { return out }
        out += "\n| Status | Severity | Policy | Resource | Why |\n|---|---|---|---|---|\n"
        let icons: [ResultStatus: String] = [.blocking: "❌", .excepted: "🟢", .pending: "⏳", .unknown: "❔", .advisory: "ℹ️", .changed: "🔺"]
        let rows = report.findings.sorted {
            ($1.severity.rank, $0.policy, $0.resource) < ($0.severity.rank, $1.policy, $1.resource)
        }
        // GitHub refuses a comment over 65,536 characters: rows go in while they fit (leaving room
        // for the line that says how many did not, and for the fixes), at most `maxRows`.
        var shownRows = 0
        for f in rows.prefix(maxRows) {
            var status = "\(icons[f.status] ?? "") \(f.status.rawValue)"
            if let note = f.exceptionNote {
                // On a server the exception's id links to its page.
                var shown = cell(note)
                if let link = f.link, let id = f.exception { shown = shown.replacingOccurrences(of: cell(id), with: "[\(id)](\(link))") }
                status += " (\(shown))"
            }
            let row = "| \(status) | \(f.severity.rawValue) | **\(cell(f.policy))** \(cell(f.title)) | `\(code(f.resource))` | \(cell(f.message)) |\n"
            guard out.utf8.count + row.utf8.count + reserve <= maxBytes else { break }
            out += row
            shownRows += 1
        }
        if rows.count > shownRows { out += "\n…and \(rows.count - shownRows) more not shown (see the full report in the job log).\n" }
        let fixes = Dictionary(grouping: report.findings.filter { $0.status != .excepted && !$0.remediation.isEmpty }, by: \.policy)
        if !fixes.isEmpty {
            var section = "\n<details><summary>How to fix</summary>\n\n"
            for id in fixes.keys.sorted() {
                guard let f = fixes[id]?.first else { continue }
                let line = "- **\(cell(id))** \(cell(f.title)): \(cell(f.remediation))\n"
                guard out.utf8.count + section.utf8.count + line.utf8.count + 64 <= maxBytes else {
                    section += "- …more fixes in the full report\n"
                    break
                }
                section += line
            }
            out += section + "\n</details>\n"
        }
        return out
    }

    /// GitHub's limit on a comment, and what the rows leave for the "more not shown" line and the fixes.
    static let maxBytes = 65_536
    static let reserve = 4_096

    /// Text safe inside a table cell: no pipes, newlines or HTML, and inert: Markdown punctuation is
    /// escaped (no link, image or emphasis from a plan value), and a word joiner (U+2060) breaks
    /// what GitHub would turn into an @mention or an autolink (`@`, `://`, `www.`).
    static func cell(_ s: String) -> String {
        var t = ""
        for ch in TextOutput.oneLine(s) {
            switch ch {
            case "\\", "`", "*", "_", "[", "]", "(", ")", "!", "~", "#": t.append("\\"); t.append(ch)
            case "&": t += "&amp;"
            case "<": t += "&lt;"
            case ">": t += "&gt;"
            case "|": t += "\\|"
            case "@": t += "@\u{2060}"
            default: t.append(ch)
            }
        }
        return t.replacingOccurrences(of: "://", with: ":\u{2060}//").replacingOccurrences(of: "www.", with: "www\u{2060}.")
    }

    static func code(_ s: String) -> String {
        TextOutput.oneLine(s).replacingOccurrences(of: "`", with: "'").replacingOccurrences(of: "|", with: "\\|")
    }
}

// MARK: - SARIF

/// SARIF 2.1.0 for GitHub code scanning: the rules with help text, one result per violation;
/// excepted violations carry an accepted suppression naming the exception.
public enum SarifOutput {
    static func level(_ s: Severity) -> String {
        switch s {
        case .critical, .high: return "error"
        case .medium: return "warning"
        case .low: return "note"
        }
    }

    static func securitySeverity(_ s: Severity) -> String {
        switch s {
        case .critical: return "9.5"
        case .high: return "8.0"
        case .medium: return "5.5"
        case .low: return "2.0"
        }
    }

    static func htmlEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    public static func fingerprint(_ f: Finding) -> String {
        FindingIdentity.hex("\(f.policy)\u{0}\(f.resource)")
    }

    /// GitHub code scanning refuses a run with more than 25,000 results or rules (and shows the
    /// 5,000 most severe): past that the most severe are kept, blocking ones first, and the run says
    /// how many were left out.
    static let maxResults = 25_000
    static let maxRules = 25_000

    public static func render(_ report: CheckReport) -> String {
        var findings = report.findings
        var leftOut = 0
        if findings.count > maxResults {
            findings.sort { (report.blocks($0) ? 1 : 0, $0.severity.rank) > (report.blocks($1) ? 1 : 0, $1.severity.rank) }
            leftOut = findings.count - maxResults
            findings.removeLast(leftOut)
        }
        let cited = Set(findings.map(\.policy))
        var policies = report.policies
        if policies.count > maxRules {
            policies = policies.filter { cited.contains($0.id) }.prefix(maxRules).map { $0 }
            findings.removeAll { f in !policies.contains { $0.id == f.policy } }
        }
        var ruleIndex: [String: Int] = [:]
        var rules: [Value] = []
        for p in policies {
            ruleIndex[p.id] = rules.count
            var rule = Value.Object()
            rule.append("id", .string(p.id))
            rule.append("name", .string(p.id.replacingOccurrences(of: "-", with: "_")))
            rule.append("shortDescription", ["text": .string(p.title)])
            // GitHub shows at most 1,024 characters of a description.
            rule.append("fullDescription", ["text": .string((p.description.isEmpty ? p.title : TextOutput.oneLine(p.description)).clipped(1_024))])
            let help = p.remediation.isEmpty ? p.title : p.remediation
            // The Markdown help is rendered: `<team>` would be read as an HTML tag and vanish.
            rule.append("help", ["text": .string(help), "markdown": .string("**\(htmlEscaped(p.title))**\n\n\(htmlEscaped(help))")])
            rule.append("defaultConfiguration", ["level": .string(level(p.severity))])
            rule.append("properties", [
                "tags": [.string(p.category)], "security-severity": .string(securitySeverity(p.severity)),
                "precision": "high",
            ])
            rules.append(.object(rule))
        }
        var results: [Value] = []
        for f in findings {
            var r = Value.Object()
            r.append("ruleId", .string(f.policy))
            if let i = ruleIndex[f.policy] { r.append("ruleIndex", .number(Double(i))) }
            r.append("level", .string(f.status == .advisory ? "note" : level(f.severity)))
            var text = "\(f.title): \(f.resource)"
            if !f.message.isEmpty { text += " — \(f.message)" }
            if let note = f.exceptionNote { text += " [\(note)\(f.link.map { " — \($0)" } ?? "")]" }
            r.append("message", ["text": .string(text)])
            var physical = Value.Object()
            var line = 1
            if case .sarif(_, _, _, let l?) = f.origin { line = max(1, l) }
            physical.append("artifactLocation", ["uri": .string(f.sourceFile)])
            physical.append("region", ["startLine": .number(Double(line))])
            r.append("locations", [[
                "physicalLocation": .object(physical),
                "logicalLocations": [["fullyQualifiedName": .string(f.resource), "kind": "resource"]],
            ]])
            // GitHub groups alerts by primaryLocationLineHash, computing its own from the line when it
            // is absent: every plan result is on line 1, so distinct violations would fold together.
            r.append("partialFingerprints", ["waiverFinding/v1": .string(fingerprint(f)), "primaryLocationLineHash": .string(fingerprint(f) + ":1")])
            if f.status == .excepted, let id = f.exception {
                r.append("suppressions", [[
                    "kind": "external", "status": "accepted",
                    "justification": .string("Waiver exception \(id)" + (f.expires.map { " until \(iso8601($0))" } ?? "")),
                ]])
            }
            var props = Value.Object([("status", .string(f.status.rawValue)), ("workspace", .string(report.workspace))])
            if let e = f.exception { props.append("exception", .string(e)) }
            r.append("properties", .object(props))
            results.append(.object(r))
        }
        let driver: Value = [
            "name": "waiver", "version": .string(waiverVersion), "semanticVersion": .string(waiverVersion),
            "informationUri": "https://github.com/waiver-dev/waiver", "rules": .array(rules),
        ]
        var run = Value.Object([("tool", ["driver": driver]), ("results", .array(results))])
        if report.findings.count > findings.count {
            let note = "\(report.findings.count - findings.count) of \(report.findings.count) results are not in this file (code scanning takes at most \(maxResults)); the full report is in the job log (--format text or json)"
            run.append("invocations", [["executionSuccessful": true, "toolExecutionNotifications": [["level": "warning", "message": ["text": .string(note)]]]]])
        }
        let doc: Value = [
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [.object(run)],
        ]
        return JSONWriter.write(doc)
    }
}

// MARK: - GitLab code quality

/// GitLab's code quality report (`artifacts:reports:codequality`, a subset of the Code Climate
/// spec): one issue per violation, with the finding's stable fingerprint, so the merge-request
/// widget shows what a change adds and resolves. Excepted violations are `info`, naming the exception.
public enum CodeQualityOutput {
    static func severity(_ f: Finding) -> String {
        if f.status == .excepted || f.status == .advisory { return "info" }
        if f.status == .unknown { return "minor" }
        switch f.severity {
        case .critical: return "blocker"
        case .high: return "critical"
        case .medium: return "major"
        case .low: return "minor"
        }
    }

    public static func render(_ report: CheckReport) -> String {
        let issues: [Value] = report.findings.map { f in
            var text = "\(f.policy) \(f.title): \(f.resource)"
            if !f.message.isEmpty { text += " — \(f.message)" }
            if let note = f.exceptionNote { text += " [\(note)\(f.link.map { " — \($0)" } ?? "")]" }
            var line = 1
            if case .sarif(_, _, _, let l?) = f.origin { line = max(1, l) }
            return [
                "description": .string(text.clipped(4_000)), "check_name": .string(f.policy), "fingerprint": .string(SarifOutput.fingerprint(f)),
                "severity": .string(severity(f)), "categories": ["Security"],
                "location": ["path": .string(f.sourceFile), "lines": ["begin": .number(Double(line))]],
            ]
        }
        return JSONWriter.write(.array(issues))
    }
}

// MARK: - JUnit

/// JUnit XML: one test suite per policy, one test case per policy and resource evaluated.
/// Blocking and pending violations fail; excepted and unknown ones are skipped with the reason.
public enum JUnitOutput {
    public static func render(_ report: CheckReport) -> String {
        var cases: [String: [(resource: String, finding: Finding?)]] = [:]
        for pair in report.compliant { cases[pair.policy, default: []].append((pair.resource, nil)) }
        for f in report.findings { cases[f.policy, default: []].append((f.resource, f)) }
        let titles = Dictionary(report.policies.map { ($0.id, $0.title) }, uniquingKeysWith: { a, _ in a })
        var suites = ""
        var total = 0, failures = 0, skipped = 0
        for policy in cases.keys.sorted() {
            let list = (cases[policy] ?? []).sorted { $0.resource < $1.resource }
            var body = ""
            var f = 0, s = 0
            // Names unique within the class: a second result on one resource is "resource (2)".
            var seen: [String: Int] = [:]
            for (resource, finding) in list {
                let n = (seen[resource] ?? 0) + 1
                seen[resource] = n
                let name = n == 1 ? resource : "\(resource) (\(n))"
                body += "    <testcase classname=\"\(xml(policy))\" name=\"\(xml(name))\""
                guard let finding else { body += "/>\n"; continue }
                body += ">\n"
                let detail = [finding.message, finding.remediation.isEmpty ? "" : "Fix: \(finding.remediation)"]
                    .filter { !$0.isEmpty }.joined(separator: "\n")
                // A failure exactly when the gate blocks on it (`CheckReport.blocks`): an unknown
                // outcome under --unknown=block fails, as the verdict does.
                switch finding.status {
                case _ where report.blocks(finding):
                    f += 1
                    let what = finding.status == .pending || finding.status == .changed ? (finding.exceptionNote ?? "exception pending")
                        : finding.status == .unknown ? "outcome known only after apply (--unknown=block)" : finding.title
                    body += "      <failure type=\"\(finding.status.rawValue)\" message=\"\(xml(what))\">\(xml(detail))</failure>\n"
                case .blocking, .pending, .changed:
                    break
                case .excepted, .unknown, .advisory:
                    s += 1
                    let why = finding.status == .unknown ? "outcome known only after apply"
                        : finding.status == .advisory ? "advisory: reported, does not block" : (finding.exceptionNote ?? "excepted")
                    body += "      <skipped message=\"\(xml(why))\"/>\n"
                    body += "      <system-out>\(xml(detail))</system-out>\n"
                }
                body += "    </testcase>\n"
            }
            total += list.count; failures += f; skipped += s
            let name = titles[policy].map { "\(policy) \($0)" } ?? policy
            suites += "  <testsuite name=\"\(xml(name))\" tests=\"\(list.count)\" failures=\"\(f)\" errors=\"0\" skipped=\"\(s)\">\n"
            suites += body + "  </testsuite>\n"
        }
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            // `skipped` is on each <testsuite> only: junit-10.xsd allows no more than these on <testsuites>.
            + "<testsuites name=\"waiver check (\(xml(report.workspace)))\" tests=\"\(total)\" failures=\"\(failures)\" errors=\"0\">\n"
            + suites + "</testsuites>\n"
    }

    /// Escapes text for XML attributes and content, dropping characters XML 1.0 cannot carry.
    static func xml(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n": out += "&#10;"
            case "\t", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || (0xFFFE...0xFFFF).contains(scalar.value) { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
