import Foundation
import WaiverCore
import Yams

/// Loads policy files (`*.yaml`, `*.yml`) from a directory, validating everything and reporting
/// every error at once with `file:line: POLICY-ID: what is wrong`.
public enum PolicyLoader {
    static let policyKeys = [
        "id", "title", "category", "severity", "description", "remediation", "resource_types",
        "forbid", "require", "exceptions", "source", "controls", "enforcement",
    ]
    static let combinators = ["all", "any", "not", "some", "every", "where", "path"]
    static let maxConditionDepth = 64
    /// Operator names from other tools that people type by habit.
    static let operatorSynonyms = [
        "greater_than": "gt", "greater_than_or_equal": "gte", "greater_or_equal": "gte", "less_than": "lt",
        "less_than_or_equal": "lte", "less_or_equal": "lte", "eq": "equals", "equal": "equals", "ne": "not_equals",
        "neq": "not_equals", "not_equal": "not_equals", "regex": "matches", "match": "matches", "pattern": "matches",
        "includes": "contains", "has": "contains", "one_of": "in", "not_one_of": "not_in", "is_set": "exists",
        "present": "exists", "is_empty": "empty", "ge": "gte", "le": "lte",
    ]

    static func operatorHint(_ key: String, known: [String]) -> String {
        let guess = operatorSynonyms[key.lowercased()] ?? closestMatch(to: key, in: known)
        return guess.map { " (did you mean '\($0)'?)" } ?? ""
    }
    /// Policy files larger than this are refused (a policy pack is kilobytes).
    static let maxFileBytes = 8 << 20

    /// The policy files below a directory, sorted, hidden files and folders skipped.
    /// The policy files of a directory (`tests: true`: its `*_test.yaml` test files instead).
    public static func files(in directory: String, tests: Bool = false) throws(InputError) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) else {
            throw InputError(file: directory, message: "policy directory not found (set --policies or `policies:` in waiver.yaml)")
        }
        guard isDir.boolValue else { throw InputError(file: directory, message: "policies must name a directory") }
        // A directory named through a symbolic link is walked as the directory it points to.
        let url = URL(fileURLWithPath: directory).resolvingSymlinksInPath()
        guard let walker = FileManager.default.enumerator(
            at: url, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles])
        else { throw InputError(file: directory, message: "cannot list the policy directory") }
        var out: [String] = []
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        for case let file as URL in walker where ["yaml", "yml"].contains(file.pathExtension) && PolicyTestLoader.isTestFile(file.path) == tests {
            let rel = file.path.hasPrefix(url.path) ? String(file.path.dropFirst(url.path.count)) : "/" + file.lastPathComponent
            out.append(base + rel)
        }
        return out.sorted()
    }

    /// Loads every policy in a directory. Throws `InputErrors` listing every problem found.
    public static func load(directory: String) throws(InputErrors) -> [Policy] {
        let paths: [String]
        do throws(InputError) { paths = try files(in: directory) } catch { throw InputErrors([error]) }
        if paths.isEmpty {
            throw InputErrors([InputError(file: directory, message: "no policy files (*.yaml, *.yml) in the directory")])
        }
        var sources: [(String, Data)] = []
        var errors: [InputError] = []
        for p in paths {
            do throws(InputError) {
                sources.append((p, try InputFile.read(p, maxBytes: maxFileBytes)))
            } catch { errors.append(error) }
        }
        // Each problem once: unreadable files first, then what the readable ones say.
        let policies: [Policy]
        do throws(InputErrors) {
            policies = try load(files: sources)
        } catch {
            throw InputErrors(errors + error.errors)
        }
        if !errors.isEmpty { throw InputErrors(errors) }
        return policies
    }

    /// Loads policies from in-memory files (path, contents); ids must be unique across all of them.
    public static func load(files: [(String, Data)]) throws(InputErrors) -> [Policy] {
        var errors: [InputError] = []
        var policies: [Policy] = []
        var seen: [String: SourceLocation] = [:]
        for (path, data) in files {
            var yaml = YAMLFile(file: path)
            let parsed = parse(&yaml, data)
            errors += yaml.errors
            for p in parsed {
                if let first = seen[p.id] {
                    errors.append(InputError(
                        file: path, line: p.location?.line, subject: p.id,
                        message: "duplicate policy id (also defined at \(first))"))
                } else {
                    seen[p.id] = p.location
                    policies.append(p)
                }
            }
        }
        if !errors.isEmpty { throw InputErrors(errors) }
        return policies
    }

    static func parse(_ yaml: inout YAMLFile, _ data: Data) -> [Policy] {
        guard let root = yaml.compose(data) else {
            if yaml.errors.isEmpty { yaml.error(nil, nil, "the file is empty (expected a `policies:` list)") }
            return []
        }
        guard let top = yaml.mapping(root, nil, what: "a policy file", known: ["policies"]) else { return [] }
        guard let (_, _, listNode) = top.first(where: { $0.0 == "policies" }) else {
            yaml.error(root, nil, "missing the `policies:` list")
            return []
        }
        guard case .sequence(let list) = listNode else {
            yaml.error(listNode, nil, "`policies` must be a list, found \(YAMLFile.kind(listNode))")
            return []
        }
        var out: [Policy] = []
        for node in list {
            if let p = parsePolicy(&yaml, node) { out.append(p) }
        }
        return out
    }

    static func parsePolicy(_ yaml: inout YAMLFile, _ node: Node) -> Policy? {
        let idNode = node.mapping.flatMap { m in m.first { $0.key.scalar?.string == "id" }?.value }
        let id = idNode?.scalar?.string
        let subject = id ?? "policy at line \(node.mark?.line ?? 0)"
        let errorsBefore = yaml.errors.count
        guard let pairs = yaml.mapping(node, id, what: "a policy", known: policyKeys) else { return nil }
        var title: String?, category = "security", severity = Severity.medium
        var description = "", remediation = ""
        var types: [Glob]?
        var forbid: Condition?, require: Condition?
        var exceptions: ExceptionRule?
        var source = "plan"
        var controls: [String] = []
        var enforcement = Enforcement.mandatory
        if id == nil { yaml.error(node, nil, "policy has no `id`") }
        if let id, !isValidId(id) {
            yaml.error(idNode, id, "invalid id (use letters, digits, '-', '_' and '.')")
        }
        for (key, _, value) in pairs {
            switch key {
            case "id": break
            case "title": title = yaml.string(value, subject, key)
            case "category":
                if let c = yaml.string(value, subject, key) { category = c }
            case "severity":
                if let s = yaml.string(value, subject, key) {
                    if let sev = Severity(rawValue: s) { severity = sev } else {
                        let hint = closestMatch(to: s, in: Severity.allCases.map(\.rawValue)).map { " (did you mean '\($0)'?)" } ?? ""
                        yaml.error(value, subject, "unknown severity '\(s)'\(hint); use low, medium, high or critical")
                    }
                }
            case "description": description = yaml.string(value, subject, key) ?? ""
            case "remediation": remediation = yaml.string(value, subject, key) ?? ""
            case "resource_types":
                if let list = yaml.strings(value, subject, key) {
                    if list.isEmpty { yaml.error(value, subject, "resource_types is empty (omit it to match every type)") }
                    types = list.map(Glob.init)
                }
            case "forbid": forbid = parseCondition(&yaml, value, subject, depth: 0)
            case "require": require = parseCondition(&yaml, value, subject, depth: 0)
            case "exceptions": exceptions = parseExceptionRule(&yaml, value, subject)
            case "enforcement":
                if let s = yaml.string(value, subject, key) {
                    if let e = Enforcement(rawValue: s) { enforcement = e } else {
                        yaml.error(value, subject, "unknown enforcement '\(s.clipped(40))' (use advisory or mandatory)")
                    }
                }
            case "controls":
                // FRAMEWORK:CONTROL, e.g. SOC2:CC6.1 or ISO27001:A.5.15.
                for c in yaml.strings(value, subject, key) ?? [] {
                    let parts = c.split(separator: ":", maxSplits: 1)
                    if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, c.count <= 100, !c.contains(" ") { controls.append(c) } else {
                        yaml.error(value, subject, "'\(c.clipped(60))' is not a framework control (write FRAMEWORK:CONTROL, e.g. SOC2:CC6.1 or ISO27001:A.5.15)")
                    }
                }
            case "source":
                if let s = yaml.string(value, subject, key) {
                    if ["plan", "sarif", "control"].contains(s) { source = s } else {
                        yaml.error(value, subject, "unknown source '\(s)' (use plan, sarif or control)")
                    }
                }
            default: break
            }
        }
        if title == nil, pairs.first(where: { $0.0 == "title" }) == nil { yaml.error(node, subject, "policy has no `title`") }
        let hasForbid = pairs.contains { $0.0 == "forbid" }, hasRequire = pairs.contains { $0.0 == "require" }
        if source != "plan" {
            if hasForbid || hasRequire {
                yaml.error(node, subject, source == "sarif"
                    ? "a policy with `source: sarif` takes its findings from scanner reports and has no forbid/require"
                    : "a `source: control` policy is a program control that is not machine-checked: it has no forbid/require")
            }
        } else if hasForbid && hasRequire {
            yaml.error(node, subject, "a policy has exactly one of `forbid` or `require`, not both")
        } else if !hasForbid && !hasRequire {
            yaml.error(node, subject, "a policy needs one of `forbid` or `require` (or `source: sarif` for a scanner's rule, `source: control` for a program control)")
        }
        // Past 90 days and review cycles are for program controls: infrastructure keeps the short cap.
        if let e = exceptions {
            if e.reviewEvery != nil, source != "control" {
                yaml.error(node, subject, "exceptions.review_every is for program controls (source: control); infrastructure exceptions expire instead")
            }
            if let m = e.maxDays, m > Configuration.absoluteMaxDays, source != "control" || e.reviewEvery == nil {
                yaml.error(node, subject, "exceptions.max_days \(m) is past 90 days: only a program control (source: control) with exceptions.review_every may go past 90")
            }
            if let m = e.maxDays, let r = e.reviewEvery, r >= m * 86_400 {
                yaml.error(node, subject, "exceptions.review_every is not shorter than exceptions.max_days: no review would ever fall due")
            }
        }
        guard yaml.errors.count == errorsBefore, let id, let title else { return nil }
        let rule: Policy.Rule
        if source == "sarif" { rule = .external } else if source == "control" { rule = .control } else if let forbid { rule = .forbid(forbid) } else if let require { rule = .require(require) } else { return nil }
        var policy = Policy(
            id: id, title: title, category: category, severity: severity, description: description,
            remediation: remediation, resourceTypes: types, rule: rule, exceptions: exceptions,
            location: SourceLocation(file: yaml.file, line: node.mark?.line ?? 0))
        policy.controls = controls
        policy.enforcement = enforcement
        return policy
    }

    static func isValidId(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 128 && id.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" || $0 == "_" || $0 == "."
        }
    }

    static func parseExceptionRule(_ yaml: inout YAMLFile, _ node: Node, _ subject: String) -> ExceptionRule? {
        guard let pairs = yaml.mapping(node, subject, what: "exceptions", known: ["max_days", "approvers", "min_approvals", "min_risk", "review_every", "bind"]) else { return nil }
        var rule = ExceptionRule()
        for (key, _, value) in pairs {
            switch key {
            case "max_days": rule.maxDays = yaml.int(value, subject, "exceptions.max_days", range: 1...Configuration.programMaxDays)
            case "review_every":
                if let text = yaml.string(value, subject, "exceptions.review_every") {
                    if let d = parseDuration(text), d >= 86_400 { rule.reviewEvery = d } else {
                        yaml.error(value, subject, "exceptions.review_every: '\(text.clipped(30))' is not a duration of a day or more (use 30d, 90d or 13w)")
                    }
                }
            case "approvers":
                rule.approvers = yaml.strings(value, subject, "exceptions.approvers")
                if rule.approvers?.isEmpty == true { yaml.error(value, subject, "exceptions.approvers is empty: name at least one group") }
            case "min_approvals": rule.minApprovals = yaml.int(value, subject, "exceptions.min_approvals", range: 1...10)
            case "min_risk": rule.minRisk = yaml.string(value, subject, "exceptions.min_risk")
            case "bind":
                if let text = yaml.string(value, subject, "exceptions.bind") {
                    if let b = ExceptionBinding(rawValue: text) { rule.bind = b } else {
                        yaml.error(value, subject, "exceptions.bind: '\(text.clipped(30))' is not values or resource")
                    }
                }
            default: break
            }
        }
        return rule
    }

    // MARK: - Conditions

    static func parseCondition(_ yaml: inout YAMLFile, _ node: Node, _ subject: String, depth: Int) -> Condition? {
        if depth > maxConditionDepth {
            yaml.error(node, subject, "conditions nested deeper than \(maxConditionDepth) levels")
            return nil
        }
        guard case .mapping(let m) = node else {
            yaml.error(node, subject, "a condition must be a mapping such as { path: P, equals: V } or all: [...], found \(YAMLFile.kind(node))")
            return nil
        }
        var keys: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let key = k.scalar?.string else { yaml.error(k, subject, "condition keys must be plain strings"); continue }
            keys.append((key, k, v))
        }
        let names = Set(keys.map(\.0))
        func only(_ allowed: Set<String>, _ form: String) -> Bool {
            let extra = names.subtracting(allowed)
            for (key, kn, _) in keys where extra.contains(key) {
                yaml.error(kn, subject, "unexpected key '\(key)' in \(form)")
            }
            return extra.isEmpty
        }
        func member(_ name: String) -> Node? { keys.first { $0.0 == name }?.2 }

        if names.contains("all") || names.contains("any") {
            let name = names.contains("all") ? "all" : "any"
            guard only([name], "an `\(name)` condition"), let listNode = member(name) else { return nil }
            guard case .sequence(let seq) = listNode, seq.count > 0 else {
                yaml.error(listNode, subject, "`\(name)` takes a non-empty list of conditions")
                return nil
            }
            var subs: [Condition] = []
            var ok = true
            for item in seq {
                if let c = parseCondition(&yaml, item, subject, depth: depth + 1) { subs.append(c) } else { ok = false }
            }
            guard ok else { return nil }
            return name == "all" ? .all(subs) : .any(subs)
        }
        if names.contains("not") {
            guard only(["not"], "a `not` condition"), let sub = member("not") else { return nil }
            return parseCondition(&yaml, sub, subject, depth: depth + 1).map { .not($0) }
        }
        if names.contains("some") || names.contains("every") {
            let name = names.contains("some") ? "some" : "every"
            guard only([name, "where"], "a `\(name)` condition"), let pathNode = member(name) else { return nil }
            guard let whereNode = member("where") else {
                yaml.error(pathNode, subject, "`\(name)` needs a `where:` condition")
                return nil
            }
            guard let path = parsePath(&yaml, pathNode, subject) else { return nil }
            guard let sub = parseCondition(&yaml, whereNode, subject, depth: depth + 1) else { return nil }
            return name == "some" ? .some(path, sub) : .every(path, sub)
        }
        guard let pathNode = member("path") else {
            let known = combinators + Operator.names
            var reported = false
            for (key, kn, _) in keys where !known.contains(key) {
                let hint = operatorHint(key, known: known)
                yaml.error(kn, subject, "unknown operator '\(key)'\(hint)")
                reported = true
            }
            if !reported {
                yaml.error(keys.first?.1 ?? node, subject, "a condition needs `path:` and one operator, or all/any/not/some/every")
            }
            return nil
        }
        let ops = keys.filter { $0.0 != "path" }
        if ops.isEmpty {
            yaml.error(pathNode, subject, "condition on '\(pathNode.scalar?.string ?? "?")' has no operator (one of \(Operator.names.joined(separator: ", ")))")
            return nil
        }
        var failed = false
        for (key, kn, _) in ops where !Operator.names.contains(key) {
            let hint = operatorHint(key, known: Operator.names)
            yaml.error(kn, subject, "unknown operator '\(key)'\(hint)")
            failed = true
        }
        if failed { return nil }
        if ops.count > 1 {
            yaml.error(ops[1].1, subject, "a condition has one operator; found \(ops.map(\.0).joined(separator: ", ")) (combine them with all:)")
            return nil
        }
        guard let path = parsePath(&yaml, pathNode, subject) else { return nil }
        let (op, _, valueNode) = ops[0]
        guard let parsed = parseOperator(&yaml, op, valueNode, subject) else { return nil }
        return .leaf(path, parsed)
    }

    static func parsePath(_ yaml: inout YAMLFile, _ node: Node, _ subject: String) -> Path? {
        guard case .scalar(let s) = node, !s.string.isEmpty else {
            yaml.error(node, subject, "a path must be text such as tags.Name or ingress[0].from_port")
            return nil
        }
        switch Path.parse(s.string) {
        case .success(let p): return p
        case .failure(.empty): yaml.error(node, subject, "empty path")
        case .failure(.badSyntax(let why)): yaml.error(node, subject, "invalid path '\(s.string)': \(why)")
        case .failure(.unknownField(let f, let suggestion)):
            let hint = suggestion.map { " (did you mean '\($0)'?)" } ?? ""
            yaml.error(node, subject, "unknown resource field '\(f)'\(hint)")
        }
        return nil
    }

    static func parseOperator(_ yaml: inout YAMLFile, _ op: String, _ node: Node, _ subject: String) -> Operator? {
        func scalarValue() -> Value? {
            let v = YAMLFile.value(node)
            if case .null = v {
                yaml.error(node, subject, "'\(op)' needs a value (to test for a missing value use exists: false)")
                return nil
            }
            return v
        }
        func list() -> [Value]? {
            guard case .sequence = node, case .array(let items) = YAMLFile.value(node) else {
                yaml.error(node, subject, "'\(op)' takes a list, found \(YAMLFile.kind(node))")
                return nil
            }
            return items
        }
        func number() -> Double? {
            if case .number(let n) = YAMLFile.value(node) { return n }
            yaml.error(node, subject, "'\(op)' takes a number, found \(YAMLFile.kind(node))")
            return nil
        }
        switch op {
        case "equals": return scalarValue().map { .equals($0) }
        case "not_equals": return scalarValue().map { .notEquals($0) }
        case "in": return list().map { .in($0) }
        case "not_in": return list().map { .notIn($0) }
        case "contains": return scalarValue().map { .contains($0) }
        case "not_contains": return scalarValue().map { .notContains($0) }
        case "gt": return number().map { .gt($0) }
        case "gte": return number().map { .gte($0) }
        case "lt": return number().map { .lt($0) }
        case "lte": return number().map { .lte($0) }
        case "ports_outside":
            // Allowed ports: numbers or "N-M" ranges, e.g. [80, 443, "8000-8080"].
            guard let items = list() else { return nil }
            var ranges: [ClosedRange<Int>] = []
            for item in items {
                let r: ClosedRange<Int>?
                switch item {
                case .number(let n) where n == n.rounded() && n >= 0 && n <= 65_535: r = Int(n)...Int(n)
                case .string(let s) where s != "*": r = PortSpec.parse(s)
                default: r = nil
                }
                guard let r else {
                    yaml.error(node, subject, "'ports_outside' takes ports (0-65535) and ranges like \"8000-8080\", found \(item.rendered(limit: 40))")
                    return nil
                }
                ranges.append(r)
            }
            return .portsOutside(ranges)
        case "exists": return yaml.bool(node, subject, op).map { .exists($0) }
        case "empty": return yaml.bool(node, subject, op).map { .empty($0) }
        case "matches":
            guard case .scalar(let s) = node else {
                yaml.error(node, subject, "'matches' takes a regular expression as text")
                return nil
            }
            do {
                return .matches(try Pattern(s.string))
            } catch {
                yaml.error(node, subject, "invalid regular expression '\(s.string)'")
                return nil
            }
        default:
            return nil
        }
    }
}
