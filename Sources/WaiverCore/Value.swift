/// A JSON-like value as read from a Terraform plan, a SARIF report or a policy file.
///
/// `unknown` marks a value Terraform only knows after apply (`after_unknown`). Objects keep their
/// keys in input order, which keeps every rendering stable and cheap to build.
public enum Value: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([Value])
    case object(Object)
    case unknown

    /// An ordered JSON object. Lookups are linear from the end (the last duplicate key wins, as in
    /// most JSON readers); resource objects hold tens of keys, where this beats hashing.
    public struct Object: Sendable {
        public var keys: [String]
        public var values: [Value]

        public init() { keys = []; values = [] }
        public init(keys: [String], values: [Value]) {
            self.keys = keys
            self.values = values
        }
        public init(_ pairs: [(String, Value)]) {
            keys = pairs.map(\.0)
            values = pairs.map(\.1)
        }

        public var count: Int { keys.count }
        public var isEmpty: Bool { keys.isEmpty }

        public subscript(key: String) -> Value? {
            get {
                var i = keys.count - 1
                while i >= 0 {
                    if keys[i] == key { return values[i] }
                    i -= 1
                }
                return nil
            }
            set {
                if let i = keys.lastIndex(of: key) {
                    if let newValue { values[i] = newValue } else { keys.remove(at: i); values.remove(at: i) }
                } else if let newValue {
                    keys.append(key)
                    values.append(newValue)
                }
            }
        }

        public mutating func append(_ key: String, _ value: Value) {
            keys.append(key)
            values.append(value)
        }

        public var pairs: Zip2Sequence<[String], [Value]> { zip(keys, values) }
    }

    public subscript(key: String) -> Value? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }
    /// The number as an Int when it is a whole number within ±2^53 (what JSON numbers carry exactly);
    /// nil for anything else (`1.5`, `1e300`, `-1e999`), so input can never trap a conversion.
    public var intValue: Int? {
        guard case .number(let n) = self, n.isFinite, n == n.rounded(), abs(n) <= 9_007_199_254_740_992 else { return nil }
        return Int(n)
    }
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    public var arrayValue: [Value]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var objectValue: Object? {
        if case .object(let o) = self { return o }
        return nil
    }
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short name of the JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        case .unknown: return "unknown"
        }
    }
}

extension Value: Equatable {
    /// Structural equality; numbers compare as numbers (`22 == 22.0`).
    public static func == (lhs: Value, rhs: Value) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null), (.unknown, .unknown): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for (k, v) in a.pairs {
                guard let w = b[k], w == v else { return false }
            }
            return true
        default: return false
        }
    }
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) { self = .object(Object(elements)) }
    public init(nilLiteral: ()) { self = .null }
}

// MARK: - Rendering

extension Value {
    /// Compact JSON text of the value, with `sensitive` parts (a Terraform `after_sensitive` mask)
    /// replaced by `(sensitive)` and unknown parts by `(known after apply)`; cut at `limit` characters.
    public func rendered(mask: Value? = nil, limit: Int = 120) -> String {
        var out = ""
        Value.render(self, mask: mask, into: &out, limit: limit)
        if out.count > limit { out = String(out.prefix(limit - 1)) + "…" }
        return out
    }

    static func render(_ v: Value, mask: Value?, into out: inout String, limit: Int) {
        if out.utf8.count > limit * 4 { return }
        if case .bool(true)? = mask { out += "(sensitive)"; return }
        switch v {
        case .null: out += "null"
        case .unknown: out += "(known after apply)"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += formatNumber(n)
        case .string(let s): out += quoteJSON(s)
        case .array(let a):
            out += "["
            for (i, e) in a.enumerated() {
                if i > 0 { out += ", " }
                render(e, mask: mask?.arrayValue.flatMap { i < $0.count ? $0[i] : nil }, into: &out, limit: limit)
                if out.utf8.count > limit * 4 { break }
            }
            out += "]"
        case .object(let o):
            out += "{"
            var first = true
            for (k, e) in o.pairs {
                if !first { out += ", " }
                first = false
                out += quoteJSON(k) + ": "
                render(e, mask: mask?[k], into: &out, limit: limit)
                if out.utf8.count > limit * 4 { break }
            }
            out += "}"
        }
    }

    /// Formats a number as JSON does: integers without a fraction.
    public static func formatNumber(_ n: Double) -> String {
        if n.isFinite, n == n.rounded(), abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }

    /// A JSON string literal for `s`.
    public static func quoteJSON(_ s: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count + 2)
        appendQuotedJSON(s, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `s` as a JSON string literal (UTF-8) to a byte buffer: the writer's hot path.
    public static func appendQuotedJSON(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { appendQuotedJSON(utf8: UnsafeRawBufferPointer($0), to: &out) }
    }

    /// Appends UTF-8 text as a JSON string literal: `"` `\` and control characters escaped.
    public static func appendQuotedJSON(utf8: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let room = quotedJSONCapacity(utf8.count)
        let old = out.count
        out.append(contentsOf: repeatElement(0, count: room))
        let written = out.withUnsafeMutableBufferPointer { b in b.baseAddress.map { writeQuotedJSON(utf8: utf8, to: $0 + old) } ?? 0 }
        out.removeLast(room - written)
    }

    /// The most bytes `writeQuotedJSON` writes for `count` bytes of text (each may become `\u00XX`).
    public static func quotedJSONCapacity(_ count: Int) -> Int { 6 * count + 2 }

    /// Writes UTF-8 text as a JSON string literal at `p`, which has room for `quotedJSONCapacity`
    /// bytes; returns how many it wrote. The one place JSON strings are quoted: every report and
    /// every audit hash goes through it, so runs without escapes are copied eight bytes at a time.
    public static func writeQuotedJSON(utf8: UnsafeRawBufferPointer, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var o = 0
        p[o] = 0x22; o &+= 1
        guard let src = utf8.baseAddress else { p[o] = 0x22; return o &+ 1 }
        let n = utf8.count
        var i = 0
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while i < n {
            if i &+ 8 <= n {
                let w = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let q = w ^ (ones &* 0x22), b = w ^ (ones &* 0x5C)
                // Nonzero exactly when a byte is below 0x20, a quote or a backslash (bytes of 0x80
                // and above need no escape and are not flagged).
                let special = (((q &- ones) & ~q) | ((b &- ones) & ~b) | ((w &- ones &* 0x20) & ~w)) & highs
                // The eight bytes are copied; those before the first flagged one are kept (the lowest
                // flag is exact: a borrow only ever flags bytes above a real one). There is room: at
                // least 6 bytes are left for each of the 8 or more still to read.
                UnsafeMutableRawPointer(p + o).storeBytes(of: w, as: UInt64.self)
                let plain = special == 0 ? 8 : special.trailingZeroBitCount &>> 3
                i &+= plain; o &+= plain
                if plain == 8 { continue }
            }
            let c = src.load(fromByteOffset: i, as: UInt8.self)
            i &+= 1
            guard c < 0x20 || c == 0x22 || c == 0x5C else { p[o] = c; o &+= 1; continue }
            p[o] = 0x5C
            switch c {
            case 0x22: p[o &+ 1] = 0x22
            case 0x5C: p[o &+ 1] = 0x5C
            case 0x0A: p[o &+ 1] = 0x6E
            case 0x0D: p[o &+ 1] = 0x72
            case 0x09: p[o &+ 1] = 0x74
            default:
                p[o &+ 1] = 0x75; p[o &+ 2] = 0x30; p[o &+ 3] = 0x30
                p[o &+ 4] = hexDigit(c >> 4); p[o &+ 5] = hexDigit(c & 0xF)
                o &+= 4
            }
            o &+= 2
        }
        p[o] = 0x22
        return o &+ 1
    }

    @inline(__always) private static func hexDigit(_ d: UInt8) -> UInt8 { d < 10 ? 0x30 &+ d : 0x57 &+ d }
}
