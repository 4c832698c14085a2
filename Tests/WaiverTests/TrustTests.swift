import Foundation
import GRDB
import HummingbirdTesting
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverUseCases
@testable import WaiverStore

/// Issue 9: the rules and the record hold against the people they constrain. Each test names the
/// item it covers; each failed on the code before the change.
@Suite("Trust: separation of duties, risk and the record against insiders", .serialized)
struct TrustTests {
    // MARK: 1. The subject of a program exception cannot approve it

    @Test func theSubjectOfAPersonExceptionCannotApproveIt() async throws {
        let f = try Fixture { $0.groups["security"] = ["sam", "jordan@example.com"] }
        let e = try await f.register.request(ExceptionRequest(policy: "CTRL-HR-001", workspace: "program", subjectKind: .person,
                                                        resources: ["jordan@example.com"], reason: "background check deferred"),
                                       actor: "hr@example.com", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "Jordan@Example.com", comment: nil, days: nil, now: t0) }
            == "Jordan@Example.com cannot approve EX-1: it is about them (they are the person it excepts)")
        #expect(await f.refusal { _ = try await f.register.reject(e.id, actor: "jordan@example.com", comment: "no", now: t0) }?.contains("it is about them") == true)
        #expect(!f.register.mayDecide(e, person: "jordan@example.com"))  // the inbox and pages ask the same rule
        #expect(f.register.mayDecide(e, person: "sam"))
    }

    @Test func theOwnerOfADeviceOrAccountCannotApproveItAndMustBeNamed() async throws {
        let f = try Fixture { $0.groups["security"] = ["sam", "pat", "ops@example.com"] }
        #expect(await f.refusal {
            _ = try await f.register.request(ExceptionRequest(policy: "CTRL-DEV-001", workspace: "program", subjectKind: .device,
                                                        resources: ["laptop-42"], reason: "encryption pending"), actor: "it", now: t0)
        } == "a device exception names its owner (--owner): the owner, like the requester, may not approve it")
        let e = try await f.register.request(ExceptionRequest(policy: "CTRL-DEV-001", workspace: "program", subjectKind: .account, resources: ["svc-backup"],
                                                        reason: "rotation pending", owner: "Ops <ops@example.com>"), actor: "it", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "ops@example.com", comment: nil, days: nil, now: t0) }
            == "ops@example.com cannot approve EX-1: they own the account it is about")
        #expect(try await f.store.exception(id: e.id)?.owner == "Ops <ops@example.com>")
    }

    // MARK: 8. Identities compare as identities

    @Test func theCommitAuthorIsRecognisedHoweverTheNameIsWritten() async throws {
        let f = try Fixture { $0.groups["security"] = ["sam@example.com", "pat"] }
        let e = try await f.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg"], reason: "r",
                                                        likelihood: .low, impact: .low, conflicted: ["sam@example.com"]), actor: "ci", now: t0)
        for spelling in ["SAM@example.com", " sam@example.com", "Sam <sam@example.com>"] {
            #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: spelling, comment: nil, days: nil, now: t0) }?.contains("they authored the change") == true,
                    "\(spelling)")
        }
        // The requester, however written, is the requester.
        let own = try await f.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg2"], reason: "r"), actor: "pat", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(own.id, actor: " PAT ", comment: nil, days: nil, now: t0) }?.contains("they requested it") == true)
    }

    @Test func aRenewalKeepsThePeopleConflictedOnTheOriginal() async throws {
        let f = try Fixture()
        let first = try await f.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.batch"], reason: "batch",
                                                            likelihood: .low, impact: .low, conflicted: ["em"]), actor: "dev", now: t0)
        _ = try await f.register.approve(first.id, actor: "fin", comment: nil, days: nil, now: t0)
        let renewal = try await f.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.batch"],
                                                              reason: "still needed", likelihood: .low, impact: .low, renews: first.id),
                                             actor: "dev2", now: t0)
        #expect(await f.refusal { _ = try await f.register.approve(renewal.id, actor: "em", comment: nil, days: nil, now: t0) }?
            .contains("were conflicted on EX-1, which it renews") == true)
        // The original requester may not approve its renewal either.
        #expect(renewal.conflicted.contains("dev"))
    }

    // MARK: 2. Risk floors and re-rating

    @Test func aCriticalPolicyIsAtLeastHighRiskWhateverTheRequesterSays() async throws {
        let f = try Fixture()
        // IAM-001 is critical: likelihood low x impact low would be low risk and one approver.
        let e = try await f.request("IAM-001", resources: ["aws_iam_policy.admin"], likelihood: .low, impact: .low)
        #expect(e.riskLevel == "high")
        #expect(e.proposedRisk == "low")
        #expect(e.rule.minApprovals == 2)
        #expect(RegisterOutput.riskText(e) == "high (the policy's floor; likelihood low x impact low gives low)")
        // A high-severity policy's floor is the level of its default impact at likelihood low.
        #expect(try await f.request("NET-001", resources: ["sg"], likelihood: .low, impact: .low).riskLevel == "medium")
    }

    @Test func aPolicyNamesItsOwnFloorAndAnUnknownLevelIsAnError() async throws {
        let yaml = """
            policies:
              - id: TAG-X
                title: Tagged
                severity: low
                category: tagging
                description: d
                remediation: r
                resource_types: [aws_instance]
                require: { path: tags.owner, exists: true }
                exceptions: { min_risk: critical }
            """
        let loaded = try policies([("p.yaml", yaml)])
        #expect(loaded[0].exceptions?.minRisk == "critical")
        let config = WaiverCore.Configuration()
        #expect(ConfigLoader.validate(loaded, against: config).isEmpty)
        var typo = loaded
        typo[0].exceptions?.minRisk = "severe"
        #expect(ConfigLoader.validate(typo, against: config).first?.message.contains("exceptions.min_risk 'severe' is not a risk level") == true)
        let dir = TempDir()
        let store = try SQLiteRegisterStore(path: dir.path + "/r.sqlite")
        let register = Register(store: store, configuration: config, policies: loaded)
        let e = try await register.request(ExceptionRequest(policy: "TAG-X", workspace: "w", resources: ["a"], reason: "r", likelihood: .low, impact: .low),
                                     actor: "dev", now: t0)
        #expect(e.riskLevel == "critical" && e.rule.requiredGroups == ["ciso"])
    }

    @Test func anApproverRaisesTheRiskAndTheHigherRuleAppliesAtOnce() async throws {
        let f = try Fixture { $0.groups["finance"] = ["fin", "fin2"] }
        let e = try await f.request("COST-001", likelihood: .low, impact: .low)
        #expect(e.riskLevel == "low" && e.rule.minApprovals == 1)
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, risk: "severe", now: t0) }?
            .hasPrefix("--risk: 'severe' is not a risk level") == true)
        let raised = try await f.register.approve(e.id, actor: "fin", comment: "this is bigger", days: nil, risk: "high", now: t0)
        #expect(raised.status == .pending)  // one approval no longer suffices
        #expect(raised.riskLevel == "high" && raised.rule.minApprovals == 2 && raised.riskRaisedBy == "fin" && raised.proposedRisk == "low")
        #expect(RegisterOutput.riskText(raised).hasPrefix("high (raised from low by fin"))
        #expect(try await f.events().contains { $0.action == "exception.risk_raised" && $0.payload.contains("\"from\":\"low\"") })
        #expect(await f.refusal { _ = try await f.register.approve(e.id, actor: "fin2", comment: nil, days: nil, risk: "medium", now: t0) }
            == "EX-1 is high risk: an approver may raise the risk, never lower it")
        #expect(try await f.register.approve(e.id, actor: "fin2", comment: nil, days: nil, now: t0).status == .approved)
    }

    // MARK: 3. An approval rule that can never be met is said out loud

    @Test func aRuleNoOneCanMeetIsNamedWithItsNumbers() async throws {
        let f = try Fixture()  // engineering-managers has one member, and high risk needs two approvers
        let lines = f.register.unmeetableRules()
        #expect(lines.contains { $0.contains("at high risk needs 2 distinct approvers from engineering-managers, which has 1 member") })
        // Filed by the only eligible approver, a request says so.
        let solo = try Fixture { $0.groups["security"] = ["sam"] }
        let p = try await solo.register.prepare(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg"], reason: "r",
                                                           likelihood: .low, impact: .low), actor: "sam", now: t0)
        #expect(p.warning == "exceptions to NET-001 at medium risk needs 1 distinct approver from security, which has 0 eligible members: this request would stay pending forever")
        // With enough people, nothing is said.
        let enough = try Fixture { $0.groups["engineering-managers"] = ["em", "lee"]; $0.groups["finance"] = ["fin", "cfo"] }
        #expect(enough.register.unmeetableRules().isEmpty)
    }

    // MARK: 4 and 14. All requests or none; one check, one transaction

    @Test func checkRequestFilesAllOrNone() async throws {
        let f = try Fixture()
        let cap = f.register.maxDays(for: try await f.register.policy("NET-001"))
        let ok = ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["a"], reason: "r", days: cap + 1)
        let tooLong = ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["b"], reason: "r", days: cap + 1)
        #expect(await f.refusal { _ = try await f.register.requestAll([ok, tooLong], actor: "dev", now: t0) }?.contains("past the cap") == true)
        #expect(try await f.store.exceptions(ExceptionFilter()).isEmpty)
        #expect(try await f.events().isEmpty)
    }

    @Test func aCheckAndItsRequestsCommitTogether() async throws {
        let f = try Fixture()
        let report = try CheckService.evaluate(
            policies: try PolicyLoader.load(directory: repoRoot + "/policies"), configuration: f.register.configuration,
            resources: try PlanReader.read(path: repoRoot + "/Examples/plans/web-app.json").resources.map { ($0, file: "plan.json") },
            sarif: [], workspace: "shop", unknown: .warn, keepCompliant: false)
        let register = Register(store: f.store, configuration: f.register.configuration, policies: report.policies)
        // Recording the check fails (the disk refuses the evaluation row): no request may stay filed.
        try tamper(f.store.path, "CREATE TRIGGER noEvaluations BEFORE INSERT ON evaluation BEGIN SELECT RAISE(ABORT, 'disk says no'); END;")
        await #expect(throws: (any Error).self) {
            _ = try await CheckService.checkIn(report, register: register, actor: "ci", provenance: Provenance(declaredCommitAuthor: "pat"), request: RequestSpec(reason: "vendor"), now: t0)
        }
        #expect(try await f.store.exceptions(ExceptionFilter()).isEmpty)
        try tamper(f.store.path, "DROP TRIGGER noEvaluations")
        let (final, filed, evaluation) = try await CheckService.checkIn(report, register: register, actor: "ci", provenance: Provenance(declaredCommitAuthor: "pat"),
                                                                  request: RequestSpec(reason: "vendor"), now: t0)
        #expect(!filed.isEmpty && evaluation > 0)
        #expect(final.summary.pending == filed.count && final.summary.blocking == 0)
        #expect(try await f.store.latestEvaluation(workspace: "shop")?.violations.filter { $0.status == .pending }.count == filed.count)
    }

    // MARK: 5. A scanner suppression never lowers what approval costs

    @Test func aSuppressedResultKeepsItsRulesSeverity() async throws {
        let sarif = #"""
            {"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Checkov","rules":[{"id":"CKV_AWS_24","defaultConfiguration":{"level":"error"}}]}},
             "results":[{"ruleId":"CKV_AWS_24","level":"warning","message":{"text":"SSH open"},"suppressions":[{"kind":"inSource","justification":"later"}],
                         "locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":3}}}]},
                        {"ruleId":"CKV_AWS_24","level":"warning","message":{"text":"SSH open"},
                         "locations":[{"physicalLocation":{"artifactLocation":{"uri":"other.tf"},"region":{"startLine":3}}}]}]}]}
            """#
        let found = try SarifReader.parse(Data(sarif.utf8), file: "c.sarif")
        #expect(found[0].suppression == "later" && found[0].level == "error" && found[0].severity == .high)
        #expect(found[1].suppression == nil && found[1].level == "warning")  // unsuppressed results keep their own level
    }

    // MARK: 6. Exceptions to scanner rules can be requested directly

    @Test func aScannerRuleTheWorkspaceMetCanBeRequestedDirectly() async throws {
        let f = try Fixture()
        #expect(await f.refusal { _ = try await f.request("CKV_AWS_24", resources: ["main.tf:3"]) }?.hasPrefix("unknown policy 'CKV_AWS_24'") == true)
        let sarif = #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Checkov"}},"results":[{"ruleId":"CKV_AWS_24","level":"error","message":{"text":"SSH"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"main.tf"},"region":{"startLine":3}}}]}]}]}"#
        let report = try CheckService.evaluate(policies: [], configuration: f.register.configuration, resources: [],
                                               sarif: [("c.sarif", Data(sarif.utf8))], workspace: "shop", unknown: .warn, keepCompliant: false)
        _ = try await CheckService.record(report, register: f.register, actor: "ci", now: t0)
        let e = try await f.request("CKV_AWS_24", resources: ["main.tf:3"], likelihood: .low, impact: nil)
        #expect(e.category == "security" && e.impact == .high && e.rule.groups == ["security"])
        #expect(await f.refusal { _ = try await f.request("CKV_AWS_24", resources: ["main.tf:3"], workspace: "other") }?.contains("no recorded check of workspace other") == true)
    }

    // MARK: 7. Revoking a token ends its sessions; users and groups count on the next request

    @Test func revokingATokenEndsTheSessionsItOpened() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["sam"]!)
            #expect(try await b.get(c, "/inbox").0 == 200)
            let id = try #require(APIToken.parse(f.tokens["sam"]!)?.id)
            try await f.state.store.revokeToken(id: id, actor: "admin", now: t0)
            #expect(try await b.get(c, "/inbox").0 == 303)
            // Ending a user's sessions, and removing a user, take effect on the next request too.
            let p = Browser()
            _ = try await p.signIn(c, token: f.tokens["pat"]!)
            #expect(try await p.get(c, "/inbox").0 == 200)
            await #expect(try f.state.store.endSessions(user: "pat", actor: "admin", now: t0) == 1)
            #expect(try await p.get(c, "/inbox").0 == 303)
            let r = Browser()
            _ = try await r.signIn(c, token: f.tokens["root"]!)
            try await f.state.store.removeUser("root", actor: "admin", now: t0)
            #expect(try await r.get(c, "/inbox").0 == 303)
            #expect(try await c.call(.get, "/api/v1/me", as: "root", f).0 == 401)
        }
    }

    @Test func removingAUserFromAGroupCountsOnTheNextDecision() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let (status, e) = try await c.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest)
            #expect(status == 201)
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["sam"]!)
            try await f.state.store.putUser(User(name: "sam", groups: [], admin: false), actor: "admin", now: t0)
            let id = e["id"]?.stringValue ?? ""
            let (_, page, _) = try await b.get(c, "/exceptions/\(id)")
            let (code, _, _) = try await b.post(c, "/exceptions/\(id)/decide", [("csrf", Browser.hidden(page, "csrf") ?? ""), ("action", "approve")])
            #expect(code == 403)
            #expect(try await f.state.store.exception(id: 1)?.status == .pending)
        }
    }

    // MARK: 9. Every row of the log is verified

    @Test func rowsNumberedZeroOrBelowAreCaught() async throws {
        let f = try Fixture()
        _ = try await f.request()
        try tamper(f.store.path, "INSERT INTO auditEvent (seq, time, actor, action, subject, payload, prevHash, hash) VALUES (0, 1, 'mallory', 'exception.approved', 'EX-1', '{}', '', '')")
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 0)
        #expect(v.problem == "sequence numbers start at 1: a row numbered 0 was put in the log behind its back")
        try tamper(f.store.path, "UPDATE auditEvent SET seq = -5 WHERE seq = 0")
        await #expect(try f.store.verifyAudit().firstBad == -5)
    }

    @Test func aRenumberedEventFarAheadIsAnsweredAtOnce() async throws {
        let f = try Fixture()
        _ = try await f.request()
        _ = try await f.request(resources: ["x"])
        // Before, verification walked every number up to the largest: 10^12 of them.
        try tamper(f.store.path, "UPDATE auditEvent SET seq = 1000000000000 WHERE seq = 2")
        let v = try await f.store.verifyAudit()
        #expect(v.firstBad == 1_000_000_000_000)
        #expect(v.problem?.contains("is missing") == true)
    }

    // MARK: 10. The register's state is the log's

    @Test func aRowChangedBehindTheLogsBackIsNotTrusted() async throws {
        let f = try Fixture()
        let e = try await f.request("NET-001", resources: ["module.network.aws_security_group.bastion"], likelihood: .low, impact: .low)
        _ = try await f.register.reject(e.id, actor: "sam", comment: "no", now: t0)
        try tamper(f.store.path, "UPDATE exception SET status = 'approved', expiresAt = 1830000000 WHERE id = 1")
        let stored = try await #require(try await f.store.exception(id: e.id))
        #expect(stored.status == .approved)
        #expect(stored.untrusted?.contains("its stored status \"approved\" (the log says \"rejected\")") == true)
        #expect(!stored.isActive(at: t0))
        // check does not apply it, and says why.
        var report = CheckReport(workspace: "shop", unknownMode: .warn, findings: [
            Finding(policy: "NET-001", title: "t", severity: .high, category: "security", resource: "module.network.aws_security_group.bastion",
                    status: .blocking, message: "m", remediation: "", origin: .plan(file: "p")),
        ], resourceCount: 1, policies: [], compliant: [])
        try await f.register.applyExceptions(to: &report, now: t0)
        #expect(report.findings[0].status == .blocking)
        #expect(report.warnings.first?.hasPrefix("EX-1 is not applied: its stored status") == true)
        // No decision builds on it, and verify names it.
        #expect(await f.refusal { _ = try await f.register.revoke(e.id, actor: "sam", comment: "x", now: t0) }?.hasPrefix("EX-1 cannot be changed") == true)
        let v = try await f.store.verifyAudit()
        #expect(!v.intact && v.firstBad == nil)
        #expect(v.findings.contains { $0.hasPrefix("EX-1: its stored status") && $0.contains("expires") })
    }

    @Test func aRowRolledBackToAnEarlierLoggedStateIsNotTrusted() async throws {
        let f = try Fixture()
        let e = try await f.request("COST-001")
        _ = try await f.register.approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        let approvedAt = try await #require(try await f.store.exception(id: e.id)?.expiresAt)
        _ = try await f.register.revoke(e.id, actor: "fin", comment: "over", now: t0.addingTimeInterval(60))
        // Back to the approved state, exactly as an earlier event recorded it.
        try tamper(f.store.path, "UPDATE exception SET status = 'approved', expiresAt = \(Int(approvedAt.timeIntervalSince1970)) WHERE id = 1")
        #expect(try await f.store.exception(id: e.id)?.untrusted != nil)
    }

    @Test func rowsAddedOrDeletedBehindTheLogsBackAreNamed() async throws {
        let f = try Fixture()
        _ = try await f.request()
        _ = try await f.request(resources: ["b"])
        try tamper(f.store.path, """
            INSERT INTO exception SELECT 99, policy, category, workspace, subjectKind, requester, conflicted, reason, requestedDays, likelihood, impact,
              riskLevel, mitigations, approverGroups, minApprovals, requiredGroups, 'approved', createdAt, createdAt, 1900000000, renews, owner,
              proposedRisk, riskRaisedBy, ticket, origin, reviewedAt, bound FROM exception WHERE id = 1;
            DELETE FROM exception WHERE id = 2;
            """)
        let v = try await f.store.verifyAudit()
        #expect(v.findings.contains { $0.hasPrefix("EX-99: no audit event records it") })
        #expect(v.findings.contains { $0.hasPrefix("EX-2: the log records its request, but the register has no such exception") })
    }

    // MARK: 11. Evidence files are verified

    @Test func replacedEvidenceBytesAreNamed() async throws {
        let f = try Fixture()
        let e = try await f.request()
        let folder = f.dir.path + "/evidence"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let bytes = Data("CHG-1234 approved window".utf8)
        let sha = AuditChain.sha256(bytes)
        try bytes.write(to: URL(fileURLWithPath: folder + "/" + sha))
        _ = try await f.register.addEvidence(e.id, file: EvidenceFile(sha256: sha, name: "ticket.txt", size: bytes.count, addedBy: "dev", at: t0), actor: "dev")
        await #expect(try f.store.verifyAudit(evidenceDirectory: folder).intact)
        try Data("CHG-9999 forged".utf8).write(to: URL(fileURLWithPath: folder + "/" + sha))
        let v = try await f.store.verifyAudit(evidenceDirectory: folder)
        #expect(v.findings == ["EX-1: evidence ticket.txt (\(sha.prefix(12))…) no longer hashes to its recorded SHA-256: its bytes were replaced"])
        try FileManager.default.removeItem(atPath: folder + "/" + sha)
        await #expect(try f.store.verifyAudit(evidenceDirectory: folder).findings.first?.contains("is missing") == true)
    }

    // MARK: 12. Signed checkpoints

    @Test func aSignedCheckpointCatchesARewrittenHistoryThatAnchorsCannotTell() async throws {
        let f = try Fixture()
        for i in 0..<4 { _ = try await f.request(resources: ["r\(i)"]) }
        let key = SigningKey.generate()
        let c = try #require(try f.store.checkpoint(with: key, now: t0))
        #expect(c.seq == 4 && c.problem(with: key.publicKey) == nil)
        let check = CheckpointCheck(publicKey: key.publicKey)
        let ok = try f.store.verifyAudit(checkpoints: check)
        #expect(ok.intact && ok.checkpoints == 1)
        // Someone with write access rewrites the tail with fresh, valid hashes...
        try tamper(f.store.path, "DELETE FROM auditEvent WHERE seq >= 3; DELETE FROM exception WHERE id >= 3")
        _ = try await f.request(resources: ["forged-a"])
        _ = try await f.request(resources: ["forged-b"])
        await #expect(try f.store.verifyAudit().firstBad == nil)  // the chain alone cannot tell
        let v = try f.store.verifyAudit(checkpoints: check)
        #expect(v.firstBad == 4 && v.problem?.contains("not the one anchored") == true)
        // ...and forges a checkpoint of the new head: without the key, its signature does not verify.
        var forged = c
        forged.hash = try await f.events()[3].hash
        #expect(forged.problem(with: key.publicKey)?.contains("does not verify") == true)
        let other = SigningKey.generate()
        #expect(c.problem(with: other.publicKey)?.hasPrefix("signed by key") == true)
        try tamper(f.store.path, "DELETE FROM checkpoint")
        #expect(try f.store.verifyAudit(checkpoints: check).findings.first?.hasPrefix("no signed checkpoint to verify against") == true)
        // A checkpoint kept elsewhere still proves it.
        #expect(try f.store.verifyAudit(checkpoints: CheckpointCheck(publicKey: key.publicKey, given: [c])).firstBad == 4)
    }

    @Test func checkpointsRoundTripAndGoToTheWebhooks() async throws {
        let dir = TempDir()
        let store = try SQLiteRegisterStore(path: dir.path + "/r.sqlite", webhooks: [.init(url: "http://127.0.0.1:9/hook")])
        try await store.append(AuditDraft(actor: "a", action: "test", subject: "s", payload: [:], time: t0))
        let key = try #require(SigningKey(text: SigningKey.generate().text))
        let c = try #require(try store.checkpoint(with: key, now: t0))
        let back = try WaiverStore.Checkpoint(json: try JSONReader.parse(Data(c.json.utf8)))
        #expect(back == c)
        #expect(PublicSigningKey(text: key.publicKey.text)?.id == key.publicKey.id)
        let delivery = try await #require(try store.deliveries().first)
        #expect(delivery.action == "audit.checkpoint" && delivery.body.contains(c.signature))
        // The same head is not signed twice.
        #expect(try store.checkpoint(with: key, now: t0.addingTimeInterval(60)) == c)
    }

    // MARK: 13. An export covers what it prints

    @Test(arguments: [
        (#"{"seq":1.5,"time":1,"actor":"a","action":"b","subject":"c","payload":"{}","prev_hash":"x","hash":"y"}"#, "seq 1.5 is not a whole number"),
        (#"{"seq":1,"time":1e300,"actor":"a","action":"b","subject":"c","payload":"{}","prev_hash":"x","hash":"y"}"#, "is not a whole number"),
        (#"{"seq":9.3e18,"time":1,"actor":"a","action":"b","subject":"c","payload":"{}","prev_hash":"x","hash":"y"}"#, "is not a whole number from 1"),
        (#"{"seq":1,"time":1,"time_iso":"2030-01-01T00:00:00Z","actor":"a","action":"b","subject":"c","payload":"{}","prev_hash":"x","hash":"y"}"#, "time_iso is not the instant of time 1"),
        (#"{"seq":1,"time":1,"actor":"a","action":"b","subject":"c","payload":"{}","prev_hash":"x","hash":"y","approved_by":"ciso"}"#, #"field "approved_by" is not covered"#),
    ])
    func exportLinesCarryNothingTheHashDoesNotCover(line: String, message: String) throws {
        #expect(throws: ExportLineError.self) { _ = try AuditChain.event(exportLine: try JSONReader.parse(Data(line.utf8))) }
        do {
            _ = try AuditChain.event(exportLine: try JSONReader.parse(Data(line.utf8)))
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test func anExportLineAsWrittenReadsBack() async throws {
        let f = try Fixture()
        _ = try await f.request()
        let e = try await #require(try f.events().first)
        let back = try AuditChain.event(exportLine: try JSONReader.parse(Data(AuditChain.exportLine(e).utf8)))
        #expect(back == e)
    }
}
