import Foundation

/// How sure a condition's outcome is: Terraform values known only after apply make it `unknown`.
public enum Tri: Sendable, Equatable {
    case yes, no, unknown

    public init(_ b: Bool) { self = b ? .yes : .no }

    public static prefix func ! (t: Tri) -> Tri {
        switch t {
        case .yes: return .no
        case .no: return .yes
        case .unknown: return .unknown
        }
    }
}

/// A compiled regular expression (NSRegularExpression, ICU syntax), shareable across threads.
///
/// Every match has a bounded cost, whatever the value: a subject longer than `maxSubject` UTF-16
/// units is not matched, and a match that runs past `budget` (measured on a monotonic clock, a
/// resource limit, not the domain's time) is stopped. Either way the outcome is `unknown`, and the
/// evidence says why. Once matches in one check ran past their budget `maxOverruns` times, the
/// check's further matches are unknown at once, so no plan stalls a check for long. The count is
/// per check (never shared), so nobody's values can weaken another check.
public final class Pattern: @unchecked Sendable, Equatable, CustomStringConvertible {
    public let source: String
    private let regex: NSRegularExpression

    /// The budget of the check running on this task (set by `CheckEngine.check`).
    @TaskLocal public static var budget: MatchBudget?

    public static let maxSubject = 16_384
    public static let timeLimit: Duration = .milliseconds(50)
    public static let maxOverruns = 3
    /// What an undecided match says, in evidence and the README.
    public static let limitNote = "not decided: a pattern match reads at most 16,384 characters and runs at most 50 ms"

    public init(_ source: String) throws {
        self.source = source
        self.regex = try NSRegularExpression(pattern: source)
    }

    /// Yes or no; unknown when the subject is too long or the match ran past its budget.
    public func match(_ s: String) -> Tri {
        let length = s.utf16.count
        guard length <= Pattern.maxSubject else { return .unknown }
        let budget = Pattern.budget
        if let budget {
            if budget.exhausted { return .unknown }
            // Within one check, a value met again (an instance type, a policy document) is not matched again.
            if let known = budget.known(self, s) { return known }
        }
        var result = Tri.no
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: Pattern.timeLimit)
        var calls = 0
        regex.enumerateMatches(in: s, options: [.reportProgress], range: NSRange(location: 0, length: length)) { m, _, stop in
            if m != nil {
                result = .yes
                stop.pointee = true
                return
            }
            // Progress is reported at every position the search starts from: the clock is read at every 16th.
            calls &+= 1
            if calls & 15 == 0, clock.now > deadline {
                result = .unknown
                stop.pointee = true
            }
        }
        if result == .unknown { budget?.overrun() } else { budget?.remember(self, s, result) }
        return result
    }

    /// Whether the pattern matches (false when undecided).
    public func matches(_ s: String) -> Bool { match(s) == .yes }

    public var description: String { source }
    public static func == (a: Pattern, b: Pattern) -> Bool { a.source == b.source }
}

/// How many pattern matches of one check ran past their time budget, and the outcomes of its
/// matches so far (decided ones only, of values up to 256 bytes, at most 65,536): a check meets the
/// same instance type or policy document many times. Never shared between checks.
public final class MatchBudget: @unchecked Sendable {
    private let lock = NSLock()
    private var overruns = 0
    private struct Key: Hashable {
        let pattern: ObjectIdentifier
        let subject: String
    }
    private var outcomes: [Key: Tri] = [:]
    static let maxRemembered = 65_536, maxRememberedBytes = 256
    public init() {}
    public var exhausted: Bool { lock.withLock { overruns >= Pattern.maxOverruns } }
    func overrun() { lock.withLock { overruns += 1 } }

    func known(_ pattern: Pattern, _ subject: String) -> Tri? {
        guard subject.utf8.count <= Self.maxRememberedBytes else { return nil }
        return lock.withLock { outcomes[Key(pattern: ObjectIdentifier(pattern), subject: subject)] }
    }

    func remember(_ pattern: Pattern, _ subject: String, _ outcome: Tri) {
        guard subject.utf8.count <= Self.maxRememberedBytes else { return }
        lock.withLock {
            if outcomes.count < Self.maxRemembered { outcomes[Key(pattern: ObjectIdentifier(pattern), subject: subject)] = outcome }
        }
    }

    /// How many outcomes are remembered (for tests).
    var remembered: Int { lock.withLock { outcomes.count } }
}

/// One comparison at a path: the leaves of the condition language.
public enum Operator: Sendable, Equatable {
    case equals(Value), notEquals(Value)
    case `in`([Value]), notIn([Value])
    case matches(Pattern)
    case contains(Value), notContains(Value)
    case gt(Double), gte(Double), lt(Double), lte(Double)
    case exists(Bool)
    case empty(Bool)
    /// The ports the value opens include one outside these ranges (see `PortSpec`).
    case portsOutside([ClosedRange<Int>])

    /// The operator names of the policy language, for parsing and suggestions.
    public static let names = [
        "equals", "not_equals", "in", "not_in", "matches", "contains", "not_contains",
        "gt", "gte", "lt", "lte", "exists", "empty", "ports_outside",
    ]

    /// The operator's name in the policy language.
    public var name: String {
        switch self {
        case .equals: return "equals"
        case .notEquals: return "not_equals"
        case .in: return "in"
        case .notIn: return "not_in"
        case .matches: return "matches"
        case .contains: return "contains"
        case .notContains: return "not_contains"
        case .gt: return "gt"
        case .gte: return "gte"
        case .lt: return "lt"
        case .lte: return "lte"
        case .exists: return "exists"
        case .empty: return "empty"
        case .portsOutside: return "ports_outside"
        }
    }

    /// How the operator reads in a message, e.g. `contains "0.0.0.0/0"` or `<= 22`.
    public var text: String {
        func list(_ vs: [Value]) -> String { "[" + vs.map { $0.rendered(limit: 40) }.joined(separator: ", ") + "]" }
        switch self {
        case .equals(let v): return "equals \(v.rendered(limit: 60))"
        case .notEquals(let v): return "not equal to \(v.rendered(limit: 60))"
        case .in(let vs): return "in \(list(vs))"
        case .notIn(let vs): return "not in \(list(vs))"
        case .matches(let p): return "matches '\(p.source)'"
        case .contains(let v): return "contains \(v.rendered(limit: 60))"
        case .notContains(let v): return "does not contain \(v.rendered(limit: 60))"
        case .gt(let n): return "> \(Value.formatNumber(n))"
        case .gte(let n): return ">= \(Value.formatNumber(n))"
        case .lt(let n): return "< \(Value.formatNumber(n))"
        case .lte(let n): return "<= \(Value.formatNumber(n))"
        case .exists(let b): return b ? "is set" : "is not set"
        case .empty(let b): return b ? "is empty" : "is not empty"
        case .portsOutside(let allowed): return "opens a port outside " + PortSpec.describe(allowed)
        }
    }
}

/// A condition of the policy language (see policy-language.md).
public indirect enum Condition: Sendable, Equatable {
    case leaf(Path, Operator)
    case all([Condition])
    case any([Condition])
    case not(Condition)
    case some(Path, Condition)
    case every(Path, Condition)
}

public enum Severity: String, Sendable, CaseIterable, Comparable {
    case low, medium, high, critical

    public var rank: Int {
        switch self {
        case .low: return 0
        case .medium: return 1
        case .high: return 2
        case .critical: return 3
        }
    }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// The `exceptions:` block of a policy: how exceptions to it are granted.
public struct ExceptionRule: Sendable, Equatable {
    public var maxDays: Int?
    public var approvers: [String]?
    public var minApprovals: Int?
    /// The lowest risk level an exception to the policy may carry (`exceptions.min_risk`), whatever
    /// likelihood and impact the requester proposes; nil: derived from the policy's severity.
    public var minRisk: String?
    /// Program controls only: an approved exception is re-attested this often (seconds), or it is
    /// expired; with it, `maxDays` may go past 90 (an annual exception reviewed quarterly).
    public var reviewEvery: Int?
    /// What an approved exception covers (`exceptions.bind`): the violating values it was approved
    /// for (the default), or the resource whatever its values become.
    public var bind: ExceptionBinding = .values

    public init(maxDays: Int? = nil, approvers: [String]? = nil, minApprovals: Int? = nil, minRisk: String? = nil, reviewEvery: Int? = nil,
                bind: ExceptionBinding = .values) {
        self.bind = bind
        self.reviewEvery = reviewEvery
        self.maxDays = maxDays
        self.approvers = approvers
        self.minApprovals = minApprovals
        self.minRisk = minRisk
    }
}

/// What an approval binds (`exceptions.bind`).
public enum ExceptionBinding: String, Sendable, CaseIterable {
    /// The violating values the approver saw: other values are `changed`, not excepted.
    case values
    /// The policy on the resource, whatever its values become (for values that churn).
    case resource
}

/// Where a policy (or any input item) was defined, for messages.
public struct SourceLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    public var description: String { "\(file):\(line)" }
}

/// How a policy's violations count (Sentinel's advisory / mandatory): an advisory violation is
/// reported and never blocks, so it needs no exception.
public enum Enforcement: String, Sendable, CaseIterable {
    case advisory, mandatory
}

/// A policy: metadata plus the rule that decides whether a resource violates it.
public struct Policy: Sendable, Equatable {
    public enum Rule: Sendable, Equatable {
        /// The resource violates the policy when the condition holds.
        case forbid(Condition)
        /// The resource violates the policy when the condition does not hold.
        case require(Condition)
        /// Findings come from scanners' SARIF reports under this rule id; the policy supplies metadata.
        case external
        /// A program (GRC) control that is not machine-checked: it exists for exceptions to it
        /// (a person, a device, an account) and is never evaluated on a plan.
        case control
    }

    public var id: String
    public var title: String
    public var category: String
    public var severity: Severity
    public var description: String
    public var remediation: String
    public var resourceTypes: [Glob]?
    public var rule: Rule
    public var exceptions: ExceptionRule?
    public var location: SourceLocation?
    /// True for a policy made up from a SARIF rule that no policy file defines.
    public var implicit: Bool
    /// Whether a violation blocks (`mandatory`, the default) or is only reported (`advisory`).
    public var enforcement: Enforcement = .mandatory
    /// The framework controls the policy implements (`SOC2:CC6.1`, `ISO27001:A.5.15`): the register,
    /// the audit package and `/controls` group exceptions by them.
    public var controls: [String] = []

    public init(
        id: String, title: String, category: String = "security", severity: Severity = .medium,
        description: String = "", remediation: String = "", resourceTypes: [Glob]? = nil,
        rule: Rule, exceptions: ExceptionRule? = nil, location: SourceLocation? = nil, implicit: Bool = false
    ) {
        self.id = id
        self.title = title
        self.category = category
        self.severity = severity
        self.description = description
        self.remediation = remediation
        self.resourceTypes = resourceTypes
        self.rule = rule
        self.exceptions = exceptions
        self.location = location
        self.implicit = implicit
    }

    /// Whether the policy is evaluated on resources of this type.
    public func applies(toType type: String) -> Bool {
        switch rule {
        case .external, .control: return false
        default: break
        }
        guard let globs = resourceTypes else { return true }
        return globs.contains { $0.matches(type) }
    }
}

extension Array where Element == Policy {
    /// What a set of policies holds, said the same way everywhere (init, serve, the README):
    /// "31 policies: 28 checked on plans, 3 program controls" (and scanner rules when there are any).
    public var described: String {
        let plan = filter { if case .forbid = $0.rule { return true }; if case .require = $0.rule { return true }; return false }.count
        let controls = filter { $0.rule == .control }.count
        let scanner = count - plan - controls
        var parts = ["\(plan) checked on plans"]
        if scanner > 0 { parts.append("\(scanner) for scanners' rules") }
        if controls > 0 { parts.append("\(controls) program control\(controls == 1 ? "" : "s")") }
        return "\(count) polic\(count == 1 ? "y" : "ies"): " + parts.joined(separator: ", ")
    }
}

/// Ports as infrastructure code writes them, for the `ports_outside` operator: a number (`22`), a
/// string (`"22"`, `"8000-8080"`, `"*"` for all), a list of those (Azure's
/// `destination_port_ranges`, GCP's `ports`), or a rule object — AWS's `from_port`/`to_port` (with
/// `protocol` or `ip_protocol` `"-1"`/`"all"` meaning every port), or GCP's `allow` block (`ports`,
/// where none means every port).
public enum PortSpec {
    public static let all: ClosedRange<Int> = 0...65_535

    /// The port ranges a value opens; nil when it is not a port spec (the test is then unknown).
    public static func ranges(_ v: Value) -> [ClosedRange<Int>]? {
        switch v {
        case .number(let n):
            guard n == n.rounded(), n >= 0, n <= 65_535 else { return nil }
            return [Int(n)...Int(n)]
        case .string(let s): return parse(s).map { [$0] }
        case .array(let items):
            var out: [ClosedRange<Int>] = []
            for item in items {
                guard let r = ranges(item) else { return nil }
                out += r
            }
            return out
        case .object(let o):
            for key in ["protocol", "ip_protocol"] {
                if let p = o[key]?.stringValue, ["-1", "all"].contains(p.lowercased()) { return [all] }
            }
            if let from = o["from_port"], let to = o["to_port"] {
                guard case .number(let a) = from, case .number(let b) = to, a == a.rounded(), b == b.rounded(), a >= 0, b <= 65_535, a <= b else {
                    // icmp's -1 (or a range that is not one) opens no TCP or UDP port.
                    return []
                }
                return [Int(a)...Int(b)]
            }
            if o["protocol"] != nil {
                // GCP's allow block: no ports means every port of the protocol.
                guard let ports = o["ports"], case .array(let list) = ports, !list.isEmpty else { return [all] }
                return ranges(ports)
            }
            return nil
        default: return nil
        }
    }

    /// The part of a value that says which ports it opens: of a rule object, only its protocol and
    /// ports (so an attribute known only after apply, such as its id, does not make the test unknown).
    public static func relevant(_ v: Value) -> Value {
        guard case .object(let o) = v else { return v }
        return .object(Value.Object(["protocol", "ip_protocol", "from_port", "to_port", "ports"].compactMap { k in o[k].map { (k, $0) } }))
    }

    /// `22`, `8000-8080` or `*`; nil for anything else.
    public static func parse(_ text: String) -> ClosedRange<Int>? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "*" { return all }
        let parts = t.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let a = Int(parts[0]), let b = Int(parts.last ?? ""), a >= 0, b <= 65_535, a <= b else { return nil }
        return a...b
    }

    /// Whether some port of `opened` is outside every allowed range.
    public static func outside(_ opened: [ClosedRange<Int>], allowed: [ClosedRange<Int>]) -> Bool {
        let sorted = allowed.sorted { $0.lowerBound < $1.lowerBound }
        for r in opened {
            var next = r.lowerBound  // the lowest port of r not yet shown to be allowed
            for a in sorted where a.upperBound >= next {
                if a.lowerBound > next { break }
                next = a.upperBound + 1
                if next > r.upperBound { break }
            }
            if next <= r.upperBound { return true }
        }
        return false
    }

    public static func describe(_ ranges: [ClosedRange<Int>]) -> String {
        "[" + ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ") + "]"
    }
}
