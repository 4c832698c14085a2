import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// Issue 14, item 16: enforcement levels. An advisory policy's violation is reported, never blocks
/// and needs no exception; `--fail-on SEVERITY` makes the lower ones advisory for one check;
/// `waiver policies list` shows what is loaded.
@Suite("Enforcement levels", .serialized)
struct EnforcementTests {
    /// The repository's workspace with COST-001 made advisory.
    static func workspace() throws -> Workspace {
        let w = try Workspace()
        let cost = try #require(w.dir.read("policies/cost.yaml"))
        w.dir.write("policies/cost.yaml", cost.replacingOccurrences(of: "  - id: COST-001\n", with: "  - id: COST-001\n    enforcement: advisory\n"))
        return w
    }

    @Test func anAdvisoryViolationIsReportedNeverBlocksAndNeedsNoException() async throws {
        let w = try Self.workspace()
        let r = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--format", "json", "--request", "--reason", "launch"], as: "ci")
        let v = try JSONReader.parse(Data(r.out.utf8))
        let cost = try #require(v["results"]?.arrayValue?.first { $0["policy"] == "COST-001" })
        #expect(cost["status"] == "advisory" && cost["exception"] == nil)
        #expect(v["summary"]?["advisory"] == 1)
        // No request for it; requests for the mandatory ones.
        let requested = v["requested"]?.arrayValue ?? []
        let list = try JSONReader.parse(Data(try w.run(["list", "--format", "json"]).out.utf8)).arrayValue ?? []
        #expect(!requested.isEmpty && list.count == requested.count && !list.contains { $0["policy"] == "COST-001" })
        // The text report, SARIF (note) and JUnit (skipped) say so.
        let text = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record"], as: "ci").out
        #expect(text.contains("  ADVISORY  COST-001  EC2 instances use an approved instance type"), "\(text)")
        #expect(text.contains(", 1 advisory)"), "\(text)")
        let sarif = try JSONReader.parse(Data(try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--format", "sarif"], as: "ci").out.utf8))
        let result = sarif["runs"]?.arrayValue?.first?["results"]?.arrayValue?.first { $0["ruleId"] == "COST-001" }
        #expect(result?["level"] == "note")
        let junit = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--format", "junit"], as: "ci").out
        #expect(junit.contains("<skipped message=\"advisory: reported, does not block\"/>"))
    }

    @Test func failOnMakesTheLowerSeveritiesAdvisoryForOneCheck() async throws {
        let w = try Workspace()
        let all = try JSONReader.parse(Data(try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--format", "json"], as: "ci").out.utf8))
        let high = try JSONReader.parse(Data(try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--format", "json", "--fail-on", "high"], as: "ci").out.utf8))
        let results = high["results"]?.arrayValue ?? []
        #expect(!results.isEmpty)
        for f in results where f["status"] != "unknown" {
            let severe = f["severity"] == "high" || f["severity"] == "critical"
            #expect(f["status"] == (severe ? "blocking" : "advisory"), "\(f)")
        }
        #expect(all["summary"]?["advisory"] == 0 && (high["summary"]?["advisory"]?.numberValue ?? 0) > 0)
        #expect(high["summary"]?["violations"] == all["summary"]?["violations"])
        let critical = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--fail-on", "critical"], as: "ci")
        let anyCritical = (all["results"]?.arrayValue ?? []).contains { $0["severity"] == "critical" && $0["status"] == "blocking" }
        #expect(critical.code == (anyCritical ? 1 : 0))
        #expect(try w.run(["check", "--plan", webApp, "--fail-on", "severe"]).code == 2)
    }

    @Test func policiesListShowsWhatIsLoaded() async throws {
        let w = try Self.workspace()
        let text = try w.run(["policies", "list"]).out
        #expect(text.hasPrefix("ID") && text.contains("32 policies"), "\(text)")
        let json = try JSONReader.parse(Data(try w.run(["policies", "list", "--format", "json"]).out.utf8)).arrayValue ?? []
        let cost = try #require(json.first { $0["id"] == "COST-001" })
        #expect(cost["enforcement"] == "advisory" && cost["file"] == "cost.yaml:3" && cost["source"] == "plan")
        #expect(cost["exceptions"]?["approvers"] == .array(["finance", "engineering-managers"]) && cost["exceptions"]?["max_days"] == 30)
        let net = try #require(json.first { $0["id"] == "NET-001" })
        #expect(net["enforcement"] == "mandatory" && net["controls"] == .array(["SOC2:CC6.6", "ISO27001:A.8.20"]))
        w.dir.write("policies/bad.yaml", "policies:\n  - id: X-1\n    title: x\n    enforcement: sometimes\n    require: { path: a, exists: true }\n")
        let bad = try w.run(["policies", "list"])
        #expect(bad.code == 2 && bad.err.contains("unknown enforcement 'sometimes'"), "\(bad.err)")
    }
}

/// Issue 14, item 17: policies are tested like code (`waiver policies test`), and the starter pack
/// ships a case for every plan policy.
@Suite("Policy tests", .serialized)
struct PolicyTestCommandTests {
    @Test func theStarterPackPassesItsOwnTestsAndCoversEveryPlanPolicy() throws {
        let r = try waiver(["policies", "test"])
        #expect(r.code == 0 && r.out.hasSuffix("0 failed; every plan policy has a case\n"), "\(r.out)\(r.err)")
        // `waiver init` writes the tests with the policies, and they pass there too.
        let dir = TempDir()
        #expect(try waiver(["init", "--directory", dir.path]).code == 0)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/policies/network_test.yaml"))
        #expect(try waiver(["policies", "test", dir.path + "/policies"]).code == 0)
    }

    @Test func aFailingCaseSaysWhatItExpectedAndWhatItGot() throws {
        let w = try Workspace()
        w.dir.write("policies/mine_test.yaml", """
            tests:
              - name: a 4xlarge is fine (it is not)
                resource: { type: aws_instance, values: { instance_type: m5.4xlarge } }
                expect: { COST-002: compliant, NOPE-1: violated, DB-001: violated }
            """)
        let r = try w.run(["policies", "test"])
        #expect(r.code == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("FAIL mine_test.yaml:2  a 4xlarge is fine (it is not)"), "\(r.out)")
        #expect(r.out.contains(#"COST-002: expected compliant, got violated (instance_type = "m5.4xlarge""#), "\(r.out)")
        #expect(r.out.contains("NOPE-1: no such policy") && r.out.contains("DB-001: does not apply to aws_instance"), "\(r.out)")
        w.dir.write("policies/mine_test.yaml", "tests:\n  - name: x\n    resource: { type: aws_instance }\n    expect: { COST-002: broken }\n")
        let bad = try w.run(["policies", "test"])
        #expect(bad.code == 2 && bad.err.contains("mine_test.yaml:4") && bad.err.contains("'broken' is not violated, compliant or unknown"), "\(bad.err)")
        // Test files are never read as policies.
        #expect(try w.run(["policies", "list"]).code == 0)
    }
}
