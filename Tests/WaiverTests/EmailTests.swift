import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverServer
@testable import WaiverStore
@testable import WaiverPostgres
@testable import WaiverFormats

/// The real SMTP server of `Tests/Identity/smtp_server.py` (aiosmtpd): STARTTLS required, AUTH, a
/// certificate of its own for `localhost`; what it accepts, one JSON line per message.
final class MailServer: @unchecked Sendable {
    let process = Process()
    let dir = TempDir()
    let port: Int

    let implicit: Bool

    init(refuseFirst: Int = 0, implicit: Bool = false) throws {
        self.implicit = implicit
        let listening = try startPeer(process, script: "smtp_server.py",
                                      arguments: [dir.path] + (refuseFirst > 0 ? ["--refuse-first", String(refuseFirst)] : []) + (implicit ? ["--implicit"] : []),
                                      needs: "aiosmtpd")
        guard let p = Int(listening) else { throw UsageErrorForTests("smtp_server.py: no port in '\(listening)'") }
        port = p
    }

    deinit { process.terminate() }

    /// `notify.email` for this server: STARTTLS, its certificate trusted, AUTH as waiver.
    var settings: Configuration.Email {
        var e = Configuration.Email(host: "localhost", port: port, from: "Waiver <waiver@example.com>")
        e.username = "waiver"
        e.passwordEnv = "SMTP_PASSWORD"
        e.caFile = dir.path + "/ca.pem"
        if implicit { e.security = .implicit }
        e.addresses = ["dev": "dev@example.com", "sam": "sam@example.com", "pat": "pat@example.com", "root": "root@example.com", "cyd": "cyd@example.com"]
        return e
    }

    struct Message: Equatable {
        let to: [String]
        let subject: String
        let text: String
        let tls: Bool
    }

    var messages: [Message] {
        (dir.read("messages.jsonl") ?? "").split(separator: "\n").compactMap { line in
            guard let v = try? JSONReader.parse(Data(line.utf8)) else { return nil }
            return Message(to: v["to"]?.arrayValue?.compactMap(\.stringValue) ?? [], subject: v["subject"]?.stringValue ?? "",
                           text: v["text"]?.stringValue ?? "", tls: v["tls"]?.boolValue ?? false)
        }
    }
}

@Suite("E-mail: approvers and requesters are told where they work", .serialized)
struct EmailTests {
    func fixture(_ mail: MailServer) async throws -> ServerFixture {
        let f = try await ServerFixture(env: ["SMTP_PASSWORD": "smtp-secret"], configure: { c in
            c.email = mail.settings
            c.nudgeAfter = 86_400
            c.escalateAfter = 3 * 86_400
            c.escalateTo = ["security": ["ciso"]]
        }, publicURL: "https://waiver.example.com")
        try await f.state.store.putUser(User(name: "cyd", groups: ["ciso"], admin: false), actor: "setup", now: t0)
        return f
    }

    func recipients(_ m: [MailServer.Message], _ subjectPrefix: String) -> [String] {
        m.filter { $0.subject.hasPrefix(subjectPrefix) }.flatMap(\.to).sorted()
    }

    @Test(needsPeers(["aiosmtpd"])) func requestsDecisionsRemindersNudgesAndEscalationsReachTheRightPeopleOnce() async throws {
        let mail = try MailServer()
        let f = try await fixture(mail)
        let webhooks = WebhookService(state: f.state, logger: .init(label: "test"))
        let scheduler = SchedulerService(state: f.state, logger: .init(label: "test"))
        try await f.app().test(.router) { c in
            // 8 days, so the 7-day reminder falls inside the exception's life.
            let (status, body) = try await c.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest.replacingOccurrences(of: "\"days\":7", with: "\"days\":8"))
            #expect(status == 201, "\(body)")
        }
        // The application's own outbox service may have sent them while it ran; whatever is left goes now.
        _ = try await webhooks.deliverDue(now: t0)
        var m = mail.messages
        // The approvers (security: sam, pat, root), never the requester.
        #expect(recipients(m, "[Waiver] EX-1 needs your approval") == ["pat@example.com", "root@example.com", "sam@example.com"])
        let request = try #require(m.first)
        #expect(request.subject == "[Waiver] EX-1 needs your approval: NET-001 in shop (medium risk)")
        #expect(request.text.contains("dev asks for an exception to NET-001 in workspace shop, for 8 days."))
        #expect(request.text.contains("Resources: sg.web") && request.text.contains("Risk: medium (likelihood low, impact high)"))
        #expect(request.text.contains("Reason: vendor access") && request.text.contains("https://waiver.example.com/exceptions/EX-1"))
        #expect(m.allSatisfy { $0.tls }, "sent after STARTTLS")
        // The requester hears of the decision.
        _ = try await f.state.decisions().approve(1, actor: "sam", comment: "ok until Friday", days: nil, now: t0)
        #expect(try await webhooks.deliverDue(now: t0) == 1)
        m = mail.messages
        #expect(recipients(m, "[Waiver] EX-1 approved by sam") == ["dev@example.com"])
        #expect(m.last?.text.contains("Comment: ok until Friday") == true)

        // A second request stays pending: a day later its approvers are nudged, once, across a restart.
        let second = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.db"], reason: "vendor",
                                                                         days: 7, likelihood: .low, impact: .high), actor: "dev", now: t0)
        #expect(second.id == 2)
        _ = try await webhooks.deliverDue(now: t0)
        let day = t0.addingTimeInterval(86_400 + 1)
        _ = try await scheduler.tick(now: day)
        _ = try await scheduler.tick(now: day.addingTimeInterval(60))
        let restarted = SchedulerService(state: try ServerState(settings: f.state.settings), logger: .init(label: "test"))
        _ = try await restarted.tick(now: day.addingTimeInterval(120))
        _ = try await webhooks.deliverDue(now: day.addingTimeInterval(120))
        m = mail.messages
        #expect(recipients(m, "[Waiver] EX-2 still waits for your approval") == ["pat@example.com", "root@example.com", "sam@example.com"])
        // EX-1 expires in 7 days: the requester's reminder (the 7-day one, once).
        #expect(recipients(m, "[Waiver] EX-1 expires in 7d") == ["dev@example.com"])
        // Three days on, still pending: escalated to the CISO group, once.
        let later = t0.addingTimeInterval(3 * 86_400 + 1)
        _ = try await restarted.tick(now: later)
        _ = try await restarted.tick(now: later.addingTimeInterval(60))
        _ = try await webhooks.deliverDue(now: later.addingTimeInterval(60))
        m = mail.messages
        #expect(recipients(m, "[Waiver] EX-2 escalated to you") == ["cyd@example.com"])
        #expect(recipients(m, "[Waiver] EX-2 still waits") == ["pat@example.com", "root@example.com", "sam@example.com"], "no second nudge")
        let events = try await f.state.store.auditEvents(subject: "EX-2").map(\.action)
        #expect(events.filter { $0 == "exception.nudged" }.count == 1 && events.filter { $0 == "exception.escalated" }.count == 1)
    }

    @Test(needsPeers(["aiosmtpd"])) func aRefusedMessageIsRetriedThroughTheOutbox() async throws {
        let mail = try MailServer(refuseFirst: 1)
        let f = try await fixture(mail)
        let webhooks = WebhookService(state: f.state, logger: .init(label: "test"))
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.web"], reason: "vendor",
                                                                days: 7, likelihood: .low, impact: .high), actor: "dev", now: t0)
        #expect(try await webhooks.deliverDue(now: t0) == 2, "the server refused one of three (451)")
        #expect(try await webhooks.deliverDue(now: t0.addingTimeInterval(1)) == 0, "not before its backoff")
        #expect(try await webhooks.deliverDue(now: t0.addingTimeInterval(3)) == 1)
        #expect(recipients(mail.messages, "[Waiver] EX-1 needs your approval") == ["pat@example.com", "root@example.com", "sam@example.com"])
        let all = try await f.state.store.deliveries()
        let failed = all.filter { $0.url.hasPrefix("mailto:") && $0.attempts == 2 }
        #expect(failed.count == 1 && failed.first?.deliveredAt != nil, "one message took a second attempt, and went: \(all)")
    }

    @Test(needsPeers(["aiosmtpd"])) func aWrongPasswordOrAnUntrustedCertificateIsAFailedDeliveryNamingWhy() async throws {
        let mail = try MailServer()
        var settings = mail.settings
        settings.caFile = nil  // the system's trust store does not know the test server's certificate
        let untrusted = SMTPClient(settings: settings, password: "smtp-secret", timeout: .seconds(10))
        do {
            try await untrusted.send(to: "sam@example.com", message: "Subject: x\r\n\r\ny\r\n")
            Issue.record("an untrusted certificate was accepted")
        } catch {
            #expect(error is SMTPError && "\(error)".contains("the connection failed") && "\(error)".lowercased().contains("certificate"), "\(error)")
        }
        let wrongPassword = SMTPClient(settings: mail.settings, password: "guess", timeout: .seconds(10))
        do {
            try await wrongPassword.send(to: "sam@example.com", message: "Subject: x\r\n\r\ny\r\n")
            Issue.record("a wrong password was accepted")
        } catch {
            #expect("\(error)".hasPrefix("AUTH: 535"), "\(error)")
        }
        #expect(mail.messages.isEmpty)
    }

    /// Both stores queue the same mail for the same event (the rule is `MailRules`, in the core).
    @Test(arguments: [StoreKind.sqlite, .postgres])
    func everyStoreQueuesTheMailInTheEventsTransaction(_ kind: StoreKind) async throws {
        var email = Configuration.Email(host: "localhost", port: 25, from: "waiver@example.com")
        email.addresses = ["sam": "sam@example.com"]
        let dir = TempDir()
        let store: any ServerRegisterStore
        switch kind {
        case .postgres:
            guard let url = try freshPostgresDatabase() else { return }
            store = try await PostgresRegisterStore(url: try PostgresURL(url), email: email)
        default:
            store = try SQLiteRegisterStore(path: dir.path + "/r.sqlite", email: email)
        }
        try await store.putUser(User(name: "sam", groups: ["security"], admin: false), actor: "setup", now: t0)
        try await store.putUser(User(name: "pat@example.com", groups: ["security"], admin: false), actor: "setup", now: t0)
        try await store.putUser(User(name: "noaddress", groups: ["security"], admin: false), actor: "setup", now: t0)
        let config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        let register = Register(store: store, configuration: config, policies: try PolicyLoader.load(directory: repoRoot + "/policies"))
        let e = try await register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.web"], reason: "vendor",
                                                             days: 7, likelihood: .low, impact: .high), actor: "pat@example.com", now: t0)
        // The approvers with an address, never the requester (pat) and not one without an address.
        #expect(try await store.deliveries().filter { $0.format == "email" }.map(\.url).sorted() == ["mailto:sam@example.com"], "\(kind)")
        _ = try await store.people().bind(register).approve(e.id, actor: "sam", comment: nil, days: nil, now: t0)
        #expect(try await store.deliveries().filter { $0.format == "email" && $0.action == "exception.approved" }.map(\.url) == ["mailto:pat@example.com"], "\(kind)")
    }

    @Test func notifyTakesAMappingWithWebhooksEmailNudgesAndEscalation() throws {
        let c = try ConfigLoader.parse(Data("""
            groups: { security: [sam], ciso: [cyd] }
            notify:
              webhooks: [{ url: https://hooks.example.com/w }]
              email: { host: smtp.example.com, from: "Waiver <waiver@example.com>", username: waiver, password_env: SMTP_PASSWORD }
              nudge_after: 24h
              escalate_after: 3d
              escalate_to: { security: [ciso] }
            """.utf8), file: "waiver.yaml")
        #expect(c.notify.map(\.url) == ["https://hooks.example.com/w"])
        #expect(c.email?.port == 587 && c.email?.security == .starttls && c.email?.username == "waiver")
        #expect(c.nudgeAfter == 86_400 && c.escalateAfter == 3 * 86_400 && c.escalateTo == ["security": ["ciso"]])
        do {
            _ = try ConfigLoader.parse(Data("""
                groups: { security: [sam] }
                notify:
                  email: { host: smtp.example.com, from: waiver@example.com, tls: none }
                  nudge_after: 3d
                  escalate_after: 1d
                  escalate_to: { security: [cisoo] }
                """.utf8), file: "waiver.yaml")
            Issue.record("a bad notify section was accepted")
        } catch {
            let text = error.description
            #expect(text.contains("tls: none is only for a server on this host"), "\(text)")
            #expect(text.contains("escalate_after must be later than nudge_after"), "\(text)")
            #expect(text.contains("group 'cisoo' is referenced but not defined"), "\(text)")
        }
    }

    @Test func checkOutputAndWebhookBodiesLinkTheExceptionsTheyName() async throws {
        let f = try await ServerFixture(publicURL: "https://waiver.example.com")
        let plan = try String(contentsOfFile: repoRoot + "/Examples/plans/web-app.json", encoding: .utf8)
        try await f.app().test(.router) { c in
            let (status, result) = try await c.call(.post, "/api/v1/evaluations", as: "dev", f,
                                                    json: #"{"workspace":"shop","format":"markdown","request":{"reason":"launch"},"plan":"# + plan + "}")
            #expect(status == 201)
            let net = try #require(result["results"]?.arrayValue?.first { $0["policy"] == "NET-001" })
            let id = try #require(net["exception"]?.stringValue)
            #expect(net["link"]?.stringValue == "https://waiver.example.com/exceptions/\(id)")
            #expect(result["rendered"]?.stringValue?.contains("[\(id)](https://waiver.example.com/exceptions/\(id))") == true)
        }
        let json = #"{"event":"exception.approved","subject":"EX-3","actor":"sam","details":{}}"#
        #expect(WebhookBody.linked(json, format: "json", base: "https://w.example.com").contains(#""link":"https://w.example.com/exceptions/EX-3""#))
        #expect(WebhookBody.linked(json, format: "json", base: nil) == json)
        let slack = #"{"text":"*EX-3* approved by sam","blocks":[]}"#
        #expect(WebhookBody.linked(slack, format: "slack", base: "https://w.example.com")
                == #"{"text":"*EX-3* approved by sam <https://w.example.com/exceptions/EX-3|EX-3>","blocks":[{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"Open EX-3"},"url":"https://w.example.com/exceptions/EX-3"}]}]}"#)
        let checkpoint = #"{"event":"audit.checkpoint","time":"x"}"#
        #expect(WebhookBody.linked(checkpoint, format: "json", base: "https://w.example.com") == checkpoint)
    }

    @Test(needsPeers(["aiosmtpd"])) func implicitTLSFromTheFirstByte() async throws {
        let mail = try MailServer(implicit: true)
        let client = SMTPClient(settings: mail.settings, password: "smtp-secret", timeout: .seconds(20))
        let message = MailMessage.compose(from: "Waiver <waiver@example.com>", to: "sam@example.com", subject: "[Waiver] EX-1 approved by sam · ✓",
                                          text: "line one\n.starts with a dot\n" + String(repeating: "long ", count: 400), date: t0, id: "1")
        try await client.send(to: "sam@example.com", message: message)
        let got = try #require(mail.messages.first)
        #expect(got.to == ["sam@example.com"] && got.subject == "[Waiver] EX-1 approved by sam · ✓")
        // A leading dot survives the SMTP transparency rule, and a 2,000-character line arrives whole.
        #expect(got.text.contains("\n.starts with a dot") && got.text.contains(String(repeating: "long ", count: 400)))
    }

    /// Slack reads `<…>` as links and mentions (`<!channel>` pings everyone) and `&` as an entity:
    /// everything a person wrote is escaped as Slack requires; only Waiver's own link is markup.
    @Test func slackMessagesEscapeWhatPeopleWrote() throws {
        let event = AuditEvent(seq: 7, time: t0, actor: "mallory <@U1>", action: "exception.rejected", subject: "EX-3",
                               payload: #"{"comment":"<!channel> see <https://evil.example|here> & more","policy":"NET-001"}"#, prevHash: "", hash: "h")
        let body = WebhookBody.render(event, format: "slack")
        let text = try #require(try JSONReader.parse(Data(body.utf8))["text"]?.stringValue)
        #expect(text == "*EX-3* rejected by mallory &lt;@U1&gt;: &lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; more — policy NET-001", "\(text)")
        let linked = try #require(try JSONReader.parse(Data(WebhookBody.linked(body, format: "slack", base: "https://w.example.com").utf8))["text"]?.stringValue)
        #expect(linked.hasSuffix(" <https://w.example.com/exceptions/EX-3|EX-3>"))
    }
}
