import Foundation

/// Who is told of a register event by e-mail: one home for the rule, used by every store when it
/// queues the mail in the same transaction as the event (the outbox).
///
/// - a request: the people who may approve it (members of its approver groups), never the
///   requester, a conflicted person or the person it is about;
/// - each decision (approved, rejected, revoked, expired, closed, renewed): the requester;
/// - a reminder before expiry: the requester;
/// - a nudge (still pending after `notify.nudge_after`): the approvers who have not approved yet;
/// - an escalation (after `notify.escalate_after`): the members of the groups it escalates to,
///   again never the requester or a conflicted person.
public enum MailRules {
    public static let decisions: Set<String> = ["exception.approved", "exception.rejected", "exception.revoked", "exception.expired",
                                                 "exception.closed", "exception.renewed"]

    /// The groups whose members `recipients` reads (for a store that looks them up first).
    public static func groups(action: String, payload: Value, state: ExceptionRecord?) -> [String] {
        switch action {
        case "exception.requested": return state?.rule.groups ?? []
        case "exception.nudged": return payload["approvers"]?.arrayValue?.compactMap(\.stringValue) ?? []
        case "exception.escalated": return payload["to"]?.arrayValue?.compactMap(\.stringValue) ?? []
        default: return []
        }
    }

    public static func recipients(action: String, payload: Value, state: ExceptionRecord?, membersOf: (String) throws -> [String]) rethrows -> [String] {
        func strings(_ key: String) -> [String] { payload[key]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        var people: [String] = []
        var excluded: [String] = []
        switch action {
        case "exception.requested":
            guard let e = state else { return [] }
            for g in groups(action: action, payload: payload, state: state) { people += try membersOf(g) }
            excluded = [e.requester] + e.conflicted + e.subjectPeople
        case _ where decisions.contains(action):
            if let e = state { people = [e.requester] }
        case "exception.reminder":
            people = [payload["requester"]?.stringValue].compactMap { $0 }
        case "exception.nudged":
            for g in groups(action: action, payload: payload, state: state) { people += try membersOf(g) }
            excluded = [payload["requester"]?.stringValue].compactMap { $0 } + strings("conflicted") + strings("approved_by")
        case "exception.escalated":
            for g in groups(action: action, payload: payload, state: state) { people += try membersOf(g) }
            excluded = [payload["requester"]?.stringValue].compactMap { $0 } + strings("conflicted")
        default:
            return []
        }
        let out = Set(people.map(Identity.canonical)).subtracting(excluded.map(Identity.canonical))
        return people.filter { out.contains(Identity.canonical($0)) }.reduce(into: [String]()) { acc, p in
            if !acc.contains(where: { Identity.same($0, p) }) { acc.append(p) }
        }.sorted()
    }
}
