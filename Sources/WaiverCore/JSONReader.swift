import Foundation

/// A JSON syntax error with the line and column where reading stopped.
public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var line: Int
    public var column: Int
    public var description: String { "line \(line), column \(column): \(message)" }
}

/// A strict, bounded JSON reader over UTF-8 bytes that builds `Value`s.
///
/// Written for Terraform plans, which can be hundreds of megabytes: it can skip whole subtrees
/// without building them (`planned_values`, `prior_state`, `before`...), bounds nesting depth so a
/// hostile file cannot exhaust the stack, and reports errors with line and column.
public struct JSONReader: ~Copyable {
    private let base: UnsafePointer<UInt8>
    private let count: Int
    private var pos: Int = 0
    public let maxDepth: Int
    /// Scratch stacks for the members of the objects and arrays being built: each container is
    /// copied out once at its exact size, instead of growing its own arrays element by element.
    /// Each starts with a sentinel, so a container is never the whole stack: `Array(stack[base...])`
    /// then always copies, and the stack keeps its unique buffer and capacity.
    private var keyStack: [String] = [""]
    private var valueStack: [Value] = [.null]

    /// Reads from a buffer that must outlive the reader.
    public init(_ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int = 512) {
        // An empty buffer has a nil base address; point at a static byte instead.
        self.base = buffer.baseAddress ?? JSONReader.emptyByte
        self.count = buffer.count
        self.maxDepth = maxDepth
    }

    nonisolated(unsafe) private static let emptyByte: UnsafePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        p.initialize(to: 0)
        return UnsafePointer(p)
    }()

    /// Parses a whole document into a value.
    public static func parse(_ data: Data, maxDepth: Int = 512) throws(JSONSyntaxError) -> Value {
        let result: Result<Value, JSONSyntaxError> = data.withUnsafeBytes { raw in
            var reader = JSONReader(raw.bindMemory(to: UInt8.self), maxDepth: maxDepth)
            do throws(JSONSyntaxError) {
                let v = try reader.readValue()
                try reader.expectEnd()
                return .success(v)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: - Position and errors

    public func error(_ message: String, at offset: Int? = nil) -> JSONSyntaxError {
        let end = min(offset ?? pos, count)
        var line = 1, lineStart = 0
        var i = 0
        while i < end {
            if base[i] == 0x0A { line += 1; lineStart = i + 1 }
            i += 1
        }
        return JSONSyntaxError(message: message, line: line, column: end - lineStart + 1)
    }

    @inline(__always) private mutating func skipWhitespace() {
        while pos < count {
            let c = base[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { break }
        }
    }

    /// After the top-level value: only whitespace may follow.
    public mutating func expectEnd() throws(JSONSyntaxError) {
        skipWhitespace()
        if pos < count { throw error("unexpected '\(describe(base[pos]))' after the end of the JSON document") }
    }

    private func describe(_ c: UInt8) -> String {
        if c >= 0x20 && c < 0x7F { return String(UnicodeScalar(c)) }
        return String(format: "\\x%02X", c)
    }

    @inline(__always)
    private mutating func peek() throws(JSONSyntaxError) -> UInt8 {
        // Terraform writes compact JSON: most of the time the next byte is the token.
        if pos < count, base[pos] > 0x20 { return base[pos] }
        skipWhitespace()
        guard pos < count else {
            throw error(count == 0 ? "the file is empty" : "unexpected end of input (the file looks truncated)")
        }
        return base[pos]
    }

    // MARK: - Structured reading

    /// The type of the next value, without consuming it.
    public mutating func nextKind() throws(JSONSyntaxError) -> String {
        switch try peek() {
        case UInt8(ascii: "{"): return "object"
        case UInt8(ascii: "["): return "array"
        case UInt8(ascii: "\""): return "string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return "boolean"
        case UInt8(ascii: "n"): return "null"
        default: return "number"
        }
    }

    /// Reads an object key by key; `body` must consume each member's value (read or skip it).
    public mutating func readObject(
        depth: Int = 0, _ body: (inout JSONReader, String) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        try readMembers(depth: depth) { (r: inout JSONReader, key: RawKey) throws(JSONSyntaxError) in
            try body(&r, try r.text(of: key))
        }
    }

    /// An object key as it stands in the input: where its raw bytes are, and whether they need decoding.
    struct RawKey {
        var start: Int, end: Int, escaped: Bool, high: Bool
    }

    /// The one loop over an object's members: `body` gets each key undecoded and must consume its value.
    private mutating func readMembers(
        depth: Int, _ body: (inout JSONReader, RawKey) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        guard try peek() == UInt8(ascii: "{") else { throw error("expected an object") }
        pos += 1
        if try peek() == UInt8(ascii: "}") { pos += 1; return }
        while true {
            guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let (start, end, escaped, high) = try scanStringBounds()
            let key = RawKey(start: start, end: end, escaped: escaped, high: high)
            guard try peek() == UInt8(ascii: ":") else { throw error("expected ':' after key \"\((try? text(of: key)) ?? "")\"") }
            pos += 1
            try body(&self, key)
            let c = try peek()
            pos += 1
            if c == UInt8(ascii: "}") { return }
            if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or '}' in object") }
        }
    }

    private func bytes(of key: RawKey) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: base + key.start, count: key.end - key.start)
    }

    /// A key decoded (and, when it holds escapes or non-ASCII bytes, validated).
    private func text(of key: RawKey) throws(JSONSyntaxError) -> String {
        try decode(bytes(of: key), at: key.start, escaped: key.escaped, high: key.high)
    }

    /// Reads an array element by element; `body` must consume each element.
    public mutating func readArray(
        depth: Int = 0, _ body: (inout JSONReader, Int) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        guard try peek() == UInt8(ascii: "[") else { throw error("expected an array") }
        pos += 1
        if try peek() == UInt8(ascii: "]") { pos += 1; return }
        var index = 0
        while true {
            try body(&self, index)
            index += 1
            let c = try peek()
            pos += 1
            if c == UInt8(ascii: "]") { return }
            if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or ']' in array") }
        }
    }

    /// Reads the next value whole.
    public mutating func readValue(depth: Int = 0) throws(JSONSyntaxError) -> Value {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        let c = try peek()
        switch c {
        case UInt8(ascii: "{"):
            pos += 1
            if try peek() == UInt8(ascii: "}") { pos += 1; return .object(Value.Object()) }
            let base = valueStack.count, keyBase = keyStack.count
            while true {
                guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let key = try readString()
                guard try peek() == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\"") }
                pos += 1
                let member = try readValue(depth: depth + 1)
                keyStack.append(key)
                valueStack.append(member)
                let c = try peek()
                pos += 1
                if c == UInt8(ascii: "}") { break }
                if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or '}' in object") }
            }
            let object = Value.Object(keys: Array(keyStack[keyBase...]), values: Array(valueStack[base...]))
            keyStack.removeSubrange(keyBase...)
            valueStack.removeSubrange(base...)
            return .object(object)
        case UInt8(ascii: "["):
            pos += 1
            if try peek() == UInt8(ascii: "]") { pos += 1; return .array([]) }
            let base = valueStack.count
            while true {
                valueStack.append(try readValue(depth: depth + 1))
                let c = try peek()
                pos += 1
                if c == UInt8(ascii: "]") { break }
                if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or ']' in array") }
            }
            let items = Array(valueStack[base...])
            valueStack.removeSubrange(base...)
            return .array(items)
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "t"):
            try literal("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null"); return .null
        default:
            return .number(try readNumber())
        }
    }

    /// Reads the next value, and when it is an object builds only the members `keys` names; the others
    /// are syntax-checked and skipped, their keys compared as bytes and never built. `nil` reads it whole.
    public mutating func readValue(depth: Int = 0, keeping keys: KeyFilter?) throws(JSONSyntaxError) -> Value {
        guard let keys, try peek() == UInt8(ascii: "{") else { return try readValue(depth: depth) }
        var object = Value.Object()
        try readMembers(depth: depth) { (r: inout JSONReader, key: RawKey) throws(JSONSyntaxError) in
            var name: String?
            if key.escaped || key.high {
                // Rare: decode (and validate) the key, then compare it as text.
                let text = try r.text(of: key)
                if keys.names.contains(text) { name = text }
            } else if keys.contains(r.bytes(of: key)) {
                name = String(decoding: r.bytes(of: key), as: UTF8.self)
            }
            if let name { object.append(name, try r.readValue(depth: depth + 1)) } else { try r.skipValue(depth: depth + 1) }
        }
        return .object(object)
    }

    /// Skips the next value and returns the byte range it spans (to hand a sub-document to another reader).
    public mutating func skipValueRange(depth: Int = 0) throws(JSONSyntaxError) -> Range<Int> {
        _ = try peek()
        let start = pos
        try skipValue(depth: depth)
        return start..<pos
    }

    /// Skips the next value, checking its syntax but building nothing (keys included).
    public mutating func skipValue(depth: Int = 0) throws(JSONSyntaxError) {
        guard depth < maxDepth else { throw error("nesting deeper than \(maxDepth) levels") }
        let c = try peek()
        switch c {
        case UInt8(ascii: "{"):
            pos += 1
            if try peek() == UInt8(ascii: "}") { pos += 1; return }
            while true {
                guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
                try skipString()
                guard try peek() == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
                pos += 1
                try skipValue(depth: depth + 1)
                let c = try peek()
                pos += 1
                if c == UInt8(ascii: "}") { return }
                if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or '}' in object") }
            }
        case UInt8(ascii: "["):
            pos += 1
            if try peek() == UInt8(ascii: "]") { pos += 1; return }
            while true {
                try skipValue(depth: depth + 1)
                let c = try peek()
                pos += 1
                if c == UInt8(ascii: "]") { return }
                if c != UInt8(ascii: ",") { pos -= 1; throw error("expected ',' or ']' in array") }
            }
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try readNumber()
        }
    }

    // MARK: - Scalars

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        let w = word.utf8Start
        guard pos + n <= count else { throw error("unexpected end of input (the file looks truncated)") }
        for i in 0..<n where base[pos + i] != w[i] {
            throw error("invalid literal (expected '\(word)')")
        }
        pos += n
    }

    public mutating func readString() throws(JSONSyntaxError) -> String {
        guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string") }
        let (start, end, escaped, high) = try scanStringBounds()
        return try decode(UnsafeBufferPointer(start: base + start, count: end - start), at: start, escaped: escaped, high: high)
    }

    /// Moves past the string at `pos` (which is its opening quote), checking it: the bounds of its
    /// raw content, and whether that content holds escapes or non-ASCII bytes.
    @inline(__always)
    private mutating func scanStringBounds() throws(JSONSyntaxError) -> (start: Int, end: Int, escaped: Bool, high: Bool) {
        let open = pos
        let p = base, end = count
        var i = pos + 1
        var escaped = false, high = false
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while true {
            // Eight bytes at a time while none is a quote, a backslash, a control character or non-ASCII.
            while i &+ 8 <= end {
                let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let q = w ^ (ones &* 0x22), b = w ^ (ones &* 0x5C)
                let special = (((q &- ones) & ~q) | ((b &- ones) & ~b) | ((w &- ones &* 0x20) & ~w) | w) & highs
                if special != 0 { break }
                i &+= 8
            }
            guard i < end else { pos = i; throw error("unterminated string", at: open) }
            let c = p[i]
            if c == UInt8(ascii: "\"") { break }
            if c == UInt8(ascii: "\\") {
                escaped = true
                i &+= 2
                continue
            }
            if c < 0x20 { pos = i; throw error("control character in string (escape it as \\u00XX)") }
            if c >= 0x80 { high = true }
            i &+= 1
        }
        pos = i + 1
        return (open + 1, i, escaped, high)
    }

    /// Moves past a string, checking it without building it: escapes must be well formed and the
    /// bytes valid UTF-8. Escapes are ASCII and each decodes to valid text (a lone surrogate to U+FFFD),
    /// so the raw bytes are valid exactly when the decoded string would be.
    private mutating func skipString() throws(JSONSyntaxError) {
        let (start, end, escaped, high) = try scanStringBounds()
        let raw = UnsafeBufferPointer(start: base + start, count: end - start)
        if escaped { try checkEscapes(raw, at: start) }
        if high, String(validating: raw, as: UTF8.self) == nil { throw error("invalid UTF-8 in string", at: start) }
    }

    /// The text of a string's raw content.
    private func decode(_ raw: UnsafeBufferPointer<UInt8>, at start: Int, escaped: Bool, high: Bool) throws(JSONSyntaxError) -> String {
        if escaped { return try unescape(raw, at: start) }
        if high {
            guard let s = String(validating: raw, as: UTF8.self) else { throw error("invalid UTF-8 in string", at: start) }
            return s
        }
        return String(decoding: raw, as: UTF8.self)
    }

    private func checkEscapes(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int) throws(JSONSyntaxError) {
        var i = 0
        while i < raw.count {
            guard raw[i] == UInt8(ascii: "\\") else { i += 1; continue }
            guard i + 1 < raw.count else { throw error("bad escape in string", at: offset + i) }
            switch raw[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                i += 2
            case UInt8(ascii: "u"):
                guard i + 6 <= raw.count, (i + 2..<i + 6).allSatisfy({ raw[$0].isHexDigitASCII }) else {
                    throw error("bad \\u escape in string", at: offset + i)
                }
                i += 6
            default:
                throw error("bad escape '\\\(describe(raw[i + 1]))' in string", at: offset + i)
            }
        }
    }

    private func unescape(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int) throws(JSONSyntaxError) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        var i = 0
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= raw.count else { return nil }
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = raw[at + k]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: return nil
                }
                v = v << 4 | d
            }
            return v
        }
        func append(_ scalar: UInt32) {
            let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
            bytes.append(contentsOf: Array(String(s).utf8))
        }
        while i < raw.count {
            let c = raw[i]
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            guard i + 1 < raw.count else { throw error("bad escape in string", at: offset + i) }
            let e = raw[i + 1]
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                guard let u = hex4(i + 2) else { throw error("bad \\u escape in string", at: offset + i) }
                i += 6
                if (0xD800...0xDBFF).contains(u), i + 1 < raw.count, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u"),
                   let low = hex4(i + 2), (0xDC00...0xDFFF).contains(low) {
                    append(0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00))
                    i += 6
                } else {
                    append(u)  // a lone surrogate becomes U+FFFD
                }
                continue
            default:
                throw error("bad escape '\\\(describe(e))' in string", at: offset + i)
            }
            i += 2
        }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw error("invalid UTF-8 in string", at: offset) }
        return s
    }

    private mutating func readNumber() throws(JSONSyntaxError) -> Double {
        let start = pos
        var i = pos
        var isInteger = true
        var intValue: Int64 = 0
        var negative = false
        if i < count, base[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        let digitsStart = i
        while i < count, base[i] >= 0x30, base[i] <= 0x39 {
            if i - digitsStart < 18 { intValue = intValue * 10 + Int64(base[i] - 0x30) } else { isInteger = false }
            i += 1
        }
        if i == digitsStart {
            if start < count, base[start] >= 0x20, base[start] < 0x7F {
                throw error("unexpected '\(describe(base[start]))' (expected a value)")
            }
            throw error(start < count ? "unexpected byte \(describe(base[start])) (expected a value)" : "unexpected end of input")
        }
        if base[digitsStart] == 0x30, i - digitsStart > 1 { throw error("a number may not start with 0") }
        if i < count, base[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let f = i
            while i < count, base[i] >= 0x30, base[i] <= 0x39 { i += 1 }
            if i == f { throw error("expected digits after '.'", at: i) }
        }
        if i < count, base[i] == UInt8(ascii: "e") || base[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < count, base[i] == UInt8(ascii: "+") || base[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < count, base[i] >= 0x30, base[i] <= 0x39 { i += 1 }
            if i == e { throw error("expected digits in exponent", at: i) }
        }
        pos = i
        if isInteger { return Double(negative ? -intValue : intValue) }
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: i - start), as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number '\(text)'", at: start) }
        return d
    }
}

/// Object keys to build when reading selectively (`JSONReader.readValue(depth:keeping:)`).
public struct KeyFilter: Sendable {
    public let names: Set<String>
    /// The keys' UTF-8 bytes, compared with raw key bytes before any string is made.
    private let bytes: [[UInt8]]

    public init(_ names: Set<String>) {
        self.names = names
        self.bytes = names.map { Array($0.utf8) }
    }

    @inline(__always)
    func contains(_ raw: UnsafeBufferPointer<UInt8>) -> Bool {
        for k in bytes where k.count == raw.count {
            guard let rawBase = raw.baseAddress, !k.isEmpty else { return true }
            if k.withUnsafeBufferPointer({ $0.baseAddress.map { memcmp($0, rawBase, raw.count) == 0 } ?? false }) { return true }
        }
        return false
    }
}

extension UInt8 {
    public var isHexDigitASCII: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
