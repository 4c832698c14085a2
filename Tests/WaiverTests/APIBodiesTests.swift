import Foundation
import Testing
import Yams
@testable import WaiverCore
@testable import WaiverFormats
@testable import WaiverServer
@testable import WaiverUseCases

/// The OpenAPI document is the contract: every request body the CLI writes and the server reads
/// (`APIBodies`) and every answer the server writes (`RegisterOutput`, the check's result) has the
/// fields its schema there names, no more, and the required ones; each body round-trips.
@Suite("The API's bodies against the OpenAPI document")
struct APIBodiesTests {
    let t = Date(timeIntervalSince1970: 1_795_000_000)

    /// The document, parsed.
    nonisolated(unsafe) static let document: [String: Any] = (try? Yams.load(yaml: OpenAPI.document)) as? [String: Any] ?? [:]

    /// A schema by JSON pointer-ish path (`components.schemas.Comment`, or an operation's body).
    func schema(_ path: [String]) -> [String: Any] {
        var node: Any = Self.document
        for key in path { node = (node as? [String: Any])?[key] ?? [:] }
        return node as? [String: Any] ?? [:]
    }

    func bodySchema(_ route: String, _ method: String = "post") -> [String: Any] {
        let s = schema(["paths", route, method, "requestBody", "content", "application/json", "schema"])
        if let ref = s["$ref"] as? String { return schema(ref.dropFirst(2).split(separator: "/").map(String.init)) }
        return s
    }

    func properties(_ s: [String: Any]) -> Set<String> { Set((s["properties"] as? [String: Any] ?? [:]).keys) }
    func required(_ s: [String: Any]) -> Set<String> { Set(s["required"] as? [String] ?? []) }

    @Test func everyRequestBodyHasExactlyTheFieldsItsSchemaNames() {
        #expect(!Self.document.isEmpty, "the OpenAPI document did not parse")
        let cases: [(String, [String: Any], [String], [String])] = [
            ("POST /exceptions", bodySchema("/api/v1/exceptions"), APIBodies.exceptionRequestFields, APIBodies.exceptionRequestRequired),
            ("POST /exceptions/{id}/renew", bodySchema("/api/v1/exceptions/{id}/renew"), APIBodies.exceptionRequestFields, APIBodies.exceptionRequestRequired),
            ("POST /exceptions/{id}/approve", bodySchema("/api/v1/exceptions/{id}/approve"), APIBodies.approvalFields, []),
            ("POST /exceptions/{id}/reject", bodySchema("/api/v1/exceptions/{id}/reject"), APIBodies.commentFields, APIBodies.commentRequired),
            ("POST /exceptions/{id}/revoke", bodySchema("/api/v1/exceptions/{id}/revoke"), APIBodies.commentFields, APIBodies.commentRequired),
            ("POST /evaluations", bodySchema("/api/v1/evaluations"), APIBodies.evaluationFields, APIBodies.evaluationRequired),
            ("POST /evaluations request", bodySchema("/api/v1/evaluations")["properties"].flatMap { ($0 as? [String: Any])?["request"] as? [String: Any] } ?? [:],
             APIBodies.checkRequestFields, APIBodies.checkRequestRequired),
        ]
        for (name, s, fields, req) in cases {
            #expect(properties(s) == Set(fields), "\(name): the document names \(properties(s).sorted()), the code \(fields.sorted())")
            #expect(required(s) == Set(req), "\(name): the document requires \(required(s).sorted()), the code \(req.sorted())")
            #expect(s["additionalProperties"] as? Bool == false, "\(name): the document must refuse other fields, as the server does")
        }
    }

    @Test func everyRequestBodyRoundTrips() throws {
        let full = ExceptionRequest(policy: "NET-001", workspace: "shop", subjectKind: .device, resources: ["a", "b"], reason: "vendor",
                                    days: 9, likelihood: .high, impact: .low, mitigations: ["WAF"], renews: 3, owner: "lee")
        #expect(try APIBodies.exceptionRequest(APIBodies.exceptionRequest(full)) == full)
        let bare = ExceptionRequest(policy: "", workspace: "", resources: [], reason: "renewing")
        #expect(try APIBodies.exceptionRequest(APIBodies.exceptionRequest(bare)) == bare)
        // The renewed exception in the path wins over one in the body.
        #expect(try APIBodies.exceptionRequest(APIBodies.exceptionRequest(full), renews: 8).renews == 8)

        let a = APIBodies.Approval(comment: "ok", days: 3, risk: "high")
        #expect(try APIBodies.approval(APIBodies.approval(a)) == a)
        #expect(try APIBodies.approval(.object(Value.Object())) == APIBodies.Approval(comment: nil, days: nil, risk: nil))
        #expect(try APIBodies.comment(APIBodies.comment("no")) == "no")

        let spec = RequestSpec(reason: "r", days: 2, likelihood: .low, impact: .high, mitigations: ["m"])
        #expect(try APIBodies.checkRequest(APIBodies.checkRequest(spec)) == spec)
        let input = CheckInput(plan: nil, sarif: [], workspace: "shop", unknown: .block, formats: [.markdown, .sarif], commitAuthor: "ann", request: spec)
        let settings = Value.object(APIBodies.evaluationSettings(input))
        #expect(Set(APIBodies.evaluationSettings(input).keys).isSubset(of: Set(APIBodies.evaluationFields)))
        #expect(try APIBodies.unknownMode(settings["unknown"]?.stringValue) == .block)
        #expect(try APIBodies.format(settings["format"]?.stringValue) == .markdown)
        #expect(try APIBodies.checkRequest(settings["request"] ?? .null) == spec)
    }

    @Test func aBodyOutsideItsSchemaIsRefusedByField() {
        func message(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return "\(error)" }
        }
        #expect(message { _ = try APIBodies.comment(["coment": "x"]) }?.hasPrefix("unknown field 'coment'") == true)
        #expect(message { _ = try APIBodies.comment(["comment": " "]) } == "comment is required")
        #expect(message { _ = try APIBodies.exceptionRequest(["reason": "x", "days": "9"]) } == "days must be a whole number")
        #expect(message { _ = try APIBodies.exceptionRequest(["reason": "x", "resources": ["a", 7]]) } == "resources must be a list of strings")
        #expect(message { _ = try APIBodies.exceptionRequest(["reason": "x", "renews": "EX-abc"]) }?.hasPrefix("renews: 'EX-abc' is not an exception id") == true)
        #expect(message { _ = try APIBodies.checkRequest(["reason": "x", "mitigation": ["m"]]) }?.hasPrefix("unknown field 'request.mitigation'") == true)
        #expect(message { _ = try APIBodies.checkRequest(["reason": "x", "likelihood": "huge"]) } == "request.likelihood must be low, medium or high")
        #expect(message { _ = try APIBodies.format("pdf") }?.hasSuffix("not \"pdf\"") == true)
    }

    /// Every field an answer carries is in its schema, and every required one is there.
    func holds(_ v: Value, to s: [String: Any], _ name: String) {
        guard case .object(let o) = v else { Issue.record("\(name) is not an object"); return }
        let keys = Set(o.keys)
        #expect(keys.isSubset(of: properties(s)), "\(name) writes \(keys.subtracting(properties(s)).sorted()), which the document does not name")
        #expect(required(s).isSubset(of: keys), "\(name) lacks \(required(s).subtracting(keys).sorted()), which the document requires")
    }

    @Test func everyAnswerHasTheFieldsItsSchemaNames() throws {
        let tests = RegisterContractTests()
        var e = tests.record()
        let events = [AuditEvent(seq: 1, time: t, actor: "dev", action: "exception.requested", subject: "EX-12", payload: "{}", prevHash: "", hash: "")]
        holds(RegisterOutput.value(e, history: events, now: t), to: schema(["components", "schemas", "Exception"]), "an exception")
        e.untrusted = nil; e.owner = nil; e.renews = nil; e.expiresAt = nil; e.decidedAt = nil; e.proposedRisk = nil; e.riskRaisedBy = nil
        holds(RegisterOutput.value(e, now: t), to: schema(["components", "schemas", "Exception"]), "a bare exception")

        let findings = [
            Finding(policy: "NET-001", title: "t", severity: .high, category: "security", resource: "sg", status: .pending, exception: "EX-12",
                    expires: t, message: "m", remediation: "fix", origin: .plan(file: "p")),
            Finding(policy: "CKV_AWS_24", title: "t", severity: .low, category: "security", resource: "main.tf", status: .blocking, message: "m",
                    remediation: "", origin: .sarif(file: "c.sarif", tool: "checkov", uri: "main.tf", line: 3)),
        ]
        var report = CheckReport(workspace: "shop", unknownMode: .warn, findings: findings, resourceCount: 4, policies: [], compliant: [])
        report.warnings = ["w"]
        let answer = CheckService.resultValue(report, evaluation: 7, filed: [], warnings: ["nobody can approve"])
        holds(answer, to: schema(["components", "schemas", "CheckResult"]), "a check's result")
        for (i, f) in (answer["results"]?.arrayValue ?? []).enumerated() {
            holds(f, to: schema(["components", "schemas", "Finding"]), "result \(i)")
        }
        // And the client reads back what it needs of it.
        let read = try RegisterContract.checkAnswer(answer)
        #expect(read == RegisterContract.CheckAnswer(
            passed: false, summary: report.summary,
            results: report.findings.map { .init(policy: $0.policy, resource: $0.resource, status: $0.status, exception: $0.exception) },
            requested: [], requestWarnings: ["nobody can approve"], rendered: nil, renderings: [:]))
    }
}
