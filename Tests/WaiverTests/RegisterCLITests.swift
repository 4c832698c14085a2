import Foundation
import GRDB
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverStore

/// A working directory with the repository's waiver.yaml (groups: security = sam, pat; finance =
/// fin; engineering-managers = em; ciso = ciso) and policies, and a register in it.
struct Workspace {
    let dir = TempDir()
    var register: String { dir.path + "/.waiver/register.sqlite" }

    init() throws {
        let config = try String(contentsOfFile: repoRoot + "/waiver.yaml", encoding: .utf8)
        var lines: [String] = []
        var skipping = false
        for line in config.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("groups:") {
                lines += ["groups:", "  security: [sam, pat]", "  finance: [fin, cfo]", "  engineering-managers: [em, lee]", "  ciso: [ciso]"]
                skipping = true
                continue
            }
            if skipping, line.hasPrefix(" ") || line.hasPrefix("#") || line.isEmpty { continue }
            skipping = false
            lines.append(String(line))
        }
        dir.write("waiver.yaml", lines.joined(separator: "\n") + "\n")
        for file in try FileManager.default.contentsOfDirectory(atPath: repoRoot + "/policies") {
            dir.write("policies/" + file, try String(contentsOfFile: repoRoot + "/policies/" + file, encoding: .utf8))
        }
    }

    /// Adds a server user through `waiver admin add-user`; returns their token.
    func addUser(_ name: String, _ groups: [String], admin: Bool = false) throws -> String {
        let r = try waiver(["admin", "add-user", name] + groups.flatMap { ["--group", $0] } + (admin ? ["--admin"] : []) + ["--database", "sqlite:" + register],
                           in: dir.path)
        guard r.code == 0, let token = r.out.split(separator: "\n").last else { throw UsageErrorForTests("add-user \(name): \(r.err)") }
        return String(token)
    }

    /// Runs waiver here as `actor` at time `now`.
    func run(_ args: [String], as actor: String = "dev", at now: String = "2026-11-22T10:00:00Z") throws -> Run {
        try waiver(args, in: dir.path, env: ["WAIVER_ACTOR": actor, "WAIVER_NOW": now, "WAIVER_REGISTER": register])
    }

    func process(_ args: [String], as actor: String, at now: String = "2026-11-22T10:00:00Z") -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: waiverBinary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        var env = ProcessInfo.processInfo.environment
        env["WAIVER_ACTOR"] = actor
        env["WAIVER_NOW"] = now
        env["WAIVER_REGISTER"] = register
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        return p
    }
}

let webApp = repoRoot + "/Examples/plans/web-app.json"
let bastion = "module.network.aws_security_group.bastion"

@Suite("The register end to end through the binary", .serialized)
struct RegisterCLITests {
    @Test func aLocalRenewalInheritsPolicyWorkspaceAndResourcesAsOverTheServer() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "aws_instance.batch", "--workspace", "shop", "--reason", "quarter end"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "fin").code == 0)
        let renewal = try w.run(["request", "--renews", "EX-1", "--reason", "the migration slipped", "--format", "json"])
        #expect(renewal.code == 0, "\(renewal.err)")
        let v = try JSONReader.parse(Data(renewal.out.utf8))
        #expect(v["policy"] == "COST-001" && v["workspace"] == "shop" && v["resources"] == .array(["aws_instance.batch"]), "\(renewal.out)")
        let missing = try w.run(["request", "--resource", "r", "--workspace", "shop", "--reason", "x"])
        #expect(missing.code == 2 && missing.err.contains("--policy is required"), "\(missing.err)")
    }

    @Test func theWholeLifecycle() async throws {
        let w = try Workspace()
        // 1. The pipeline blocks on SSH open to the world.
        let first = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--format", "json"], as: "ci")
        #expect(first.code == 1)
        // 2. The team requests an exception with evidence.
        let evidence = w.dir.write("ticket.txt", "CHG-1234 vendor access window")
        let req = try w.run(["request", "--policy", "NET-001", "--resource", bastion, "--workspace", "shop", "--reason", "Vendor migration needs SSH",
                             "--days", "7", "--likelihood", "low", "--impact", "high", "--mitigation", "source IPs limited at the NACL", "--evidence", evidence])
        #expect(req.code == 0, "\(req.err)")
        #expect(req.out.hasPrefix("EX-1 requested: NET-001 in shop, 7 days, medium risk; pending approval by 1 of security"))
        // 3. While pending, the pipeline still blocks, and says so.
        let pending = try w.run(["check", "--plan", webApp, "--workspace", "shop"], as: "ci")
        #expect(pending.code == 1)
        #expect(pending.out.contains("PENDING   NET-001"))
        #expect(pending.out.contains("exception EX-1 waiting for approval"))
        // 4. Refusals: own request, wrong group, bad id.
        let own = try w.run(["approve", "EX-1"], as: "dev")
        #expect(own.code == 2 && own.err == "error: dev cannot approve EX-1: they requested it (no one approves their own request)\n")
        let wrong = try w.run(["approve", "EX-1"], as: "fin")
        #expect(wrong.code == 2 && wrong.err.contains("are decided by members of security"))
        #expect(try w.run(["approve", "EX-99"], as: "sam").err == "error: EX-99 not found\n")
        #expect(try w.run(["approve", "banana"], as: "sam").code == 2)
        // 5. Security approves; the pipeline passes with the resource still reported, excepted.
        let ok = try w.run(["approve", "EX-1", "--comment", "vendor window agreed"], as: "sam")
        #expect(ok.out == "EX-1 approved by sam: active until 2026-11-29T10:00:00Z\n")
        let excepted = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--format", "json"], as: "ci")
        let v = try JSONReader.parse(Data(excepted.out.utf8))
        let row = try #require(v["results"]?.arrayValue?.first { $0["policy"] == "NET-001" })
        #expect(row["status"] == "excepted" && row["exception"] == "EX-1" && row["expires"] == "2026-11-29T10:00:00Z")
        // Other violations in the plan still block.
        #expect(excepted.code == 1)
        // 6. Show and list.
        let show = try w.run(["show", "EX-1", "--format", "json"])
        let shown = try JSONReader.parse(Data(show.out.utf8))
        #expect(shown["status"] == "approved")
        #expect(shown["evidence"]?.arrayValue?.first?["sha256"] == .string(AuditChain.sha256(Data("CHG-1234 vendor access window".utf8))))
        #expect(shown["history"]?.arrayValue?.compactMap { $0["action"]?.stringValue } == ["exception.requested", "evidence.added", "exception.approved"])
        let evidenceFile = w.dir.path + "/.waiver/evidence/" + AuditChain.sha256(Data("CHG-1234 vendor access window".utf8))
        #expect(FileManager.default.fileExists(atPath: evidenceFile))
        #expect(try w.run(["list", "--expiring-within", "7d"]).out.contains("EX-1  approved"))
        #expect(try w.run(["list", "--expiring-within", "6d"]).out == "No exceptions.\n")
        #expect(try w.run(["list", "--format", "csv"]).out.hasPrefix("id,status,policy"))
        // 7. One second before expiry nothing expires; at the instant, the re-check finds it still violating.
        #expect(try w.run(["expire"], as: "cron", at: "2026-11-29T09:59:59Z").out == "0 exceptions re-checked\n")
        let expired = try w.run(["expire"], as: "cron", at: "2026-11-29T10:00:00Z")
        #expect(expired.out.hasPrefix("EX-1 expired: NET-001 still violated by \(bastion)"))
        let after = try w.run(["check", "--plan", webApp, "--workspace", "shop"], as: "ci", at: "2026-11-29T10:00:01Z")
        #expect(after.out.contains("BLOCKING  NET-001"))
        // 8. The audit log verifies, exports, and the export verifies offline.
        #expect(try w.run(["audit", "verify"]).out.hasPrefix("audit log intact: "))
        let export = w.dir.path + "/audit.jsonl"
        #expect(try w.run(["audit", "export", "--format", "jsonl", "--output", export]).code == 0)
        #expect(try w.run(["audit", "verify", "--file", export]).code == 0)
        var lines = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count >= 7)
        lines[2] = lines[2].replacingOccurrences(of: "\"actor\":\"dev\"", with: "\"actor\":\"mallory\"")
        w.dir.write("tampered.jsonl", lines.joined(separator: "\n") + "\n")
        let bad = try w.run(["audit", "verify", "--file", w.dir.path + "/tampered.jsonl"])
        #expect(bad.code == 1)
        #expect(bad.out.hasPrefix("audit log NOT intact: event 3:"))
        // The head printed by verify is an anchor: a copy cut short fails against it, a malformed one is a usage error.
        let verified = try w.run(["audit", "verify"]).out
        let head = try #require(verified.split(separator: "\n").first { $0.hasPrefix("head: ") }?.split(separator: " ")[1])
        #expect(try w.run(["audit", "verify", "--anchor", String(head)]).out.contains("1 anchor matched"))
        let untouched = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n")
        #expect(try w.run(["audit", "verify", "--file", export, "--anchor", String(head)]).code == 0)
        w.dir.write("cut.jsonl", untouched.dropLast(2).joined(separator: "\n") + "\n")
        let cut = try w.run(["audit", "verify", "--file", w.dir.path + "/cut.jsonl", "--anchor", String(head)])
        #expect(cut.code == 1)
        #expect(cut.out.contains("events were cut from the end"))
        let malformed = try w.run(["audit", "verify", "--anchor", "7:abc"])
        #expect(malformed.code == 2)
        #expect(malformed.err.contains("--anchor: '7:abc' is not SEQ:HASH"))
        // 9. The report.
        let report = try w.run(["report", "--format", "json"])
        let r = try JSONReader.parse(Data(report.out.utf8))
        #expect(r["exceptions"] == 1 && r["per_policy"]?.arrayValue?.first?["policy"] == "NET-001")
    }

    @Test func checkRequestFilesOneRequestPerBlockingViolationAndWaitTimesOut() async throws {
        let w = try Workspace()
        let r = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "Launch on Friday", "--commit-author", "pat", "--wait", "1s"], as: "ci")
        #expect(r.code == 3)
        #expect(r.err.components(separatedBy: "requested for").count - 1 == 5)
        #expect(r.out.contains("5 pending"))
        let list = try w.run(["list", "--status", "pending", "--format", "json"])
        let items = try JSONReader.parse(Data(list.out.utf8)).arrayValue ?? []
        #expect(items.count == 5)
        // The commit author may not approve what was requested for their change.
        let net = try #require(items.first { $0["policy"] == "NET-001" }?["id"]?.stringValue)
        let refused = try w.run(["approve", net], as: "pat")
        #expect(refused.code == 2 && refused.err.contains("they authored the change it covers"))
        // A second run does not file duplicates: the violations are already pending.
        let again = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "again"], as: "ci")
        #expect(!again.err.contains("requested for"))
        #expect(again.code == 1)
    }

    @Test func checkWaitReturnsWhenDecided() async throws {
        let w = try Workspace()
        let plan = w.dir.write("plan.json", planJSON([change("aws_instance.a", after: #"{"instance_type":"m5.4xlarge","tags":{"Name":"web-prod-a","owner":"o","environment":"prod"},"metadata_options":[{"http_tokens":"required"}],"root_block_device":[{"encrypted":true,"volume_type":"gp3"}]}"#)]))
        let checker = w.process(["check", "--plan", plan, "--workspace", "w", "--request", "--reason", "big job", "--likelihood", "low", "--wait", "20s"], as: "ci")
        try checker.run()
        // Approve both cost policies' requests while the check waits.
        var approved = 0
        let deadline = Date().addingTimeInterval(15)
        while approved < 2, Date() < deadline {
            try await Task.sleep(for: .seconds(0.3))
            let pending = (try? JSONReader.parse(Data(try w.run(["list", "--status", "pending", "--format", "json"]).out.utf8)).arrayValue) ?? []
            for item in pending {
                guard let id = item["id"]?.stringValue else { continue }
                if try w.run(["approve", id], as: "fin").code == 0 { approved += 1 }
            }
        }
        checker.waitUntilExit()
        #expect(approved == 2)
        #expect(checker.terminationStatus == 0)
    }

    @Test func twoApproversAtOnceLeaveOneConsistentOutcome() async throws {
        let w = try Workspace()
        // High risk: two distinct approvers needed. Both approve at the same moment, many times over.
        for round in 0..<4 {
            let req = try w.run(["request", "--policy", "NET-001", "--resource", "sg\(round)", "--workspace", "shop", "--reason", "r",
                                 "--likelihood", "medium", "--impact", "high"])
            let id = String(req.out.prefix(while: { $0 != " " }))
            let a = w.process(["approve", id], as: "sam"), b = w.process(["approve", id], as: "pat"), c = w.process(["approve", id], as: "sam")
            try a.run(); try b.run(); try c.run()
            a.waitUntilExit(); b.waitUntilExit(); c.waitUntilExit()
            // sam twice: exactly one of those two succeeds; pat succeeds.
            #expect([a.terminationStatus, c.terminationStatus].sorted() == [0, 2])
            #expect(b.terminationStatus == 0)
            let shown = try JSONReader.parse(Data(try w.run(["show", id, "--format", "json"]).out.utf8))
            #expect(shown["status"] == "approved")
            #expect(shown["approvals"]?.arrayValue?.count == 2)
        }
        #expect(try w.run(["audit", "verify"]).code == 0)
    }

    @Test func killedMidWriteLeavesAConsistentRegister() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "seed", "--workspace", "shop", "--reason", "r"]).code == 0)
        // A writer filing requests in a tight loop, killed with SIGKILL at varying moments.
        for delay in [0.05, 0.15, 0.3, 0.5] {
            let script = "for i in $(seq 1 200); do \(waiverBinary) request --policy COST-001 --resource r$i --workspace shop --reason r >/dev/null 2>&1; done"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "exec " + "sh -c '\(script)'"]
            p.currentDirectoryURL = URL(fileURLWithPath: w.dir.path)
            var env = ProcessInfo.processInfo.environment
            env["WAIVER_ACTOR"] = "dev"
            env["WAIVER_REGISTER"] = w.register
            p.environment = env
            try p.run()
            try await Task.sleep(for: .seconds(delay))
            // Kill the loop and whichever waiver process it is running right now, by pid: the loop is
            // stopped first (so it starts no new one), then its child and the loop itself are killed.
            let loop = p.processIdentifier
            kill(loop, SIGSTOP)
            let children = (try? String(contentsOfFile: "/proc/\(loop)/task/\(loop)/children", encoding: .utf8)) ?? ""
            for child in children.split(separator: " ").compactMap({ Int32($0) }) { kill(child, SIGKILL) }
            kill(loop, SIGKILL)
            p.waitUntilExit()
        }
        let verify = try w.run(["audit", "verify"])
        #expect(verify.code == 0, "\(verify.out)")
        // Every stored exception has its request event, and nothing is half-written.
        let q = try DatabaseQueue(path: w.register)
        let (exceptions, requested, orphans, integrity) = try await q.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exception") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM auditEvent WHERE action = 'exception.requested'") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exception e WHERE NOT EXISTS (SELECT 1 FROM exceptionResource r WHERE r.exceptionId = e.id)") ?? 0,
             try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "")
        }
        #expect(exceptions == requested)
        #expect(exceptions >= 1)
        #expect(orphans == 0)
        #expect(integrity == "ok")
    }

    @Test func aProgramExceptionForAPerson() async throws {
        let w = try Workspace()
        let r = try w.run(["request", "--policy", "CTRL-HR-001", "--kind", "person", "--resource", "alex@example.com",
                           "--reason", "Contractor converted to employee; new check booked", "--days", "14",
                           "--mitigation", "No customer-data access until the check clears"])
        #expect(r.code == 0, "\(r.err)")
        #expect(r.out.contains("in program"))
        // High severity, medium likelihood: high risk, two approvers.
        #expect(try w.run(["approve", "EX-1"], as: "pat").out.contains("still needs 1 more approval"))
        #expect(try w.run(["approve", "EX-1"], as: "sam").out.contains("approved by sam"))
        let shown = try JSONReader.parse(Data(try w.run(["show", "EX-1", "--format", "json"]).out.utf8))
        #expect(shown["subject_kind"] == "person" && shown["resources"] == ["alex@example.com"])
        // Not machine-checked: at expiry the control is enforced again.
        #expect(try w.run(["expire"], at: "2026-12-06T10:00:00Z").out.contains("EX-1 expired"))
    }

    @Test func badInputToRegisterCommands() async throws {
        let w = try Workspace()
        let cases: [([String], String)] = [
            (["request", "--policy", "NOPE", "--resource", "r", "--workspace", "w", "--reason", "x"], "unknown policy 'NOPE'"),
            (["request", "--policy", "COST-001", "--resource", "r", "--workspace", "w", "--reason", "x", "--days", "45"], "45 days is past the cap of 30 days"),
            (["request", "--policy", "COST-001", "--resource", "r", "--reason", "x"], "--workspace is required"),
            (["request", "--policy", "COST-001", "--resource", "r", "--workspace", "w", "--reason", "x", "--impact", "huge"], "huge"),
            (["request", "--policy", "COST-001", "--resource", "r", "--workspace", "w", "--reason", "x", "--evidence", "/no/such"], "cannot read evidence file"),
            (["reject", "EX-1"], "--comment"),
            (["list", "--expiring-within", "soon"], "'soon' is not a duration"),
            (["report", "--from", "last tuesday"], "'last tuesday' is not a date"),
            (["check", "--plan", webApp, "--request"], "--request needs --reason"),
            (["check", "--plan", webApp, "--wait", "forever"], "'forever' is not a duration"),
        ]
        for (args, fragment) in cases {
            let r = try w.run(args)
            #expect(r.code == 2, "\(args): exit \(r.code)")
            #expect(r.err.contains(fragment), "\(args): \(r.err)")
        }
        let nowBad = try waiver(["list"], in: w.dir.path, env: ["WAIVER_NOW": "yesterday", "WAIVER_REGISTER": w.register])
        #expect(nowBad.code == 2 && nowBad.err.contains("WAIVER_NOW"))
        w.dir.write("garbage.sqlite", "this is not a database")
        let garbage = try waiver(["list"], in: w.dir.path, env: ["WAIVER_REGISTER": w.dir.path + "/garbage.sqlite"])
        #expect(garbage.code == 2)
        #expect(garbage.err.split(separator: "\n").count == 1)
    }
}
