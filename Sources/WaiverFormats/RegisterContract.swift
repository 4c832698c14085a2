import Foundation
import WaiverCore

/// The client side of the API's bodies: reads what `RegisterOutput` writes (the server's answers)
/// back into the register's types, so `--server` renders exactly what a local register renders.
/// Each reader is the inverse of its writer; `RegisterContractTests` round-trips every field.
public enum RegisterContract {
    /// Why an answer is not what the contract says.
    public struct Mismatch: Error, CustomStringConvertible {
        public let field: String
        public let what: String
        public var description: String { "the server's answer does not match the API: \(field) \(what)" }
    }

    struct Reader {
        let v: Value
        let at: String

        func value(_ key: String) throws(Mismatch) -> Value {
            guard let x = v[key] else { throw Mismatch(field: at + key, what: "is missing") }
            return x
        }
        func string(_ key: String) throws(Mismatch) -> String {
            guard let s = try value(key).stringValue else { throw Mismatch(field: at + key, what: "is not a string") }
            return s
        }
        func optionalString(_ key: String) throws(Mismatch) -> String? {
            switch v[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            default: throw Mismatch(field: at + key, what: "is not a string")
            }
        }
        func int(_ key: String) throws(Mismatch) -> Int {
            guard let n = try value(key).numberValue, n == n.rounded(), abs(n) <= 9_007_199_254_740_992 else {
                throw Mismatch(field: at + key, what: "is not a whole number")
            }
            return Int(n)
        }
        func strings(_ key: String) throws(Mismatch) -> [String] {
            guard let a = try value(key).arrayValue else { throw Mismatch(field: at + key, what: "is not a list") }
            let s = a.compactMap(\.stringValue)
            guard s.count == a.count else { throw Mismatch(field: at + key, what: "is not a list of strings") }
            return s
        }
        func objects(_ key: String) throws(Mismatch) -> [Reader] {
            guard let a = try value(key).arrayValue else { throw Mismatch(field: at + key, what: "is not a list") }
            return a.enumerated().map { Reader(v: $0.element, at: "\(at)\(key)[\($0.offset)].") }
        }
        func object(_ key: String) throws(Mismatch) -> Reader {
            let x = try value(key)
            guard case .object = x else { throw Mismatch(field: at + key, what: "is not an object") }
            return Reader(v: x, at: at + key + ".")
        }
        func date(_ key: String) throws(Mismatch) -> Date {
            guard let d = parseInstant(try string(key)) else { throw Mismatch(field: at + key, what: "is not an instant") }
            return d
        }
        func optionalDate(_ key: String) throws(Mismatch) -> Date? {
            guard let s = try optionalString(key) else { return nil }
            guard let d = parseInstant(s) else { throw Mismatch(field: at + key, what: "is not an instant") }
            return d
        }
        func raw<T: RawRepresentable>(_ key: String, _: T.Type) throws(Mismatch) -> T where T.RawValue == String {
            let s = try string(key)
            guard let x = T(rawValue: s) else { throw Mismatch(field: at + key, what: "has an unknown value '\(s.clipped(40))'") }
            return x
        }
        func id(_ key: String) throws(Mismatch) -> Int? {
            guard let s = try optionalString(key) else { return nil }
            guard let n = ExceptionRecord.parseId(s) else { throw Mismatch(field: at + key, what: "is not an exception id") }
            return n
        }
    }

    /// An exception as `RegisterOutput.value` writes it.
    public static func record(_ v: Value) throws(Mismatch) -> ExceptionRecord {
        let r = Reader(v: v, at: "")
        guard let id = try r.id("id") else { throw Mismatch(field: "id", what: "is missing") }
        let approvers = try r.object("approvers")
        var e = ExceptionRecord(
            id: id, policy: try r.string("policy"), category: try r.string("category"), workspace: try r.string("workspace"),
            subjectKind: try r.raw("subject_kind", SubjectKind.self), resources: try r.strings("resources"), requester: try r.string("requester"),
            conflicted: try r.strings("conflicted"), reason: try r.string("reason"), requestedDays: try r.int("days"),
            likelihood: try r.raw("likelihood", RiskFactor.self), impact: try r.raw("impact", RiskFactor.self), riskLevel: try r.string("risk"),
            mitigations: try r.strings("mitigations"),
            evidence: try r.objects("evidence").map { (f: Reader) throws(Mismatch) in
                EvidenceFile(sha256: try f.string("sha256"), name: try f.string("name"), size: try f.int("size"), addedBy: try f.string("added_by"), at: try f.date("at"),
                             displayText: try f.optionalString("display_text"))
            },
            approvals: try r.objects("approvals").map { (a: Reader) throws(Mismatch) in
                Approval(approver: try a.string("approver"), comment: try a.optionalString("comment"), at: try a.date("at"))
            },
            rule: ApprovalRule(groups: try approvers.strings("groups"), minApprovals: try approvers.int("min_approvals"),
                               requiredGroups: try approvers.strings("required_groups")),
            status: try r.raw("status", ExceptionStatus.self), createdAt: try r.date("created"), decidedAt: try r.optionalDate("decided"),
            expiresAt: try r.optionalDate("expires"), renews: try r.id("renews"), owner: try r.optionalString("owner"),
            proposedRisk: try r.optionalString("risk_proposed"), riskRaisedBy: try r.optionalString("risk_raised_by"),
            ticket: try r.optionalString("ticket"), origin: RequestOrigin.from(v["origin"]))
        e.untrusted = try r.optionalString("untrusted")
        e.reviewedAt = try r.optionalDate("reviewed")
        e.bound = ExceptionRecord.bound(from: v["bound"])
        return e
    }

    /// An exception's history as `RegisterOutput.value(_:history:)` writes it: the events without
    /// their hashes (verify the log with `audit verify`), enough to show.
    public static func history(_ v: Value, subject: String) throws(Mismatch) -> [AuditEvent] {
        guard v["history"] != nil else { return [] }
        return try Reader(v: v, at: "").objects("history").map { (h: Reader) throws(Mismatch) in
            AuditEvent(seq: try h.int("seq"), time: try h.date("at"), actor: try h.string("actor"), action: try h.string("action"), subject: subject,
                       payload: JSONWriter.canonical(try h.value("details")), prevHash: "", hash: "")
        }
    }

    /// A report as `RegisterOutput.reportValue` writes it.
    public static func report(_ v: Value) throws(Mismatch) -> RegisterReport {
        let r = Reader(v: v, at: "")
        func counts(_ key: String, _ name: String) throws(Mismatch) -> [RegisterReport.Count] {
            try r.objects(key).map { (c: Reader) throws(Mismatch) in RegisterReport.Count(key: try c.string(name), count: try c.int("exceptions")) }
        }
        var median: Double?
        switch v["median_approved_days"] {
        case nil, .null?: median = nil
        case .number(let n)?: median = n
        default: throw Mismatch(field: "median_approved_days", what: "is not a number")
        }
        var report = RegisterReport(
            from: try r.optionalDate("from"), to: try r.optionalDate("to"), now: try r.date("generated"), total: try r.int("exceptions"),
            perPolicy: try counts("per_policy", "policy"), perWorkspace: try counts("per_workspace", "workspace"),
            perRequester: try counts("per_requester", "requester"), renewals: try r.int("renewals"), medianApprovedDays: median,
            activeNow: try r.int("active_now"), expiringWithin7Days: try r.strings("expiring_within_7_days"),
            reviewThreshold: try r.int("review_threshold"), reviewPolicies: try counts("review_policies", "policy"), orphaned: try r.strings("orphaned"))
        if v["reviews"] != nil {
            report.reviews = try r.objects("reviews").map { (x: Reader) throws(Mismatch) in
                PolicyReview(quarter: try x.string("quarter"), policy: try x.string("policy"), decision: try x.string("decision"),
                             link: try x.optionalString("link"), by: try x.string("by"), at: try x.date("at"))
            }
        }
        return report
    }

    /// An expiry outcome as the API writes it: the exception, and what still violates.
    public static func outcomeValue(_ o: ExpiryOutcome, now: Date) -> Value {
        ["id": .string(o.exception.displayId), "status": .string(o.exception.status.rawValue), "policy": .string(o.exception.policy),
         "workspace": .string(o.exception.workspace), "still_violating": .array(o.stillViolating.map(Value.string)),
         "exception": RegisterOutput.value(o.exception, now: now)]
    }

    public static func outcome(_ v: Value) throws(Mismatch) -> ExpiryOutcome {
        ExpiryOutcome(exception: try record(try Reader(v: v, at: "").value("exception")), stillViolating: try Reader(v: v, at: "").strings("still_violating"))
    }

    /// What a client needs of a check's answer (`POST /evaluations`, schema CheckResult): the
    /// verdict, the counts, the requests filed and each finding's policy, resource, status and
    /// exception.
    public struct CheckAnswer: Sendable, Equatable {
        public struct Result: Sendable, Equatable {
            public var policy: String
            public var resource: String
            public var status: ResultStatus
            public var exception: String?
            public var link: String?
        }
        public var passed: Bool
        public var summary: Summary
        public var results: [Result]
        public var requested: [String]
        public var requestWarnings: [String]
        public var rendered: String?
        public var renderings: [String: String]
    }

    public static func checkAnswer(_ v: Value) throws(Mismatch) -> CheckAnswer {
        let r = Reader(v: v, at: "")
        let s = try r.object("summary")
        let verdict = try r.string("verdict")
        guard verdict == "pass" || verdict == "blocked" else { throw Mismatch(field: "verdict", what: "has an unknown value '\(verdict.clipped(40))'") }
        return CheckAnswer(
            passed: verdict == "pass",
            summary: Summary(resources: try s.int("resources"), violations: try s.int("violations"), blocking: try s.int("blocking"),
                             excepted: try s.int("excepted"), pending: try s.int("pending"), unknown: try s.int("unknown"),
                             advisory: s.v["advisory"] == nil ? 0 : try s.int("advisory")),
            results: try r.objects("results").map { (f: Reader) throws(Mismatch) in
                CheckAnswer.Result(policy: try f.string("policy"), resource: try f.string("resource"), status: try f.raw("status", ResultStatus.self),
                                   exception: try f.optionalString("exception"), link: try f.optionalString("link"))
            },
            requested: try r.strings("requested"),
            requestWarnings: v["request_warnings"] == nil ? [] : try r.strings("request_warnings"),
            rendered: try r.optionalString("rendered"),
            renderings: try renderings(v["renderings"]))
    }

    static func renderings(_ v: Value?) throws(Mismatch) -> [String: String] {
        guard let v else { return [:] }
        guard case .object(let o) = v else { throw Mismatch(field: "renderings", what: "is not an object") }
        var out: [String: String] = [:]
        for (k, x) in o.pairs {
            guard let s = x.stringValue else { throw Mismatch(field: "renderings.\(k)", what: "is not a string") }
            out[k] = s
        }
        return out
    }
}
