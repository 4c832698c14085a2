import Foundation

/// A result's status in a check (cli.md): only violations are listed, compliant pairs are counted.
public enum ResultStatus: String, Sendable, CaseIterable {
    /// Violates the policy, with no approved exception: the pipeline blocks.
    case blocking
    /// Violates the policy, covered by an approved, unexpired exception: reported, not blocking.
    case excepted
    /// Violates the policy; an exception request is waiting for approval: blocks until decided.
    case pending
    /// The outcome depends on values known only after apply.
    case unknown
    /// Violates an advisory policy (or one below `--fail-on`): reported, never blocks, needs no exception.
    case advisory
    /// Violates the policy; an approved exception covers the pair, but for other violating values
    /// than the ones it was approved for: blocks until an amended exception is approved.
    case changed
}

/// How `unknown` outcomes count toward the verdict (`--unknown=warn|block`).
public enum UnknownMode: String, Sendable, CaseIterable {
    case warn, block
}

/// Where a finding came from: a plan evaluated by a policy, or a scanner's SARIF result.
public enum FindingOrigin: Sendable, Equatable {
    case plan(file: String)
    case sarif(file: String, tool: String, uri: String?, line: Int?)
}

/// A (policy, resource) pair that is not compliant, as reported by `check`.
public struct Finding: Sendable, Equatable {
    public var policy: String
    public var title: String
    public var severity: Severity
    public var category: String
    public var resource: String
    public var status: ResultStatus
    /// The exception that covers it (excepted or pending), and when that exception expires.
    public var exception: String?
    public var expires: Date?
    /// Why it violates: the values that broke the policy, sensitive ones masked.
    public var message: String
    public var remediation: String
    public var origin: FindingOrigin
    /// The page of its exception (`serve --public-url` + `/exceptions/EX-N`), when the check ran on a server.
    public var link: String?
    /// A scanner finding's code snippet (part of what an exception to it is bound to).
    public var snippet: String?
    /// `changed` findings: the violating values the exception was approved for.
    public var approved: String?

    /// What an exception to this finding is bound to: the violating values as reported (sensitive
    /// ones masked), and a scanner finding's snippet, at most 2,000 characters. The register records
    /// it with every check, and an approval covers a later check only while it is the same.
    public var boundValues: String {
        let text = snippet.map { message + "\nsnippet: " + $0 } ?? message
        // Counting characters walks the text; its UTF-8 length bounds their number from above.
        return text.utf8.count > Finding.boundLimit && text.count > Finding.boundLimit ? String(text.prefix(Finding.boundLimit)) : text
    }
    public static let boundLimit = 2_000

    public init(
        policy: String, title: String, severity: Severity, category: String, resource: String,
        status: ResultStatus, exception: String? = nil, expires: Date? = nil, message: String,
        remediation: String, origin: FindingOrigin
    ) {
        self.policy = policy
        self.title = title
        self.severity = severity
        self.category = category
        self.resource = resource
        self.status = status
        self.exception = exception
        self.expires = expires
        self.message = message
        self.remediation = remediation
        self.origin = origin
    }
}

/// A finding reported by another scanner (one SARIF result), before it is matched to a policy.
public struct ExternalFinding: Sendable, Equatable {
    public var ruleId: String
    public var resource: String
    /// SARIF `level`: error, warning, note or none.
    public var level: String
    public var message: String
    public var file: String
    public var tool: String
    public var uri: String?
    public var line: Int?
    /// The rule's description from the report, used when no policy file defines the rule.
    public var ruleTitle: String?
    public var ruleHelp: String?
    /// The scanner's own suppression of the result (e.g. an inline skip comment), if any.
    public var suppression: String?
    /// The region's snippet, as the scanner reported it.
    public var snippet: String?

    public init(
        ruleId: String, resource: String, level: String, message: String, file: String, tool: String,
        uri: String? = nil, line: Int? = nil, ruleTitle: String? = nil, ruleHelp: String? = nil,
        suppression: String? = nil, snippet: String? = nil
    ) {
        self.snippet = snippet
        self.ruleId = ruleId
        self.resource = resource
        self.level = level
        self.message = message
        self.file = file
        self.tool = tool
        self.uri = uri
        self.line = line
        self.ruleTitle = ruleTitle
        self.ruleHelp = ruleHelp
        self.suppression = suppression
    }

    /// Severity from the SARIF level: error high, warning medium, note and none low.
    public var severity: Severity {
        switch level {
        case "error": return .high
        case "warning": return .medium
        default: return .low
        }
    }
}

/// A policy and resource evaluated with a compliant outcome (listed only when asked, e.g. for JUnit).
public struct EvaluatedPair: Sendable, Equatable {
    public var policy: String
    public var resource: String
}

/// Counts of a check, as in `check --format json`.
public struct Summary: Sendable, Equatable {
    public var resources: Int
    public var violations: Int
    public var blocking: Int
    public var excepted: Int
    public var pending: Int
    public var unknown: Int
    /// Violations of advisory policies (or below `--fail-on`): counted, never blocking.
    public var advisory: Int = 0
    /// Violations under an exception approved for other values: blocking.
    public var changed: Int = 0

    public init(resources: Int, violations: Int, blocking: Int, excepted: Int, pending: Int, unknown: Int, advisory: Int = 0) {
        self.advisory = advisory
        self.resources = resources
        self.violations = violations
        self.blocking = blocking
        self.excepted = excepted
        self.pending = pending
        self.unknown = unknown
    }

    /// The one-line tally every format ends with: `13 resources, 5 violations (5 blocking, 0 excepted,
    /// 0 pending), 2 unknown`. Violations are what is known to break a policy; unknown outcomes (known
    /// only after apply) are counted apart, and block only with --unknown=block.
    public var line: String {
        "\(resources) resource\(resources == 1 ? "" : "s"), \(violations) violation\(violations == 1 ? "" : "s") "
            + "(\(blocking) blocking, \(changed > 0 ? "\(changed) changed, " : "")\(excepted) excepted, \(pending) pending\(advisory > 0 ? ", \(advisory) advisory" : "")), \(unknown) unknown"
    }
}

/// The outcome of `waiver check`: findings, counts and the verdict.
public struct CheckReport: Sendable {
    public var workspace: String
    public var unknownMode: UnknownMode
    /// Findings sorted by policy id, then resource address.
    public var findings: [Finding]
    /// Number of distinct resources evaluated (plan resources plus SARIF resources).
    public var resourceCount: Int
    /// Every policy that was evaluated or that a finding refers to, by id.
    public var policies: [Policy]
    /// Compliant pairs, when the check was asked to keep them.
    public var compliant: [EvaluatedPair]
    /// What the register could not vouch for (an exception whose stored state the audit log does not back).
    public var warnings: [String] = []

    public init(
        workspace: String, unknownMode: UnknownMode, findings: [Finding], resourceCount: Int,
        policies: [Policy], compliant: [EvaluatedPair]
    ) {
        self.workspace = workspace
        self.unknownMode = unknownMode
        // Sort positions, not the (large) findings themselves, then gather once.
        let order = findings.withUnsafeBufferPointer { f in
            f.indices.sorted { a, b in
                if f[a].policy != f[b].policy { return f[a].policy < f[b].policy }
                if f[a].resource != f[b].resource { return f[a].resource < f[b].resource }
                if f[a].status != f[b].status { return f[a].status.rawValue < f[b].status.rawValue }
                return a < b
            }
        }
        self.findings = order.map { findings[$0] }
        self.resourceCount = resourceCount
        self.policies = policies
        self.compliant = compliant
    }

    public var summary: Summary {
        var s = Summary(resources: resourceCount, violations: findings.count, blocking: 0, excepted: 0, pending: 0, unknown: 0)
        for f in findings {
            switch f.status {
            case .blocking: s.blocking += 1
            case .excepted: s.excepted += 1
            case .pending: s.pending += 1
            case .unknown: s.unknown += 1
            case .advisory: s.advisory += 1
            case .changed: s.changed += 1
            }
        }
        // An outcome known only after apply is no violation (yet): it is counted on its own.
        s.violations = s.blocking + s.changed + s.excepted + s.pending + s.advisory
        return s
    }

    /// Whether a finding stops the pipeline under this check's options.
    public func blocks(_ f: Finding) -> Bool {
        switch f.status {
        case .blocking, .pending, .changed: return true
        case .unknown: return unknownMode == .block
        case .excepted, .advisory: return false
        }
    }

    /// `pass` or `blocked`.
    public var passed: Bool { !findings.contains(where: blocks) }
    public var verdict: String { passed ? "pass" : "blocked" }
}

/// Evaluates policies on resources and scanner findings: the engine behind `waiver check`.
public struct CheckEngine: Sendable {
    public var policies: [Policy]
    /// SARIF rule id globs mapped to categories, for rules no policy file defines (`sarif:` in waiver.yaml).
    public var sarifCategories: [(Glob, String)]
    public var unknownMode: UnknownMode
    public var keepCompliant: Bool
    /// `--fail-on SEVERITY`: violations below it are advisory for this check (nil: every violation blocks).
    public var failOn: Severity?

    public init(policies: [Policy], sarifCategories: [(Glob, String)] = [], unknownMode: UnknownMode = .warn, keepCompliant: Bool = false,
                failOn: Severity? = nil) {
        self.failOn = failOn
        self.policies = policies
        self.sarifCategories = sarifCategories
        self.unknownMode = unknownMode
        self.keepCompliant = keepCompliant
    }

    /// Runs every applicable policy on every resource, and turns scanner findings into findings of
    /// the policy with the same id (or an implicit policy made from the SARIF rule).
    public func check(
        resources: [(Resource, file: String)], external: [ExternalFinding], workspace: String
    ) -> CheckReport {
        // One check, one budget for pattern matches that run long (see `Pattern`).
        CheckEngine.withBudget { run(resources: resources, external: external, workspace: workspace) }
    }

    /// A violation blocks unless its policy is advisory or its severity is below `--fail-on`.
    func violationStatus(_ policy: Policy, _ severity: Severity) -> ResultStatus {
        if policy.enforcement == .advisory { return .advisory }
        if let failOn, severity < failOn { return .advisory }
        return .blocking
    }

    func run(resources: [(Resource, file: String)], external: [ExternalFinding], workspace: String) -> CheckReport {
        var run = CheckRun(self)
        for (resource, file) in resources { run.add(resource, file: file) }
        return run.finish(external: external, workspace: workspace)
    }

    /// Runs `body` under one check's budget for pattern matches (see `Pattern`): wrap a `CheckRun`
    /// fed while the plan is read.
    public static func withBudget<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let result: Result<T, E> = Pattern.$budget.withValue(MatchBudget()) {
            do throws(E) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// One check in progress: resources are evaluated one by one as they are read, and only what the
/// report needs is kept (the findings, the addresses counted, the policies used), never the
/// resources themselves. `CheckEngine.check` is a run fed from an array.
public struct CheckRun {
    let engine: CheckEngine
    let evaluator = Evaluator()
    var findings: [Finding] = []
    var compliant: [EvaluatedPair] = []
    var applicable: [String: [Int]] = [:]
    var used: [Bool]
    var addresses = Set<String>()

    public init(_ engine: CheckEngine) {
        self.engine = engine
        used = [Bool](repeating: false, count: engine.policies.count)
    }

    /// Evaluates every applicable policy on one resource.
    public mutating func add(_ resource: Resource, file: String) {
        let policies = engine.policies
        addresses.insert(resource.address)
        let indices: [Int]
        if let cached = applicable[resource.type] {
            indices = cached
        } else {
            indices = policies.indices.filter { policies[$0].applies(toType: resource.type) }
            applicable[resource.type] = indices
        }
        for i in indices {
            used[i] = true
            // Read the rule in place: copying a whole policy per resource costs more than evaluating it.
            let outcome = evaluator.outcome(of: policies[i].rule, on: resource)
            switch outcome {
            case .compliant:
                if engine.keepCompliant { compliant.append(EvaluatedPair(policy: policies[i].id, resource: resource.address)) }
            case .violation, .unknown:
                let policy = policies[i]
                let evidence = evaluator.explain(policy.rule, on: resource)
                let message = evidence.map(\.text).joined(separator: "; ")
                findings.append(Finding(
                    policy: policy.id, title: policy.title, severity: policy.severity, category: policy.category,
                    resource: resource.address, status: outcome == .unknown ? .unknown : engine.violationStatus(policy, policy.severity),
                    message: message, remediation: policy.remediation, origin: .plan(file: file)))
            }
        }
    }

    /// Adds the scanners' findings and makes the report.
    public mutating func finish(external: [ExternalFinding], workspace: String) -> CheckReport {
        let policies = engine.policies, sarifCategories = engine.sarifCategories
        var reportPolicies = policies.indices.filter { used[$0] }.map { policies[$0] }
        var byId: [String: Policy] = [:]
        for p in policies { byId[p.id] = p }
        var implicit: [String: Policy] = [:]
        for e in external {
            addresses.insert(e.resource)
            let policy: Policy
            if let p = byId[e.ruleId] {
                policy = p
                if !reportPolicies.contains(where: { $0.id == p.id }) { reportPolicies.append(p) }
            } else if let p = implicit[e.ruleId] {
                policy = p.severity >= e.severity ? p : { var q = p; q.severity = e.severity; return q }()
                implicit[e.ruleId] = policy
            } else {
                let category = sarifCategories.first { $0.0.matches(e.ruleId) }?.1 ?? "security"
                policy = Policy(
                    id: e.ruleId, title: e.ruleTitle ?? e.message, category: category, severity: e.severity,
                    remediation: e.ruleHelp ?? "", rule: .external, implicit: true)
                implicit[e.ruleId] = policy
            }
            var message = e.message
            if let s = e.suppression {
                message += " [suppressed in the \(e.tool) report\(s.isEmpty ? "" : ": \(s)"); a scanner suppression is not an approved exception]"
            }
            var finding = Finding(
                policy: e.ruleId, title: policy.title, severity: policy.implicit ? e.severity : policy.severity,
                category: policy.category, resource: e.resource, status: engine.violationStatus(policy, policy.implicit ? e.severity : policy.severity), message: message,
                remediation: policy.remediation.isEmpty ? (e.ruleHelp ?? "") : policy.remediation,
                origin: .sarif(file: e.file, tool: e.tool, uri: e.uri, line: e.line))
            finding.snippet = e.snippet
            findings.append(finding)
        }
        reportPolicies.append(contentsOf: implicit.values)
        reportPolicies.sort { $0.id < $1.id }
        return CheckReport(
            workspace: workspace, unknownMode: engine.unknownMode, findings: findings,
            resourceCount: addresses.count, policies: reportPolicies, compliant: compliant)
    }
}
