import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing
import Yams
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverStore

/// A settable clock for the server under test.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Date
    init(_ d: Date) { value = d }
    var now: Date { lock.withLock { value } }
    func set(_ d: Date) { lock.withLock { value = d } }
}

/// A server state on a real SQLite file with users: dev (developers), sam and pat (security),
/// fin (finance), root (admin, also in security), and their tokens.
struct ServerFixture {
    let dir = TempDir()
    let clock = TestClock(t0)
    let state: ServerState
    var tokens: [String: String] = [:]

    init(maxBodyBytes: Int = 8 << 20, notify: [WaiverCore.Configuration.Webhook] = [], env: [String: String] = [:],
         identity: IdentitySettings? = nil, configure: (inout WaiverCore.Configuration) -> Void = { _ in },
         publicURL: String? = nil) async throws {
        var config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        config.notify = notify
        if let identity { config.identity = identity }
        configure(&config)
        let clock = self.clock
        var settings = ServerSettings(
            host: "127.0.0.1", port: 0, databasePath: dir.path + "/register.sqlite", configuration: config,
            policies: try PolicyLoader.load(directory: repoRoot + "/policies"), maxBodyBytes: maxBodyBytes,
            now: { clock.now }, environment: { env[$0] })
        settings.publicURL = publicURL
        state = try ServerState(settings: settings)
        for (name, groups, admin) in [("dev", ["developers"], false), ("sam", ["security"], false), ("pat", ["security"], false),
                                      ("fin", ["finance"], false), ("root", ["security"], true)] {
            try await state.store.putUser(User(name: name, groups: groups, admin: admin), actor: "setup", now: t0)
            let t = APIToken.generate()
            try await state.store.addToken(id: t.id, secretHash: t.hash, user: name, actor: "setup", now: t0)
            tokens[name] = t.token
        }
    }

    func app() throws -> some ApplicationProtocol { try buildApplication(state: state) }

    func headers(_ user: String?) -> HTTPFields {
        var h = HTTPFields()
        if let user, let token = tokens[user] { h[.authorization] = "Bearer \(token)" }
        h[.contentType] = "application/json"
        return h
    }
}

extension TestClientProtocol {
    /// Sends a request as a user and returns (status, JSON body).
    func call(_ method: HTTPRequest.Method, _ uri: String, as user: String?, _ f: ServerFixture, json: String? = nil, raw: ByteBuffer? = nil) async throws -> (Int, Value) {
        try await execute(uri: uri, method: method, headers: f.headers(user), body: raw ?? json.map { ByteBuffer(string: $0) }) { r in
            let text = String(buffer: r.body)
            return (Int(r.status.code), (try? JSONReader.parse(Data(text.utf8))) ?? .string(text))
        }
    }
}

let netRequest = #"{"policy":"NET-001","workspace":"shop","resources":["sg.web"],"reason":"vendor access","days":7,"likelihood":"low","impact":"high"}"#

@Suite("Server API", .serialized)
struct ServerAPITests {
    @Test func authenticationMatrix() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { client in
            #expect(try await client.call(.get, "/api/v1/me", as: nil, f).0 == 401)
            var bad = HTTPFields()
            bad[.authorization] = "Bearer wvr_000000000000_" + String(repeating: "0", count: 64)
            #expect(try await client.execute(uri: "/api/v1/me", method: .get, headers: bad) { $0.status.code } == 401)
            bad[.authorization] = "Bearer not-a-token"
            #expect(try await client.execute(uri: "/api/v1/me", method: .get, headers: bad) { $0.status.code } == 401)
            let (status, me) = try await client.call(.get, "/api/v1/me", as: "sam", f)
            #expect(status == 200 && me["name"] == "sam" && me["groups"] == ["security"])
            // A revoked token stops working at once.
            let id = String(f.tokens["pat"]!.split(separator: "_")[1])
            try await f.state.store.revokeToken(id: id, actor: "root", now: t0)
            #expect(try await client.call(.get, "/api/v1/me", as: "pat", f).0 == 401)
            // Unauthenticated endpoints.
            #expect(try await client.call(.get, "/health", as: nil, f).1["status"] == "ok")
            #expect(try await client.execute(uri: "/openapi.yaml", method: .get) { $0.status.code } == 200)
        }
    }

    /// A batch of requests is filed all or none; a scanner rule no policy defines needs scanner_rule.
    @Test func aBatchOfRequestsIsAllOrNone() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { client in
            let good = #"{"policy":"COST-001","workspace":"shop","resources":["aws_instance.a"],"reason":"launch"}"#
            let unknown = #"{"policy":"CKV_AWS_20","workspace":"shop","resources":["aws_s3_bucket.site"],"reason":"site"}"#
            let (refused, why) = try await client.call(.post, "/api/v1/exceptions/batch", as: "dev", f, json: #"{"requests":[\#(good),\#(unknown)]}"#)
            #expect(refused == 422 && why["error"]?["message"]?.stringValue?.contains("unknown policy 'CKV_AWS_20'") == true, "\(why)")
            #expect(try await f.state.store.exceptions(ExceptionFilter()).isEmpty)
            let scanner = #"{"policy":"CKV_AWS_20","workspace":"shop","resources":["aws_s3_bucket.site"],"reason":"site","scanner_rule":true}"#
            let (status, filed) = try await client.call(.post, "/api/v1/exceptions/batch", as: "dev", f, json: #"{"requests":[\#(good),\#(scanner)]}"#)
            #expect(status == 201 && filed["requested"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["EX-1", "EX-2"], "\(filed)")
            #expect(filed["requested"]?.arrayValue?.last?["approvers"]?["groups"] == ["security"])
            #expect(try await client.call(.post, "/api/v1/exceptions/batch", as: "dev", f, json: #"{"requests":[]}"#).0 == 422)
            #expect(try await client.call(.post, "/api/v1/exceptions/batch", as: "dev", f, json: #"{"requests":[\#(good)],"x":1}"#).0 == 422)
        }
    }

    /// What schemathesis found against the contract (Tests/Contract/api_contract.py), pinned here too.
    @Test func theServerHoldsToItsContract() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { client in
            // A method the document does not list on a documented path: 405 with the methods it does.
            let (traceStatus, allow) = try await client.execute(uri: "/api/v1/exceptions", method: .trace, headers: f.headers("dev")) { ($0.status.code, $0.headers[.allow]) }
            #expect(traceStatus == 405 && allow == "GET, POST")
            #expect(try await client.execute(uri: "/exceptions/EX-1/decide", method: .get, headers: f.headers("dev")) { ($0.status.code, $0.headers[.allow]) } == (405, "POST"))
            #expect(try await client.call(.get, "/api/v1/nothing-here", as: "dev", f).0 == 404)
            // Query parameters outside their schema are a 400, never silently the default.
            #expect(try await client.call(.get, "/api/v1/audit/events?limit=many", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/exceptions?limit=-1", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/exceptions?format=xml", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/reports?format=pdf", as: "dev", f).0 == 400)
            // An id is EX-N or N, digits only.
            _ = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest)
            #expect(try await client.call(.get, "/api/v1/exceptions/EX-1", as: "dev", f).0 == 200)
            #expect(try await client.call(.get, "/api/v1/exceptions/+1", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/exceptions/EX-1?format=yaml", as: "dev", f).0 == 400)
            // A body field the contract does not name is refused by name, in every body.
            let (status, e) = try await client.call(.post, "/api/v1/exceptions/EX-1/approve", as: "sam", f, json: #"{"coment":"typo"}"#)
            #expect(status == 422 && e["error"]?["message"]?.stringValue?.hasPrefix("unknown field 'coment'") == true)
            let (evaluated, ev) = try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: #"{"workspace":"shop","plan":{"resource_changes":[]},"request":{"reason":"r","mitigation":["x"]}}"#)
            #expect(evaluated == 422 && ev["error"]?["message"]?.stringValue?.hasPrefix("unknown field 'request.mitigation'") == true)
            // Empty evidence is refused, and leaves no file behind.
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/evidence?name=a.txt", as: "dev", f, raw: ByteBuffer()).0 == 422)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: f.state.settings.evidenceDirectory))?.isEmpty ?? true)
            #expect(try await f.state.store.exception(id: 1)?.status == .pending)
        }
    }

    @Test func approvalRulesOverHTTP() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { client in
            let (created, e) = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest)
            #expect(created == 201 && e["id"] == "EX-1" && e["requester"] == "dev" && e["status"] == "pending")
            // The actor is the token's user: a body naming another is refused (an undocumented field), nothing filed.
            let (spoofed, spoof) = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: #"{"policy":"NET-001","workspace":"shop","resources":["x"],"reason":"r","requester":"sam"}"#)
            #expect(spoofed == 422 && spoof["error"]?["message"]?.stringValue?.hasPrefix("unknown field 'requester'") == true)
            #expect(try await f.state.store.exceptions(ExceptionFilter()).count == 1)
            let (own, ownBody) = try await client.call(.post, "/api/v1/exceptions/EX-1/approve", as: "dev", f, json: "{}")
            #expect(own == 403 && ownBody["error"]?["code"] == "forbidden")
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/approve", as: "fin", f, json: "{}").0 == 403)
            // An administrator cannot approve their own request either.
            let (_, mine) = try await client.call(.post, "/api/v1/exceptions", as: "root", f, json: netRequest)
            let rootsId = mine["id"]!.stringValue!
            let (adminOwn, adminBody) = try await client.call(.post, "/api/v1/exceptions/\(rootsId)/approve", as: "root", f, json: "{}")
            #expect(adminOwn == 403)
            #expect(adminBody["error"]?["message"]?.stringValue?.contains("they requested it") == true)
            let (ok, approved) = try await client.call(.post, "/api/v1/exceptions/EX-1/approve", as: "sam", f, json: #"{"comment":"window agreed"}"#)
            #expect(ok == 200 && approved["status"] == "approved" && approved["expires"] == .string(iso(t0.addingTimeInterval(7 * 86_400))))
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/approve", as: "pat", f, json: "{}").0 == 409)
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/reject", as: "pat", f, json: #"{"comment":"x"}"#).0 == 409)
            // Revocation: an administrator may revoke any exception; a comment is required.
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/revoke", as: "root", f, json: "{}").0 == 422)
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/revoke", as: "root", f, json: #"{"comment":"incident"}"#).1["status"] == "revoked")
            // Errors.
            #expect(try await client.call(.get, "/api/v1/exceptions/EX-99", as: "dev", f).0 == 404)
            #expect(try await client.call(.get, "/api/v1/exceptions/banana", as: "dev", f).0 == 400)
            #expect(try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: "{nope").0 == 400)
            let (tooLong, body) = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: #"{"policy":"COST-001","workspace":"w","resources":["r"],"reason":"r","days":45}"#)
            #expect(tooLong == 422 && body["error"]?["message"]?.stringValue?.contains("past the cap of 30 days") == true)
            #expect(try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: #"{"policy":"COST-001","workspace":"w","resources":"r","reason":"r"}"#).0 == 422)
        }
    }

    @Test func evaluationsUseTheServersPoliciesAndTheRegister() async throws {
        let f = try await ServerFixture()
        let plan = try String(contentsOfFile: repoRoot + "/Examples/plans/web-app.json", encoding: .utf8)
        try await f.app().test(.router) { client in
            let envelope = #"{"workspace":"shop","commit_author":"sam","request":{"reason":"launch"},"plan":"# + plan + "}"
            let (status, result) = try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: envelope)
            #expect(status == 201)
            #expect(result["verdict"] == "blocked")
            #expect(result["summary"]?["pending"] == 5)
            #expect(result["requested"]?.arrayValue?.count == 5)
            let net = try #require(result["results"]?.arrayValue?.first { $0["policy"] == "NET-001" })
            let id = try #require(net["exception"]?.stringValue)
            // The commit author may not approve the requests filed for their change.
            let (refused, why) = try await client.call(.post, "/api/v1/exceptions/\(id)/approve", as: "sam", f, json: "{}")
            #expect(refused == 403 && why["error"]?["message"]?.stringValue?.contains("authored the change") == true)
            // Text rendering on request; the pipeline cannot bring its own policies.
            let (_, text) = try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: #"{"workspace":"shop","format":"text","plan":"# + plan + "}")
            #expect(text["rendered"]?.stringValue?.contains("PENDING   NET-001") == true)
            #expect(try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: #"{"workspace":"shop"}"#).0 == 422)
            #expect(try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: #"{"workspace":"shop","plan":{"nope":1}}"#).0 == 422)
            #expect(try await client.call(.post, "/api/v1/evaluations", as: nil, f, json: #"{"workspace":"shop","plan":{}}"#).0 == 401)
        }
    }

    @Test func aBodyOverTheLimitIsRefused() async throws {
        let f = try await ServerFixture(maxBodyBytes: 1024)
        try await f.app().test(.router) { client in
            let big = "{\"workspace\":\"w\",\"pad\":\"" + String(repeating: "x", count: 5000) + "\"}"
            let (status, body) = try await client.call(.post, "/api/v1/evaluations", as: "dev", f, json: big)
            #expect(status == 413 && body["error"]?["code"] == "too_large")
        }
    }

    @Test func evidenceListsPoliciesReportsAndAudit() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { client in
            _ = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest)
            let file = "ticket CHG-1"
            let (up, withEvidence) = try await client.call(.post, "/api/v1/exceptions/EX-1/evidence?name=ticket.txt", as: "dev", f, raw: ByteBuffer(string: file))
            #expect(up == 201)
            let sha = AuditChain.sha256(Data(file.utf8))
            #expect(withEvidence["evidence"]?.arrayValue?.first?["sha256"] == .string(sha))
            let downloaded = try await client.execute(uri: "/api/v1/evidence/\(sha)", method: .get, headers: f.headers("sam")) { String(buffer: $0.body) }
            #expect(downloaded == file)
            #expect(try await client.call(.get, "/api/v1/evidence/\(String(repeating: "a", count: 64))", as: "sam", f).0 == 404)
            #expect(try await client.call(.get, "/api/v1/exceptions?status=pending", as: "sam", f).1.arrayValue?.count == 1)
            #expect(try await client.call(.get, "/api/v1/exceptions?status=approved", as: "sam", f).1.arrayValue?.count == 0)
            #expect(try await client.call(.get, "/api/v1/exceptions?status=weird", as: "sam", f).0 == 400)
            #expect(try await client.call(.post, "/api/v1/exceptions/EX-1/renew", as: "dev", f, json: #"{"reason":"more"}"#).0 == 422)  // pending cannot be renewed
            #expect(try await client.call(.get, "/api/v1/policies", as: "dev", f).1.arrayValue?.count ?? 0 >= 28)
            #expect(try await client.call(.get, "/api/v1/policies/NET-001", as: "dev", f).1["kind"] == "forbid")
            #expect(try await client.call(.get, "/api/v1/policies/NOPE", as: "dev", f).0 == 404)
            #expect(try await client.call(.get, "/api/v1/reports", as: "dev", f).1["exceptions"] == 1)
            #expect(try await client.call(.get, "/api/v1/reports?from=junk", as: "dev", f).0 == 400)
            let verified = try await client.call(.get, "/api/v1/audit/verify", as: "dev", f).1
            #expect(verified["intact"] == true)
            let head = try #require(verified["head"]?.stringValue)
            // The next verification reads only what follows the head verified before, unless asked for the whole chain.
            try await f.state.store.append(AuditDraft(actor: "dev", action: "audit.exported", subject: "audit", payload: [:], time: t0))
            let again = try await client.call(.get, "/api/v1/audit/verify", as: "dev", f).1
            #expect(again["intact"] == true && again["resumed_after"] == verified["events"])
            #expect(again["events"]?.intValue == (verified["events"]?.intValue).map { $0 + 1 })
            let full = try await client.call(.get, "/api/v1/audit/verify?full=true", as: "dev", f).1
            #expect(full["intact"] == true && full["resumed_after"] == nil && full["events"] == again["events"])
            #expect(try await client.call(.get, "/api/v1/audit/verify?full=maybe", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/audit/verify?anchor=\(head)", as: "dev", f).1["intact"] == true)
            let beyond = "999:" + String(repeating: "0", count: 64)
            let cut = try await client.call(.get, "/api/v1/audit/verify?anchor=\(head)&anchor=\(beyond)", as: "dev", f).1
            #expect(cut["intact"] == false && cut["problem"]?.stringValue?.contains("cut from the end") == true)
            #expect(try await client.call(.get, "/api/v1/audit/verify?anchor=nope", as: "dev", f).0 == 400)
            #expect(try await client.call(.get, "/api/v1/audit/events?subject=EX-1", as: "dev", f).1.arrayValue?.count == 2)
            let export = try await client.execute(uri: "/api/v1/audit/export", method: .get, headers: f.headers("dev")) { String(buffer: $0.body) }
            #expect(export.split(separator: "\n").count >= 10)
            #expect(try await client.call(.get, "/api/v1/admin/webhooks", as: "dev", f).0 == 403)
            #expect(try await client.call(.get, "/api/v1/admin/webhooks", as: "root", f).0 == 200)
            #expect(try await client.call(.post, "/api/v1/expire", as: "dev", f).0 == 200)
            // The metrics need a token, as the API does.
            let anonymous = try await client.execute(uri: "/metrics", method: .get) { $0.status }
            #expect(anonymous == .unauthorized)
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: f.headers("dev")) { String(buffer: $0.body) }
            #expect(metrics.contains("waiver_exceptions{status=\"pending\"} 1"))
            #expect(metrics.contains("waiver_http_requests_total"))
        }
    }

    /// What Prometheus's own linter says of `/metrics` (Debian's `prometheus` package has promtool;
    /// `.ci/run` installs it).
    @Test func metricsPassPromtool() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            if inCI { Issue.record("promtool is not installed: CI must check the metrics with it (.ci/run installs prometheus)") }
            else { print("note: promtool not found (apt-get install prometheus): the metrics lint is skipped") }
            return
        }
        let f = try await ServerFixture()
        let text = try await f.app().test(.router) { client in
            _ = try await client.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest)
            return try await client.execute(uri: "/metrics", method: .get, headers: f.headers("dev")) { String(buffer: $0.body) }
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        p.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && said.isEmpty, "promtool: \(said)")
    }

    @Test func everyRouteIsInTheOpenAPIDocument() async throws {
        let f = try await ServerFixture()
        let router = try buildRouter(state: f.state)
        let doc = try #require(try Yams.load(yaml: OpenAPI.document) as? [String: Any])
        #expect(doc["openapi"] as? String == "3.1.0")
        let paths = try #require(doc["paths"] as? [String: Any])
        #expect(router.routes.count >= 20)
        for route in router.routes {
            let path = route.path.description.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
            let key = "/" + path
            let ops = paths[key] as? [String: Any]
            #expect(ops != nil, "\(key) is not in openapi.yaml")
            #expect(ops?[route.method.rawValue.lowercased()] != nil, "\(route.method) \(key) is not in openapi.yaml")
        }
    }
}

@Suite("Scheduler and webhooks", .serialized)
struct SchedulerTests {
    @Test func remindersOnceEachAcrossRestartsAndExpiryOnStart() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r"], reason: "x", days: 10), actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        let expiry = t0.addingTimeInterval(10 * 86_400)
        let scheduler = SchedulerService(state: f.state, logger: .init(label: "test"))
        await #expect(try scheduler.tick(now: expiry.addingTimeInterval(-8 * 86_400)).reminders == 0)
        await #expect(try scheduler.tick(now: expiry.addingTimeInterval(-7 * 86_400)).reminders == 1)   // 7 days before
        await #expect(try scheduler.tick(now: expiry.addingTimeInterval(-6 * 86_400)).reminders == 0)   // not twice
        // A restart: a new server state on the same file remembers what was sent.
        let again = try ServerState(settings: f.state.settings)
        let restarted = SchedulerService(state: again, logger: .init(label: "test"))
        await #expect(try restarted.tick(now: expiry.addingTimeInterval(-86_400)).reminders == 1)      // 1 day before
        await #expect(try restarted.tick(now: expiry.addingTimeInterval(-3600)).reminders == 0)
        // The server was down over the expiry: the first pass after it processes it.
        let outcome = try await restarted.tick(now: expiry.addingTimeInterval(86_400))
        #expect(outcome.expired.map(\.exception.status) == [.expired])
        let reminders = try await f.state.store.auditEvents(subject: e.displayId).filter { $0.action == "exception.reminder" }
        #expect(reminders.count == 2)
        await #expect(try f.state.store.verifyAudit().intact)
    }

    /// A reminder offset at or beyond the exception's own duration is skipped: a 5-day exception gets
    /// no "7 days before" reminder at its approval, only the ones that fall inside its life.
    @Test func aReminderLongerThanTheExceptionIsSkipped() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r"], reason: "x", days: 5), actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(e.id, actor: "fin", comment: nil, days: nil, now: t0)
        let scheduler = SchedulerService(state: f.state, logger: .init(label: "test"))
        await #expect(try scheduler.tick(now: t0).reminders == 0)                                   // not at approval
        await #expect(try scheduler.tick(now: t0.addingTimeInterval(4 * 86_400)).reminders == 1)   // 1 day before
        let sent = try await f.state.store.auditEvents(subject: e.displayId).filter { $0.action == "exception.reminder" }
        #expect(sent.map { $0.payload.contains("\"before\":\"1d\"") } == [true], "\(sent.map(\.payload))")
    }

    /// A program exception under a review cycle: the scheduler sends one notice when the review falls
    /// due, and expires the exception when the review is missed past the week's grace.
    @Test func aDueReviewIsNoticedOnceThenAMissedOneExpires() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "CTRL-DEV-001", workspace: "program", subjectKind: .device, resources: ["SN-9"],
                                                                    reason: "contractor laptop", days: 365, likelihood: .low, impact: .low, owner: "ann"),
                                                   actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(e.id, actor: "sam", comment: nil, days: nil, now: t0)
        let due = t0.addingTimeInterval(90 * 86_400)
        let scheduler = SchedulerService(state: f.state, logger: .init(label: "test"))
        await #expect(try scheduler.tick(now: due.addingTimeInterval(-1)).reminders == 0)
        await #expect(try scheduler.tick(now: due).reminders == 1)
        await #expect(try scheduler.tick(now: due.addingTimeInterval(3600)).reminders == 0)   // once
        let notice = try #require(try await f.state.store.auditEvents(subject: e.displayId).last { $0.action == "exception.reminder" })
        #expect(notice.payload.contains("\"review_due\":\"\(iso(due))\""), "\(notice.payload)")
        #expect(try await scheduler.tick(now: due.addingTimeInterval(7 * 86_400 - 1)).expired.isEmpty)
        let outcome = try await scheduler.tick(now: due.addingTimeInterval(7 * 86_400))
        #expect(outcome.expired.map(\.exception.id) == [e.id] && outcome.expired.first?.exception.status == .expired)
        await #expect(try f.state.store.verifyAudit().intact)
    }

    @Test func webhooksAreSignedAndRetriedWithBackoff() async throws {
        actor Received {
            var requests: [(body: String, signature: String?)] = []
            var failFirst = true
            func take(_ body: String, _ sig: String?) -> Bool {
                requests.append((body, sig))
                if failFirst { failFirst = false; return false }
                return true
            }
        }
        let received = Received()
        let receiver = Router()
        receiver.post("/hook") { request, context -> Response in
            var request = request
            let body = String(buffer: try await request.collectBody(upTo: 1 << 20))
            let ok = await received.take(body, request.headers[HTTPField.Name("X-Waiver-Signature")!])
            return Response(status: ok ? .ok : .internalServerError)
        }
        try await Application(router: receiver).test(.live) { receiverClient in
            let port = try #require(receiverClient.port)
            let hook = WaiverCore.Configuration.Webhook(url: "http://127.0.0.1:\(port)/hook", secretEnv: "HOOK_SECRET", format: "json")
            let f = try await ServerFixture(notify: [hook], env: ["HOOK_SECRET": "s3cret"])
            let e = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r"], reason: "x"), actor: "dev", now: t0)
            let sender = WebhookService(state: f.state, logger: .init(label: "test"))
            // First attempt: the receiver fails; the delivery waits for its backoff.
            #expect(try await sender.deliverDue(now: t0) == 0)
            #expect(try await sender.deliverDue(now: t0.addingTimeInterval(1)) == 0)   // not due yet
            #expect(try await sender.deliverDue(now: t0.addingTimeInterval(WebhookService.backoff(afterAttempts: 1))) == 1)
            #expect(try await sender.deliverDue(now: t0.addingTimeInterval(3600)) == 0)  // delivered once
            let got = await received.requests
            #expect(got.count == 2)
            let last = try #require(got.last)
            let body = try JSONReader.parse(Data(last.body.utf8))
            #expect(body["event"] == "exception.requested" && body["subject"] == .string(e.displayId))
            // The signature is HMAC-SHA256 over "<timestamp>.<body>" with the shared secret.
            let sig = try #require(last.signature)
            let ts = try #require(sig.split(separator: ",").first?.dropFirst(2))
            #expect(sig == WebhookService.signature(body: last.body, secret: "s3cret", timestamp: Int64(ts)!))
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(ts).\(last.body)".utf8), using: SymmetricKey(data: Data("s3cret".utf8)))
            #expect(sig.hasSuffix("v1=" + AuditChain.hex(mac)))
            let deliveries = try await f.state.store.deliveries()
            #expect(deliveries.count == 1 && deliveries[0].attempts == 2 && deliveries[0].deliveredAt != nil)
        }
    }

    @Test func webhooksGoToEachReceiverSeveralAtATimeAndToReceiversInParallel() async throws {
        actor Gauge {
            var inFlight: [String: Int] = [:], most: [String: Int] = [:], total = 0, mostTotal = 0, seen = 0
            func enter(_ r: String) {
                inFlight[r, default: 0] += 1
                total += 1
                most[r] = max(most[r] ?? 0, inFlight[r] ?? 0)
                mostTotal = max(mostTotal, total)
            }
            func leave(_ r: String) { inFlight[r, default: 0] -= 1; total -= 1; seen += 1 }
        }
        let gauge = Gauge()
        @Sendable func receiver(_ name: String) -> Router<BasicRequestContext> {
            let r = Router()
            r.post("/hook") { _, _ -> Response in
                await gauge.enter(name)
                try await Task.sleep(for: .milliseconds(400))
                await gauge.leave(name)
                return Response(status: .ok)
            }
            return r
        }
        try await Application(router: receiver("a")).test(.live) { a in
            try await Application(router: receiver("b")).test(.live) { b in
                let hooks = [a, b].map { WaiverCore.Configuration.Webhook(url: "http://127.0.0.1:\($0.port ?? 0)/hook", secretEnv: nil, format: "json") }
                let f = try await ServerFixture(notify: hooks)
                for i in 0..<20 {
                    _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r\(i)"], reason: "x"), actor: "dev", now: t0)
                }
                // One pass claims all 40 deliveries and sends them: eight at a time to each receiver,
                // both receivers at once.
                #expect(try await WebhookService(state: f.state, logger: .init(label: "t")).deliverDue(now: t0) == 40)
                #expect(await gauge.seen == 40)
                #expect(await gauge.most == ["a": WebhookService.perReceiver, "b": WebhookService.perReceiver])
                #expect(await gauge.mostTotal > WebhookService.perReceiver)
                await #expect(try f.state.store.deliveries().allSatisfy { $0.deliveredAt != nil && $0.attempts == 1 })
            }
        }
    }

    @Test func aRefusalsStatusComesFromItsTypeNeverItsText() {
        // Who may act: 403, whatever the message says (names and ids in it are not the rule).
        #expect(APIError.mapped(RegisterError.refused("sam cannot approve EX-1, which is final: they requested it"))?.status == .forbidden)
        #expect(APIError.mapped(RegisterError.refused("the group 'already approved' decides"))?.status == .forbidden)
        // What the state allows: 409.
        #expect(APIError.mapped(RegisterError.conflict("EX-1 cannot be decided: its row is not backed by the log"))?.status == .conflict)
        #expect(APIError.mapped(RegisterError.notFound("EX-9 not found"))?.status == .notFound)
        #expect(APIError.mapped(CorruptRegister(what: "exception 1", column: "status")) == nil)  // a server fault: logged, 500
    }

    @Test func aMissingSecretIsNotSentUnsigned() async throws {
        let hook = WaiverCore.Configuration.Webhook(url: "http://127.0.0.1:9/never", secretEnv: "UNSET_SECRET", format: "slack")
        let f = try await ServerFixture(notify: [hook])
        _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["r"], reason: "x"), actor: "dev", now: t0)
        #expect(try await WebhookService(state: f.state, logger: .init(label: "t")).deliverDue(now: t0) == 0)
        await #expect(try f.state.store.deliveries().first?.lastError?.contains("UNSET_SECRET") == true)
        #expect(WebhookService.backoff(afterAttempts: 1) == 2 && WebhookService.backoff(afterAttempts: 3) == 8 && WebhookService.backoff(afterAttempts: 30) == 3600)
    }
}
