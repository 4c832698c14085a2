import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

/// The golden scenario: a plan, a SARIF report and policies under Fixtures/golden, with one finding
/// marked excepted and one pending the way the register will mark them.
func goldenReport(keepCompliant: Bool = true) throws -> CheckReport {
    let dir = fixtures + "/golden"
    let policies = try PolicyLoader.load(files: [("policies.yaml", try Data(contentsOf: URL(fileURLWithPath: dir + "/policies.yaml")))])
    let plan = try PlanReader.read(path: dir + "/plan.json")
    let sarif = try SarifReader.read(path: dir + "/scan.sarif")
    // Paths in reports are as given on the command line: use short ones so goldens do not depend on the checkout.
    let resources = plan.resources.map { ($0, file: "plan.json") }
    let external = sarif.map { var e = $0; e.file = "scan.sarif"; return e }
    let engine = CheckEngine(policies: policies, sarifCategories: [(Glob("CKV_AWS_1*"), "logging")], keepCompliant: keepCompliant)
    var report = engine.check(resources: resources, external: external, workspace: "payments-prod")
    for i in report.findings.indices {
        if report.findings[i].policy == "NAME-001", report.findings[i].resource == "aws_instance.batch[0]" {
            report.findings[i].status = .excepted
            report.findings[i].exception = "EX-7"
            report.findings[i].expires = Date(timeIntervalSince1970: 1_796_342_400)  // 2026-12-04T00:00:00Z
        }
        if report.findings[i].policy == "COST-002", report.findings[i].resource == "aws_instance.batch[0]" {
            report.findings[i].status = .pending
            report.findings[i].exception = "EX-9"
        }
    }
    return report
}

@Suite("Output formats against golden files")
struct OutputTests {
    static let extensions: [OutputFormat: String] = [.text: "txt", .json: "json", .sarif: "sarif", .junit: "xml", .markdown: "md", .codequality: "codequality.json"]

    @Test(arguments: OutputFormat.allCases)
    func matchesGolden(_ format: OutputFormat) throws {
        let rendered = format.render(try goldenReport())
        let file = fixtures + "/golden/expected.\(Self.extensions[format]!)"
        if ProcessInfo.processInfo.environment["WAIVER_UPDATE_GOLDEN"] == "1" {
            try rendered.write(toFile: file, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOfFile: file, encoding: .utf8)
        #expect(rendered == expected, "rerun with WAIVER_UPDATE_GOLDEN=1 to update \(file) after an intended change")
    }

    @Test(arguments: OutputFormat.allCases)
    func neverPrintsSensitiveValues(_ format: OutputFormat) throws {
        let rendered = format.render(try goldenReport())
        #expect(!rendered.contains("hunter2"))
    }

    @Test func theGoldenScenarioHasTheExpectedFindings() async throws {
        let report = try goldenReport()
        let rows = report.findings.map { "\($0.policy) \($0.resource) \($0.status.rawValue)" }
        #expect(rows == [
            "CKV_AWS_18 storage.tf:3 blocking",
            "CKV_AWS_24 module.net.aws_security_group.bastion blocking",
            "COST-002 aws_instance.batch[0] pending",
            "COST-002 aws_instance.web unknown",
            "DB-001 aws_db_instance.main blocking",
            "NAME-001 aws_instance.batch[0] excepted",
            "NET-001 module.net.aws_security_group.bastion blocking",
        ])
        let s = report.summary
        #expect(s == Summary(resources: 6, violations: 6, blocking: 4, excepted: 1, pending: 1, unknown: 1))
        #expect(report.verdict == "blocked")
        // The SARIF rule no policy file defines becomes an implicit policy from the report.
        let implicit = try #require(report.findings.first { $0.policy == "CKV_AWS_18" })
        #expect(implicit.title == "Ensure the S3 bucket has access logging enabled")
        #expect(implicit.category == "logging")
        #expect(implicit.severity == .medium)  // no level: SARIF's default "warning"
        #expect(implicit.message.contains("not an approved exception"))
        let defined = try #require(report.findings.first { $0.policy == "CKV_AWS_24" })
        #expect(defined.title == "Checkov - SSH open to the world")
        #expect(defined.message == "SSH open to 0.0.0.0/0")
    }

    @Test func jsonHasTheContractShape() async throws {
        let v = try JSONReader.parse(Data(OutputFormat.json.render(try goldenReport()).utf8))
        #expect(v["verdict"] == "blocked")
        #expect(v["summary"]?["excepted"] == 1)
        let excepted = try #require(v["results"]?.arrayValue?.first { $0["status"] == "excepted" })
        #expect(excepted["exception"] == "EX-7")
        #expect(excepted["expires"] == "2026-12-04T00:00:00Z")
        for key in ["policy", "title", "severity", "category", "resource", "status", "message"] {
            #expect(excepted[key] != nil, "missing \(key)")
        }
    }

    @Test func junitHasOneCasePerPolicyAndResourceEvaluated() async throws {
        let xml = OutputFormat.junit.render(try goldenReport())
        let doc = try XMLDocument(data: Data(xml.utf8))
        let cases = try doc.nodes(forXPath: "//testcase")
        // 5 plan resources x applicable policies: NET-001 1, COST-002 2, DB-001 1, NAME-001 5; plus 2 SARIF findings.
        #expect(cases.count == 11)
        #expect(try doc.nodes(forXPath: "//testcase/failure").count == 5)
        #expect(try doc.nodes(forXPath: "//testcase/skipped").count == 2)
    }

    /// What the strictest common reader accepts (the Jenkins xUnit plugin's junit-10.xsd): `<testsuites>`
    /// carries only name, time, tests, failures and errors; a blocking unknown is a failure, as the gate
    /// says; and test-case names are unique within their class (GitLab keeps only the first of duplicates).
    @Test func junitSatisfiesItsStrictestReader() async throws {
        let base = try goldenReport()
        var report = CheckReport(workspace: base.workspace, unknownMode: .block, findings: base.findings, resourceCount: base.resourceCount,
                                 policies: base.policies, compliant: base.compliant)
        // The same policy and resource twice (two scanner results on one location).
        let twice = try #require(report.findings.first)
        report = CheckReport(workspace: report.workspace, unknownMode: .block, findings: report.findings + [twice], resourceCount: report.resourceCount,
                             policies: report.policies, compliant: report.compliant)
        let doc = try XMLDocument(data: Data(OutputFormat.junit.render(report).utf8))
        let root = try #require(doc.rootElement())
        #expect(Set((root.attributes ?? []).compactMap(\.name)).isSubset(of: ["name", "time", "tests", "failures", "errors"]))
        let unknown = report.findings.filter { $0.status == .unknown }.count
        #expect(unknown > 0)
        let failures = report.findings.filter(report.blocks).count
        #expect(root.attribute(forName: "failures")?.stringValue == String(failures))
        #expect(try doc.nodes(forXPath: "//testcase/failure").count == failures)
        var seen = Set<String>()
        for case let c as XMLElement in try doc.nodes(forXPath: "//testcase") {
            let key = (c.attribute(forName: "classname")?.stringValue ?? "") + "\u{0}" + (c.attribute(forName: "name")?.stringValue ?? "")
            #expect(seen.insert(key).inserted, "a duplicate test case: \(key)")
        }
    }

    /// What GitHub code scanning reads: it groups alerts by `partialFingerprints.primaryLocationLineHash`
    /// (computing its own from the line when absent: every plan result is on line 1 of the plan, so
    /// distinct violations folded into a few alerts); rule help is Markdown, where `<team>` would vanish
    /// as an HTML tag; descriptions are cut at 1,024 characters.
    @Test func sarifIsWhatGitHubCodeScanningReads() async throws {
        var report = try goldenReport()
        report.policies[0].description = String(repeating: "long ", count: 400)
        let v = try JSONReader.parse(Data(OutputFormat.sarif.render(report).utf8))
        let run = try #require(v["runs"]?.arrayValue?.first)
        let results = run["results"]?.arrayValue ?? []
        let hashes = results.compactMap { $0["partialFingerprints"]?["primaryLocationLineHash"]?.stringValue }
        #expect(hashes.count == results.count && Set(hashes).count == results.count, "one stable hash per finding")
        let rules = run["tool"]?["driver"]?["rules"]?.arrayValue ?? []
        #expect(rules.allSatisfy { ($0["fullDescription"]?["text"]?.stringValue?.count ?? 0) <= 1_024 })
        let naming = try #require(rules.first { $0["id"] == "NAME-001" })
        let help = naming["help"]?["markdown"]?.stringValue ?? ""
        #expect(help.contains("&lt;team&gt;") && !help.contains("<team>"), "\(help)")
    }

    @Test func sarifIsValidAndCarriesRulesAndSuppressions() async throws {
        let v = try JSONReader.parse(Data(OutputFormat.sarif.render(try goldenReport()).utf8))
        #expect(v["version"] == "2.1.0")
        let run = try #require(v["runs"]?.arrayValue?.first)
        let rules = run["tool"]?["driver"]?["rules"]?.arrayValue ?? []
        #expect(rules.compactMap { $0["id"]?.stringValue } == ["CKV_AWS_18", "CKV_AWS_24", "COST-002", "DB-001", "NAME-001", "NET-001"])
        #expect(rules.allSatisfy { $0["help"]?["text"]?.stringValue?.isEmpty == false })
        let results = run["results"]?.arrayValue ?? []
        #expect(results.count == 7)
        for r in results {
            let index = try #require(r["ruleIndex"]?.numberValue.map { Int($0) })
            #expect(rules[index]["id"] == r["ruleId"])
            #expect(r["locations"]?.arrayValue?.first?["physicalLocation"]?["artifactLocation"]?["uri"]?.stringValue != nil)
        }
        let suppressed = results.filter { $0["suppressions"] != nil }
        #expect(suppressed.count == 1)
        #expect(suppressed.first?["properties"]?["exception"] == "EX-7")
        // Our own output reads back through our reader.
        let back = try SarifReader.parse(Data(OutputFormat.sarif.render(try goldenReport()).utf8), file: "out.sarif")
        #expect(back.count == 7)
        #expect(back.filter { $0.suppression != nil }.map(\.ruleId) == ["NAME-001"])
    }

    @Test func markdownEscapesTableCells() async throws {
        let md = OutputFormat.markdown.render(try goldenReport())
        #expect(md.contains("&lt;team&gt;-&lt;env&gt;-&lt;purpose&gt; &amp; stay \\| safe"))
        #expect(!md.contains("<Worker>"))
    }

    /// A pull-request comment must fit GitHub's 65,536-character limit and must not let plan values
    /// act: no live link, image or @mention from what a plan or scanner says.
    @Test func markdownFitsAPullRequestCommentAndPlanValuesCannotAct() async throws {
        let hostile = "@octocat see https://evil.example/x and www.evil.example ![i](https://evil.example/i.png) [click](javascript:alert(1)) "
        let findings = (0..<2_000).map { i in
            Finding(policy: "P-\(i % 7)", title: "t", severity: .high, category: "security", resource: "r\(i)", status: .blocking,
                    message: hostile + String(repeating: "x", count: 300), remediation: "see @team at https://wiki.example/fix", origin: .plan(file: "p"))
        }
        let report = CheckReport(workspace: "w", unknownMode: .warn, findings: findings, resourceCount: 2_000, policies: [], compliant: [])
        let md = OutputFormat.markdown.render(report)
        #expect(md.utf8.count <= 65_536, "\(md.utf8.count) bytes")
        #expect(md.contains("more not shown"))
        let rows = md.split(separator: "\n").filter { $0.hasPrefix("| ❌") }.count
        #expect(rows > 0 && md.contains("\(2_000 - rows) more not shown"), "\(rows) rows")
        for live in ["@octocat", "@team", "https://", "www.evil", "![", "](", "]("] {
            #expect(!md.contains(live), "\(live) is live in the comment")
        }
    }

    @Test func passingReport() {
        let report = CheckEngine(policies: []).check(resources: [], external: [], workspace: "w")
        #expect(report.passed)
        #expect(OutputFormat.text.render(report).hasSuffix("PASS: 0 resources, 0 violations (0 blocking, 0 excepted, 0 pending), 0 unknown\n"))
        #expect(OutputFormat.markdown.render(report).hasPrefix("### Waiver: ✅ pass"))
    }

    @Test func unknownBlocksOnlyWhenAsked() async throws {
        let policies = try policies([("p.yaml", "policies:\n  - { id: A, title: t, require: { path: x, equals: 1 } }\n")])
        let r = [(resource(["x": .unknown]), file: "p")]
        #expect(CheckEngine(policies: policies, unknownMode: .warn).check(resources: r, external: [], workspace: "w").passed)
        #expect(!CheckEngine(policies: policies, unknownMode: .block).check(resources: r, external: [], workspace: "w").passed)
    }
}

/// The JSON report is written result by result; built whole and written, it is the same text.
@Test func theJSONReportWrittenResultByResultIsTheTreeWritten() throws {
    let report = try goldenReport()
    #expect(!report.findings.isEmpty)
    let trailing: [(String, Value)] = [("evaluation", 7), ("requested", ["EX-1", "EX-2"]), ("request_warnings", ["w"])]
    #expect(JSONOutput.render(report, trailing: trailing) == JSONWriter.write(JSONOutput.value(report, trailing: trailing)))
    #expect(JSONOutput.render(report) == JSONWriter.write(JSONOutput.value(report)))
    var empty = report
    empty.findings = []
    #expect(JSONOutput.render(empty) == JSONWriter.write(JSONOutput.value(empty)))
    #expect(JSONOutput.render(empty).contains("\"results\": []"))
}

/// The quoting every JSON output and every audit hash goes through: the word-at-a-time scan must
/// give exactly what quoting byte by byte gives, wherever the special bytes fall.
@Suite("JSON string quoting")
struct QuotingTests {
    /// Byte by byte, as the RFC says: `"` `\` and control characters escaped, nothing else.
    static func reference(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x22]
        for c in bytes {
            switch c {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0..<0x20: out += Array(String(format: "\\u%04x", c).utf8)
            default: out.append(c)
            }
        }
        return out + [0x22]
    }

    @Test func quotesAsByteByByteWhereverTheSpecialBytesFall() {
        let specials: [UInt8] = [0x22, 0x5C, 0x0A, 0x0D, 0x09, 0x00, 0x1F, 0x01, 0x20, 0x21, 0x7F, 0x80, 0xC3, 0xA9, 0xFF, 0x5B, 0x41]
        var generator = SystemRandomNumberGenerator()
        for length in 0..<40 {
            for _ in 0..<60 {
                let bytes = (0..<length).map { _ in Bool.random(using: &generator) ? specials.randomElement(using: &generator)! : UInt8(0x61) }
                var out: [UInt8] = []
                bytes.withUnsafeBytes { Value.appendQuotedJSON(utf8: $0, to: &out) }
                #expect(out == Self.reference(bytes), "\(bytes)")
            }
        }
    }

    /// The verifier's fast path over database columns hashes what the event's fields hash to.
    @Test func theColumnPathHashesAsTheEventDoes() {
        let texts = ["", "dev", "exception.requested", #"{"reason":"a \"quoted\" line\nand a tab\t","n":1}"#, "é ∆ 🙂", "\u{01}\u{1F}", "\\"]
        var scratch: [UInt8] = []
        for seq: Int64 in [1, 9, 10, 99, 100, 123_456_789, Int64(Int32.max), 9_007_199_254_740_992] {
            for time: Int64 in [0, 7, 1_767_225_600] {
                for t in texts {
                    let fields = [t, "auditor", "EX-" + t, t + t, AuditChain.genesis]
                    let hash = AuditChain.hash(seq: Int(seq), time: time, actor: fields[0], action: fields[1], subject: fields[2],
                                               payload: fields[3], prevHash: fields[4])
                    let bytes = fields.map { Array($0.utf8) }
                    let ok = bytes[0].withUnsafeBytes { a in bytes[1].withUnsafeBytes { b in bytes[2].withUnsafeBytes { c in
                        bytes[3].withUnsafeBytes { d in bytes[4].withUnsafeBytes { e in Array(hash.utf8).withUnsafeBytes { h in
                            AuditChain.rawContentMatches(seq: seq, time: time, fields: (a, b, c, d, e), hash: h, scratch: &scratch)
                        } } } } } }
                    #expect(ok, "\(seq) \(time) \(t)")
                }
            }
        }
        for n: Int64 in [0, 1, -1, 9, 10, -10, 99, 100, 1_000_000, .max, .min] {
            var out = [UInt8](repeating: 0, count: 20)
            let count = out.withUnsafeMutableBufferPointer { AuditChain.writeDecimal(n, to: $0.baseAddress!) }
            #expect(String(decoding: out[..<count], as: UTF8.self) == String(n))
        }
    }
}
