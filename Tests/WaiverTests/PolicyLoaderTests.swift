import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

@Suite("Policy files")
struct PolicyLoaderTests {
    @Test func loadsEveryConditionForm() async throws {
        let loaded = try policies([("p.yaml", """
            policies:
              - id: ALL-1
                title: Every form
                category: security
                severity: critical
                description: d
                remediation: r
                resource_types: ["aws_*", aws_instance]
                forbid:
                  all:
                    - { path: a, equals: 1 }
                    - { path: b, not_equals: "x" }
                    - { path: c, in: [1, two] }
                    - { path: d, not_in: [x] }
                    - { path: e, matches: '^a+$' }
                    - { path: f, contains: "0.0.0.0/0" }
                    - { path: g, not_contains: y }
                    - { path: h, gt: 1 }
                    - { path: h, gte: 1.5 }
                    - { path: h, lt: 2 }
                    - { path: h, lte: 2 }
                    - { path: i, exists: true }
                    - { path: j, empty: false }
                    - any: [{ path: k, equals: true }, { not: { path: l, equals: no } }]
                    - { some: ingress, where: { path: from_port, lte: 22 } }
                    - { every: "tags", where: { path: "@", matches: '^[a-z]+$' } }
                    - { path: $type, equals: aws_instance }
                exceptions: { max_days: 14, approvers: [security, ciso], min_approvals: 2 }
            """)])
        let p = try #require(loaded.first)
        #expect(p.id == "ALL-1")
        #expect(p.severity == .critical)
        #expect(p.resourceTypes?.map(\.pattern) == ["aws_*", "aws_instance"])
        #expect(p.exceptions == ExceptionRule(maxDays: 14, approvers: ["security", "ciso"], minApprovals: 2))
        #expect(p.location == SourceLocation(file: "p.yaml", line: 2))
        guard case .forbid(.all(let parts)) = p.rule else { Issue.record("not a forbid/all"); return }
        #expect(parts.count == 17)
        // `no` stays a string (YAML 1.2), numbers are numbers.
        #expect(parts[13] == .any([.leaf(path("k"), .equals(true)), .not(.leaf(path("l"), .equals("no")))]))
        #expect(parts[2] == .leaf(path("c"), .in([1, "two"])))
    }

    @Test func defaultsCategoryAndSeverity() async throws {
        let p = try #require(try policies([("p.yaml", "policies:\n  - id: A\n    title: t\n    require: { path: x, exists: true }\n")]).first)
        #expect(p.category == "security")
        #expect(p.severity == .medium)
        #expect(p.resourceTypes == nil)
    }

    @Test func unknownOperatorNamesFileLineIdAndSuggests() {
        let errors = policyErrors([("policies/net.yaml", """
            policies:
              - id: NET-001
                title: t
                forbid:
                  all:
                    - { path: from_port, greater_than: 22 }
                    - { path: to_port, lte: 22 }
            """)])
        #expect(errors.map(\.description) == ["policies/net.yaml:6: NET-001: unknown operator 'greater_than' (did you mean 'gt'?)"])
    }

    @Test func misspelledKeySuggestsTheClosest() {
        let errors = policyErrors([("p.yaml", "policies:\n  - id: A\n    title: t\n    resouce_types: [x]\n    forbid: { path: x, exists: true }\n")])
        #expect(errors.map(\.description) == ["p.yaml:4: A: unknown key 'resouce_types' in a policy (did you mean 'resource_types'?)"])
    }

    @Test func reportsEveryErrorInAFileAtOnce() {
        let errors = policyErrors([("p.yaml", """
            policies:
              - id: A
                title: t
                severity: severe
                forbid: { path: x, equalz: 1 }
              - id: B
                forbid: { path: "a..b", exists: true }
              - id: C
                title: t
                forbid: { path: x, exists: true }
                require: { path: x, exists: true }
              - id: D
                title: t
                forbid: { path: x, matches: '([a-z' }
            """)])
        let text = errors.map(\.description)
        #expect(text.contains("p.yaml:4: A: unknown severity 'severe'; use low, medium, high or critical"))
        #expect(text.contains("p.yaml:5: A: unknown operator 'equalz' (did you mean 'equals'?)"))
        #expect(text.contains("p.yaml:6: B: policy has no `title`"))
        #expect(text.contains { $0.hasPrefix("p.yaml:7: B: invalid path 'a..b'") })
        #expect(text.contains("p.yaml:8: C: a policy has exactly one of `forbid` or `require`, not both"))
        #expect(text.contains("p.yaml:14: D: invalid regular expression '([a-z'"))
        #expect(errors.count == 6)
    }

    @Test func duplicateIdNamesBothFiles() {
        let errors = policyErrors([
            ("policies/a.yaml", "policies:\n  - id: DUP\n    title: t\n    forbid: { path: x, exists: true }\n"),
            ("policies/b.yaml", "policies:\n  - { id: X, title: t, forbid: { path: x, exists: true } }\n  - id: DUP\n    title: t\n    forbid: { path: x, exists: true }\n"),
        ])
        #expect(errors.map(\.description) == ["policies/b.yaml:3: DUP: duplicate policy id (also defined at policies/a.yaml:2)"])
    }

    @Test(arguments: [
        ("", "the file is empty"),
        ("policies: {}", "`policies` must be a list"),
        ("rules: []", "unknown key 'rules'"),
        ("policies:\n  - id: A\n    title: [unclosed\n", "invalid YAML"),
        ("policies:\n  - id: 'bad id!'\n    title: t\n    forbid: { path: x, exists: true }", "invalid id"),
        ("policies:\n  - id: A\n    title: t\n", "needs one of `forbid` or `require`"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x }\n", "has no operator"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, in: 3 }\n", "'in' takes a list"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, gt: many }\n", "'gt' takes a number"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, exists: maybe }\n", "'exists' must be true or false"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, equals: 1, in: [1] }\n", "has one operator"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { some: ingress }\n", "needs a `where:`"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { all: [] }\n", "non-empty list"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: $adress, equals: x }\n", "did you mean '$address'?"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, equals: 1 }\n    exceptions: { max_days: 120 }\n", "is past 90 days: only a program control (source: control) with exceptions.review_every may go past 90"),
        ("policies:\n  - id: A\n    title: t\n    forbid: { path: x, equals: 1 }\n    exceptions: { approver: [security] }\n", "did you mean 'approvers'?"),
    ])
    func rejects(_ yaml: String, _ fragment: String) {
        let errors = policyErrors([("p.yaml", yaml)])
        #expect(errors.contains { $0.description.contains(fragment) }, "got \(errors.map(\.description))")
    }

    @Test func boundsConditionDepth() {
        var cond = "{ path: x, exists: true }"
        for _ in 0..<100 { cond = "{ not: \(cond) }" }
        let errors = policyErrors([("p.yaml", "policies:\n  - id: DEEP\n    title: t\n    forbid: \(cond)\n")])
        #expect(errors.contains { $0.description.contains("nested deeper than 64 levels") })
    }

    @Test func directoryErrors() async throws {
        let dir = TempDir()
        #expect(throws: InputErrors.self) { try PolicyLoader.load(directory: dir.path + "/missing") }
        do {
            _ = try PolicyLoader.load(directory: dir.path)
            Issue.record("an empty directory loaded")
        } catch {
            #expect(error.errors.first?.message.contains("no policy files") == true)
        }
        dir.write("nested/a.yml", "policies:\n  - { id: A, title: t, forbid: { path: x, exists: true } }\n")
        dir.write("b.yaml", "policies:\n  - { id: B, title: t, forbid: { path: x, exists: true } }\n")
        dir.write("notes.txt", "ignored")
        let loaded = try PolicyLoader.load(directory: dir.path)
        #expect(loaded.map(\.id).sorted() == ["A", "B"])
    }
}

@Suite("waiver.yaml")
struct ConfigTests {
    func parse(_ yaml: String) throws(InputErrors) -> Configuration {
        try ConfigLoader.parse(Data(yaml.utf8), file: "waiver.yaml")
    }

    func errors(_ yaml: String) -> [String] {
        do { _ = try parse(yaml); return [] } catch { return error.errors.map(\.description) }
    }

    @Test func emptyFileGivesDefaults() async throws {
        let c = try parse("")
        #expect(c == Configuration())
        #expect(c.maxDays == 30 && c.defaultDays == 14)
        #expect(c.reminders == [7 * 86_400, 86_400])
    }

    @Test func theRepositoryConfigurationLoads() async throws {
        let c = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        #expect(c.groups["security"]?.isEmpty == false)
        #expect(c.routing["cost"] == ["finance", "engineering-managers"])
        #expect(c.riskLevels["critical"] == [9])
        #expect(c.escalation["critical"] == .init(approvers: ["ciso"], minApprovals: 2))
        #expect(c.sarif.contains { $0.0.pattern == "CKV_AWS_*" && $0.1 == "security" })
    }

    @Test func parsesEveryKey() async throws {
        let c = try parse("""
            policies: rules/
            exceptions: { default_days: 7, max_days: 21, reminders: [3d, 12h] }
            groups: { sec: [a@x], boss: [b@x] }
            routing: { security: [sec], default: [sec] }
            risk:
              levels: { low: [1, 2, 3], high: [4, 6, 9] }
              escalation: { high: { approvers: [boss], min_approvals: 2 } }
            notify:
              - { url: "https://hooks.example.com/w", secret_env: S, format: slack }
            sarif: { "CKV_*": security, "COST_*": cost }
            reports: { review_threshold: 3 }
            retention: { evaluations: 13w }
            """)
        #expect(c.policies == "rules/")
        #expect(c.defaultDays == 7 && c.maxDays == 21)
        #expect(c.reminders == [3 * 86_400, 12 * 3600])
        #expect(c.riskLevels == ["low": [1, 2, 3], "high": [4, 6, 9]])
        #expect(c.notify == [.init(url: "https://hooks.example.com/w", secretEnv: "S", format: "slack")])
        #expect(c.sarif.map(\.1) == ["security", "cost"])
        #expect(c.reviewThreshold == 3)
        #expect(c.keepEvaluations == 91 * 86_400)
        #expect(try parse("policies: p/").keepEvaluations == 90 * 86_400)
    }

    @Test(arguments: [
        ("polices: x", "waiver.yaml:1: unknown key 'polices' in waiver.yaml (did you mean 'policies'?)"),
        ("exceptions: { max_days: 120 }", "waiver.yaml:1: exceptions.max_days: 'exceptions.max_days' must be between 1 and 90, found 120"),
        ("exceptions: { default_days: 20, max_days: 10 }", "default_days 20 is past max_days 10"),
        ("exceptions: { reminders: [7 days] }", "'7 days' is not a duration"),
        ("groups: { security: [a] }\nrouting: { security: [securty] }", "group 'securty' is referenced but not defined under groups: (did you mean 'security'?)"),
        ("risk: { levels: { low: [1, 2] } }", "no level covers the score 3"),
        ("risk: { escalation: { extreme: { min_approvals: 3 } } }", "escalation for 'extreme', which is not a risk level"),
        ("notify: [{ url: 'ftp://x' }]", "is not an http(s) URL"),
        ("notify: [{ url: 'https://x', format: xml }]", "unknown format 'xml'"),
        ("retention: { evaluations: 12h }", "retention.evaluations: '12h' is not a duration of a day or more"),
        ("retention: { evaluation: 30d }", "unknown key 'evaluation' in retention (did you mean 'evaluations'?)"),
    ])
    func rejects(_ yaml: String, _ fragment: String) {
        let e = errors(yaml)
        #expect(e.contains { $0.contains(fragment) }, "got \(e)")
    }

    @Test func policyCapsAndGroupsAreCheckedAgainstTheConfiguration() async throws {
        var config = Configuration()
        config.maxDays = 20
        config.groups = ["security": ["a"]]
        let ps = try policies([("p.yaml", """
            policies:
              - id: A
                title: t
                forbid: { path: x, exists: true }
                exceptions: { max_days: 30, approvers: [securty] }
            """)])
        let messages = ConfigLoader.validate(ps, against: config).map(\.description)
        #expect(messages.contains("p.yaml:2: A: exceptions.max_days 30 is past the configured cap of 20 days (waiver.yaml exceptions.max_days)"))
        #expect(messages.contains("p.yaml:2: A: exceptions.approvers names group 'securty', which waiver.yaml does not define (did you mean 'security'?)"))
    }

    @Test func durations() {
        #expect(parseDuration("30m") == 1800)
        #expect(parseDuration("7d") == 604_800)
        #expect(parseDuration("2w") == 1_209_600)
        #expect(parseDuration("12h") == 43_200)
        for bad in ["", "d", "7", "7x", "-1d", "forever", "1.5d", "99999999999d"] { #expect(parseDuration(bad) == nil, "\(bad)") }
        #expect(formatDuration(604_800) == "7d")
        #expect(formatDuration(5400) == "90m")
    }
}
