import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// An approval covers the violating values the approver saw, not whatever the resource becomes.
@Suite("Exceptions bound to the approved values", .serialized)
struct ValueBindingTests {
    /// A security group with SSH open to the internet on ports `from`-`to`.
    static func plan(from: Int, to: Int) -> String {
        planJSON([change("aws_security_group.vendor", after: """
            {"name":"vendor","description":"vendor access","tags":{"owner":"team-web","environment":"prod","Name":"web-prod-vendor"},"ingress":[{"cidr_blocks":["0.0.0.0/0"],"from_port":\(from),"to_port":\(to),"protocol":"tcp"}]}
            """)])
    }

    static func net001(_ out: String) throws -> Value {
        let v = try JSONReader.parse(Data(out.utf8))
        return try #require(v["results"]?.arrayValue?.first { $0["policy"] == "NET-001" }, "\(out)")
    }

    @Test func anApprovalCoversTheValuesItWasApprovedForAndNothingElse() throws {
        let w = try Workspace()
        let narrow = w.dir.write("narrow.json", Self.plan(from: 22, to: 22))
        let wide = w.dir.write("wide.json", Self.plan(from: 0, to: 65535))
        let filed = try w.run(["check", "--plan", narrow, "--workspace", "shop", "--request", "--reason", "vendor SSH for the migration", "--likelihood", "low", "--format", "json"], as: "ci")
        #expect(filed.code == 1, "\(filed.err)")
        let show = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        let bound = try #require(show["bound"]?["aws_security_group.vendor"]?.stringValue, "\(show)")
        #expect(bound.contains("from_port = 22 (<= 22)") && bound.contains("to_port = 22 (>= 22)"), "\(bound)")
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)

        // The same values: excepted.
        let same = try Self.net001(try w.run(["check", "--plan", narrow, "--workspace", "shop", "--format", "json"], as: "ci").out)
        #expect(same["status"] == "excepted" && same["exception"] == "EX-1")

        // Every port open instead of 22: the exception does not cover it; it blocks as changed,
        // with the approved values beside the new ones.
        let run = try w.run(["check", "--plan", wide, "--workspace", "shop", "--format", "json"], as: "ci")
        #expect(run.code == 1)
        let changed = try Self.net001(run.out)
        #expect(changed["status"] == "changed" && changed["exception"] == "EX-1", "\(changed)")
        #expect(changed["approved_values"]?.stringValue == bound)
        #expect(changed["message"]?.stringValue?.contains("to_port = 65535") == true)
        let summary = try JSONReader.parse(Data(run.out.utf8))["summary"]
        #expect(summary?["changed"] == .number(1), "\(run.out)")
        let text = try w.run(["check", "--plan", wide, "--workspace", "shop"], as: "ci")
        #expect(text.out.contains("CHANGED   NET-001") && text.out.contains("EX-1 was approved for other values"), "\(text.out)")
        #expect(text.out.contains("1 changed"), "\(text.out)")

        // Requesting on the changed check files an amended exception for the new values; once
        // approved, each exception covers its own values.
        let amend = try w.run(["check", "--plan", wide, "--workspace", "shop", "--request", "--reason", "vendor needs a port range for the migration tool", "--likelihood", "low", "--format", "json"], as: "ci")
        #expect(try Self.net001(amend.out)["status"] == "pending", "\(amend.out)")
        #expect(try w.run(["approve", "EX-2"], as: "pat").code == 0)
        #expect(try Self.net001(try w.run(["check", "--plan", wide, "--workspace", "shop", "--format", "json"], as: "ci").out)["exception"] == "EX-2")
        #expect(try Self.net001(try w.run(["check", "--plan", narrow, "--workspace", "shop", "--format", "json"], as: "ci").out)["exception"] == "EX-1")

        // Unbinding EX-1 behind the log's back does not widen it: the register no longer trusts it.
        try tamper(w.register, "UPDATE exception SET bound = NULL WHERE id = 1")
        let tampered = try w.run(["check", "--plan", narrow, "--workspace", "shop", "--format", "json"], as: "ci")
        // (EX-2, approved for the wide values, is the one left on the pair.)
        let row = try Self.net001(tampered.out)
        #expect(row["status"] == "changed" && row["exception"] == "EX-2", "\(tampered.out)")
        #expect(tampered.out.contains("EX-1 is not applied"), "\(tampered.out)")
    }

    @Test func aManualRequestBindsTheLatestCheckedValuesAndAPolicyMayBindTheResource() throws {
        let w = try Workspace()
        let narrow = w.dir.write("narrow.json", Self.plan(from: 22, to: 22))
        let wide = w.dir.write("wide.json", Self.plan(from: 0, to: 65535))
        _ = try w.run(["check", "--plan", narrow, "--workspace", "shop"], as: "ci")
        #expect(try w.run(["request", "--policy", "NET-001", "--resource", "aws_security_group.vendor", "--workspace", "shop", "--reason", "vendor", "--likelihood", "low"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        #expect(try Self.net001(try w.run(["check", "--plan", wide, "--workspace", "shop", "--format", "json"], as: "ci").out)["status"] == "changed")

        // exceptions.bind: resource — the same exception covers the wider values.
        let path = w.dir.path + "/policies/network.yaml"
        let yaml = try String(contentsOfFile: path, encoding: .utf8)
        let opted = yaml.replacingOccurrences(of: "    exceptions:\n      max_days: 14\n      approvers: [security]\n      min_approvals: 1\n",
                                              with: "    exceptions:\n      max_days: 14\n      approvers: [security]\n      min_approvals: 1\n      bind: resource\n", options: [], range: nil)
        #expect(opted != yaml)
        try opted.write(toFile: path, atomically: true, encoding: .utf8)
        let row = try Self.net001(try w.run(["check", "--plan", wide, "--workspace", "shop", "--format", "json"], as: "ci").out)
        #expect(row["status"] == "excepted" && row["exception"] == "EX-1", "\(row)")

        // A bad value is a load error naming the file and line.
        try yaml.replacingOccurrences(of: "      min_approvals: 1\n", with: "      min_approvals: 1\n      bind: everything\n").write(toFile: path, atomically: true, encoding: .utf8)
        let bad = try w.run(["check", "--plan", wide, "--workspace", "shop"], as: "ci")
        #expect(bad.code == 2 && bad.err.contains("network.yaml:") && bad.err.contains("exceptions.bind: 'everything' is not values or resource"), "\(bad.err)")
    }

    @Test func aScannerFindingIsBoundToItsMessageAndSnippet() throws {
        let w = try Workspace()
        func sarif(_ snippet: String) -> String {
            """
            {"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Checkov","rules":[{"id":"CKV_AWS_20","shortDescription":{"text":"S3 bucket public read"}}]}},
             "results":[{"ruleId":"CKV_AWS_20","level":"error","message":{"text":"S3 bucket allows public read"},
              "locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":3,"snippet":{"text":"\(snippet)"}}},
                            "logicalLocations":[{"fullyQualifiedName":"aws_s3_bucket.site"}]}]}]}]}
            """
        }
        let before = w.dir.write("before.sarif", sarif("acl = \\\"public-read\\\""))
        let after = w.dir.write("after.sarif", sarif("acl = \\\"public-read-write\\\""))
        func row(_ file: String) throws -> Value {
            let out = try w.run(["check", "--sarif", file, "--workspace", "site", "--format", "json"], as: "ci").out
            return try #require(try JSONReader.parse(Data(out.utf8))["results"]?.arrayValue?.first { $0["policy"] == "CKV_AWS_20" }, "\(out)")
        }
        #expect(try w.run(["check", "--sarif", before, "--workspace", "site", "--request", "--reason", "static site", "--likelihood", "low"], as: "ci").code == 1)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        #expect(try row(before)["status"] == "excepted")
        let changed = try row(after)
        #expect(changed["status"] == "changed" && changed["approved_values"]?.stringValue?.contains("public-read\"") == true, "\(changed)")
    }
}
