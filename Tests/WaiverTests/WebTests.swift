import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import WaiverCore
@testable import WaiverServer
@testable import WaiverStore
@testable import WaiverUseCases

/// A browser's worth of state for router tests: cookies kept between requests.
final class Browser: @unchecked Sendable {
    var cookies: [String: String] = [:]

    func headers(form: Bool = false) -> HTTPFields {
        var h = HTTPFields()
        if !cookies.isEmpty { h[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        if form { h[.contentType] = "application/x-www-form-urlencoded" }
        return h
    }

    func keep(_ r: TestResponse) {
        for c in r.headers[values: .setCookie] {
            let first = c.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard first.count == 2 else { continue }
            if first[1].isEmpty { cookies.removeValue(forKey: String(first[0])) } else { cookies[String(first[0])] = String(first[1]) }
        }
    }

    func get(_ c: some TestClientProtocol, _ uri: String) async throws -> (Int, String, HTTPFields) {
        try await c.execute(uri: uri, method: .get, headers: headers()) { r in
            self.keep(r)
            return (Int(r.status.code), String(buffer: r.body), r.headers)
        }
    }

    func post(_ c: some TestClientProtocol, _ uri: String, _ form: [(String, String)]) async throws -> (Int, String, HTTPFields) {
        let body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
        return try await c.execute(uri: uri, method: .post, headers: headers(form: true), body: ByteBuffer(string: body)) { r in
            self.keep(r)
            return (Int(r.status.code), String(buffer: r.body), r.headers)
        }
    }

    /// Signs in with a token through the form, as a person would.
    func signIn(_ c: some TestClientProtocol, token: String) async throws -> (Int, HTTPFields) {
        let (_, page, _) = try await get(c, "/login")
        let csrf = Browser.hidden(page, "csrf") ?? ""
        let (status, _, headers) = try await post(c, "/login", [("csrf", csrf), ("token", token)])
        return (status, headers)
    }

    /// The value of a hidden input in a page (in the form after `after`, when given).
    static func hidden(_ html: String, _ name: String, after: String? = nil) -> String? {
        var text = Substring(html)
        if let after {
            guard let a = html.range(of: after) else { return nil }
            text = html[a.upperBound...]
        }
        guard let r = text.range(of: "name=\"\(name)\" value=\"") else { return nil }
        return String(text[r.upperBound...].prefix { $0 != "\"" })
    }
}

@Suite("Web pages for approvers and auditors", .serialized)
struct WebTests {
    @Test func pagesNeedASession() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            for page in ["/inbox", "/mine", "/exceptions/EX-1", "/register", "/register.csv", "/policies/NET-001", "/review", "/audit", "/audit/export.jsonl"] {
                let (status, _, headers) = try await Browser().get(c, page)
                #expect(status == 303 && headers[.location] == "/login", "\(page)")
            }
            #expect(try await Browser().get(c, "/login").0 == 200)
        }
    }

    @Test func signInSetsAStrictHttpOnlyCookieAndRefusesBadTokensOrForms() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let b = Browser()
            let (bad, _) = try await b.signIn(c, token: "wvr_000000000000_" + String(repeating: "0", count: 64))
            #expect(bad == 401)
            // Without the sign-in form's own CSRF cookie, a cross-site POST is refused.
            #expect(try await Browser().post(c, "/login", [("csrf", "x"), ("token", f.tokens["sam"]!)]).0 == 403)
            let (ok, headers) = try await b.signIn(c, token: f.tokens["sam"]!)
            #expect(ok == 303 && headers[.location] == "/inbox")
            let cookie = try #require(headers[values: .setCookie].first { $0.hasPrefix("waiver_session=") })
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Max-Age=28800"))
            #expect(!cookie.contains("Secure"))  // plain http on loopback; behind TLS it is Secure
            #expect(try await b.get(c, "/inbox").0 == 200)
            // Use keeps a session alive (29 minutes, then 29 more); 30 idle minutes end it.
            f.clock.set(t0.addingTimeInterval(29 * 60))
            #expect(try await b.get(c, "/inbox").0 == 200)
            f.clock.set(t0.addingTimeInterval(58 * 60))
            #expect(try await b.get(c, "/inbox").0 == 200)
            f.clock.set(t0.addingTimeInterval(88 * 60))
            #expect(try await b.get(c, "/inbox").0 == 303)
            f.clock.set(t0)
            _ = try await b.signIn(c, token: f.tokens["sam"]!)
            // Sign-out needs the CSRF token too, then the session is gone.
            let (_, inbox, _) = try await b.get(c, "/inbox")
            #expect(try await b.post(c, "/logout", [("csrf", "wrong")]).0 == 403)
            #expect(try await b.post(c, "/logout", [("csrf", Browser.hidden(inbox, "csrf") ?? "")]).0 == 303)
            #expect(try await b.get(c, "/inbox").0 == 303)
        }
    }

    @Test func theInboxShowsWhatThisUserMayApproveOldestFirst() async throws {
        let f = try await ServerFixture()
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.a"], reason: "first", likelihood: .low), actor: "dev", now: t0)
        _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["i.a"], reason: "cost"), actor: "dev", now: t0.addingTimeInterval(60))
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-002", workspace: "shop", resources: ["sg.b"], reason: "second", likelihood: .low), actor: "dev", now: t0.addingTimeInterval(120))
        _ = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.c"], reason: "sams own", likelihood: .low), actor: "sam", now: t0.addingTimeInterval(180))
        f.clock.set(t0.addingTimeInterval(3 * 3600))
        try await f.app().test(.router) { c in
            let sam = Browser()
            _ = try await sam.signIn(c, token: f.tokens["sam"]!)
            let (_, page, _) = try await sam.get(c, "/inbox")
            let ids = page.components(separatedBy: "class=\"exception-link\">").dropFirst().map { String($0.prefix { $0 != "<" }) }
            #expect(ids == ["EX-1", "EX-3"])  // not the cost one (finance), not sam's own
            #expect(page.contains("3 h"))
            let dev = Browser()
            _ = try await dev.signIn(c, token: f.tokens["dev"]!)
            #expect(try await dev.get(c, "/inbox").1.contains("Nothing is waiting for your approval"))
        }
    }

    @Test func anExceptionPageRendersUserTextInertAndDecidesWithCSRF() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.<b>x</b>"],
                                                               reason: "<script>alert('x')</script> vendor", likelihood: .low, mitigations: ["<img src=x onerror=alert(1)>"]),
                                             actor: "dev", now: t0)
        try await f.app().test(.router) { c in
            let sam = Browser()
            _ = try await sam.signIn(c, token: f.tokens["sam"]!)
            let (status, page, headers) = try await sam.get(c, "/exceptions/\(e.displayId)")
            #expect(status == 200)
            #expect(!page.contains("<script>alert"))
            #expect(page.contains("&lt;script&gt;alert("))
            #expect(!page.contains("<img src=x"))
            #expect(headers[HTTPField.Name("Content-Security-Policy")!]?.contains("default-src 'none'") == true)
            // A forged form (no or wrong CSRF token) changes nothing.
            #expect(try await sam.post(c, "/exceptions/EX-1/decide", [("action", "approve")]).0 == 403)
            #expect(try await sam.post(c, "/exceptions/EX-1/decide", [("action", "approve"), ("csrf", "forged")]).0 == 403)
            #expect(try await f.state.store.exception(id: e.id)?.status == .pending)
            // The decide form carries the session's token (not only the sign-out form in the header).
            let csrf = try #require(Browser.hidden(page, "csrf", after: "action=\"/exceptions/EX-1/decide\""))
            #expect(!csrf.isEmpty && csrf == Browser.hidden(page, "csrf"))
            // The requester trying to approve is refused, and the page says which rule refused it.
            let dev = Browser()
            _ = try await dev.signIn(c, token: f.tokens["dev"]!)
            let devCSRF = Browser.hidden(try await dev.get(c, "/exceptions/EX-1").1, "csrf", after: "/decide") ?? ""
            let (refused, refusal, _) = try await dev.post(c, "/exceptions/EX-1/decide", [("action", "approve"), ("csrf", devCSRF)])
            #expect(refused == 403 && refusal.contains("Refused: dev cannot approve EX-1: they requested it"))
            // Rejecting needs a comment.
            let (noComment, why, _) = try await sam.post(c, "/exceptions/EX-1/decide", [("action", "reject"), ("csrf", csrf)])
            #expect(noComment == 422 && why.contains("rejecting needs a comment"))
            let (ok, approved, _) = try await sam.post(c, "/exceptions/EX-1/decide", [("action", "approve"), ("csrf", csrf), ("comment", "window agreed")])
            #expect(ok == 200 && approved.contains("EX-1 is now approved") && approved.contains("class=\"status approved\""))
            #expect(approved.contains("exception.approved"))
        }
    }

    /// No page shows an absent value as "nil" (a pending exception has no expiry, no renewal, no
    /// comment on its approval; before, its page said `expires nil` and linked `/exceptions/nil`).
    @Test func noPageSaysNil() async throws {
        let f = try await ServerFixture()
        let pending = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.a"], reason: "batch"),
                                                   actor: "dev", now: t0)
        let other = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.b"], reason: "batch"),
                                                 actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(other.id, actor: "fin", comment: nil, days: nil, now: t0)
        try await f.app().test(.router) { c in
            let b = Browser()
            #expect(saysNil(try await b.get(c, "/login").1) == nil)
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            for page in ["/inbox", "/mine", "/exceptions/\(pending.displayId)", "/exceptions/\(other.displayId)", "/register", "/policies/COST-001", "/review", "/audit"] {
                let (status, html, _) = try await b.get(c, page)
                #expect(status == 200, "\(page)")
                let said = saysNil(html)
                #expect(said == nil, "\(page) says nil: \(said ?? "")")
            }
            let (_, page, _) = try await b.get(c, "/exceptions/\(pending.displayId)")
            #expect(!page.contains("Renews") && !page.contains("expires"))
        }
    }

    /// What an approver weighs, on the page: where the request came from, its ticket, the renewed
    /// exception side by side, how often the policy was excepted; evidence is added from the page
    /// with its display text (multipart form with the session's CSRF token); My requests lists the
    /// user's own.
    @Test func anApproverSeesTheContextAndARequesterAddsEvidence() async throws {
        let f = try await ServerFixture()
        let origin = Provenance(declaredCommitAuthor: "ann", commit: "4f2a9c1d", runURL: "https://ci.example.com/runs/881",
                                changeURL: "https://git.example.com/shop/pull/12")
        let old = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["aws_instance.batch"],
                                                                      reason: "quarter-end batch", days: 7), actor: "dev", now: t0)
        _ = try await f.state.decisions().approve(old.id, actor: "fin", comment: "until the rewrite", days: nil, now: t0)
        _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "other", resources: ["aws_instance.x"], reason: "other team"),
                                               actor: "ann", now: t0)
        let renewal = try await f.state.register.request(ExceptionRequest(policy: "", workspace: "", resources: [], reason: "the rewrite slipped to January",
                                                                          renews: old.id, provenance: origin, ticket: "https://jira.example.com/browse/OPS-9"),
                                                         actor: "dev", now: t0.addingTimeInterval(86_400))
        try await f.app().test(.router) { c in
            let fin = Browser()
            _ = try await fin.signIn(c, token: f.tokens["fin"]!)
            let (_, page, _) = try await fin.get(c, "/exceptions/\(renewal.displayId)")
            #expect(page.contains("commit <span class=\"mono\">4f2a9c1d</span> by ann"), "\(page)")
            #expect(page.contains("<a href=\"https://git.example.com/shop/pull/12\" rel=\"noreferrer\">pull request</a>"))
            #expect(page.contains("<a href=\"https://ci.example.com/runs/881\" rel=\"noreferrer\">pipeline run</a>"))
            #expect(page.contains("<a href=\"https://jira.example.com/browse/OPS-9\" rel=\"noreferrer\">https://jira.example.com/browse/OPS-9</a>"))
            #expect(page.contains("<td id=\"previous-reason\">quarter-end batch</td><td id=\"new-reason\">the rewrite slipped to January</td>"))
            #expect(page.contains("fin: “until the rewrite”"))
            #expect(page.contains("COST-001 had <strong>3</strong> exceptions (2 in workspace shop)"), "\(page)")
            // The requester adds evidence with display text through the page's form.
            let dev = Browser()
            _ = try await dev.signIn(c, token: f.tokens["dev"]!)
            let devPage = try await dev.get(c, "/exceptions/\(old.displayId)").1
            let csrf = try #require(Browser.hidden(devPage, "csrf", after: "action=\"/exceptions/\(old.displayId)/evidence\""))
            func upload(_ csrf: String, as b: Browser) async throws -> (Int, String) {
                let boundary = "----waiver\(UUID().uuidString)"
                var body = "--\(boundary)\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n\(csrf)\r\n"
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"display_text\"\r\n\r\nBackground check cleared\r\n"
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\docs\\check.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 cleared\r\n"
                body += "--\(boundary)--\r\n"
                var h = b.headers()
                h[.contentType] = "multipart/form-data; boundary=\(boundary)"
                return try await c.execute(uri: "/exceptions/\(old.displayId)/evidence", method: .post, headers: h, body: ByteBuffer(string: body)) { r in
                    (Int(r.status.code), String(buffer: r.body))
                }
            }
            #expect(try await upload("forged", as: dev).0 == 403)
            let (ok, after) = try await upload(csrf, as: dev)
            #expect(ok == 200 && after.contains("Evidence check.pdf is kept with EX-1"), "\(after)")
            #expect(after.contains("“Background check cleared”") && after.contains("after the decision"))
            let kept = try #require(try await f.state.store.exception(id: old.id)?.evidence.first)
            #expect(kept.name == "check.pdf" && kept.displayText == "Background check cleared" && kept.sha256 == AuditChain.sha256(Data("%PDF-1.4 cleared".utf8)))
            // Someone outside the exception sees no form and is refused.
            let sam = Browser()
            _ = try await sam.signIn(c, token: f.tokens["sam"]!)
            let samPage = try await sam.get(c, "/exceptions/\(old.displayId)").1
            #expect(!samPage.contains("/evidence\" enctype"))
            let samCSRF = try #require(Browser.hidden(samPage, "csrf"))
            let (refused, why) = try await upload(samCSRF, as: sam)
            #expect(refused == 403 && why.contains("sam cannot add evidence to EX-1"), "\(why)")
            // My requests: dev's pending renewal, nothing of ann's.
            let mine = try await dev.get(c, "/mine").1
            #expect(mine.contains("<a href=\"/exceptions/EX-3\">EX-3</a>") && mine.contains("id=\"pending\"") && !mine.contains("EX-2"), "\(mine)")
            #expect(mine.contains("Decided") == false && mine.contains("id=\"active\""))
            let byTicket = try await fin.get(c, "/register?ticket=https%3A%2F%2Fjira.example.com%2Fbrowse%2FOPS-9").1
            #expect(byTicket.contains("id=\"count\">1 exceptions"), "\(byTicket)")
            #expect(byTicket.contains("EX-3") && !byTicket.contains(">EX-2<"))
        }
    }

    /// One pipeline run's requests are one group in the inbox, decided with one form; each is
    /// decided on its own (its own event, its own rules), so one that may not be approved by this
    /// person is refused while the others are approved.
    @Test func aPipelineRunsRequestsAreDecidedTogether() async throws {
        let f = try await ServerFixture()
        let run = Provenance(commit: "4f2a9c1d", runURL: "https://ci.example.com/runs/881")
        var filed: [Int] = []
        for r in ["sg.a", "sg.b", "sg.c"] {
            filed.append(try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: [r], reason: "launch",
                                                                            likelihood: .low, provenance: run), actor: "dev", now: t0).id)
        }
        let ids = filed
        let cost = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["i.a"], reason: "launch", provenance: run),
                                                      actor: "dev", now: t0)
        let alone = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.z"], reason: "other", likelihood: .low),
                                                       actor: "dev", now: t0.addingTimeInterval(5))
        try await f.app().test(.router) { c in
            let sam = Browser()
            _ = try await sam.signIn(c, token: f.tokens["sam"]!)
            let (_, page, _) = try await sam.get(c, "/inbox")
            // The run's three security requests are one group (the cost one is finance's, not in sam's inbox).
            #expect(page.contains("3 requests from pipeline run https://ci.example.com/runs/881 in shop"), "\(page)")
            #expect(page.components(separatedBy: "action=\"/inbox/decide\"").count == 2)  // one form: the single request has none
            let csrf = try #require(Browser.hidden(page, "csrf", after: "action=\"/inbox/decide\""))
            #expect(try await sam.post(c, "/inbox/decide", [("action", "approve"), ("pick_\(ids[0])", "on")]).0 == 403)
            #expect(try await f.state.store.exception(id: ids[0])?.status == .pending)
            // The three, plus the cost request's id sent by hand: each is decided by its own rules.
            let (status, after, _) = try await sam.post(c, "/inbox/decide", [("csrf", csrf), ("action", "approve"), ("comment", "launch window"),
                                                                           ("pick_\(ids[0])", "on"), ("pick_\(ids[1])", "on"), ("pick_\(ids[2])", "on"),
                                                                           ("pick_\(cost.id)", "on")])
            #expect(status == 200)
            #expect(after.contains("EX-1 approved by sam") && after.contains("EX-3 approved by sam"), "\(after)")
            #expect(after.contains("EX-4 refused: sam cannot approve EX-4: exceptions to COST-001"), "\(after)")
            for id in ids { #expect(try await f.state.store.exception(id: id)?.status == .approved) }
            #expect(try await f.state.store.exception(id: cost.id)?.status == .pending)
            #expect(try await f.state.store.exception(id: alone.id)?.status == .pending)
            // Each decision is its own audit event, with the comment.
            let approvals = try await f.state.store.auditEvents(subject: nil).filter { $0.action == "exception.approved" }
            #expect(approvals.map(\.subject) == ["EX-1", "EX-2", "EX-3"] && approvals.allSatisfy { $0.payload.contains("launch window") })
            // The requester's own batch: every one refused by its rule, said per request.
            let dev = Browser()
            _ = try await dev.signIn(c, token: f.tokens["dev"]!)
            let devCSRF = try #require(Browser.hidden(try await dev.get(c, "/inbox").1, "csrf"))
            let (_, refused, _) = try await dev.post(c, "/inbox/decide", [("csrf", devCSRF), ("action", "reject"), ("comment", "no"), ("pick_\(alone.id)", "on")])
            #expect(refused.contains("EX-5 refused: dev cannot reject EX-5: they requested it"), "\(refused)")
            #expect(try await f.state.store.exception(id: alone.id)?.status == .pending)
        }
    }

    /// An exception page shows the values it was approved for beside the latest ones, and a changed
    /// value offers the amended request, which binds the new values.
    @Test func aChangedValueIsShownAndAmendedFromThePage() async throws {
        let f = try await ServerFixture()
        let report = CheckReport(workspace: "shop", unknownMode: .warn, findings: [], resourceCount: 1, policies: [], compliant: [])
        @Sendable func saw(_ message: String, at: Date) async throws {
            _ = try await f.state.register.recordCheck(report, violations: [RecordedViolation(policy: "NET-001", resource: "sg.a", status: .blocking, digest: "d", message: message)],
                                                       actor: "ci", now: at)
        }
        try await saw("ingress[0].to_port = 22 (>= 22)", at: t0)
        let e = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.a"], reason: "vendor", likelihood: .low),
                                                   actor: "dev", now: t0)
        #expect(e.bound == ["sg.a": "ingress[0].to_port = 22 (>= 22)"])
        _ = try await f.state.decisions().approve(e.id, actor: "sam", comment: nil, days: nil, now: t0)
        try await f.app().test(.router) { c in
            let dev = Browser()
            _ = try await dev.signIn(c, token: f.tokens["dev"]!)
            let (_, before, _) = try await dev.get(c, "/exceptions/EX-1")
            #expect(before.contains("Approved for") && !before.contains("id=\"changed\"") && !before.contains("/amend"), "\(before)")
            try await saw("ingress[0].to_port = 65535 (>= 22)", at: t0.addingTimeInterval(60))
            let (_, page, _) = try await dev.get(c, "/exceptions/EX-1")
            #expect(page.contains("id=\"changed\"") && page.contains("Changed since approval") && page.contains("65535"), "\(page)")
            let csrf = try #require(Browser.hidden(page, "csrf", after: "action=\"/exceptions/EX-1/amend\""))
            let (status, _, headers) = try await dev.post(c, "/exceptions/EX-1/amend", [("csrf", csrf), ("reason", "the vendor tool needs the range")])
            #expect(status == 303 && headers[.location] == "/exceptions/EX-2")
            let amended = try await #require(try await f.state.store.exception(id: 2))
            #expect(amended.status == .pending && amended.resources == ["sg.a"] && amended.bound == ["sg.a": "ingress[0].to_port = 65535 (>= 22)"])
            #expect(amended.likelihood == .low && amended.requester == "dev")
        }
    }

    /// A past quarter keeps its review: five exceptions to COST-001 in 2026-Q3 flag it on /review and
    /// its policy page for that quarter, after the quarter ended.
    @Test func pastQuartersKeepTheirReview() async throws {
        let f = try await ServerFixture()
        let july = parseInstant("2026-07-15")!
        for i in 0..<5 {
            _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: "shop", resources: ["i.\(i)"], reason: "batch \(i)"),
                                                   actor: "dev", now: july)
        }
        try await f.app().test(.router) { c in
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            let now = try await b.get(c, "/review").1
            #expect(now.contains("Q4 2026") && !now.contains("review this policy"))
            let q3 = try await b.get(c, "/review?quarter=2026-Q3").1
            #expect(q3.contains("Q3 2026") && q3.contains("<span class=\"flag\">review this policy</span>"), "\(q3)")
            #expect(q3.contains("<strong>2026-Q3</strong>") && q3.contains("<a href=\"/review?quarter=2026-Q4\">2026-Q4</a>"))
            let policy = try await b.get(c, "/policies/COST-001?quarter=2026-Q3").1
            #expect(policy.contains("Review this policy: 5 exceptions in 2026-Q3"), "\(policy)")
            #expect(!(try await b.get(c, "/policies/COST-001").1.contains("id=\"review-flag\"")))
            #expect(try await b.get(c, "/review?quarter=2027-Q1").0 == 400)
            #expect(policy.contains("No review recorded yet"))
            #expect(try await b.get(c, "/review?quarter=Q3").0 == 400)
        }
    }

    /// A policy page names the policy's file relative to the policy folder, never the server's path.
    @Test func aPolicyPageNamesItsFileRelativeToThePolicyFolder() async throws {
        #expect(PolicyListing.relative(SourceLocation(file: "/srv/waiver/policies/network.yaml", line: 8), to: "/srv/waiver/policies") == "network.yaml:8")
        #expect(PolicyListing.relative(SourceLocation(file: "/srv/waiver/policies/team/a.yaml", line: 3), to: "/srv/waiver/policies/") == "team/a.yaml:3")
        #expect(PolicyListing.relative(SourceLocation(file: "/srv/waiver/policies/network.yaml", line: 8), to: nil) == "network.yaml:8")
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            let page = try await b.get(c, "/policies/NET-001").1
            #expect(page.contains("<dd class=\"mono\">network.yaml:8</dd>") && !page.contains(repoRoot), "\(page)")
        }
    }

    /// A review recorded through the API is on the policy's page.
    @Test func aRecordedReviewIsOnThePolicyPage() async throws {
        let f = try await ServerFixture()
        try await f.app().test(.router) { c in
            let body = #"{"quarter":"2026-Q4","policy":"NET-001","decision":"<b>keep</b>, add NET-006","link":"https://git.example.com/p/pull/9"}"#
            #expect(try await c.call(.post, "/api/v1/reviews", as: "dev", f, json: body).0 == 403)
            let (status, review) = try await c.call(.post, "/api/v1/reviews", as: "sam", f, json: body)
            #expect(status == 201 && review["by"] == "sam", "\(review)")
            #expect(try await c.call(.post, "/api/v1/reviews", as: "sam", f, json: #"{"quarter":"2026-Q4","policy":"NET-001"}"#).0 == 422)
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            let page = try await b.get(c, "/policies/NET-001").1
            #expect(page.contains("<strong>2026-Q4</strong>: &lt;b&gt;keep&lt;/b&gt;, add NET-006") && page.contains("href=\"https://git.example.com/p/pull/9\""), "\(page)")
        }
    }

    @Test func aFormThatCannotBeDecodedIsRefusedNotReadAsEmptyFields() async throws {
        let f = try await ServerFixture()
        let e = try await f.state.register.request(ExceptionRequest(policy: "NET-001", workspace: "shop", resources: ["sg.web"], reason: "vendor", likelihood: .low),
                                             actor: "dev", now: t0)
        try await f.app().test(.router) { c in
            let sam = Browser()
            _ = try await sam.signIn(c, token: f.tokens["sam"]!)
            let csrf = Browser.hidden(try await sam.get(c, "/exceptions/\(e.displayId)").1, "csrf", after: "/decide") ?? ""
            // A broken percent escape in the comment: refused as a whole, nothing decided.
            let body = "action=reject&csrf=\(csrf)&comment=100%ZZ+sure"
            let status = try await c.execute(uri: "/exceptions/EX-1/decide", method: .post, headers: sam.headers(form: true), body: ByteBuffer(string: body)) { Int($0.status.code) }
            #expect(status == 400)
            #expect(try await f.state.store.exception(id: e.id)?.status == .pending)
            // A well-formed one: `+` is a space and escapes are decoded.
            let good = "action=reject&csrf=\(csrf)&comment=100%25+sure%2C+not+needed"
            let ok = try await c.execute(uri: "/exceptions/EX-1/decide", method: .post, headers: sam.headers(form: true), body: ByteBuffer(string: good)) { Int($0.status.code) }
            #expect(ok == 200)
            let history = try await f.state.store.auditEvents(subject: "EX-1")
            #expect(history.last?.action == "exception.rejected" && history.last?.payload.contains("100% sure, not needed") == true, "\(history.last?.payload ?? "")")
        }
    }

    @Test func registerPolicyReviewAndAuditPages() async throws {
        let f = try await ServerFixture()
        for i in 0..<6 {
            _ = try await f.state.register.request(ExceptionRequest(policy: "COST-001", workspace: i < 4 ? "shop" : "data", resources: ["i.\(i)"], reason: "r\(i)"),
                                             actor: "dev", now: t0.addingTimeInterval(Double(i) * 60))
        }
        _ = try await f.state.decisions().approve(1, actor: "fin", comment: nil, days: 3, now: t0)
        try await f.app().test(.router) { c in
            let b = Browser()
            _ = try await b.signIn(c, token: f.tokens["fin"]!)
            let (_, all, _) = try await b.get(c, "/register")
            #expect(all.contains("6 exceptions"))
            #expect(try await b.get(c, "/register?workspace=data").1.contains("2 exceptions"))
            #expect(try await b.get(c, "/register?status=approved").1.contains("1 exceptions"))
            #expect(try await b.get(c, "/register?expiring_within=3d").1.contains("1 exceptions"))
            // Pages of two, newest first; the links keep the filters.
            let (_, page1, _) = try await b.get(c, "/register?per_page=2")
            #expect(page1.contains("6 exceptions · showing 1–2, page 1 of 3"))
            #expect(page1.contains(">EX-6<") && page1.contains(">EX-5<") && !page1.contains(">EX-4<"))
            #expect(page1.contains(#"href="/register?page=2&amp;per_page=2""#) && !page1.contains(#"rel="prev""#))
            let (_, page3, _) = try await b.get(c, "/register?per_page=2&page=3")
            #expect(page3.contains(">EX-2<") && page3.contains(">EX-1<") && !page3.contains(">EX-3<") && !page3.contains(#"rel="next""#))
            let (_, shop, _) = try await b.get(c, "/register?workspace=shop&per_page=3&page=9")
            #expect(shop.contains("4 exceptions · showing 4–4, page 2 of 2") && shop.contains(#"href="/register?workspace=shop&amp;page=1&amp;per_page=3""#))
            #expect(!all.contains("showing"))
            let (_, csv, headers) = try await b.get(c, "/register.csv?workspace=shop")
            #expect(csv.split(separator: "\r\n").count == 5 && headers[.contentDisposition]?.contains("attachment") == true)
            let (_, policy, _) = try await b.get(c, "/policies/COST-001")
            #expect(policy.contains("<svg") && policy.contains("<title>6</title>"))
            #expect(policy.contains("- id: COST-001") && policy.contains("require:") && !policy.contains("- id: COST-002"))
            #expect(policy.contains("Review this policy: 6 exceptions"))  // threshold 5
            let (_, review, _) = try await b.get(c, "/review")
            #expect(review.contains("COST-001") && review.contains("review this policy"))
            let (_, audit, _) = try await b.get(c, "/audit")
            #expect(audit.contains("The hash chain is intact up to event") && !audit.contains("id=\"resumed\""))
            // The next view verifies only what follows the head the first one verified.
            let (_, again, _) = try await b.get(c, "/audit")
            #expect(again.contains("The hash chain is intact up to event") && again.contains("id=\"resumed\""))
            #expect(try await b.get(c, "/audit/export.jsonl").1.split(separator: "\n").count > 6)
        }
    }
}

/// The text around the first "nil" standing as a word in a page, or nil when there is none.
func saysNil(_ html: String) -> String? {
    let chars = Array(html)
    var i = 0
    while i + 3 <= chars.count {
        if chars[i] == "n", chars[i + 1] == "i", chars[i + 2] == "l",
           i == 0 || !(chars[i - 1].isLetter || chars[i - 1] == "_"), i + 3 == chars.count || !(chars[i + 3].isLetter || chars[i + 3] == "_") {
            return String(chars[max(0, i - 60)..<min(chars.count, i + 20)])
        }
        i += 1
    }
    return nil
}
