import Foundation
import WaiverCore

/// The e-mail a register event becomes: its subject and text (with the link to the exception's
/// page), and the message as sent (RFC 5322, UTF-8, the body in base64 so no line is too long).
public enum MailMessage {
    /// Subject and text for the event an outbox row carries (`WebhookBody`'s JSON).
    public static func render(eventJSON: String, publicURL: String?) -> (subject: String, text: String) {
        let e = (try? JSONReader.parse(Data(eventJSON.utf8), maxDepth: 64)) ?? .null
        let d = e["details"] ?? .null
        let id = e["subject"]?.stringValue ?? "?"
        let actor = e["actor"]?.stringValue ?? "?"
        func s(_ key: String) -> String? { d[key]?.stringValue }
        func list(_ key: String) -> [String] { d[key]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        let link = publicURL.map { "\($0)/exceptions/\(id)" }
        var lines: [String] = []
        let subject: String
        switch e["event"]?.stringValue ?? "" {
        case "exception.requested":
            let risk = s("risk") ?? "?"
            subject = "\(id) needs your approval: \(s("policy") ?? "?") in \(s("workspace") ?? "?") (\(risk) risk)"
            lines = ["\(actor) asks for an exception to \(s("policy") ?? "?") in workspace \(s("workspace") ?? "?"), for \(d["days"]?.intValue.map { "\($0) days" } ?? "?").", "",
                     "Resources: " + list("resources").prefix(20).joined(separator: ", ") + (list("resources").count > 20 ? ", … (\(list("resources").count) in all)" : ""),
                     "Risk: \(risk) (likelihood \(s("likelihood") ?? "?"), impact \(s("impact") ?? "?"))",
                     "Reason: \(s("reason") ?? "")"]
            let m = list("mitigations")
            if !m.isEmpty { lines.append("Mitigations: " + m.joined(separator: "; ")) }
            if let c = d["conflicted"]?.arrayValue, !c.isEmpty { lines.append("May not approve it: \(c.compactMap(\.stringValue).joined(separator: ", "))") }
        case "exception.approved":
            subject = "\(id) approved by \(actor)"
            lines = ["\(actor) approved \(id)." + (s("expires").map { " It is active until \($0)." } ?? " It still needs more approvals.")]
        case "exception.rejected":
            subject = "\(id) rejected by \(actor)"
            lines = ["\(actor) rejected \(id)."]
        case "exception.revoked":
            subject = "\(id) revoked by \(actor)"
            lines = ["\(actor) revoked \(id): it no longer covers its resources."]
        case "exception.expired", "exception.closed":
            subject = "\(id) \(e["event"]?.stringValue == "exception.closed" ? "closed" : "expired")"
            lines = ["\(id) ended at its expiry; the policy was checked again."]
        case "exception.reminder" where s("review_due") != nil:
            subject = "\(id) is due for review"
            lines = ["\(id)'s review was due at \(s("review_due") ?? "?"). An approver attests that it is still needed and its mitigations still in place (waiver attest \(id)), or it is revoked; without either it expires at \(s("expires_unless_attested") ?? "?")."]
        case "exception.reminder":
            subject = "\(id) expires in \(s("before") ?? "?")"
            lines = ["\(id) expires at \(s("expires") ?? "?"). Fix what it covers, or renew it with a new reason."]
        case "exception.nudged":
            subject = "\(id) still waits for your approval"
            lines = ["\(id) was requested by \(s("requester") ?? "?") at \(s("requested") ?? "?") and is still pending."]
        case "exception.escalated":
            subject = "\(id) escalated to you: pending since \(s("requested") ?? "?")"
            lines = ["\(id), requested by \(s("requester") ?? "?"), has waited for \(list("approvers").joined(separator: ", ")) since \(s("requested") ?? "?")."]
        default:
            subject = "\(id): \(e["event"]?.stringValue ?? "event")"
        }
        if let c = s("comment") { lines.append("Comment: \(c)") }
        if let link { lines += ["", link] }
        return ("[Waiver] " + subject, lines.joined(separator: "\n") + "\n")
    }

    /// The message: headers (no line breaks a value could smuggle in; a non-ASCII subject encoded
    /// per RFC 2047) and a base64 UTF-8 body.
    public static func compose(from: String, to: String, subject: String, text: String, date: Date, id: String) -> String {
        func clean(_ v: String) -> String { v.filter { $0 != "\r" && $0 != "\n" } }
        let subj = clean(subject)
        let encodedSubject = subj.allSatisfy(\.isASCII) ? subj : "=?utf-8?B?\(Data(subj.utf8).base64EncodedString())?="
        let body = Data(text.replacingOccurrences(of: "\n", with: "\r\n").utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        let df = DateFormatter()
        df.locale = Locale(identifier: "en_US_POSIX")
        df.timeZone = TimeZone(identifier: "UTC")
        df.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return [
            "From: \(clean(from))", "To: \(clean(to))", "Subject: \(encodedSubject)", "Date: \(df.string(from: date))",
            "Message-ID: <\(clean(id))@waiver>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64", "Auto-Submitted: auto-generated", "", body, "",
        ].joined(separator: "\r\n")
    }
}
