import Foundation
import WaiverCore
import WaiverFormats

/// The request bodies of the JSON API, written by the CLI's `--server` client and read by the
/// server, in one place: each body's field names, its writer and its reader. The OpenAPI document
/// (`/openapi.yaml`) is the contract; `APIBodiesTests` holds every body here to its schema there
/// (the same property names, the same required ones) and round-trips each one, and schemathesis
/// holds the live server to the same document. The answers' side is `RegisterOutput` (writes) and
/// `RegisterContract` (reads back).
public enum APIBodies {
    // MARK: - POST /exceptions, POST /exceptions/{id}/renew (schema ExceptionRequest)

    public static let exceptionRequestFields = ["policy", "workspace", "kind", "resources", "reason", "days", "likelihood", "impact", "mitigations", "renews", "owner", "ticket", "scanner_rule"]
    public static let exceptionRequestRequired = ["reason"]

    public static func exceptionRequest(_ r: ExceptionRequest) -> Value {
        var body = Value.Object([
            ("resources", .array(r.resources.map(Value.string))), ("reason", .string(r.reason)), ("mitigations", .array(r.mitigations.map(Value.string))),
        ])
        if !r.policy.isEmpty { body.append("policy", .string(r.policy)) }
        if let kind = r.subjectKind { body.append("kind", .string(kind.rawValue)) }
        if !r.workspace.isEmpty { body.append("workspace", .string(r.workspace)) }
        if let days = r.days { body.append("days", .number(Double(days))) }
        if let l = r.likelihood { body.append("likelihood", .string(l.rawValue)) }
        if let i = r.impact { body.append("impact", .string(i.rawValue)) }
        if let renews = r.renews { body.append("renews", .string(ExceptionRecord.display(renews))) }
        if let owner = r.owner { body.append("owner", .string(owner)) }
        if let ticket = r.ticket { body.append("ticket", .string(ticket)) }
        if r.scannerRule { body.append("scanner_rule", .bool(true)) }
        return .object(body)
    }

    /// Reads a request body; `renews` from the path (`/exceptions/{id}/renew`) wins over the body's.
    public static func exceptionRequest(_ v: Value, renews: Int? = nil) throws -> ExceptionRequest {
        let b = try Body(v, fields: exceptionRequestFields)
        var kind: SubjectKind?
        if let text = try b.optionalString("kind") {
            guard let k = SubjectKind(rawValue: text) else { throw RegisterError.invalid("kind must be resource, person, device or account") }
            kind = k
        }
        var renewed = renews
        if renewed == nil, let text = try b.optionalString("renews") {
            guard let n = ExceptionRecord.parseId(text) else {
                throw RegisterError.invalid("renews: '\(text.clipped(40))' is not an exception id (EX-7 or 7)")
            }
            renewed = n
        }
        var r = ExceptionRequest(policy: try b.optionalString("policy") ?? "", workspace: try b.optionalString("workspace") ?? "", subjectKind: kind,
                                 resources: try b.strings("resources"), reason: try b.string("reason"), days: try b.optionalInt("days"),
                                 likelihood: try b.factor("likelihood"), impact: try b.factor("impact"), mitigations: try b.strings("mitigations"),
                                 renews: renewed, owner: try b.optionalString("owner"), ticket: try b.optionalString("ticket"))
        r.scannerRule = try b.optionalBool("scanner_rule") ?? false
        return r
    }

    /// The most requests one batch may file.
    public static let maxBatch = 1_000

    /// `POST /exceptions/batch`: `{"requests": [ExceptionRequest, ...]}`, filed all or none.
    public static func exceptionRequests(_ requests: [ExceptionRequest]) -> Value {
        .object(Value.Object([("requests", .array(requests.map(exceptionRequest)))]))
    }

    public static func exceptionRequests(_ v: Value) throws -> [ExceptionRequest] {
        _ = try Body(v, fields: ["requests"])
        guard case .array(let items)? = v["requests"] else { throw RegisterError.invalid("requests must be a list of requests") }
        guard (1...maxBatch).contains(items.count) else { throw RegisterError.invalid("requests holds 1 to \(maxBatch) requests (got \(items.count))") }
        return try items.map { try exceptionRequest($0) }
    }

    // MARK: - POST /exceptions/{id}/approve

    public static let approvalFields = ["comment", "days", "risk"]

    public struct Approval: Sendable, Equatable {
        public var comment: String?
        public var days: Int?
        public var risk: String?
        public init(comment: String?, days: Int?, risk: String?) {
            self.comment = comment
            self.days = days
            self.risk = risk
        }
    }

    public static func approval(_ a: Approval) -> Value {
        var body = Value.Object()
        if let comment = a.comment { body.append("comment", .string(comment)) }
        if let days = a.days { body.append("days", .number(Double(days))) }
        if let risk = a.risk { body.append("risk", .string(risk)) }
        return .object(body)
    }

    public static func approval(_ v: Value) throws -> Approval {
        let b = try Body(v, fields: approvalFields)
        return Approval(comment: try b.optionalString("comment"), days: try b.optionalInt("days"), risk: try b.optionalString("risk"))
    }

    // MARK: - POST /exceptions/{id}/reject and /revoke (schema Comment)

    public static let commentFields = ["comment"]
    public static let commentRequired = ["comment"]

    public static func comment(_ text: String) -> Value { .object(Value.Object([("comment", .string(text))])) }

    public static func comment(_ v: Value) throws -> String { try Body(v, fields: commentFields).string("comment") }

    // MARK: - POST /reviews

    public static let reviewFields = ["quarter", "policy", "decision", "link"]
    public static let reviewRequired = ["quarter", "policy", "decision"]

    public static func review(quarter: String, policy: String, decision: String, link: String?) -> Value {
        var o = Value.Object([("quarter", .string(quarter)), ("policy", .string(policy)), ("decision", .string(decision))])
        if let link { o.append("link", .string(link)) }
        return .object(o)
    }

    public static func review(_ v: Value) throws -> (quarter: String, policy: String, decision: String, link: String?) {
        let b = try Body(v, fields: reviewFields)
        return (try b.string("quarter"), try b.string("policy"), try b.string("decision"), try b.optionalString("link"))
    }

    // MARK: - POST /evaluations

    /// The envelope's fields besides the documents (`plan`, `sarif`), which go as they are.
    public static let evaluationFields = ["workspace", "plan", "sarif", "unknown", "format", "formats", "fail_on", "commit_author", "commit", "run_url", "change_url",
                                          "request", "plan_file", "sarif_files"]
    public static let evaluationRequired = ["workspace"]
    public static let checkRequestFields = ["reason", "days", "likelihood", "impact", "mitigations", "ticket", "renews"]
    public static let checkRequestRequired = ["reason"]

    /// The envelope without its documents: workspace, format, unknown, commit author and request.
    public static func evaluationSettings(_ input: CheckInput) -> Value.Object {
        var meta = Value.Object([("workspace", .string(input.workspace)), ("format", .string(input.format.rawValue)), ("unknown", .string(input.unknown.rawValue))])
        if input.formats.count > 1 { meta.append("formats", .array(input.formats.map { .string($0.rawValue) })) }
        if let s = input.failOn { meta.append("fail_on", .string(s.rawValue)) }
        if let author = input.commitAuthor { meta.append("commit_author", .string(author)) }
        for (k, v) in [("commit", input.commit), ("run_url", input.runURL), ("change_url", input.changeURL)] {
            if let v { meta.append(k, .string(v)) }
        }
        if let spec = input.request { meta.append("request", checkRequest(spec)) }
        if let plan = input.planName { meta.append("plan_file", .string(plan)) }
        if !input.sarifNames.isEmpty { meta.append("sarif_files", .array(input.sarifNames.map(Value.string))) }
        return meta
    }

    public static func checkRequest(_ spec: RequestSpec) -> Value {
        var r = Value.Object([("reason", .string(spec.reason)), ("mitigations", .array(spec.mitigations.map(Value.string)))])
        if let d = spec.days { r.append("days", .number(Double(d))) }
        if let l = spec.likelihood { r.append("likelihood", .string(l.rawValue)) }
        if let i = spec.impact { r.append("impact", .string(i.rawValue)) }
        if let t = spec.ticket { r.append("ticket", .string(t)) }
        if let n = spec.renews { r.append("renews", .string(ExceptionRecord.display(n))) }
        return .object(r)
    }

    public static func checkRequest(_ v: Value) throws -> RequestSpec {
        guard case .object = v else { throw RegisterError.invalid("request must be an object (\(checkRequestFields.joined(separator: ", ")))") }
        let b = try Body(v, fields: checkRequestFields, prefix: "request.")
        var renews: Int?
        if let text = try b.optionalString("renews") {
            guard let n = ExceptionRecord.parseId(text) else { throw RegisterError.invalid("request.renews: '\(text.clipped(40))' is not an exception id (EX-7 or 7)") }
            renews = n
        }
        return RequestSpec(reason: try b.string("reason"), days: try b.optionalInt("days"), likelihood: try b.factor("likelihood"),
                           impact: try b.factor("impact"), mitigations: try b.strings("mitigations"), ticket: try b.optionalString("ticket"), renews: renews)
    }

    /// The names the report gives the documents: the client's own (`plan_file`, `sarif_files`, one per
    /// report), or `plan.json` and `report-N.sarif` when it sends none.
    public static func documentNames(planFile: Value?, sarifFiles: Value?, sarifCount: Int) throws -> (plan: String, sarif: [String]) {
        var plan = "plan.json"
        if let v = planFile {
            guard let s = v.stringValue else { throw RegisterError.invalid("plan_file must be a string") }
            plan = try RequestLimits.fileName(s, field: "plan_file")
        }
        var sarif = (0..<sarifCount).map { "report-\($0 + 1).sarif" }
        if let v = sarifFiles {
            guard case .array(let items) = v, items.count == sarifCount else {
                throw RegisterError.invalid("sarif_files must be an array of \(sarifCount) file name(s), one per SARIF report")
            }
            sarif = try items.enumerated().map { i, item in
                guard let s = item.stringValue else { throw RegisterError.invalid("sarif_files[\(i)] must be a string") }
                return try RequestLimits.fileName(s, field: "sarif_files[\(i)]")
            }
        }
        return (plan, sarif)
    }

    /// The envelope's `unknown` and `format`, each one of its enumeration or a 422.
    public static func unknownMode(_ text: String?) throws -> UnknownMode {
        guard let t = text else { return .warn }
        guard let m = UnknownMode(rawValue: t) else { throw RegisterError.invalid("unknown must be warn or block, not \(t.debugDescription.clipped())") }
        return m
    }

    /// `formats`: several reports from one check (each also in `renderings`); absent, only `format`.
    public static func formats(_ v: Value?, first: OutputFormat) throws -> [OutputFormat] {
        guard let v else { return [first] }
        guard let list = v.arrayValue, !list.isEmpty, list.count <= OutputFormat.allCases.count * 2 else {
            throw RegisterError.invalid("formats must be a list of 1 to \(OutputFormat.allCases.count * 2) formats")
        }
        return try list.map { (item: Value) throws -> OutputFormat in
            guard let s = item.stringValue else { throw RegisterError.invalid("formats must hold strings") }
            return try format(s)
        }
    }

    public static func format(_ text: String?) throws -> OutputFormat {
        guard let t = text else { return .json }
        guard let f = OutputFormat(rawValue: t) else {
            throw RegisterError.invalid("format must be one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")), not \(t.debugDescription.clipped())")
        }
        return f
    }

    /// A field the body does not take: refused by name, so a misspelt `mitigation` is never silently dropped.
    public static func unknownField(_ key: String, _ fields: [String]) -> RegisterError {
        .invalid("unknown field '\(key.clipped(60))' (this body takes \(fields.joined(separator: ", ")))")
    }

    /// A JSON object body, read field by field; every error names the field.
    struct Body {
        let v: Value
        let prefix: String

        init(_ v: Value, fields: [String], prefix: String = "") throws {
            guard case .object(let o) = v else { throw RegisterError.invalid("the body must be a JSON object") }
            if let key = o.keys.first(where: { !fields.contains($0) }) { throw APIBodies.unknownField(prefix + key, fields) }
            self.v = v
            self.prefix = prefix
        }

        func optionalString(_ key: String) throws -> String? {
            switch v[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            default: throw RegisterError.invalid("\(prefix)\(key) must be a string")
            }
        }

        func string(_ key: String) throws -> String {
            guard let s = try optionalString(key), !s.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw RegisterError.invalid("\(prefix)\(key) is required")
            }
            return s
        }

        func optionalInt(_ key: String) throws -> Int? {
            switch v[key] {
            case nil, .null?: return nil
            case .number(let n)? where n == n.rounded() && abs(n) < 1e9: return Int(n)
            default: throw RegisterError.invalid("\(prefix)\(key) must be a whole number")
            }
        }

        func strings(_ key: String) throws -> [String] {
            switch v[key] {
            case nil, .null?: return []
            case .array(let a)?:
                let s = a.compactMap(\.stringValue)
                guard s.count == a.count else { throw RegisterError.invalid("\(prefix)\(key) must be a list of strings") }
                return s
            default: throw RegisterError.invalid("\(prefix)\(key) must be a list of strings")
            }
        }

        func optionalBool(_ key: String) throws -> Bool? {
            switch v[key] {
            case nil, .null?: return nil
            case .bool(let x)?: return x
            default: throw RegisterError.invalid("\(prefix)\(key) must be true or false")
            }
        }

        func factor(_ key: String) throws -> RiskFactor? {
            guard let s = try optionalString(key) else { return nil }
            guard let f = RiskFactor(rawValue: s) else { throw RegisterError.invalid("\(prefix)\(key) must be low, medium or high") }
            return f
        }
    }
}
