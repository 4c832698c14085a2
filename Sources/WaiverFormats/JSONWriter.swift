import WaiverCore

/// Writes `Value`s as JSON, keeping object key order (so output is stable and reads top-down).
public enum JSONWriter {
    public static func write(_ value: Value, pretty: Bool = true) -> String {
        var out = ""
        write(value, pretty: pretty, indent: 0, into: &out)
        if pretty { out += "\n" }
        return out
    }

    static func write(_ value: Value, pretty: Bool, indent: Int, into out: inout String) {
        switch value {
        case .null, .unknown: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.isFinite ? Value.formatNumber(n) : "null"
        case .string(let s): out += Value.quoteJSON(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                newline(pretty, indent + 1, &out)
                write(item, pretty: pretty, indent: indent + 1, into: &out)
            }
            newline(pretty, indent, &out)
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            var first = true
            for (k, v) in o.pairs {
                if !first { out += "," }
                first = false
                newline(pretty, indent + 1, &out)
                out += Value.quoteJSON(k) + (pretty ? ": " : ":")
                write(v, pretty: pretty, indent: indent + 1, into: &out)
            }
            newline(pretty, indent, &out)
            out += "}"
        }
    }

    private static func newline(_ pretty: Bool, _ indent: Int, _ out: inout String) {
        guard pretty else { return }
        out += "\n"
        out += String(repeating: "  ", count: indent)
    }
}
