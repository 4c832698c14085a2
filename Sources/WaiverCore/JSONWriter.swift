/// Writes `Value`s as JSON, keeping object key order (so output is stable and reads top-down).
public enum JSONWriter {
    public static func write(_ value: Value, pretty: Bool = true, sortedKeys: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(sortedKeys ? sorted(value) : value, pretty: pretty, indent: 0, into: &out)
        if pretty { out.append(0x0A) }
        return String(decoding: out, as: UTF8.self)
    }

    static func write(_ value: Value, pretty: Bool, indent: Int, into out: inout [UInt8]) {
        switch value {
        case .null, .unknown: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: (n.isFinite ? Value.formatNumber(n) : "null").utf8)
        case .string(let s): Value.appendQuotedJSON(s, to: &out)
        case .array(let items):
            if items.isEmpty { out.append(contentsOf: "[]".utf8); return }
            out.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(pretty, indent + 1, &out)
                write(item, pretty: pretty, indent: indent + 1, into: &out)
            }
            newline(pretty, indent, &out)
            out.append(0x5D)
        case .object(let o):
            if o.isEmpty { out.append(contentsOf: "{}".utf8); return }
            out.append(0x7B)
            var first = true
            for (k, v) in o.pairs {
                if !first { out.append(0x2C) }
                first = false
                newline(pretty, indent + 1, &out)
                Value.appendQuotedJSON(k, to: &out)
                out.append(0x3A)
                if pretty { out.append(0x20) }
                write(v, pretty: pretty, indent: indent + 1, into: &out)
            }
            newline(pretty, indent, &out)
            out.append(0x7D)
        }
    }

    /// An object member for `writeObject`: a value, or an array whose items are made one at a time.
    public enum Member {
        case value(Value)
        case items(Int, (Int) -> Value)
    }

    /// Writes an object member by member, as `write` would write the same object built whole; an
    /// `items` member's elements are made, written and dropped one at a time, so a report of a
    /// million results never exists as one tree.
    public static func writeObject(_ members: [(String, Member)], pretty: Bool = true) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        if members.isEmpty { out.append(contentsOf: "{}".utf8) } else {
            out.append(0x7B)
            for (i, (key, member)) in members.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(pretty, 1, &out)
                Value.appendQuotedJSON(key, to: &out)
                out.append(0x3A)
                if pretty { out.append(0x20) }
                switch member {
                case .value(let v): write(v, pretty: pretty, indent: 1, into: &out)
                case .items(let count, let item):
                    if count == 0 { out.append(contentsOf: "[]".utf8); continue }
                    out.append(0x5B)
                    for k in 0..<count {
                        if k > 0 { out.append(0x2C) }
                        newline(pretty, 2, &out)
                        write(item(k), pretty: pretty, indent: 2, into: &out)
                    }
                    newline(pretty, 1, &out)
                    out.append(0x5D)
                }
            }
            newline(pretty, 0, &out)
            out.append(0x7D)
        }
        if pretty { out.append(0x0A) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Canonical JSON: compact, object keys sorted by their UTF-8 bytes. What audit hashes cover.
    public static func canonical(_ value: Value) -> String { write(value, pretty: false, sortedKeys: true) }

    static func sorted(_ value: Value) -> Value {
        switch value {
        case .array(let a): return .array(a.map(sorted))
        case .object(let o):
            let pairs = zip(o.keys, o.values).sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
            return .object(Value.Object(keys: pairs.map(\.0), values: pairs.map { sorted($0.1) }))
        default: return value
        }
    }

    private static func newline(_ pretty: Bool, _ indent: Int, _ out: inout [UInt8]) {
        guard pretty else { return }
        out.append(0x0A)
        out.append(contentsOf: repeatElement(0x20, count: indent * 2))
    }
}
