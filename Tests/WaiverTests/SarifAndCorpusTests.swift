import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

func sarif(_ text: String) throws(InputError) -> [ExternalFinding] {
    try SarifReader.parse(Data(text.utf8), file: "scan.sarif")
}

func sarifRun(results: String, rules: String = "[]", extra: String = "") -> String {
    #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"scanner","rules":\#(rules)}},"results":\#(results)\#(extra)}]}"#
}

@Suite("SARIF reader")
struct SarifReaderTests {
    @Test func levelsMapToSeverities() async throws {
        let f = try sarif(sarifRun(results: """
            [{"ruleId":"A","level":"error","message":{"text":"m"}},
             {"ruleId":"B","level":"warning","message":{"text":"m"}},
             {"ruleId":"C","level":"note","message":{"text":"m"}},
             {"ruleId":"D","message":{"text":"m"}},
             {"ruleId":"E","message":{"text":"m"}}]
            """, rules: #"[{"id":"E","defaultConfiguration":{"level":"error"}}]"#))
        #expect(f.map(\.severity) == [.high, .medium, .low, .medium, .high])
    }

    @Test func resourceFromLogicalThenPhysicalLocation() async throws {
        let f = try sarif(sarifRun(results: """
            [{"ruleId":"A","message":{"text":"m"},"locations":[{"logicalLocations":[{"fullyQualifiedName":"aws_s3_bucket.a"}],"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":4}}}]},
             {"ruleId":"A","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":9}}}]},
             {"ruleId":"A","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"index":0}}}]},
             {"ruleId":"A","message":{"text":"m"},"locations":[{"logicalLocations":[{"index":0}]}]},
             {"ruleId":"A","message":{"text":"m"}}]
            """, extra: #","artifacts":[{"location":{"uri":"Dockerfile"}}],"logicalLocations":[{"fullyQualifiedName":"ns.Class"}]"#))
        #expect(f.map(\.resource) == ["aws_s3_bucket.a", "main.tf:9", "Dockerfile", "ns.Class", "(no location)"])
        #expect(f[0].uri == "main.tf" && f[0].line == 4)
    }

    @Test func ruleIdFromRuleIndexAndPassingResultsSkipped() async throws {
        let f = try sarif(sarifRun(results: """
            [{"ruleIndex":1,"message":{"text":"m"}},
             {"ruleId":"X","kind":"pass","message":{"text":"ok"}},
             {"ruleId":"X","kind":"notApplicable","message":{"text":"n/a"}},
             {"ruleId":"X","baselineState":"absent","message":{"text":"gone"}},
             {"ruleId":"X","kind":"review","message":{"text":"look"}}]
            """, rules: #"[{"id":"R0"},{"id":"R1","shortDescription":{"text":"Rule one"},"help":{"text":"Fix it"}}]"#))
        #expect(f.map(\.ruleId) == ["R1", "X"])
        #expect(f[0].ruleTitle == "Rule one")
        #expect(f[0].ruleHelp == "Fix it")
        #expect(f[1].level == "none")
    }

    @Test func rulesFromToolExtensions() async throws {
        let text = #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"codeql"},"extensions":[{"name":"pack","rules":[{"id":"js/x","shortDescription":{"text":"From an extension"}}]}]},"results":[{"ruleId":"js/x","message":{"text":"m"}}]}]}"#
        #expect(try sarif(text).first?.ruleTitle == "From an extension")
    }

    @Test func suppressionsAreKeptNotDropped() async throws {
        let f = try sarif(sarifRun(results: """
            [{"ruleId":"A","message":{"text":"m"},"suppressions":[{"kind":"inSource","justification":" legacy "}]},
             {"ruleId":"A","message":{"text":"m"},"suppressions":[{"kind":"external","status":"rejected"}]}]
            """))
        #expect(f.map(\.suppression) == ["legacy", nil])
    }

    @Test(arguments: [
        (#"{"runs":[]}"#, "no \"version\""),
        (#"{"version":"2.0.0","runs":[]}"#, "unsupported SARIF version \"2.0.0\""),
        (#"{"version":"2.1.0"}"#, "no \"runs\" list"),
        (#"{"version":"2.1.0","runs":[{"results":[]}]}"#, "runs[0] has no tool.driver"),
        (#"{"version":"2.1.0","runs":[{"tool":{"driver":{}}}]}"#, "tool.driver has no name"),
        (#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"message":{"text":"m"}}]}]}"#, "results[0] has no ruleId"),
        (#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":{}}]}"#, "results is not a list"),
        (#"[]"#, "expected a JSON object"),
        (#"{"version":"2.1.0","runs":["#, "not valid JSON"),
        ("", "the file is empty"),
    ])
    func rejectsInvalidReports(_ text: String, _ fragment: String) {
        do {
            _ = try sarif(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains(fragment), "got \(error)")
            #expect(error.file == "scan.sarif")
        }
    }
}

@Suite("Real plans and SARIF reports from ../shared/corpus", .enabled(if: hasCorpus, "../shared/corpus is not on this machine: corpus tests skipped"))
struct CorpusTests {
    static func files(_ sub: String) -> [String] {
        let dir = corpus + "/" + sub
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }.sorted().map { dir + "/" + $0 }
    }

    static let starterPack: [Policy] = (try? PolicyLoader.load(directory: repoRoot + "/policies")) ?? []

    func check(_ planFile: String) throws -> CheckReport {
        let plan = try PlanReader.read(path: planFile)
        return CheckEngine(policies: Self.starterPack).check(resources: plan.resources.map { ($0, file: planFile) }, external: [], workspace: "corpus")
    }

    @Test func everyPlanReadsAndEvaluatesWithTheStarterPack() async throws {
        let plans = Self.files("terraform-plans")
        #expect(plans.count >= 40)
        #expect(Self.starterPack.count >= 20)
        for file in plans {
            let plan = try PlanReader.read(path: file)
            #expect(plan.changeCount > 0, "\(file)")
            _ = try check(file)
        }
    }

    @Test func readingOnlyTheAttributesPoliciesReadChangesNoReport() async throws {
        for file in Self.files("terraform-plans") { try expectSameReport(file, policies: Self.starterPack) }
    }

    @Test func findsSSHOpenOnTheForEachSecurityGroups() async throws {
        let report = try check(corpus + "/terraform-plans/bridgecrewio__checkov__plan-for-each-security-groups.json")
        let ssh = report.findings.filter { $0.policy == "NET-001" && $0.status == .blocking }.map(\.resource)
        #expect(ssh == [
            "module.sg[\"awful_example\"].aws_security_group.bad",
            "module.sg[\"bad_example\"].aws_security_group.bad",
            "module.sg[\"terrible_example\"].aws_security_group.bad",
        ])
    }

    @Test func findsSSHOpenOnSecurityGroupRulesThatCheckovMisses() async throws {
        let report = try check(corpus + "/terraform-plans/terraform-compliance__cli__issue-400-security-groups.json")
        let rules = report.findings.filter { $0.policy == "NET-004" && $0.status == .blocking }.map(\.resource)
        #expect(rules.contains("aws_security_group_rule.example_rule_22"))
        #expect(rules.allSatisfy { $0.hasPrefix("aws_security_group_rule.") })
        #expect(rules.count >= 2)
    }

    @Test func readsTheUTF16PowerShellPlan() async throws {
        let plan = try PlanReader.read(path: corpus + "/terraform-plans/bridgecrewio__checkov__plan-utf16-encoding.json")
        #expect(plan.resources.count == 3)
    }

    @Test func skipsPureDeletionsAndEvaluatesReplacements() async throws {
        #expect(try PlanReader.read(path: corpus + "/terraform-plans/bridgecrewio__checkov__plan-with-pure-deleted-resources.json").resources.isEmpty)
        let replaced = try PlanReader.read(path: corpus + "/terraform-plans/bridgecrewio__checkov__plan-with-deleted-resources.json")
        #expect(replaced.resources.map(\.action) == [.replace])
    }

    @Test func neverPrintsTheSensitiveValuesOfCorpusPlans() async throws {
        var checked = 0
        defer { #expect(checked > 0, "no corpus plan had a sensitive string to look for") }
        for file in Self.files("terraform-plans") {
            let plan = try PlanReader.read(path: file)
            var secrets: [String] = []
            for r in plan.resources {
                guard let mask = r.sensitive else { continue }
                collectSensitive(r.attributes, mask, into: &secrets)
            }
            let secretStrings = secrets.filter { $0.count >= 6 }
            guard !secretStrings.isEmpty else { continue }
            checked += 1
            let report = CheckEngine(policies: Self.starterPack, keepCompliant: true)
                .check(resources: plan.resources.map { ($0, file: file) }, external: [], workspace: "w")
            for format in OutputFormat.allCases {
                let out = format.render(report)
                for s in secretStrings { #expect(!out.contains(s), "\(format) of \(file) shows a sensitive value") }
            }
        }
    }

    func collectSensitive(_ v: Value, _ mask: Value, into out: inout [String]) {
        switch (v, mask) {
        case (_, .bool(true)): out.append(v.rendered(limit: 10_000).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
        case (.object(let o), .object(let m)): for (k, mv) in m.pairs { if let sub = o[k] { collectSensitive(sub, mv, into: &out) } }
        case (.array(let a), .array(let m)): for (x, mv) in zip(a, m) { collectSensitive(x, mv, into: &out) }
        default: break
        }
    }

    @Test func everySarifReportReadsOrFailsClearly() async throws {
        for file in Self.files("sarif") {
            if file.hasSuffix("bridgecrewio__checkov__openapi-runner-results.sarif") {
                #expect(throws: InputError.self) { try SarifReader.read(path: file) }
                continue
            }
            let findings = try SarifReader.read(path: file)
            #expect(!findings.isEmpty, "\(file)")
            #expect(findings.allSatisfy { !$0.ruleId.isEmpty && !$0.resource.isEmpty })
        }
    }

    @Test func checkovSuppressionsAreReportedAsNotExceptions() async throws {
        let findings = try SarifReader.read(path: corpus + "/sarif/L2Solutions__terraform-aws-s3__checkov-results.sarif")
        #expect(findings.contains { $0.suppression != nil })
    }
}
