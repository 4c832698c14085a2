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

/// Issue 14, item 8: the auditor reads the whole record and changes nothing in it; the metrics need
/// a token unless waiver.yaml opens them.
@Suite("The auditor's role", .serialized)
struct AuditorTests {
    /// Adds a user in group `auditors`; their bearer header.
    static func auditor(_ f: ServerFixture, _ name: String = "aud") async throws -> HTTPFields {
        try await f.state.store.putUser(User(name: name, groups: ["auditors"], admin: false), actor: "setup", now: t0)
        let t = APIToken.generate()
        try await f.state.store.addToken(id: t.id, secretHash: t.hash, user: name, actor: "setup", now: t0)
        var h = HTTPFields()
        h[.authorization] = "Bearer \(t.token)"
        h[.contentType] = "application/json"
        return h
    }

    @Test func anAuditorSeesEverythingAndDecidesNothing() async throws {
        let f = try await ServerFixture()
        let aud = try await Self.auditor(f)
        try await f.app().test(.router) { c in
            #expect(try await c.call(.post, "/api/v1/exceptions", as: "dev", f, json: netRequest).0 == 201)
            func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil) async throws -> (Int, String) {
                try await c.execute(uri: uri, method: method, headers: aud, body: body.map { ByteBuffer(string: $0) }) { (Int($0.status.code), String(buffer: $0.body)) }
            }
            // Reads: the register, one exception, the audit log and its verification, the metrics.
            for uri in ["/api/v1/exceptions", "/api/v1/exceptions/EX-1", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/reports", "/metrics"] {
                #expect(try await call(.get, uri).0 == 200, "\(uri)")
            }
            // Boolean query parameters are true or false, nothing else (schemathesis found `mine=null` accepted).
            #expect(try await call(.get, "/api/v1/exceptions?mine=maybe").0 == 400)
            #expect(try await call(.get, "/api/v1/exceptions?history=1&format=csv").0 == 400)
            #expect(try await call(.get, "/api/v1/exceptions?history=true").1.contains("\"decisions\""))
            // Acts: each refused by the register's rule, and nothing changes.
            let before = try await f.state.store.auditEvents(subject: nil).count
            for (method, uri, body) in [(HTTPRequest.Method.post, "/api/v1/exceptions/EX-1/approve", "{}"),
                                        (.post, "/api/v1/exceptions/EX-1/reject", #"{"comment":"no"}"#),
                                        (.post, "/api/v1/exceptions/EX-1/revoke", #"{"comment":"no"}"#),
                                        (.post, "/api/v1/exceptions", netRequest),
                                        (.post, "/api/v1/exceptions/EX-1/evidence?name=a.txt", "bytes"),
                                        (.post, "/api/v1/evaluations", #"{"workspace":"shop","plan":{"format_version":"1.2","resource_changes":[]}}"#)] {
                let (status, text) = try await call(method, uri, body)
                #expect(status == 403 && text.contains("aud is an auditor (group auditors)"), "\(uri): \(status) \(text)")
            }
            #expect(try await f.state.store.auditEvents(subject: nil).count == before)
            #expect(try await f.state.store.exception(id: 1)?.status == .pending)
        }
    }

    @Test func theMetricsNeedATokenUnlessOpened() async throws {
        let closed = try await ServerFixture()
        try await closed.app().test(.router) { c in
            let anonymous = try await c.execute(uri: "/metrics", method: .get) { $0.status }
            let withToken = try await c.execute(uri: "/metrics", method: .get, headers: closed.headers("fin")) { $0.status }
            #expect(anonymous == .unauthorized && withToken == .ok)
        }
        let open = try await ServerFixture(configure: { $0.metricsOpen = true })
        try await open.app().test(.router) { c in
            let text = try await c.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(text.contains("waiver_exceptions"))
        }
        let parsed = try ConfigLoader.parse(Data("server:\n  metrics: open\nroles:\n  auditors: audit-team\n".utf8), file: "waiver.yaml")
        #expect(parsed.metricsOpen && parsed.auditorGroup == "audit-team")
        #expect(throws: InputErrors.self) { try ConfigLoader.parse(Data("server:\n  metrics: sometimes\n".utf8), file: "waiver.yaml") }
    }
}
