import Foundation
import WaiverCore

/// The body a webhook receives for an event: Waiver's JSON, or a Slack message.
public enum WebhookBody {
    public static func render(_ e: AuditEvent, format: String) -> String {
        let payload = (try? parsePayload(e.payload)) ?? .string(e.payload)
        if format == "slack" {
            let esc = slackEscaped
            var text = "*\(esc(e.subject))* \(esc(e.action.replacingOccurrences(of: "exception.", with: ""))) by \(esc(e.actor))"
            if let c = payload["comment"]?.stringValue { text += ": \(esc(c))" }
            if let x = payload["expires"]?.stringValue { text += " (expires \(esc(x)))" }
            if let p = payload["policy"]?.stringValue { text += " — \(esc(p))" }
            return JSONWriter.write(["text": .string(text)], pretty: false)
        }
        return JSONWriter.write([
            "event": .string(e.action), "subject": .string(e.subject), "actor": .string(e.actor), "time": .string(iso(e.time)),
            "seq": .number(Double(e.seq)), "hash": .string(e.hash), "details": payload,
        ], pretty: false)
    }

    /// The body of an `audit.checkpoint` delivery: the signed checkpoint itself, so receivers keep it.
    public static func render(_ c: Checkpoint, format: String) -> String {
        if format == "slack" {
            return JSONWriter.write(["text": .string("audit log checkpoint: event \(c.seq) signed by key \(c.keyId) (\(c.hash.prefix(12))…)")], pretty: false)
        }
        return JSONWriter.write(["event": "audit.checkpoint", "time": .string(iso(Date(timeIntervalSince1970: Double(c.time)))), "checkpoint": c.value], pretty: false)
    }

    static func parsePayload(_ text: String) throws -> Value { try JSONReader.parse(Data(text.utf8)) }

    /// Text as Slack must receive it: `&`, `<` and `>` as entities, so nothing a person wrote becomes
    /// a link, a mention or `<!channel>`.
    public static func slackEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// The body as sent: with the page of the exception it names (`link` in JSON, a link in Slack's
    /// text) when the server has a public URL. Bodies are queued by the store, which has no URL.
    public static func linked(_ body: String, format: String, base: String?) -> String {
        guard let base, case .object(var o)? = try? parsePayload(body) else { return body }
        if format == "slack" {
            guard let text = o["text"]?.stringValue, let id = text.split(separator: "*").first(where: { ExceptionRecord.parseId(String($0)) != nil }) else { return body }
            o["text"] = .string(text + " <\(base)/exceptions/\(id)|\(id)>")
        } else {
            guard let subject = o["subject"]?.stringValue, ExceptionRecord.parseId(subject) != nil, subject.hasPrefix("EX-") else { return body }
            o.append("link", .string("\(base)/exceptions/\(subject)"))
        }
        return JSONWriter.write(.object(o), pretty: false)
    }
}
