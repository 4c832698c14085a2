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
