import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import Testing
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverPostgres
@testable import WaiverServer
@testable import WaiverStore

/// Issue 11: several replicas of `waiver serve` on one PostgreSQL database, one of them lost.
@Suite("Two replicas on one PostgreSQL, one killed mid-way", .serialized)
struct ReplicaTests {
    actor Received {
        var byDelivery: [String: Int] = [:]
        func take(_ id: String) { byDelivery[id, default: 0] += 1 }
    }

    @Test func everyAcknowledgedWriteStaysTheChainHoldsAndRemindersAndWebhooksGoOnce() async throws {
        guard let db = try freshPostgresDatabase() else { return }
        let w = try Workspace()
        let received = Received()
        let receiver = Router()
        receiver.post("/hook") { request, _ -> Response in
            await received.take(request.headers[HTTPField.Name("X-Waiver-Delivery")!] ?? "none")
            return Response(status: .ok)
        }
        try await Application(router: receiver).test(.live) { rc in
            let port = try #require(rc.port)
            // A reminder one second inside the exceptions' 3 days is due at once (an offset at or past an
            // exception's duration is never sent).
            let config = (w.dir.read("waiver.yaml") ?? "").replacingOccurrences(of: "reminders: [7d, 1d]", with: "reminders: [259199s]")
            #expect(config.contains("reminders: [259199s]"))
            w.dir.write("waiver.yaml", config + "notify:\n  - url: http://127.0.0.1:\(port)/hook\n")
            func addUser(_ name: String, _ group: String) throws -> String {
                let r = try waiver(["admin", "add-user", name, "--group", group, "--database", db], in: w.dir.path)
                guard r.code == 0, let token = r.out.split(separator: "\n").last else { throw UsageErrorForTests("add-user: \(r.err)") }
                return String(token)
            }
            let dev = try addUser("dev", "developers"), fin = try addUser("fin", "finance")
            // The scheduler every second; a dead replica's claim on webhook deliveries lapses after 6 s.
            // The clock runs (a claim's lease is measured on it): 3-day exceptions are inside their reminder at once.
            let args = ["--scheduler-interval", "1", "--webhook-lease", "6"]
            let a = LiveServer(w, database: db, args: args, log: "a.log"), b = LiveServer(w, database: db, args: args, log: "b.log")
            try a.start()
            try b.start()
            defer { _ = a.stop(); _ = b.stop() }

            /// Files one request through a replica; the id when the replica acknowledged it.
            @Sendable func request(_ i: Int, via url: String) throws -> String? {
                let r = try waiver(["request", "--policy", "COST-001", "--workspace", "w\(i % 3)", "--resource", "aws_instance.r\(i)",
                                    "--reason", "replica test \(i)", "--days", "3", "--server", url], in: w.dir.path, env: ["WAIVER_TOKEN": dev])
                guard r.code == 0 else { return nil }
                return r.out.split(separator: " ").first.map(String.init)
            }
            func requests(_ range: Range<Int>, killing: LiveServer? = nil) async throws -> [String] {
                let (aURL, bURL) = (a.url, b.url)
                return try await withThrowingTaskGroup(of: String?.self) { group in
                    for i in range { group.addTask { try request(i, via: i % 2 == 0 ? aURL : bURL) } }
                    if let killing {
                        try await Task.sleep(for: .milliseconds(150))
                        killing.kill()
                    }
                    var ids: [String] = []
                    for try await id in group { if let id { ids.append(id) } }
                    return ids
                }
            }
            var acknowledged = try await requests(0..<10)
            #expect(acknowledged.count == 10)
            // Replica A dies in the middle of the second wave; what it acknowledged must stay.
            acknowledged += try await requests(10..<30, killing: a)
            try a.start()
            // Approvals through both replicas at once.
            let (aURL, bURL) = (a.url, b.url)
            let approved = try await withThrowingTaskGroup(of: String?.self) { group in
                for (i, id) in acknowledged.enumerated() {
                    group.addTask {
                        let r = try waiver(["approve", id, "--comment", "ok", "--server", i % 2 == 0 ? aURL : bURL], in: w.dir.path, env: ["WAIVER_TOKEN": fin])
                        return r.code == 0 ? id : nil
                    }
                }
                var ids: [String] = []
                for try await id in group { if let id { ids.append(id) } }
                return ids
            }
            #expect(Set(approved) == Set(acknowledged))

            let store = try await PostgresRegisterStore(url: try PostgresURL(db))
            // Each approved exception is inside its reminder: the scheduler (one replica at a time)
            // sends it once. Wait for the passes, and for the outbox to drain.
            var reminders: [String: Int] = [:]
            var pending = -1
            for _ in 0..<120 {
                reminders = [:]
                for e in try await store.auditEvents(subject: nil) where e.action == "exception.reminder" { reminders[e.subject, default: 0] += 1 }
                pending = try await store.deliveryCounts(maxAttempts: 12).waiting
                if reminders.count >= approved.count, pending == 0 { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            let all = try await store.exceptions(ExceptionFilter())
            // Every acknowledged write is there, approved; the chain is one and intact.
            #expect(Set(acknowledged).isSubset(of: Set(all.map(\.displayId))))
            #expect(all.filter { Set(acknowledged).contains($0.displayId) }.allSatisfy { $0.status == .approved })
            let verified = try await RegisterVerification.verify(store)
            #expect(verified.intact, "\(verified.problem ?? "") \(verified.findings)")
            // Each reminder once.
            #expect(Set(reminders.keys) == Set(all.filter { $0.status == .approved }.map(\.displayId)))
            #expect(reminders.values.allSatisfy { $0 == 1 }, "\(reminders.filter { $0.value != 1 })")
            // Every webhook delivery made and marked. Those the killed replica had in flight (one
            // window to the receiver at most) are made again after their lease: at least once,
            // never lost; everything else exactly once.
            #expect(pending == 0)
            let rows = try await store.deliveries(limit: 10_000)
            #expect(rows.allSatisfy { $0.deliveredAt != nil })
            let got = await received.byDelivery
            #expect(Set(got.keys) == Set(rows.map { String($0.id) }))
            let repeated = got.filter { $0.value > 1 }
            #expect(repeated.count <= WebhookService.perReceiver && repeated.values.allSatisfy { $0 == 2 }, "delivered more than once: \(repeated)")
            print("replica test: \(acknowledged.count) requests acknowledged, \(rows.count) webhook deliveries, \(repeated.count) repeated after the kill: \(repeated.keys.sorted())")
            store.close()
        }
    }
}

@Suite("Moving a register from SQLite to PostgreSQL", .serialized)
struct CopyRegisterTests {
    @Test func theCopyIsTheSameChainWithItsExceptionsUsersAndEvidenceAndIsMadeOnce() async throws {
        guard let db = try freshPostgresDatabase() else { return }
        let w = try Workspace()
        let evidence = w.dir.write("byod.txt", "User has signed a BYODT Agreement")
        #expect(try w.run(["request", "--policy", "COST-001", "--workspace", "shop", "--resource", "aws_instance.a", "--reason", "batch", "--evidence", evidence]).code == 0)
        #expect(try w.run(["approve", "EX-1", "--comment", "ok"], as: "fin").code == 0)
        #expect(try w.run(["request", "--policy", "NET-001", "--workspace", "shop", "--resource", "sg", "--reason", "vendor"]).code == 0)
        #expect(try w.run(["check", "--plan", webApp, "--workspace", "shop"]).code == 1)
        let token = try w.addUser("sam", ["security"])
        // A row changed behind the log's back stays a finding in the copy, not laundered.
        try tamper(w.register, "UPDATE exception SET reason = 'edited' WHERE id = 2")
        let source = try SQLiteRegisterStore(path: w.register)

        let copy = try waiver(["admin", "copy-register", "--from", "sqlite:" + w.register, "--to", db, "--evidence-to", w.dir.path + "/pg-evidence"], in: w.dir.path)
        #expect(copy.code == 0, "\(copy.err)")
        #expect(copy.out.contains("2 exceptions") && copy.out.contains("1 users") && copy.out.contains("1 evidence files") && copy.out.contains("with the source's 1 findings"), "\(copy.out)")
        let target = try await PostgresRegisterStore(url: try PostgresURL(db))
        defer { target.close() }
        #expect(try await target.auditEvents(subject: nil) == (try await source.auditEvents(subject: nil)))
        #expect(try await target.exceptions(ExceptionFilter()) == (try await source.exceptions(ExceptionFilter())))
        #expect(try await target.exception(id: 2)?.untrusted != nil)
        #expect(try await target.latestEvaluation(workspace: "shop") == (try await source.latestEvaluation(workspace: "shop")))
        #expect(try await target.users() == (try source.users()))
        let (user, _) = try #require(try await target.token(id: String(token.split(separator: "_")[1])))
        #expect(user.name == "sam")
        let sha = try #require(try await target.exception(id: 1)?.evidence.first?.sha256)
        #expect(FileManager.default.contents(atPath: w.dir.path + "/pg-evidence/" + sha) == Data("User has signed a BYODT Agreement".utf8))
        // The copy goes on where the source stopped: the next exception is EX-3, the chain continues.
        let register = Register(store: target, configuration: try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true),
                                policies: try PolicyLoader.load(directory: repoRoot + "/policies"))
        let next = try await register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r"], reason: "r"), actor: "dev", now: t0).displayId
        #expect(next == "EX-3")
        #expect(try await RegisterVerification.verify(target).firstBad == nil)
        // Into a register that is not empty: refused, nothing changed.
        let again = try waiver(["admin", "copy-register", "--from", "sqlite:" + w.register, "--to", db], in: w.dir.path)
        #expect(again.code == 2 && again.err.contains("not empty"), "\(again.err)")
    }
}
