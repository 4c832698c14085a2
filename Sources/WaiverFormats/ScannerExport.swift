import Foundation
import WaiverCore

/// The register's active exceptions in the formats scanners read, so a scanner honours exactly what
/// was approved and stops when Waiver does. Each entry carries its exception's id (a later
/// `waiver suppressions scan` maps it back) and its expiry. Pending, rejected, revoked, expired and
/// closed exceptions, and approved ones past their expiry instant, are never written.
public enum ScannerExport: String, CaseIterable, Sendable {
    case trivyignoreYAML = "trivyignore-yaml"
    case trivyignore
    case snyk
    case checkov
    case kyverno
    case sarifSuppressions = "sarif-suppressions"

    /// Which exceptions a format carries: the rules that scanner reports.
    public func carries(_ e: ExceptionRecord) -> Bool {
        let id = e.policy.uppercased()
        switch self {
        case .trivyignoreYAML, .trivyignore:
            return ["AVD-", "CVE-", "GHSA-", "KSV", "DS0", "AWS-", "AZU-", "GCP-"].contains { id.hasPrefix($0) }
        case .snyk: return id.hasPrefix("SNYK-") || id.hasPrefix("SNYK:")
        case .checkov: return id.hasPrefix("CKV")
        case .kyverno:
            // Kubernetes objects, written Kind/namespace/name.
            return e.subjectKind == .resource && e.resources.allSatisfy { r in
                let f = r.split(separator: "/", omittingEmptySubsequences: false)
                return f.count == 3 && f.allSatisfy { !$0.isEmpty } && f[0].first?.isUppercase == true
            }
        case .sarifSuppressions: return e.subjectKind == .resource
        }
    }

    /// The exceptions written: active at `now`, of the rules the format carries, in id order.
    public func selected(_ exceptions: [ExceptionRecord], now: Date) -> [ExceptionRecord] {
        exceptions.filter { $0.isActive(at: now) && carries($0) }.sorted { $0.id < $1.id }
    }

    /// Trivy and Snyk take a date: the day the exception expires (UTC), at whose start they stop, so
    /// the scanner never honours an entry past Waiver's expiry instant (it may stop up to a day sooner).
    static func day(_ d: Date) -> String { String(iso(d).prefix(10)) }

    static func quoted(_ s: String) -> String { JSONWriter.write(.string(s)).trimmingCharacters(in: .whitespacesAndNewlines) }

    static func statement(_ e: ExceptionRecord) -> String {
        let approvers = e.approvals.map(\.approver).joined(separator: ", ")
        return "\(e.displayId): \(e.reason.replacingOccurrences(of: "\n", with: " ").clipped(300)) (approved by \(approvers.isEmpty ? "?" : approvers), until \(e.expiresAt.map(iso) ?? "?"))"
    }

    /// A resource Trivy can scope by: a file path (`modules/s3/main.tf`, `main.tf:12` without the line).
    static func path(_ resource: String) -> String? {
        guard resource != "*", !resource.hasPrefix("module."), !resource.hasPrefix("data.") else { return nil }
        var r = Substring(resource)
        if let colon = r.lastIndex(of: ":"), r[r.index(after: colon)...].allSatisfy(\.isNumber), r.index(after: colon) < r.endIndex { r = r[..<colon] }
        if let hash = r.firstIndex(of: "#") { r = r[..<hash] }
        let last = r.split(separator: "/").last ?? r
        return r.contains("/") || last.contains(".") && !last.contains(where: { $0 == "_" }) && last.split(separator: ".").last.map { $0.count <= 5 } == true ? String(r) : nil
    }

    /// Whether the format can say exactly what the exception excuses: Trivy's plain .trivyignore
    /// ignores an id everywhere, so only an exception to everywhere (`*`) is written; its YAML scopes
    /// by file path, so an exception to paths (or `*`) is.
    public func expresses(_ e: ExceptionRecord) -> Bool {
        switch self {
        case .trivyignore: return e.resources == ["*"]
        case .trivyignoreYAML: return e.resources.allSatisfy { $0 == "*" || Self.path($0) != nil } && (e.resources == ["*"] || !e.resources.contains("*"))
        default: return true
        }
    }

    public func render(_ exceptions: [ExceptionRecord], now: Date) -> String {
        let carried = selected(exceptions, now: now)
        let list = carried.filter(expresses)
        let unsaid = carried.filter { !expresses($0) }
        let omitted = unsaid.map { "\($0.displayId) (\($0.policy) on \($0.resources.joined(separator: ", ").clipped(200)))" }
        let header = "Written by waiver export --format \(rawValue) at \(iso(now)): \(list.count) active exception\(list.count == 1 ? "" : "s")."
        switch self {
        case .trivyignore:
            var out = "# \(header)\n# .trivyignore ignores an id everywhere: only exceptions to everywhere (*) are written.\n"
            for o in omitted { out += "# not written, it covers less than everywhere (use --format trivyignore-yaml or the scanner's own scoping): \(o)\n" }
            for e in list {
                out += "\n# \(Self.statement(e).replacingOccurrences(of: "\n", with: " "))\n# covers: \(e.resources.joined(separator: ", ").clipped(300))\n"
                out += "\(e.policy) exp:\(Self.day(e.expiresAt ?? now))\n"
            }
            return out
        case .trivyignoreYAML:
            var sections: [String: [String]] = [:]
            for e in list {
                let id = e.policy.uppercased()
                let section = id.hasPrefix("CVE-") || id.hasPrefix("GHSA-") ? "vulnerabilities" : "misconfigurations"
                let paths = e.resources.compactMap(Self.path)
                var entry = "  - id: \(Self.quoted(e.policy))\n"
                if !paths.isEmpty { entry += "    paths: [\(paths.map(Self.quoted).joined(separator: ", "))]\n" }
                entry += "    statement: \(Self.quoted(Self.statement(e)))\n    expired_at: \(Self.day(e.expiresAt ?? now))\n"
                sections[section, default: []].append(entry)
            }
            var out = "# \(header)\n"
            for o in omitted { out += "# not written, Trivy scopes by file path and it covers resources: \(o)\n" }
            for s in ["vulnerabilities", "misconfigurations"] {
                out += "\(s):" + ((sections[s] ?? []).isEmpty ? " []\n" : "\n" + (sections[s] ?? []).joined())
            }
            return out
        case .snyk:
            var out = "# \(header)\nversion: v1.25.0\nignore:" + (list.isEmpty ? " {}\n" : "\n")
            for (policy, group) in Dictionary(grouping: list, by: \.policy).sorted(by: { $0.key < $1.key }) {
                out += "  \(Self.quoted(policy)):\n"
                for e in group {
                    for r in e.resources {
                        out += "    - \(Self.quoted(r)):\n        reason: \(Self.quoted(Self.statement(e)))\n"
                        out += "        expires: \(Self.quoted(iso(e.expiresAt ?? now)))\n        created: \(Self.quoted(iso(e.decidedAt ?? e.createdAt)))\n"
                    }
                }
            }
            return out + "patch: {}\n"
        case .checkov:
            // Checkov's baseline (`checkov --baseline FILE`): a failed check is dropped when its
            // resource and check id are listed, so exactly the approved pairs are skipped.
            var byResource: [String: [String]] = [:]
            var ids: [String: [String]] = [:]
            for e in list { for r in e.resources { byResource[r, default: []].append(e.policy); ids[r, default: []].append(e.displayId) } }
            let findings: [Value] = byResource.keys.sorted().map { r in
                .object(Value.Object([("resource", .string(r)), ("check_ids", .array(Array(Set(byResource[r] ?? [])).sorted().map(Value.string))),
                                      ("waiver_exceptions", .array((ids[r] ?? []).map(Value.string)))]))
            }
            return JSONWriter.write(.object(Value.Object([
                ("waiver", .string(header)),
                ("failed_checks", .array(findings.isEmpty ? [] : [.object(Value.Object([("file", .string("/")), ("findings", .array(findings))]))])),
            ])))
        case .kyverno:
            var docs: [String] = []
            for e in list {
                let parts = e.policy.split(separator: "/", maxSplits: 1).map(String.init)
                let policyName = parts.first ?? e.policy
                let rules = parts.count > 1 ? parts.suffix(1) : ["*"]
                var filters: [String] = []
                for r in e.resources {
                    let f = r.split(separator: "/").map(String.init)
                    switch f.count {
                    case 3 where f.allSatisfy({ !$0.isEmpty }): filters.append("      - resources:\n          kinds: [\(Self.quoted(f[0]))]\n          namespaces: [\(Self.quoted(f[1]))]\n          names: [\(Self.quoted(f[2]))]\n")
                    default: filters.append("      - resources:\n          names: [\(Self.quoted(r))]\n")
                    }
                }
                // Kyverno's TTL label takes an absolute instant as 2006-01-02T150405Z (a label value
                // has no colons): its cleanup controller deletes the exception at Waiver's expiry.
                let ttl = iso(e.expiresAt ?? now).replacingOccurrences(of: ":", with: "")
                docs.append("""
                    apiVersion: kyverno.io/v2
                    kind: PolicyException
                    metadata:
                      name: waiver-ex-\(e.id)
                      labels:
                        app.kubernetes.io/managed-by: waiver
                        cleanup.kyverno.io/ttl: \(ttl)
                      annotations:
                        waiver.dev/exception: \(e.displayId)
                        waiver.dev/expires-at: \(Self.quoted(e.expiresAt.map(iso) ?? ""))
                        waiver.dev/statement: \(Self.quoted(Self.statement(e)))
                    spec:
                      background: true
                      exceptions:
                        - policyName: \(Self.quoted(policyName))
                          ruleNames: [\(rules.map(Self.quoted).joined(separator: ", "))]
                      match:
                        any:

                    """ + filters.joined())
            }
            return "# \(header)\n# Kyverno's cleanup controller deletes each one at its cleanup.kyverno.io/ttl instant, Waiver's expiry.\n"
                + (docs.isEmpty ? "" : "---\n" + docs.joined(separator: "---\n"))
        case .sarifSuppressions:
            var results: [Value] = []
            for e in list {
                for r in e.resources {
                    results.append(.object(Value.Object([
                        ("ruleId", .string(e.policy)),
                        ("level", .string("none")),
                        ("message", .object(Value.Object([("text", .string("\(e.policy) on \(r) is excepted by \(e.displayId) until \(e.expiresAt.map(iso) ?? "?")"))]))),
                        ("locations", .array([.object(Value.Object([("logicalLocations", .array([.object(Value.Object([("fullyQualifiedName", .string(r))]))]))]))])),
                        ("suppressions", .array([.object(Value.Object([
                            ("kind", .string("external")), ("status", .string("accepted")), ("justification", .string(Self.statement(e))),
                            ("properties", .object(Value.Object([("exception", .string(e.displayId)), ("expires", .string(e.expiresAt.map(iso) ?? ""))]))),
                        ]))])),
                    ])))
                }
            }
            let driver = Value.Object([("name", .string("Waiver")), ("version", .string(waiverVersion)), ("informationUri", .string("https://github.com/waiver-dev/waiver")),
                                       ("rules", .array(Array(Set(list.map(\.policy))).sorted().map { .object(Value.Object([("id", .string($0))])) }))])
            return JSONWriter.write(.object(Value.Object([
                ("$schema", .string("https://json.schemastore.org/sarif-2.1.0.json")), ("version", .string("2.1.0")),
                ("runs", .array([.object(Value.Object([("tool", .object(Value.Object([("driver", .object(driver))]))), ("results", .array(results))]))])),
            ])))
        }
    }
}
