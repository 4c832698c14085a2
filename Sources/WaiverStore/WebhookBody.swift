import Foundation
import WaiverCore

/// The body a webhook receives for an event: Waiver's JSON, or a Slack message.
public enum WebhookBody {
    public static func render(_ e: AuditEvent, format: String) -> String {
        let payload = (try? parsePayload(e.payload)) ?? .string(e.payload)
        if format == "slack" {
            var text = "*\(e.subject)* \(e.action.replacingOccurrences(of: "exception.", with: "")) by \(e.actor)"
            if let c = payload["comment"]?.stringValue { text += ": \(c)" }
            if let x = payload["expires"]?.stringValue { text += " (expires \(x))" }
            if let p = payload["policy"]?.stringValue { text += " — \(p)" }
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
}
