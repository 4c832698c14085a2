import Foundation
import WaiverCore

/// The body a webhook receives for an event: Waiver's JSON, or a Slack message.
public enum WebhookBody {
    public static func render(_ e: AuditEvent, format: String) -> String {
        let payload = (try? parsePayload(e.payload)) ?? .string(e.payload)
        if format == "slack" {
            // Block Kit: the event as a section, its policy and expiry as context; `text` is the
            // notification's fallback. Everything a person wrote is escaped and clipped to Slack's limits.
            let esc = slackEscaped
            var text = "*\(esc(e.subject.clipped(200)))* \(esc(e.action.replacingOccurrences(of: "exception.", with: "").clipped(100))) by \(esc(e.actor.clipped(200)))"
            if let c = payload["comment"]?.stringValue { text += ": \(esc(c.clipped(2_000)))" }
            var context: [String] = []
            if let p = payload["policy"]?.stringValue { context.append("policy \(esc(p.clipped(200)))") }
            if let x = payload["expires"]?.stringValue { context.append("expires \(esc(x.clipped(40)))") }
            context.append("\(iso(e.time)) · audit event \(e.seq)")
            let fallback = text + (context.count > 1 ? " — " + context.dropLast().joined(separator: ", ") : "")
            return JSONWriter.write([
                "text": .string(fallback),
                "blocks": [
                    ["type": "section", "text": ["type": "mrkdwn", "text": .string(text)]],
                    ["type": "context", "elements": [["type": "mrkdwn", "text": .string(context.joined(separator: " · "))]]],
                ],
            ], pretty: false)
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
            let url = "\(base)/exceptions/\(id)"
            o["text"] = .string(text + " <\(url)|\(id)>")
            // A button to the exception's page.
            if case .array(var blocks)? = o["blocks"] {
                blocks.append(["type": "actions", "elements": [[
                    "type": "button", "text": ["type": "plain_text", "text": .string("Open \(id)")], "url": .string(url),
                ]]])
                o["blocks"] = .array(blocks)
            }
        } else {
            guard let subject = o["subject"]?.stringValue, ExceptionRecord.parseId(subject) != nil, subject.hasPrefix("EX-") else { return body }
            o.append("link", .string("\(base)/exceptions/\(subject)"))
        }
        return JSONWriter.write(.object(o), pretty: false)
    }
}
