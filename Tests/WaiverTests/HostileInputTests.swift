import Foundation
import HummingbirdTesting
import NIOCore
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverStore

/// Issue 10: hostile input and abuse never crash, stall or bloat Waiver (the items done so far).
@Suite("Hostile input: no crash, no stall, no bloat", .serialized)
struct HostileInputTests {
    static func sarif(result: String) -> String {
        #"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"T","rules":[{"id":"R1"}]}},"artifacts":[{"location":{"uri":"a.tf"}}],"results":[\#(result)]}]}"#
    }

    // MARK: 1. No input crashes the process

    @Test(arguments: [
        (#"{"ruleIndex":1e300,"message":{"text":"m"}}"#, "ruleIndex"),
        (#"{"ruleIndex":-1e300,"message":{"text":"m"}}"#, "ruleIndex"),
        (#"{"rule":{"index":9.3e18},"message":{"text":"m"}}"#, "rule.index"),
        (#"{"ruleId":"R1","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.tf"},"region":{"startLine":1e999}}}]}"#, "startLine"),
        (#"{"ruleId":"R1","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"index":1e300}}}]}"#, "artifactLocation.index"),
        (#"{"ruleId":"R1","message":{"text":"m"},"locations":[{"logicalLocations":[{"index":-1e300}]}]}"#, "logicalLocations[0].index"),
    ])
    func hugeNumbersInSarifAreClearErrors(result: String, field: String) throws {
        do {
            _ = try SarifReader.parse(Data(Self.sarif(result: result).utf8), file: "x.sarif")
            Issue.record("accepted \(result)")
        } catch {
            #expect(error.description.hasPrefix("x.sarif: not a valid SARIF 2.1.0 report: runs[0].results[0].") && error.description.contains(field), "\(error)")
        }
    }

    @Test func aHugeRuleIndexOverHTTPIsA422AndTheServerLives() async throws {
        let f = try await ServerFixture()
        let report = Self.sarif(result: #"{"ruleIndex":1e300,"message":{"text":"m"}}"#)
        let body = #"{"workspace":"w","sarif":["# + report + "]}"
        try await f.app().test(.router) { c in
            let (status, _) = try await c.call(.post, "/api/v1/evaluations", as: "dev", f, json: body)
            #expect(status == 422)
            let (alive, _) = try await c.call(.get, "/api/v1/me", as: "dev", f)
            #expect(alive == 200)
        }
    }

    // MARK: 2. Bounded work per input

    @Test func aYAMLAliasBombIsRefusedAtOnce() async throws {
        var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for i in 1...8 { lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]") }
        lines.append("policies: *a8")
        let errors = policyErrors([("bomb.yaml", lines.joined(separator: "\n"))])
        #expect(errors.count == 1)
        #expect(errors.first?.message.hasPrefix("more than 200,000 YAML nodes once aliases are expanded") == true)
    }

    /// A check remembers decided matches of values it meets again; an undecided one is matched
    /// again (it may be decided when the check has time), and the memory is bounded and per check.
    @Test func aCheckRemembersDecidedMatchesOnly() throws {
        let big = try Pattern(#"\.([4-9]|[1-9][0-9]+)xlarge\z"#)
        let budget = MatchBudget()
        Pattern.$budget.withValue(budget) {
            for _ in 0..<3 {
                #expect(big.match("m5.8xlarge") == .yes)
                #expect(big.match("t3.micro") == .no)
                #expect(big.match("m5.xlarge") == .no)
            }
            #expect(budget.remembered == 3)
            #expect(big.match(String(repeating: "x", count: MatchBudget.maxRememberedBytes + 1) + ".9xlarge") == .yes)
            #expect(budget.remembered == 3)
            let slow = try? Pattern("(a+)+$")
            #expect(slow?.match(String(repeating: "a", count: 100) + "b") == .unknown)
            #expect(budget.remembered == 3)
            // Past the bound, values are matched and not remembered; outcomes stay right.
            for i in 0..<(MatchBudget.maxRemembered + 10) { _ = big.match("r\(i).large") }
            #expect(budget.remembered == MatchBudget.maxRemembered)
            #expect(big.match("r99999999.12xlarge") == .yes && big.match("r99999999.2xlarge") == .no)
        }
        Pattern.$budget.withValue(MatchBudget()) { #expect(big.match("t3.micro") == .no) }
    }

    @Test func aCatastrophicPatternIsUndecidedNotStuck() async throws {
        let p = try Pattern("(a+)+$")
        let subject = String(repeating: "a", count: 100) + "b"
        #expect(p.match(subject) == .unknown)  // 2^100 steps before; now its budget
        #expect(p.match("aaa") == .yes)
        #expect(try Pattern("x").match(String(repeating: "x", count: Pattern.maxSubject + 1)) == .unknown)
        // Within one check, three overruns make the rest of its matches unknown at once; the next check starts afresh.
        Pattern.$budget.withValue(MatchBudget()) {
            for _ in 0..<Pattern.maxOverruns { #expect(p.match(subject) == .unknown) }
            #expect(p.match("aaa") == .unknown)
        }
        Pattern.$budget.withValue(MatchBudget()) { #expect(p.match("aaa") == .yes) }
        // In a check, the outcome is unknown and the evidence says why.
        let loaded = try policies([("p.yaml", """
            policies:
              - id: RE-1
                title: t
                description: d
                remediation: r
                resource_types: [aws_instance]
                forbid: { path: tags.Name, matches: '(a+)+$' }
            """)])
        let plan = try PlanReader.parse(Data(planJSON([change("aws_instance.x", after: #"{"tags":{"Name":"\#(subject)"}}"#)]).utf8), file: "p.json")
        let report = CheckEngine(policies: loaded).check(resources: plan.resources.map { ($0, file: "p.json") }, external: [], workspace: "w")
        #expect(report.findings.first?.status == .unknown)
        #expect(report.findings.first?.message.contains(Pattern.limitNote) == true)
    }

    // MARK: 3. Short errors

    @Test func errorsDoNotEchoAMegabyteOfInput() async throws {
        let huge = String(repeating: "x", count: 1 << 20)
        do {
            _ = try PlanReader.parse(Data(planJSON([change("aws_instance.a", actions: [huge])]).utf8), file: "p.json")
            Issue.record("accepted")
        } catch {
            #expect(error.description.count <= String.maxMessage)
            #expect(error.description.contains("…"))
        }
        let f = try Fixture()
        #expect((await f.refusal { _ = try await f.request(huge) }?.count ?? 0) <= String.maxMessage)
        // An unknown id gets a suggestion when it looks like a typo; a megabyte-long one is not compared with every name.
        #expect(closestMatch(to: "COST-01", in: ["COST-001", "NET-001"]) == "COST-001")
        #expect(closestMatch(to: huge, in: ["COST-001", huge + "y"]) == nil)
    }

    // MARK: 4. The starter pack cannot be slipped

    @Test func aTrailingLineTerminatorDoesNotSlipTheNamingRule() async throws {
        let pack = try PolicyLoader.load(directory: repoRoot + "/policies")
        let plan = try PlanReader.parse(Data(planJSON([
            change("aws_instance.a", after: #"{"instance_type":"t3.micro","tags":{"Name":"payments-prod-api\r","owner":"o","cost-center":"c","environment":"prod"}}"#),
            change("aws_instance.b", after: #"{"instance_type":"t3.micro","tags":{"Name":"payments-prod-api","owner":"o","cost-center":"c","environment":"prod"}}"#),
        ]).utf8), file: "p.json")
        let report = CheckEngine(policies: pack).check(resources: plan.resources.map { ($0, file: "p.json") }, external: [], workspace: "w")
        let naming = report.findings.filter { $0.policy.hasPrefix("NAME-") }.map(\.resource)
        #expect(naming.contains("aws_instance.a"))
        #expect(!naming.contains("aws_instance.b"))
    }

    @Test func onlyJSONNumberSyntaxCountsAsANumber() {
        for text in ["22", "-1.5", "0", "1e3", "2.5E-2"] { #expect(Evaluator.isJSONNumber(text), "\(text)") }
        for text in ["0x10", "inf", "nan", " 22", "22 ", "1_000", "+1", "01", "1.", ".5", "1e", ""] { #expect(!Evaluator.isJSONNumber(text), "\(text)") }
        #expect(Evaluator.leaf(.value(.string("0x10"), mask: nil), .gte(16)) == .no)
        #expect(Evaluator.leaf(.value(.string("22"), mask: nil), .gte(16)) == .yes)
    }

    // MARK: 5. Policy directories

    @Test func aSymlinkedPolicyDirectoryIsWalkedAndAnUnreadableFileIsReportedOnce() async throws {
        let dir = TempDir()
        dir.write("real/p.yaml", try String(contentsOfFile: repoRoot + "/policies/naming.yaml", encoding: .utf8))
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link", withDestinationPath: dir.path + "/real")
        #expect(try PolicyLoader.load(directory: dir.path + "/link").isEmpty == false)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/real/gone.yaml", withDestinationPath: dir.path + "/nowhere")
        do {
            _ = try PolicyLoader.load(directory: dir.path + "/real")
            Issue.record("loaded")
        } catch {
            #expect(error.errors.count == 1, "\(error.errors)")
        }
    }

    // MARK: 8. Nothing is stored for someone who may not store it

    @Test func evidenceForAMissingExceptionIsNeverWritten() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let bytes = ByteBuffer(string: "ten mebibytes, say")
            let (status, _) = try await c.call(.post, "/api/v1/exceptions/EX-77/evidence?name=x.bin", as: "dev", f, raw: bytes)
            #expect(status == 404)
            let sha = AuditChain.sha256(Data("ten mebibytes, say".utf8))
            #expect(!FileManager.default.fileExists(atPath: f.state.settings.evidenceDirectory + "/" + sha))
            // A file in the folder that no exception records is not served.
            try FileManager.default.createDirectory(atPath: f.state.settings.evidenceDirectory, withIntermediateDirectories: true)
            try Data("stray".utf8).write(to: URL(fileURLWithPath: f.state.settings.evidenceDirectory + "/" + sha))
            #expect(try await c.call(.get, "/api/v1/evidence/\(sha)", as: "dev", f).0 == 404)
        }
    }

    // MARK: 10. Local writes to a served register reach the outbox

    @Test func localWritesQueueTheirWebhookDeliveries() async throws {
        let dir = TempDir()
        var config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        config.notify = [.init(url: "http://127.0.0.1:9/hook")]
        // What `waiver expire --register FILE` opens: the store with the configuration's webhooks.
        let store = try SQLiteRegisterStore(path: dir.path + "/r.sqlite", webhooks: config.notify)
        let register = Register(store: store, configuration: config, policies: try PolicyLoader.load(directory: repoRoot + "/policies"))
        let e = try await register.request(ExceptionRequest(policy: "COST-001", workspace: "w", resources: ["a"], reason: "r", days: 1), actor: "dev", now: t0)
        _ = try await register.approve(e.id, actor: "fin@example.com", comment: nil, days: nil, now: t0)
        _ = try await register.expire(now: t0.addingTimeInterval(86_400), actor: "cron")
        await #expect(try store.deliveries().map(\.action).contains("exception.expired"))
    }

    // MARK: 11. Renewals, caching, rate limits

    @Test func aMalformedRenewsIsAnErrorAndAMissingOneIs404() async throws {
        let f = try await ServerFixture()
        let bad = #"{"policy":"NET-001","workspace":"shop","resources":["sg"],"reason":"r","renews":"EX-abc"}"#
        try await f.app().test(.router) { c in
            let (malformed, _) = try await c.call(.post, "/api/v1/exceptions", as: "dev", f, json: bad)
            #expect(malformed == 422)
            let (missing, _) = try await c.call(.post, "/api/v1/exceptions/EX-404/renew", as: "dev", f, json: #"{"reason":"again"}"#)
            #expect(missing == 404)
        }
    }

    @Test func pagesAndAnswersAreNeverCached() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let (_, _, headers) = try await Browser().get(c, "/login")
            #expect(headers[.cacheControl] == "no-store")
            try await c.execute(uri: "/api/v1/me", method: .get, headers: f.headers("dev")) { r in
                #expect(r.headers[.cacheControl] == "no-store")
            }
        }
    }

    @Test func failedSignInsAndTokenChecksAreRateLimited() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let wrong = "wvr_000000000000_" + String(repeating: "0", count: 64)
            for _ in 0..<20 { #expect(try await Browser().signIn(c, token: wrong).0 == 401) }
            #expect(try await Browser().signIn(c, token: f.tokens["sam"]!).0 == 429)  // even a good token, for a minute
            var h = f.headers(nil)
            h[.authorization] = "Bearer \(wrong)"
            try await c.execute(uri: "/api/v1/me", method: .get, headers: h) { r in #expect(r.status.code == 429) }
            f.clock.set(t0.addingTimeInterval(61))
            #expect(try await Browser().signIn(c, token: f.tokens["sam"]!).0 == 303)
        }
    }
}

@Suite("A tampered register file is input too: an error, never a crash or a silent default", .serialized)
struct TamperedRegisterTests {
    @Test(arguments: [
        ("UPDATE exception SET conflicted = 'not json' WHERE id = 1", "exception 1 has an unreadable conflicted column"),
        ("UPDATE exception SET mitigations = '[1, 2]' WHERE id = 1", "exception 1 has an unreadable mitigations column"),
        ("UPDATE exception SET approverGroups = '{}' WHERE id = 1", "exception 1 has an unreadable approverGroups column"),
        ("UPDATE exception SET requestedDays = 'seven' WHERE id = 1", "exception 1 has an unreadable requestedDays column"),
        ("UPDATE exception SET createdAt = 'yesterday' WHERE id = 1", "exception 1 has an unreadable createdAt column"),
    ])
    func aCorruptExceptionColumnIsAnErrorNamingIt(sql: String, expected: String) throws {
        let w = try Workspace()
        let req = try w.run(["request", "--policy", "NET-001", "--resource", "sg.web", "--workspace", "shop", "--reason", "r"])
        #expect(req.code == 0, "\(req.err)")
        try tamper(w.register, sql)
        for args in [["show", "EX-1"], ["list"]] {
            let r = try w.run(args, as: "sam")
            #expect(r.code == 2, "\(args): exit \(r.code), \(r.err)")
            #expect(r.err.contains(expected), "\(args): \(r.err)")
        }
    }

    @Test func aCorruptAuditRowIsAFindingOfVerifyNotACrash() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "NET-001", "--resource", "sg.web", "--workspace", "shop", "--reason", "r"]).code == 0)
        try tamper(w.register, "UPDATE auditEvent SET time = 'noon' WHERE seq = 1")
        let r = try w.run(["audit", "verify"], as: "sam")
        #expect(r.code == 1 || r.code == 2, "exit \(r.code): \(r.err)")
        #expect((r.out + r.err).contains("event 1"), "\(r.out) \(r.err)")
    }
}

@Suite("Bounded growth of the server's tables", .serialized)
struct BoundedGrowthTests {
    @Test func deliveredWebhooksAndEndedSessionsArePrunedByTheScheduler() async throws {
        let f = try await ServerFixture(notify: [.init(url: "http://127.0.0.1:9/hook")])
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "w", resources: ["a"], reason: "r"), actor: "dev", now: t0)
        let d = try await #require(try f.state.store.deliveries().first)
        try await f.state.store.markDelivered([d.id], at: t0)
        try await f.state.store.createSession(idHash: "h", user: "sam", tokenId: "t", csrf: "c", expiresAt: t0.addingTimeInterval(3600), now: t0)
        // Six days on: the delivery is kept (7 days by default); the idle session is gone.
        let early = SchedulerService(state: f.state, logger: .init(label: "t"))
        _ = try await early.tick(now: t0.addingTimeInterval(6 * 86_400))
        await #expect(try f.state.store.deliveries().count == 1)
        await #expect(try f.state.store.prune(deliveredBefore: t0, sessionsIdleBefore: t0, now: t0) == (0, 0))
        _ = try await early.tick(now: t0.addingTimeInterval(8 * 86_400))
        await #expect(try f.state.store.deliveries().isEmpty)
    }

    @Test func aCheckOverTheAPINamesItsWorkspaceWithinTheLimitAndItsOptionsExactly() async throws {
        let f = try await ServerFixture()
        let plan = #"{"format_version":"1.2","resource_changes":[]}"#
        try await f.app().test(.router) { c in
            for (field, expected) in [("\"workspace\":\"\(String(repeating: "w", count: 201))\"", "1 to 200 characters"),
                                      ("\"workspace\":\"a\\nb\"", "on one line"),
                                      ("\"workspace\":\"w\",\"format\":\"xml\"", "format must be one of"),
                                      ("\"workspace\":\"w\",\"unknown\":\"ignore\"", "unknown must be warn or block")] {
                let (status, body) = try await c.call(.post, "/api/v1/evaluations", as: "dev", f, json: "{\(field),\"plan\":\(plan)}")
                #expect(status == 422, "\(field): \(body)")
                #expect(body["error"]?["message"]?.stringValue?.contains(expected) == true, "\(body)")
            }
            let (ok, _) = try await c.call(.post, "/api/v1/evaluations", as: "dev", f, json: "{\"workspace\":\"w\",\"plan\":\(plan)}")
            #expect(ok == 201)
        }
        // Only the valid check was recorded.
        #expect(try await f.state.store.auditEvents(subject: nil).filter { $0.action == "check.recorded" }.count == 1)
    }

    @Test func theCLIRefusesAWorkspaceOnTwoLines() async throws {
        let r = try waiver(["check", "--plan", webApp, "--workspace", "shop\nprod"])
        #expect(r.code == 2 && r.err.contains("--workspace: a workspace is a name of 1 to 200 characters on one line"), "\(r.err)")
    }

    @Test func retentionOfWebhooksIsConfigurable() async throws {
        let dir = TempDir()
        let path = dir.write("waiver.yaml", "retention: { webhooks: 30d }\n")
        #expect(try ConfigLoader.load(path: path, required: true).keepDeliveries == 30 * 86_400)
        let bad = dir.write("bad.yaml", "retention: { webhooks: 2h }\n")
        #expect(throws: (any Error).self) { _ = try ConfigLoader.load(path: bad, required: true) }
    }
}
