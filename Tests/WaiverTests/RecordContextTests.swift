import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

/// Issue 14: what approvers, requesters and auditors see about a request — its origin, its ticket,
/// evidence with display text (also after a decision), a person's own requests, and renewals from
/// a pipeline (`check --request --renews`).
@Suite("The record around a request", .serialized)
struct RecordContextTests {
    @Test func checkRecordsTheOriginTheCISays() async throws {
        let w = try Workspace()
        // GitLab's own variables: the commit, the pipeline, the merge request and its author.
        let gitlab = ["GITLAB_CI": "true", "CI_COMMIT_SHA": "4f2a9c1d", "CI_PIPELINE_URL": "https://gitlab.example.com/shop/infra/-/pipelines/881",
                      "CI_PROJECT_URL": "https://gitlab.example.com/shop/infra", "CI_MERGE_REQUEST_IID": "12", "CI_COMMIT_AUTHOR": "fin"]
        let r = try waiver(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "Launch on Friday", "--ticket", "CHG-7", "--quiet"],
                           in: w.dir.path, env: gitlab.merging(["WAIVER_ACTOR": "ci", "WAIVER_NOW": "2026-11-22T10:00:00Z", "WAIVER_REGISTER": w.register]) { $1 })
        #expect(r.code == 1, "\(r.err)")
        let shown = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        #expect(shown["origin"]?["commit"] == "4f2a9c1d")
        #expect(shown["origin"]?["run_url"] == "https://gitlab.example.com/shop/infra/-/pipelines/881")
        #expect(shown["origin"]?["change_url"] == "https://gitlab.example.com/shop/infra/-/merge_requests/12")
        #expect(shown["origin"]?["commit_author"] == "fin")
        #expect(shown["ticket"] == "CHG-7")
        // The author the CI names may not approve what their change asks for.
        #expect(shown["policy"] == "COST-001")
        let own = try w.run(["approve", "EX-1"], as: "fin")
        #expect(own.code == 2 && own.err.contains("they authored the change"), "\(own.err)")
        // Flags win over the variables; a run URL that is not http(s) is refused by name, nothing filed.
        let bad = try waiver(["check", "--plan", webApp, "--workspace", "shop", "--run-url", "javascript:alert(1)"], in: w.dir.path,
                             env: ["WAIVER_ACTOR": "ci", "WAIVER_REGISTER": w.register])
        #expect(bad.code == 2 && bad.err.contains("run_url must be an http(s) URL"), "\(bad.err)")
        // The text of show names them too.
        let text = try w.run(["show", "EX-1"]).out
        #expect(text.contains("commit:      4f2a9c1d by fin (declared)") && text.contains("ticket:      CHG-7"), "\(text)")
    }

    @Test func ticketsAreKeptSearchedAndChecked() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "a", "--workspace", "shop", "--reason", "x", "--ticket", "INC-42"]).code == 0)
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "b", "--workspace", "shop", "--reason", "y",
                           "--ticket", "https://jira.example.com/browse/OPS-9"]).code == 0)
        let found = try w.run(["list", "--ticket", "INC-42"]).out
        #expect(found.contains("EX-1") && !found.contains("EX-2"), "\(found)")
        let csv = try w.run(["list", "--format", "csv"]).out
        #expect(csv.contains("\"INC-42\"") && csv.contains("\"https://jira.example.com/browse/OPS-9\""), "\(csv)")
        let multiline = try w.run(["request", "--policy", "COST-001", "--resource", "c", "--workspace", "shop", "--reason", "z", "--ticket", "A\nB"])
        #expect(multiline.code == 2 && multiline.err.contains("the ticket is a reference"), "\(multiline.err)")
        let badURL = try w.run(["request", "--policy", "COST-001", "--resource", "c", "--workspace", "shop", "--reason", "z", "--ticket", "https://"])
        #expect(badURL.code == 2 && badURL.err.contains("the ticket must be an http(s) URL"), "\(badURL.err)")
        #expect(try w.run(["list"]).out.contains("2 exceptions"))
        // A renewal keeps the ticket unless it names another.
        #expect(try w.run(["approve", "EX-1"], as: "fin").code == 0)
        let renewal = try JSONReader.parse(Data(try w.run(["request", "--renews", "EX-1", "--reason", "the rewrite slipped", "--format", "json"]).out.utf8))
        #expect(renewal["ticket"] == "INC-42")
    }

    @Test func evidenceWithDisplayTextAlsoAfterTheDecision() async throws {
        let w = try Workspace()
        let agreement = w.dir.write("byod.txt", "signed agreement")
        #expect(try w.run(["request", "--kind", "person", "--policy", "CTRL-HR-001", "--resource", "ann", "--reason", "contractor laptop", "--likelihood", "low", "--impact", "high",
                           "--mitigation", "company-enforced MFA", "--evidence", agreement,
                           "--evidence-text", "User has signed a BYOD agreement; access is protected via company-enforced MFA"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        // Closure evidence after the decision, by the requester; a stranger may not add any.
        let cleared = w.dir.write("check.txt", "background check ok")
        let added = try w.run(["evidence", "add", "EX-1", cleared, "--display-text", "Background check cleared"])
        #expect(added.code == 0 && added.out.contains("Background check cleared"), "\(added.err)")
        let stranger = try w.run(["evidence", "add", "EX-1", cleared, "--display-text", "x"], as: "mallory")
        #expect(stranger.code == 2 && stranger.err.contains("mallory cannot add evidence to EX-1"), "\(stranger.err)")
        let shown = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        #expect(shown["evidence"]?.arrayValue?.compactMap { $0["display_text"]?.stringValue }
                == ["User has signed a BYOD agreement; access is protected via company-enforced MFA", "Background check cleared"])
        let last = try #require(shown["history"]?.arrayValue?.last)
        #expect(last["action"] == "evidence.added" && last["details"]?["after_decision"] == "approved")
        let text = try w.run(["show", "EX-1"]).out
        #expect(text.contains("“Background check cleared”"), "\(text)")
        #expect(try w.run(["audit", "verify"]).code == 0)
    }

    @Test func myRequestsSaysWhatWaitsWhatRunsAndWhatWasDecided() async throws {
        let w = try Workspace()
        for (r, who) in [("a", "dev"), ("b", "dev"), ("c", "dev"), ("d", "ann")] {
            #expect(try w.run(["request", "--policy", "COST-001", "--resource", r, "--workspace", "shop", "--reason", "x", "--days", "7"], as: who).code == 0)
        }
        #expect(try w.run(["approve", "EX-2"], as: "fin").code == 0)
        #expect(try w.run(["reject", "EX-3", "--comment", "use a smaller instance"], as: "fin").code == 0)
        let mine = try w.run(["list", "--mine"], at: "2026-11-25T10:00:00Z").out
        #expect(mine.contains("Pending (1)\n  EX-1") && mine.contains("waiting for 1 more approval from finance or engineering-managers"), "\(mine)")
        #expect(mine.contains("Active (1)\n  EX-2  COST-001  shop  b  4 days left, until 2026-11-29T10:00:00Z"), "\(mine)")
        #expect(mine.contains("Decided (1)\n  EX-3  COST-001  shop  c  rejected: rejected by fin at 2026-11-22T10:00:00Z: use a smaller instance"), "\(mine)")
        #expect(!mine.contains("EX-4"))
        let json = try JSONReader.parse(Data(try w.run(["list", "--mine", "--format", "json"], as: "ann").out.utf8))
        #expect(json.arrayValue?.compactMap { $0["id"]?.stringValue } == ["EX-4"])
    }

    /// The exports carry every decision with its comment and time, rejections and revocations with
    /// their reasons, the risk history with its re-rating, the evidence's display text and SHA-256,
    /// and the conflicted people.
    @Test func theExportsCarryTheWholeRecord() async throws {
        let w = try Workspace()
        let file = w.dir.write("sizing.txt", "cpu profile")
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "a", "--workspace", "shop", "--reason", "batch", "--evidence", file,
                           "--evidence-text", "CPU profile of the batch job", "--likelihood", "low", "--impact", "low"]).code == 0)
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "b", "--workspace", "shop", "--reason", "batch b"]).code == 0)
        #expect(try w.run(["approve", "EX-1", "--risk", "medium", "--comment", "sized for the quarter"], as: "fin", at: "2026-11-22T11:00:00Z").code == 0)
        #expect(try w.run(["reject", "EX-2", "--comment", "use spot instances"], as: "em", at: "2026-11-22T12:00:00Z").code == 0)
        #expect(try w.run(["revoke", "EX-1", "--comment", "the job moved to Fargate"], as: "fin", at: "2026-11-23T09:00:00Z").code == 0)
        let json = try JSONReader.parse(Data(try w.run(["list", "--format", "json"]).out.utf8)).arrayValue ?? []
        let first = try #require(json.first)
        let decisions = first["decisions"]?.arrayValue ?? []
        #expect(decisions.map { [$0["decision"], $0["by"], $0["at"], $0["comment"]] } == [
            ["approved", "fin", "2026-11-22T11:00:00Z", "sized for the quarter"], ["revoked", "fin", "2026-11-23T09:00:00Z", "the job moved to Fargate"]])
        #expect(first["risk_history"]?.arrayValue?.map { [$0["level"], $0["by"]] } == [["low", "dev"], ["medium", "fin"]])
        #expect(first["risk_history"]?.arrayValue?.last?["how"] == "raised from low by an approver")
        #expect(first["evidence"]?.arrayValue?.first?["display_text"] == "CPU profile of the batch job")
        #expect(json.last?["decisions"]?.arrayValue?.first?["comment"] == "use spot instances")
        let csv = try w.run(["list", "--format", "csv"]).out
        #expect(csv.contains("\"2026-11-22T11:00:00Z approved by fin: sized for the quarter\n2026-11-23T09:00:00Z revoked by fin: the job moved to Fargate\""), "\(csv)")
        #expect(csv.contains("2026-11-22T12:00:00Z rejected by em: use spot instances"))
        #expect(csv.contains("sizing.txt (\(AuditChain.sha256(Data("cpu profile".utf8)))): CPU profile of the batch job"))
        #expect(csv.contains("2026-11-22T11:00:00Z medium (raised from low by an approver, fin)"))
    }

    @Test func severalRequestsAreDecidedTogetherEachOnItsOwn() async throws {
        let w = try Workspace()
        #expect(try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "Launch on Friday", "--quiet"], as: "ci").code == 1)
        let filed = try JSONReader.parse(Data(try w.run(["list", "--format", "json"]).out.utf8)).arrayValue ?? []
        let cost = filed.filter { $0["category"] == "cost" }.compactMap { $0["id"]?.stringValue }
        let security = filed.filter { $0["category"] == "security" }.compactMap { $0["id"]?.stringValue }
        #expect(!cost.isEmpty && !security.isEmpty)
        let r = try w.run(["approve"] + cost + [security[0], "--comment", "capacity planned"], as: "fin")
        #expect(r.code == 2)
        #expect(r.out.split(separator: "\n").count == cost.count, "\(r.out)")
        #expect(r.err.contains("error: \(security[0]) refused: fin cannot approve \(security[0])"), "\(r.err)")
        // Every cost request carries fin's approval with the comment; the security one none.
        let after = try JSONReader.parse(Data(try w.run(["list", "--format", "json"]).out.utf8)).arrayValue ?? []
        for e in after {
            let approvers = e["approvals"]?.arrayValue?.compactMap { $0["approver"]?.stringValue } ?? []
            let comments = e["approvals"]?.arrayValue?.compactMap { $0["comment"]?.stringValue } ?? []
            if cost.contains(e["id"]?.stringValue ?? "") { #expect(approvers == ["fin"] && comments == ["capacity planned"]) } else { #expect(approvers.isEmpty) }
        }
        #expect(try w.run(["approve", "EX-1", "EX-2", "--days", "3"], as: "fin").err.contains("--days and --risk are for one exception at a time"))
    }

    @Test func aPipelineRenewsAnExpiredException() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "NET-001", "--resource", bastion, "--workspace", "shop", "--reason", "Vendor migration needs SSH", "--days", "7",
                           "--likelihood", "low", "--impact", "high"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam").code == 0)
        // While it is active, nothing in the check renews it: said, nothing filed.
        let early = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--renews", "EX-1", "--reason", "the vendor needs another week"], as: "ci")
        #expect(early.code == 2 && early.err.contains("--renews EX-1: nothing in this check renews it") && early.err.contains("while it is approved"), "\(early.err)")
        #expect(try w.run(["list"]).out.contains("1 exception\n"))
        #expect(try w.run(["expire"], as: "cron", at: "2026-11-29T10:00:00Z").code == 0)
        let same = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--renews", "EX-1", "--reason", "Vendor migration needs SSH!"],
                             as: "ci", at: "2026-11-29T11:00:00Z")
        #expect(same.code == 2 && same.err.contains("a renewal needs a reason of its own"), "\(same.err)")
        let r = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--renews", "EX-1", "--reason", "the vendor needs another week"],
                          as: "ci", at: "2026-11-29T11:00:00Z")
        #expect(r.code == 1, "\(r.err)")
        let renewal = try JSONReader.parse(Data(try w.run(["show", "EX-2", "--format", "json"]).out.utf8))
        #expect(renewal["renews"] == "EX-1" && renewal["policy"] == "NET-001" && renewal["resources"] == .array([.string(bastion)]), "\(renewal)")
        // The other blocking violations were filed as new requests, renewing nothing.
        let others = try JSONReader.parse(Data(try w.run(["list", "--format", "json"]).out.utf8)).arrayValue ?? []
        #expect(others.count > 2 && others.dropFirst(2).allSatisfy { $0["renews"] == .null })
    }
}

@Suite("Quarterly review records", .serialized)
struct ReviewRecordTests {
    @Test func aReviewIsRecordedShownInTheReportAndRefusedToOthers() async throws {
        let w = try Workspace()
        let r = try w.run(["review", "record", "--quarter", "2026-Q4", "--policy", "COST-002", "--decision", "split into two policies",
                           "--link", "https://git.example.com/infra/policies/pull/31"], as: "fin", at: "2026-12-01T10:00:00Z")
        #expect(r.code == 0 && r.out == "COST-002 2026-Q4 review recorded by fin: split into two policies (https://git.example.com/infra/policies/pull/31)\n", "\(r.err)")
        // Not the policy's approvers: refused; a quarter not yet begun, an unknown policy, a bad link: refused by name.
        let dev = try w.run(["review", "record", "--quarter", "2026-Q4", "--policy", "COST-002", "--decision", "x"], as: "dev", at: "2026-12-01T10:00:00Z")
        #expect(dev.code == 2 && dev.err.contains("dev cannot record a review of COST-002"), "\(dev.err)")
        let future = try w.run(["review", "record", "--quarter", "2027-Q1", "--policy", "COST-002", "--decision", "x"], as: "fin", at: "2026-12-01T10:00:00Z")
        #expect(future.code == 2 && future.err.contains("has not begun"), "\(future.err)")
        #expect(try w.run(["review", "record", "--quarter", "2026-Q4", "--policy", "COST-999", "--decision", "x"], as: "fin").err.contains("unknown policy"))
        #expect(try w.run(["review", "record", "--quarter", "2026-Q4", "--policy", "COST-002", "--decision", "x", "--link", "ftp://x"], as: "fin").code == 2)
        let report = try w.run(["report", "--from", "2026-10-01", "--to", "2027-01-01"], at: "2026-12-02T10:00:00Z").out
        #expect(report.contains("Reviews recorded\n  2026-Q4  COST-002: split into two policies (fin, https://git.example.com/infra/policies/pull/31)"), "\(report)")
        let json = try JSONReader.parse(Data(try w.run(["report", "--format", "json"], at: "2026-12-02T10:00:00Z").out.utf8))
        #expect(json["reviews"]?.arrayValue?.first?["decision"] == "split into two policies")
        #expect(try w.run(["audit", "verify"]).code == 0)
    }
}

/// Issue 14, item 12: review cycles for program exceptions. CTRL-DEV-001 allows a year, reviewed
/// every 90 days: an approver re-attests at each review, a missed review expires the exception
/// after a week's grace, and a remediated exception is closed with its evidence.
@Suite("Review cycles of program exceptions", .serialized)
struct ReviewCycleTests {
    func device(_ w: Workspace, _ serial: String) throws -> Run {
        try w.run(["request", "--kind", "device", "--policy", "CTRL-DEV-001", "--resource", serial, "--owner", "ann@example.com",
                   "--reason", "contractor laptop until the MDM rollout", "--days", "365", "--likelihood", "low", "--impact", "low"],
                  at: "2026-01-05T10:00:00Z")
    }

    @Test func anAnnualExceptionIsReviewedQuarterlyAndExpiresWhenAReviewIsMissed() async throws {
        let w = try Workspace()
        #expect(try device(w, "SN-1").code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam", at: "2026-01-05T10:00:00Z").code == 0)
        // Infrastructure keeps the short cap.
        let long = try w.run(["request", "--policy", "COST-001", "--resource", "a", "--workspace", "shop", "--reason", "x", "--days", "365"])
        #expect(long.code == 2 && long.err.contains("past the cap"), "\(long.err)")
        // Before the first review is due, nothing to expire; the requester may not attest.
        #expect(try w.run(["expire"], as: "cron", at: "2026-04-05T10:00:00Z").out == "0 exceptions re-checked\n")
        let own = try w.run(["attest", "EX-1", "--comment", "still needed"], as: "dev", at: "2026-04-06T10:00:00Z")
        #expect(own.code == 2 && own.err.contains("dev cannot attest EX-1"), "\(own.err)")
        let ok = try w.run(["attest", "EX-1", "--comment", "still needed; the VDI-only access is in place"], as: "sam", at: "2026-04-06T10:00:00Z")
        #expect(ok.code == 0 && ok.out.contains("EX-1 attested by sam: reviewed at 2026-04-06T10:00:00Z"), "\(ok.err)")
        // The next review is due 2026-07-05; with a week's grace it expires on 2026-07-12, not a second earlier.
        #expect(try w.run(["expire"], as: "cron", at: "2026-07-12T09:59:59Z").out == "0 exceptions re-checked\n")
        let missed = try w.run(["expire"], as: "cron", at: "2026-07-12T10:00:00Z")
        #expect(missed.out.hasPrefix("EX-1 expired"), "\(missed.out)")
        let shown = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        #expect(shown["status"] == "expired" && shown["reviewed"] == "2026-04-06T10:00:00Z")
        let basis = shown["history"]?.arrayValue?.last?["details"]?["basis"]?.stringValue ?? ""
        #expect(basis.hasPrefix("review missed: due 2026-07-05T10:00:00Z"), "\(basis)")
        #expect(try w.run(["audit", "verify"]).code == 0)
    }

    @Test func aRemediatedExceptionIsClosedWithItsEvidence() async throws {
        let w = try Workspace()
        #expect(try device(w, "SN-2").code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "sam", at: "2026-01-05T10:00:00Z").code == 0)
        let noEvidence = try w.run(["close", "EX-1", "--comment", "enrolled"], at: "2026-02-01T10:00:00Z")
        #expect(noEvidence.code == 2 && noEvidence.err.contains("needs the evidence that shows it"), "\(noEvidence.err)")
        let proof = w.dir.write("mdm.txt", "SN-2 enrolled")
        #expect(try w.run(["evidence", "add", "EX-1", proof, "--display-text", "SN-2 enrolled in MDM"], at: "2026-02-01T10:00:00Z").code == 0)
        #expect(try w.run(["close", "EX-1", "--comment", "enrolled"], as: "mallory", at: "2026-02-01T10:00:00Z").code == 2)
        let closed = try w.run(["close", "EX-1", "--comment", "enrolled in MDM"], at: "2026-02-01T10:00:00Z")
        #expect(closed.code == 0 && closed.out == "EX-1 closed by dev: remediated\n", "\(closed.err)")
        let shown = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        #expect(shown["status"] == "closed" && shown["expires"] == "2026-02-01T10:00:00Z" && shown["active"] == false)
        #expect(try w.run(["attest", "EX-1", "--comment", "x"], as: "sam", at: "2026-02-02T10:00:00Z").code == 2)
    }

    @Test func reviewCyclesAreForProgramControlsOnly() {
        let infra = policyErrors([("p.yaml", """
            policies:
              - id: P-1
                title: t
                require: { path: a, exists: true }
                exceptions: { max_days: 365, review_every: 90d }
            """)])
        #expect(infra.contains { $0.message.contains("exceptions.review_every is for program controls") }, "\(infra)")
        #expect(infra.contains { $0.message.contains("only a program control (source: control) with exceptions.review_every may go past 90") })
        let noCycle = policyErrors([("p.yaml", """
            policies:
              - id: C-1
                title: t
                source: control
                exceptions: { max_days: 200 }
            """)])
        #expect(noCycle.contains { $0.message.contains("may go past 90") }, "\(noCycle)")
    }
}
