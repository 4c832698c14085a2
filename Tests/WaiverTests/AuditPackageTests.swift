import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverStore

/// Issue 14, item 10: the audit package, read back by Python's zipfile (another ZIP reader than ours),
/// its SHA256SUMS checked by sha256sum, its audit log verified offline by `waiver audit verify --file`.
@Suite("The audit package", .serialized)
struct AuditPackageTests {
    /// Unzips with Python's zipfile into a folder; the folder.
    static func unzip(_ zip: String, into out: TempDir) throws -> String {
        let r = try runProgram("/usr/bin/env", ["python3", "-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; z.extractall(sys.argv[2])",
                                                zip, out.path], in: out.path)
        #expect(r.code == 0, "\(r.err)")
        return out.path + "/waiver-audit"
    }

    static func sha256sumCheck(_ folder: String) throws -> (Int32, String) {
        let r = try runProgram("/usr/bin/env", ["sha256sum", "-c", "SHA256SUMS"], in: folder)
        return (r.code, r.out + r.err)
    }

    @Test func aQuartersPackageHoldsTheRecordTheEvidenceAndItsVerification() async throws {
        let w = try Workspace()
        let agreement = w.dir.write("byod.txt", "signed BYOD agreement")
        #expect(try w.run(["request", "--kind", "person", "--policy", "CTRL-HR-001", "--resource", "ann", "--reason", "contractor laptop",
                           "--likelihood", "low", "--impact", "high", "--evidence", agreement, "--evidence-text", "User has signed a BYOD agreement"],
                          at: "2026-11-02T10:00:00Z").code == 0)
        #expect(try w.run(["approve", "EX-1", "--comment", "MFA enforced"], as: "sam", at: "2026-11-03T10:00:00Z").code == 0)
        // Filed before the period and never active in it: left out.
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "old", "--workspace", "shop", "--reason", "q3"], at: "2026-08-01T10:00:00Z").code == 0)
        #expect(try w.run(["reject", "EX-2", "--comment", "no"], as: "fin", at: "2026-08-02T10:00:00Z").code == 0)
        let zip = w.dir.path + "/q4.zip"
        let r = try w.run(["audit", "package", "--from", "2026-10-01", "--to", "2026-12-31", "--output", zip], at: "2026-12-07T10:00:00Z")
        #expect(r.code == 0 && r.out.contains("1 evidence file"), "\(r.err)")
        let unzipped = TempDir()
        let folder = try Self.unzip(zip, into: unzipped)
        let (sums, text) = try Self.sha256sumCheck(folder)
        #expect(sums == 0 && text.contains("register.csv: OK") && text.contains("summary.md: OK"), "\(text)")
        let sha = AuditChain.sha256(Data("signed BYOD agreement".utf8))
        #expect(FileManager.default.contents(atPath: folder + "/evidence/\(sha)-byod.txt") == Data("signed BYOD agreement".utf8))
        let csv = try String(contentsOfFile: folder + "/register.csv", encoding: .utf8)
        #expect(csv.contains("User has signed a BYOD agreement") && csv.contains("approved by sam: MFA enforced") && !csv.contains("\"EX-2\""))
        let summary = try String(contentsOfFile: folder + "/summary.md", encoding: .utf8)
        #expect(summary.contains("### SOC2:CC1.4") && summary.contains("### CTRL-HR-001 · Staff with production access"), "\(summary)")
        #expect(summary.contains("Audit log: intact, 5 events"), "\(summary)")
        #expect(try String(contentsOfFile: folder + "/verification.txt", encoding: .utf8).hasPrefix("audit log intact: 5 events verified"))
        let offline = try w.run(["audit", "verify", "--file", folder + "/audit-log.jsonl"])
        #expect(offline.code == 0 && offline.out.hasPrefix("audit log intact: 5 events verified"), "\(offline.out)")
        // A period that ends before it starts is refused, nothing written.
        let bad = try w.run(["audit", "package", "--from", "2026-12-31", "--to", "2026-10-01", "--output", w.dir.path + "/bad.zip"])
        #expect(bad.code == 2 && !FileManager.default.fileExists(atPath: w.dir.path + "/bad.zip"), "\(bad.err)")
    }

    @Test func thePackageDownloadsFromTheAuditPage() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["i.a"], reason: "batch"), actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(e.id, actor: "fin", comment: "ok", days: nil, now: t0)
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.a"], reason: "vendor", likelihood: .low),
                                               actor: "dev", now: t0)
        try await f.app().test(.router) { c in
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            let audit = try await b.get(c, "/audit").1
            #expect(audit.contains("action=\"/audit/package\""))
            let (status, headers, body) = try await c.execute(uri: "/audit/package?from=2026-10-01&to=2026-12-31", method: .get, headers: b.headers()) { r in
                (r.status, r.headers, Data(r.body.readableBytesView))
            }
            #expect(status == .ok && headers[.contentType] == "application/zip")
            #expect(headers[.contentDisposition] == "attachment; filename=\"waiver-audit-2026-10-01-2026-12-31.zip\"")
            let dir = TempDir()
            let zip = dir.write("p.zip", "")
            try body.write(to: URL(fileURLWithPath: zip))
            let folder = try Self.unzip(zip, into: dir)
            #expect(try Self.sha256sumCheck(folder).0 == 0)
            #expect(try String(contentsOfFile: folder + "/register.csv", encoding: .utf8).contains("approved by fin: ok"))
            #expect(try await b.get(c, "/audit/package?from=banana&to=2026-12-31").0 == 400)
            // Controls: NET-001 names SOC2:CC6.6; the register filters by control.
            let controls = try await b.get(c, "/controls").1
            #expect(controls.contains("<td data-label=\"Control\" class=\"mono\">SOC2:CC6.6</td>") && controls.contains("<a href=\"/policies/NET-001\">NET-001</a>"), "\(controls)")
            let filtered = try await b.get(c, "/register?control=SOC2:CC6.6").1
            #expect(filtered.contains("id=\"count\">1 exceptions") && filtered.contains(">EX-2<") && !filtered.contains(">EX-1<"), "\(filtered)")
            #expect(try await b.get(c, "/register").1.contains("id=\"count\">2 exceptions"))
        }
    }
}
