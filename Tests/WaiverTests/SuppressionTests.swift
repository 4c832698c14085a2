import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// Shadow exceptions: the suppressions teams write for their scanners, found and governed.
@Suite("Scanner suppressions under governance", .serialized)
struct SuppressionTests {
    /// A repository with one suppression of every kind the scan knows.
    static func repository(_ dir: TempDir) {
        dir.write("repo/main.tf", """
            resource "aws_s3_bucket" "site" {
              #checkov:skip=CKV_AWS_20:The bucket hosts the public site
              acl = "public-read"
            }

            #tfsec:ignore:aws-s3-enable-bucket-logging:exp:2027-01-31
            resource "aws_s3_bucket" "scratch" {
              bucket = "scratch" # trivy:ignore:AVD-AWS-0089 logs go elsewhere, EX-7
            }

            /* checkov:skip=CKV_AWS_18: access logs not needed */
            module "logs" {
            }
            # kics-scan ignore-line
            resource "aws_ebs_volume" "tmp" {
            }
            """)
        dir.write("repo/app/run.py", "import os\nos.system(cmd)  # nosemgrep: python.lang.security.audit.dangerous-system-call\n# nosemgrep\nos.system(other)\n")
        dir.write("repo/.trivyignore", "# until the base image is rebuilt\nCVE-2023-44487 exp:2027-01-31\n\nAVD-AWS-0107\n")
        dir.write("repo/.trivyignore.yaml", "misconfigurations:\n  - id: AVD-AWS-0086\n    paths: [\"modules/s3/main.tf\"]\n    statement: EX-3 approved\n    expired_at: 2027-01-01\n")
        dir.write("repo/.snyk", "version: v1.25.0\nignore:\n  SNYK-JS-LODASH-567746:\n    - '*':\n        reason: no upgrade path\n        expires: 2027-01-15T00:00:00.000Z\n")
        dir.write("repo/.checkov.yml", "skip-check: CKV_AWS_1, CKV_AWS_2\n")
        dir.write("repo/.tfsec/config.json", "{\"exclude\": [\"aws-vpc-no-public-egress-sgr\"]}\n")
        dir.write("repo/.semgrepignore", "# generated code\nvendor/\n")
        dir.write("repo/.git/config", "#checkov:skip=CKV_NOT_REAL:inside .git, never read\n")
    }

    @Test func everySyntaxIsFoundWithItsFileLineSubjectAndJustification() throws {
        let dir = TempDir()
        Self.repository(dir)
        let found = try SuppressionScanner.scan(dir.path + "/repo").suppressions
        let rows = found.map { "\($0.location) \($0.tool) \($0.rule) \($0.subject) \($0.justification ?? "-") \($0.expires ?? "-") \($0.names.map(String.init) ?? "-")" }
        #expect(rows.sorted() == [
            ".checkov.yml:1 checkov CKV_AWS_1 * - - -",
            ".checkov.yml:1 checkov CKV_AWS_2 * - - -",
            ".semgrepignore:2 semgrep * vendor/ - - -",
            ".snyk:4 snyk SNYK-JS-LODASH-567746 * no upgrade path 2027-01-15T00:00:00.000Z -",
            ".tfsec/config.json:1 tfsec aws-vpc-no-public-egress-sgr * - - -",
            ".trivyignore.yaml:2 trivy AVD-AWS-0086 modules/s3/main.tf EX-3 approved 2027-01-01 3",
            ".trivyignore:2 trivy CVE-2023-44487 * until the base image is rebuilt 2027-01-31 -",
            ".trivyignore:4 trivy AVD-AWS-0107 * - - -",
            "app/run.py:2 semgrep python.lang.security.audit.dangerous-system-call app/run.py:2 - - -",
            "app/run.py:3 semgrep * app/run.py:4 - - -",
            "main.tf:11 checkov CKV_AWS_18 module.logs access logs not needed - -",
            "main.tf:14 kics * main.tf:15 - - -",
            "main.tf:2 checkov CKV_AWS_20 aws_s3_bucket.site The bucket hosts the public site - -",
            "main.tf:6 tfsec aws-s3-enable-bucket-logging aws_s3_bucket.scratch - 2027-01-31 -",
            "main.tf:8 trivy AVD-AWS-0089 aws_s3_bucket.scratch logs go elsewhere, EX-7 - 7",
        ], "\(rows.sorted())")
    }

    @Test func windowsLineEndingsAndPathologicalLinesAreReadAlike() throws {
        let dir = TempDir()
        dir.write("repo/main.tf", "resource \"aws_s3_bucket\" \"a\" {\r\n  #checkov:skip=CKV_AWS_20:public site\r\n}\r\n")
        // One 1 MiB line of markers that are not comments: read in linear time, nothing found.
        dir.write("repo/odd.tf", "nosemgrep" + String(repeating: " <!- < -", count: 131_072) + "\n")
        let found = try SuppressionScanner.scan(dir.path + "/repo").suppressions
        #expect(found.map { "\($0.location) \($0.subject) \($0.justification ?? "-")" } == ["main.tf:2 aws_s3_bucket.a public site"], "\(found)")
    }

    @Test func aBrokenIgnoreFileIsNamedAndTheRestIsStillScanned() throws {
        let dir = TempDir()
        dir.write("repo/.snyk", "ignore: [unclosed\n")
        dir.write("repo/main.tf", "#tfsec:ignore:aws-x\nresource \"a\" \"b\" {\n}\n")
        let r = try SuppressionScanner.scan(dir.path + "/repo")
        #expect(r.suppressions.map(\.rule) == ["aws-x"])
        #expect(r.problems.count == 1 && r.problems[0].description.hasPrefix(".snyk:"), "\(r.problems)")
        #expect(throws: InputError.self) { try SuppressionScanner.scan(dir.path + "/missing") }
    }

    @Test func aScanTellsGovernedFromUngovernedAndBringsTheRestUnderGovernance() throws {
        let w = try Workspace()
        Self.repository(w.dir)
        let repo = w.dir.path + "/repo"
        // Nothing is governed: exit 0 by default outside CI, 1 with --fail-on ungoverned or in CI.
        let first = try waiver(["suppressions", "scan", repo, "--workspace", "shop"], in: w.dir.path,
                               env: ["CI": "", "WAIVER_REGISTER": w.register, "WAIVER_NOW": "2026-11-22T10:00:00Z"])
        #expect(first.code == 0 && first.out.contains("UNGOVERNED: 15 suppressions (0 governed, 0 pending, 15 ungoverned)"), "\(first.out) \(first.err)")
        #expect(try w.run(["suppressions", "scan", repo, "--workspace", "shop", "--fail-on", "ungoverned"]).code == 1)
        let ci = try waiver(["suppressions", "scan", repo, "--workspace", "shop"], in: w.dir.path,
                            env: ["CI": "true", "WAIVER_REGISTER": w.register, "WAIVER_NOW": "2026-11-22T10:00:00Z"])
        #expect(ci.code == 1, "\(ci.err)")

        // One request per ungoverned suppression of a named rule; the justification is the reason.
        let asked = try w.run(["suppressions", "scan", repo, "--workspace", "shop", "--request", "--reason", "found by the first scan",
                               "--likelihood", "low", "--impact", "low", "--format", "json", "--fail-on", "never"])
        #expect(asked.code == 0, "\(asked.err)")
        #expect(asked.err.contains("app/run.py:3: nosemgrep silences every rule; name the rule"), "\(asked.err)")
        let summary = try JSONReader.parse(Data(asked.out.utf8))["summary"]
        #expect(summary?["pending"] == .number(12) && summary?["ungoverned"] == .number(3), "\(asked.out)")
        let site = try JSONReader.parse(Data(try w.run(["list", "--policy", "CKV_AWS_20", "--format", "json"]).out.utf8))
        #expect(site.arrayValue?.first?["reason"] == "The bucket hosts the public site" && site.arrayValue?.first?["resources"] == .array(["aws_s3_bucket.site"]), "\(site)")
        let other = try JSONReader.parse(Data(try w.run(["list", "--policy", "AVD-AWS-0107", "--format", "json"]).out.utf8))
        #expect(other.arrayValue?.first?["reason"] == "found by the first scan")

        // Approved: governed until its expiry instant, ungoverned from then on.
        let id = try #require(site.arrayValue?.first?["id"]?.stringValue)
        #expect(try w.run(["approve", id, "--comment", "marketing site"], as: "sam").code == 0)
        let after = try JSONReader.parse(Data(try w.run(["suppressions", "scan", repo, "--workspace", "shop", "--format", "json"]).out.utf8))
        let row = try #require(after["suppressions"]?.arrayValue?.first { $0["rule"] == "CKV_AWS_20" })
        #expect(row["status"] == "governed" && row["exception"] == .string(id), "\(row)")
        let expires = try #require(row["exception_expires"]?.stringValue)
        #expect(row["outlives_exception"] == nil)
        // A governed suppression whose own expiry (.trivyignore exp:2027-01-31) is later than its
        // exception's is called out: Trivy would go on honouring it.
        let cve = try JSONReader.parse(Data(try w.run(["list", "--policy", "CVE-2023-44487", "--format", "json"]).out.utf8))
        let cveId = try #require(cve.arrayValue?.first?["id"]?.stringValue)
        #expect(try w.run(["approve", cveId], as: "sam").code == 0)
        let outlived = try w.run(["suppressions", "scan", repo, "--workspace", "shop"])
        #expect(outlived.out.contains("but trivy honours it until 2027-01-31, after \(cveId) expires"), "\(outlived.out)")
        let later = try JSONReader.parse(Data(try w.run(["suppressions", "scan", repo, "--workspace", "shop", "--format", "json"], at: expires).out.utf8))
        #expect(later["suppressions"]?.arrayValue?.first { $0["rule"] == "CKV_AWS_20" }?["status"] == "ungoverned")
        // Another workspace's exception does not govern this one's suppression.
        let elsewhere = try JSONReader.parse(Data(try w.run(["suppressions", "scan", repo, "--workspace", "other", "--format", "json"]).out.utf8))
        #expect(elsewhere["suppressions"]?.arrayValue?.first { $0["rule"] == "CKV_AWS_20" }?["status"] == "ungoverned")

        // The SARIF report passes the official schema.
        let sarif = w.dir.path + "/suppressions.sarif"
        #expect(try w.run(["suppressions", "scan", repo, "--workspace", "shop", "--format", "sarif", "--output", sarif, "--fail-on", "never"]).code == 0)
        #expect(problems(try consumer("sarif", sarif)) == [])
    }

    /// Naming an exception governs nothing by itself: an insider cannot borrow another resource's,
    /// another rule's or another workspace's exception by writing its id in a comment. Only an active
    /// exception to the rule on exactly what the suppression silences governs it.
    @Test func namingAnExceptionIsNotGovernance() throws {
        let w = try Workspace()
        w.dir.write("policies/scanners.yaml", "policies:\n  - { id: CKV_AWS_20, title: public read, category: security, severity: medium, source: sarif }\n")
        #expect(try w.run(["request", "--policy", "CKV_AWS_20", "--resource", "aws_s3_bucket.site", "--workspace", "shop", "--reason", "site", "--likelihood", "low"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        func scan(_ workspace: String = "shop") throws -> Value {
            try JSONReader.parse(Data(try w.run(["suppressions", "scan", w.dir.path + "/repo", "--workspace", workspace, "--format", "json"]).out.utf8))
        }
        // Another resource, and everywhere (a global ignore entry), both naming EX-1.
        w.dir.write("repo/main.tf", "resource \"aws_s3_bucket\" \"other\" {\n  #checkov:skip=CKV_AWS_20:see EX-1\n}\n")
        w.dir.write("repo/.checkov.yaml", "skip-check: [CKV_AWS_20]\n")
        let borrowed = try scan()
        #expect(borrowed["summary"]?["governed"] == .number(0) && borrowed["summary"]?["ungoverned"] == .number(2), "\(borrowed)")
        let text = try w.run(["suppressions", "scan", w.dir.path + "/repo", "--workspace", "shop"]).out
        #expect(text.contains("(it names EX-1, which does not)"), "\(text)")
        // The resource it was approved for: governed, in its workspace only.
        w.dir.write("repo/main.tf", "resource \"aws_s3_bucket\" \"site\" {\n  #checkov:skip=CKV_AWS_20:marketing site\n}\n")
        try FileManager.default.removeItem(atPath: w.dir.path + "/repo/.checkov.yaml")
        #expect(try scan()["summary"]?["governed"] == .number(1))
        #expect(try scan("other")["summary"]?["governed"] == .number(0))
    }

    @Test func checkWithSuppressionsGatesOnTheUngovernedOnes() throws {
        let w = try Workspace()
        w.dir.write("repo/main.tf", "resource \"aws_s3_bucket\" \"site\" {\n  #checkov:skip=CKV_AWS_20:public site\n}\n")
        let blocked = try w.run(["check", "--suppressions", w.dir.path + "/repo", "--workspace", "shop", "--format", "json"], as: "ci")
        #expect(blocked.code == 1, "\(blocked.err)")
        let row = try #require(try JSONReader.parse(Data(blocked.out.utf8))["results"]?.arrayValue?.first)
        #expect(row["policy"] == "CKV_AWS_20" && row["resource"] == "aws_s3_bucket.site" && row["status"] == "blocking", "\(row)")
        #expect(try w.run(["check", "--suppressions", w.dir.path + "/repo", "--workspace", "shop", "--request", "--reason", "x", "--likelihood", "low"], as: "ci").code == 1)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        let passed = try w.run(["check", "--suppressions", w.dir.path + "/repo", "--workspace", "shop", "--format", "json"], as: "ci")
        #expect(passed.code == 0, "\(passed.out)")
        #expect(try JSONReader.parse(Data(passed.out.utf8))["results"]?.arrayValue?.first?["status"] == "excepted")
        #expect(try w.run(["check", "--suppressions", w.dir.path + "/nope", "--workspace", "shop"], as: "ci").code == 2)
    }
}

@Suite("Suppressions and exports through a server", .serialized)
struct SuppressionServerTests {
    /// The scan, its requests (one batch, all or none) and the export run over `--server` as on a
    /// local register: the server's own rules and register.
    @Test func scanRequestApproveAndExportOverAServer() async throws {
        let w = try Workspace()
        let dev = try w.addUser("dev", ["developers"]), sam = try w.addUser("sam", ["security"])
        w.dir.write("repo/.trivyignore", "# accepted until the base image is rebuilt\nCVE-2023-44487\n")
        w.dir.write("repo/main.tf", "resource \"aws_s3_bucket\" \"site\" {\n  #checkov:skip=CKV_AWS_20\n}\n")
        let server = LiveServer(w)
        try server.start()
        defer { _ = server.stop() }
        let repo = w.dir.path + "/repo"
        // One suppression has no justification and no --reason is given: refused, nothing filed.
        let refused = try server.run(["suppressions", "scan", repo, "--workspace", "shop", "--request", "--likelihood", "low"], token: dev)
        #expect(refused.code == 2 && refused.err.contains("main.tf:2: checkov:skip CKV_AWS_20 has no justification; give --reason"), "\(refused.err)")
        #expect(try server.run(["list"], token: sam).out == "No exceptions.\n")
        let asked = try server.run(["suppressions", "scan", repo, "--workspace", "shop", "--request", "--reason", "public site", "--likelihood", "low", "--format", "json", "--fail-on", "never"], token: dev)
        #expect(asked.code == 0, "\(asked.err)")
        #expect(try JSONReader.parse(Data(asked.out.utf8))["summary"]?["pending"] == .number(2), "\(asked.out)")
        for id in ["EX-1", "EX-2"] { #expect(try server.run(["approve", id], token: sam).code == 0) }
        let governed = try server.run(["suppressions", "scan", repo, "--workspace", "shop", "--fail-on", "ungoverned"], token: dev)
        #expect(governed.code == 0 && governed.out.contains("GOVERNED: 2 suppressions (2 governed, 0 pending, 0 ungoverned)"), "\(governed.out) \(governed.err)")
        // The check's gate over the server: both governed, so it passes, each reported as excepted.
        let gate = try server.run(["check", "--suppressions", repo, "--workspace", "shop", "--format", "json"], token: dev)
        #expect(gate.code == 0, "\(gate.out) \(gate.err)")
        let statuses = try JSONReader.parse(Data(gate.out.utf8))["results"]?.arrayValue?.compactMap { $0["status"]?.stringValue }
        #expect(statuses == ["excepted", "excepted"], "\(gate.out)")
        let exported = try server.run(["export", "--format", "trivyignore", "--workspace", "shop"], token: dev)
        #expect(exported.code == 0 && exported.out.contains("\nCVE-2023-44487 exp:"), "\(exported.out) \(exported.err)")
    }
}
