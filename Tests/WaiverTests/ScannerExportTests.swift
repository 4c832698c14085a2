import Foundation
import Testing
import Yams
@testable import WaiverCore
@testable import WaiverFormats

/// A scanner from PyPI, found in $WAIVER_<NAME> or on PATH. Missing: skipped locally with a message,
/// a failure in CI (`.ci/run` installs them).
func scanner(_ name: String) -> String? {
    let env = ProcessInfo.processInfo.environment
    var candidates: [String] = []
    if let p = env["WAIVER_" + name.uppercased()] { candidates.append(p) }
    for dir in (env["PATH"] ?? "").split(separator: ":") { candidates.append("\(dir)/\(name)") }
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
    if env["CI"] == "true" { Issue.record("\(name) is not installed: .ci/run installs it from PyPI") } else {
        print("skipped: \(name) is not installed (pip install \(name), or set WAIVER_\(name.uppercased()))")
    }
    return nil
}

@Suite("One register, every scanner's native format", .serialized)
struct ScannerExportTests {
    /// A workspace whose policies define scanner rules (source: sarif), with one approved exception each.
    func register(_ rules: [(String, String)]) throws -> Workspace {
        let w = try Workspace()
        w.dir.write("policies/scanners.yaml", "policies:\n" + rules.map { id, _ in
            "  - id: \(id)\n    title: \(id)\n    category: security\n    severity: medium\n    source: sarif\n    exceptions: { approvers: [security], min_approvals: 1 }\n"
        }.joined())
        for (i, (id, resource)) in rules.enumerated() {
            let r = try w.run(["request", "--policy", id, "--resource", resource, "--workspace", "shop", "--reason", "accepted for the launch (\(i))", "--days", "14"])
            #expect(r.code == 0, "\(r.err)")
            #expect(try w.run(["approve", "EX-\(i + 1)"], as: "sam").code == 0)
        }
        return w
    }

    @Test func checkovWithTheExportedBaselineSkipsExactlyTheApprovedPairs() throws {
        guard let checkov = scanner("checkov") else { return }
        let w = try register([("CKV_AWS_20", "aws_s3_bucket.public")])
        w.dir.write("tf/main.tf", """
            resource "aws_s3_bucket" "public" {
              bucket = "web-prod-public"
              acl    = "public-read"
            }

            resource "aws_s3_bucket" "other" {
              bucket = "web-prod-other"
              acl    = "public-read"
            }
            """)
        #expect(try w.run(["export", "--format", "checkov", "--output", "baseline.json"]).code == 0)
        func failed(_ extra: [String]) throws -> Set<String> {
            let r = try runProgram(checkov, ["-d", "tf", "--framework", "terraform", "-o", "json", "--quiet", "--compact"] + extra, in: w.dir.path)
            let v = try JSONReader.parse(Data(r.out.utf8))
            let checks = v["results"]?["failed_checks"]?.arrayValue ?? []
            return Set(checks.compactMap { c in c["check_id"]?.stringValue.flatMap { id in c["resource"]?.stringValue.map { "\(id) \($0)" } } })
        }
        let without = try failed([])
        let with = try failed(["--baseline", "baseline.json"])
        #expect(without.contains("CKV_AWS_20 aws_s3_bucket.public") && without.contains("CKV_AWS_20 aws_s3_bucket.other"), "\(without)")
        // Exactly the approved pair is gone; the same check on the other bucket and the other checks
        // on the approved bucket are still reported.
        #expect(without.subtracting(with) == ["CKV_AWS_20 aws_s3_bucket.public"], "\(without.subtracting(with))")
        #expect(with.contains("CKV_AWS_20 aws_s3_bucket.other") && with.contains("CKV_AWS_18 aws_s3_bucket.public"))
        // Past its expiry instant the exception is no longer exported.
        let late = try w.run(["export", "--format", "checkov"], at: "2026-12-06T10:00:00Z")
        #expect(try JSONReader.parse(Data(late.out.utf8))["failed_checks"] == .array([]), "\(late.out)")
    }

    @Test func semgrepsNosemgrepIsWhatTheScanFinds() throws {
        guard let semgrep = scanner("semgrep") else { return }
        let w = try Workspace()
        w.dir.write("rule.yaml", """
            rules:
              - id: no-os-system
                languages: [python]
                severity: ERROR
                message: os.system runs a shell
                pattern: os.system(...)
            """)
        w.dir.write("src/run.py", "import os\n\nos.system(a)\nos.system(b)  # nosemgrep: no-os-system\n")
        func lines(_ extra: [String]) throws -> [Int] {
            let r = try runProgram(semgrep, ["scan", "--config", "rule.yaml", "--json", "--metrics", "off", "--disable-version-check", "src"] + extra, in: w.dir.path)
            let v = try JSONReader.parse(Data(r.out.utf8))
            return (v["results"]?.arrayValue ?? []).compactMap { $0["start"]?["line"]?.intValue }.sorted()
        }
        let honoured = try lines([])
        let all = try lines(["--disable-nosem"])
        #expect(all == [3, 4] && honoured == [3], "\(all) \(honoured)")
        // The scan finds the suppression semgrep honoured: its rule, at the line semgrep no longer reports.
        let found = try SuppressionScanner.scan(w.dir.path + "/src").suppressions
        #expect(found.map { "\($0.tool) \($0.rule) \($0.subject)" } == ["semgrep no-os-system run.py:4"], "\(found)")
    }

    @Test func eachFormatFollowsItsToolsDocumentedShapeAndMapsBack() throws {
        let w = try register([("AVD-AWS-0089", "modules/s3/main.tf"), ("CVE-2023-44487", "*"), ("SNYK-JS-LODASH-567746", "*"),
                              ("restrict-host-path", "Pod/monitoring/node-exporter")])
        // A pending request is never exported.
        #expect(try w.run(["request", "--policy", "AVD-AWS-0089", "--resource", "modules/other/main.tf", "--workspace", "shop", "--reason", "pending"]).code == 0)
        func export(_ f: String) throws -> String {
            let r = try w.run(["export", "--format", f])
            #expect(r.code == 0, "\(r.err)")
            return r.out
        }
        // Trivy's .trivyignore.yaml: sections of {id, paths, statement, expired_at}.
        let trivy = try #require(try Yams.load(yaml: try export("trivyignore-yaml")) as? [String: Any])
        let mis = try #require(trivy["misconfigurations"] as? [[String: Any]])
        #expect(mis.count == 1 && mis[0]["id"] as? String == "AVD-AWS-0089" && mis[0]["paths"] as? [String] == ["modules/s3/main.tf"], "\(mis)")
        #expect((mis[0]["statement"] as? String)?.hasPrefix("EX-1: ") == true)
        // expired_at is the expiry's day: Trivy stops at its start, never after Waiver's instant (2026-12-06T10:00:00Z).
        #expect("\(mis[0]["expired_at"] ?? "")".hasPrefix("2026-12-06"))
        #expect((trivy["vulnerabilities"] as? [[String: Any]])?.map { $0["id"] as? String } == ["CVE-2023-44487"])
        // .trivyignore: `ID exp:YYYY-MM-DD`, the exception named in the comment above; it ignores an id
        // everywhere, so only the exception to everywhere is written and the others are named as not.
        let plain = try export("trivyignore")
        #expect(plain.contains("\n# EX-2: ") && plain.contains("\nCVE-2023-44487 exp:2026-12-06\n"), "\(plain)")
        #expect(!plain.contains("\nAVD-AWS-0089 ") && plain.contains("# not written, it covers less than everywhere") && plain.contains("EX-1 (AVD-AWS-0089 on modules/s3/main.tf)"), "\(plain)")
        #expect(!plain.contains("modules/other"))
        // Snyk's .snyk: ignore → id → [{path: {reason, expires}}].
        let snyk = try #require(try Yams.load(yaml: try export("snyk")) as? [String: Any])
        let entry = try #require(((snyk["ignore"] as? [String: Any])?["SNYK-JS-LODASH-567746"] as? [[String: Any]])?.first?["*"] as? [String: Any])
        #expect(entry["expires"] as? String == "2026-12-06T10:00:00Z" && (entry["reason"] as? String)?.hasPrefix("EX-3: ") == true, "\(entry)")
        // Kyverno's PolicyException (kyverno.io/v2): spec.exceptions[].policyName/ruleNames, spec.match.any[].resources.
        let kyverno = try export("kyverno")
        let docs = try Array(Yams.load_all(yaml: kyverno)).compactMap { $0 as? [String: Any] }
        #expect(docs.count == 1, "\(kyverno)")
        let doc = try #require(docs.first)
        #expect(doc["apiVersion"] as? String == "kyverno.io/v2" && doc["kind"] as? String == "PolicyException")
        let spec = try #require(doc["spec"] as? [String: Any])
        let ex = try #require((spec["exceptions"] as? [[String: Any]])?.first)
        #expect(ex["policyName"] as? String == "restrict-host-path" && ex["ruleNames"] as? [String] == ["*"])
        let match = try #require((((spec["match"] as? [String: Any])?["any"] as? [[String: Any]])?.first?["resources"]) as? [String: Any])
        #expect(match["kinds"] as? [String] == ["Pod"] && match["namespaces"] as? [String] == ["monitoring"] && match["names"] as? [String] == ["node-exporter"])
        let meta = try #require(doc["metadata"] as? [String: Any])
        #expect((meta["annotations"] as? [String: Any])?["waiver.dev/exception"] as? String == "EX-4")
        // Kyverno's TTL label layout for an instant (2006-01-02T150405Z): the exception's expiry.
        #expect((meta["labels"] as? [String: Any])?["cleanup.kyverno.io/ttl"] as? String == "2026-12-06T100000Z")
        // SARIF with external suppressions passes the official schema.
        let sarif = w.dir.write("suppressions.sarif", try export("sarif-suppressions"))
        #expect(problems(try consumer("sarif", sarif)) == [])

        // The exported files, read back by the suppression scan, are governed by the exceptions they name.
        w.dir.write("exported/.trivyignore", plain)
        w.dir.write("exported/.trivyignore.yaml", try export("trivyignore-yaml"))
        w.dir.write("exported/.snyk", try export("snyk"))
        let scan = try JSONReader.parse(Data(try w.run(["suppressions", "scan", w.dir.path + "/exported", "--workspace", "shop", "--format", "json"]).out.utf8))
        #expect(scan["summary"]?["governed"] == .number(4) && scan["summary"]?["ungoverned"] == .number(0), "\(scan)")
        // A revoked exception is not exported, and its entries are ungoverned from then on.
        #expect(try w.run(["revoke", "EX-2", "--comment", "base image rebuilt"], as: "sam").code == 0)
        #expect(!(try export("trivyignore")).contains("CVE-2023-44487"))
        let after = try JSONReader.parse(Data(try w.run(["suppressions", "scan", w.dir.path + "/exported", "--workspace", "shop", "--format", "json"]).out.utf8))
        // (both Trivy files carried it)
        #expect(after["summary"]?["ungoverned"] == .number(2), "\(after)")
    }
}
