import Foundation
import WaiverCore

/// Reads SARIF 2.1.0 reports from any scanner (Checkov, Trivy, tfsec, KICS, Semgrep, ...).
public enum SarifReader {
    public static func read(path: String) throws(InputError) -> [ExternalFinding] {
        let raw = try InputFile.read(path)
        return try parse(raw, file: path)
    }

    public static func parse(_ raw: Data, file: String) throws(InputError) -> [ExternalFinding] {
        let data = try InputFile.utf8(raw, file: file)
        let doc: Value
        do throws(JSONSyntaxError) {
            doc = try JSONReader.parse(data)
        } catch {
            throw InputError(file: file, line: error.line, message: "not valid JSON: \(error.message) (column \(error.column))")
        }
        func fail(_ message: String) -> InputError { InputError(file: file, message: "not a valid SARIF 2.1.0 report: " + message) }
        guard case .object(let root) = doc else { throw fail("expected a JSON object at the top") }
        guard let version = root["version"]?.stringValue else { throw fail("no \"version\"") }
        guard version == "2.1.0" else {
            throw InputError(file: file, message: "unsupported SARIF version \"\(version)\" (supported: 2.1.0)")
        }
        guard let runs = root["runs"]?.arrayValue else { throw fail("no \"runs\" list") }
        var findings: [ExternalFinding] = []
        var lineKeyed: [Int] = []
        for (runIndex, run) in runs.enumerated() {
            let at = "runs[\(runIndex)]"
            guard case .object = run else { throw fail("\(at) is not an object") }
            guard let driver = run["tool"]?["driver"], case .object = driver else { throw fail("\(at) has no tool.driver") }
            guard let toolName = driver["name"]?.stringValue else { throw fail("\(at).tool.driver has no name") }
            var rules: [Value] = driver["rules"]?.arrayValue ?? []
            var rulesById: [String: Value] = [:]
            for ext in run["tool"]?["extensions"]?.arrayValue ?? [] { rules += ext["rules"]?.arrayValue ?? [] }
            for rule in rules { if let id = rule["id"]?.stringValue { rulesById[id] = rule } }
            let driverRules = driver["rules"]?.arrayValue ?? []
            let artifacts = run["artifacts"]?.arrayValue ?? []
            let logical = run["logicalLocations"]?.arrayValue ?? []
            guard let results = run["results"] else { continue }
            guard let list = results.arrayValue else {
                if results.isNull { continue }
                throw fail("\(at).results is not a list")
            }
            for (i, result) in list.enumerated() {
                let rat = "\(at).results[\(i)]"
                guard case .object = result else { throw fail("\(rat) is not an object") }
                // Numbers from the report are read only when they are whole and in range: `1e300` is no index.
                func whole(_ v: Value?, _ key: String) throws(InputError) -> Int? {
                    guard let v, !v.isNull else { return nil }
                    guard let n = v.intValue, n >= -1 else { throw fail("\(rat).\(key) \(v.rendered(limit: 40)) is not a whole number from -1 to 2^53") }
                    return n
                }
                var ruleIndex = try whole(result["ruleIndex"], "ruleIndex")
                if ruleIndex == nil { ruleIndex = try whole(result["rule"]?["index"], "rule.index") }
                let indexedRule = ruleIndex.flatMap { $0 >= 0 && $0 < driverRules.count ? driverRules[$0] : nil }
                guard let ruleId = result["ruleId"]?.stringValue ?? result["rule"]?["id"]?.stringValue
                    ?? indexedRule?["id"]?.stringValue
                else { throw fail("\(rat) has no ruleId") }
                let rule = rulesById[ruleId] ?? indexedRule
                // Results that say the rule passed, does not apply, or is gone from the code are no findings.
                let kind = result["kind"]?.stringValue ?? "fail"
                if ["pass", "notApplicable", "informational"].contains(kind) { continue }
                if result["baselineState"]?.stringValue == "absent" { continue }
                let ruleLevel = rule?["defaultConfiguration"]?["level"]?.stringValue
                var level = result["level"]?.stringValue ?? ruleLevel ?? (kind == "fail" ? "warning" : "none")
                let message = text(of: result["message"], rule: rule) ?? ruleTitle(rule) ?? ruleId
                let location = result["locations"]?.arrayValue?.first
                var uri: String?
                var line: Int?
                var snippet: String?
                if let physical = location?["physicalLocation"] {
                    snippet = physical["region"]?["snippet"]?["text"]?.stringValue
                    let artifact = physical["artifactLocation"]
                    uri = artifact?["uri"]?.stringValue
                    if uri == nil, let ai = try whole(artifact?["index"], "locations[0].physicalLocation.artifactLocation.index"), ai >= 0, ai < artifacts.count {
                        uri = artifacts[ai]["location"]?["uri"]?.stringValue
                    }
                    line = try whole(physical["region"]?["startLine"], "locations[0].physicalLocation.region.startLine").flatMap { $0 >= 1 ? $0 : nil }
                }
                var resource: String?
                var byLine = false
                if let l = location?["logicalLocations"]?.arrayValue?.first {
                    resource = l["fullyQualifiedName"]?.stringValue ?? l["name"]?.stringValue
                    if resource == nil, let li = try whole(l["index"], "locations[0].logicalLocations[0].index"), li >= 0, li < logical.count {
                        resource = logical[li]["fullyQualifiedName"]?.stringValue ?? logical[li]["name"]?.stringValue
                    }
                }
                // Identity without a logical location (see `FindingIdentity`): the scanner's
                // fingerprints, else the rule and snippet, else the file and line.
                if resource == nil, let uri {
                    let prints = fingerprints(result)
                    if !prints.isEmpty {
                        resource = FindingIdentity.fingerprinted(uri, prints)
                    } else if let snippet, snippet.contains(where: { !$0.isWhitespace }) {
                        resource = FindingIdentity.snippet(uri, rule: ruleId, snippet)
                    } else {
                        resource = line.map { "\(uri):\($0)" } ?? uri
                        byLine = true
                    }
                }
                var suppression: String?
                for s in result["suppressions"]?.arrayValue ?? [] {
                    let status = s["status"]?.stringValue ?? "accepted"
                    if status == "accepted" {
                        suppression = (s["justification"]?.stringValue ?? "").trimmingCharacters(in: .whitespaces)
                    }
                }
                // A scanner's own suppression never lowers what approval costs: a suppressed result
                // keeps the higher of its level and its rule's (Checkov writes `warning` on skipped `error` rules).
                if suppression != nil, let ruleLevel, levelRank(ruleLevel) > levelRank(level) { level = ruleLevel }
                if byLine { lineKeyed.append(findings.count) }
                findings.append(ExternalFinding(
                    ruleId: ruleId, resource: resource ?? "(no location)", level: level, message: message,
                    file: file, tool: toolName, uri: uri, line: line, ruleTitle: ruleTitle(rule),
                    ruleHelp: ruleHelp(rule), suppression: suppression,
                    snippet: snippet.map(FindingIdentity.normalized).flatMap { $0.isEmpty ? nil : String($0.prefix(Finding.boundLimit)) }))
            }
        }
        // Findings known only by file and line stay distinct when they differ: Trivy reports
        // libcrypto and libssl for one CVE at one location, told apart by their messages.
        var messages: [String: Set<String>] = [:]
        for i in lineKeyed { messages["\(findings[i].ruleId)\u{0}\(findings[i].resource)", default: []].insert(findings[i].message) }
        for i in lineKeyed where (messages["\(findings[i].ruleId)\u{0}\(findings[i].resource)"]?.count ?? 0) > 1 {
            findings[i].resource += "#" + FindingIdentity.hex(findings[i].message, length: 8)
        }
        return findings
    }

    /// A result's `fingerprints` and `partialFingerprints` (string values only).
    static func fingerprints(_ result: Value) -> [(String, String)] {
        var out: [(String, String)] = []
        for key in ["fingerprints", "partialFingerprints"] {
            guard case .object(let o)? = result[key] else { continue }
            for (k, v) in o.pairs { if let s = v.stringValue { out.append(("\(key).\(k)", s)) } }
        }
        return out
    }

    /// SARIF levels in order: none < note < warning < error.
    static func levelRank(_ level: String) -> Int {
        switch level {
        case "error": return 3
        case "warning": return 2
        case "note": return 1
        default: return 0
        }
    }

    static func ruleTitle(_ rule: Value?) -> String? {
        rule?["shortDescription"]?["text"]?.stringValue ?? rule?["name"]?.stringValue
            ?? rule?["fullDescription"]?["text"]?.stringValue
    }

    static func ruleHelp(_ rule: Value?) -> String? {
        let help = rule?["help"]?["text"]?.stringValue ?? rule?["fullDescription"]?["text"]?.stringValue
        let uri = rule?["helpUri"]?.stringValue
        switch (help, uri) {
        case let (h?, u?): return h.contains(u) ? h : "\(h) (\(u))"
        case let (h?, nil): return h
        case let (nil, u?): return u
        default: return nil
        }
    }

    /// A result's message text, with `{0}`-style placeholders filled from its arguments.
    static func text(of message: Value?, rule: Value?) -> String? {
        var text = message?["text"]?.stringValue ?? message?["markdown"]?.stringValue
        if text == nil, let id = message?["id"]?.stringValue {
            text = rule?["messageStrings"]?[id]?["text"]?.stringValue
        }
        guard var t = text else { return nil }
        for (i, arg) in (message?["arguments"]?.arrayValue ?? []).enumerated() {
            t = t.replacingOccurrences(of: "{\(i)}", with: arg.stringValue ?? arg.rendered())
        }
        return t
    }
}
