/// A path into a resource's attributes: `tags.Name`, `ingress[0].from_port`, `tags["kubernetes.io/role"]`,
/// or one of the resource fields `$address`, `$type`, `$name`, `$module`, `$provider`, `$action`.
public struct Path: Sendable, Equatable, CustomStringConvertible {
    public enum Component: Sendable, Equatable {
        case key(String)
        case index(Int)
    }

    /// Fields of the resource itself, usable as paths with a `$` prefix.
    public enum ResourceField: String, Sendable, CaseIterable {
        case address, type, name, module, provider, action
    }

    public let components: [Component]
    public let field: ResourceField?
    public let description: String

    public init(components: [Component]) {
        self.components = components
        self.field = nil
        self.description = Path.text(of: components)
    }

    init(field: ResourceField) {
        self.components = []
        self.field = field
        self.description = "$" + field.rawValue
    }

    public enum ParseError: Error, Equatable {
        case empty
        case badSyntax(String)
        case unknownField(String, suggestion: String?)
    }

    /// Parses the path syntax of the policy language.
    public static func parse(_ text: String) -> Result<Path, ParseError> {
        if text.isEmpty { return .failure(.empty) }
        // `@` is the value in scope itself: inside some/every, the element (e.g. a port string).
        if text == "@" { return .success(Path(components: [])) }
        if text.hasPrefix("$") {
            let name = String(text.dropFirst())
            if let f = ResourceField(rawValue: name) { return .success(Path(field: f)) }
            let names = ResourceField.allCases.map { "$" + $0.rawValue }
            return .failure(.unknownField(text, suggestion: closestMatch(to: text, in: names)))
        }
        var components: [Component] = []
        let chars = Array(text.unicodeScalars)
        var i = 0
        var key = ""
        var expectKey = true  // a key must follow the start or a dot
        func flushKey() -> Bool {
            if key.isEmpty { return !expectKey }
            components.append(.key(key))
            key = ""
            expectKey = false
            return true
        }
        while i < chars.count {
            let c = chars[i]
            if c == "." {
                if !flushKey() { return .failure(.badSyntax("empty key before '.' at position \(i + 1)")) }
                expectKey = true
                i += 1
            } else if c == "[" {
                if !key.isEmpty { _ = flushKey() } else if expectKey && !components.isEmpty {
                    return .failure(.badSyntax("'[' after '.' at position \(i + 1)"))
                }
                i += 1
                if i < chars.count, chars[i] == "\"" {
                    i += 1
                    var quoted = ""
                    while i < chars.count, chars[i] != "\"" { quoted.unicodeScalars.append(chars[i]); i += 1 }
                    guard i + 1 < chars.count, chars[i + 1] == "]" else {
                        return .failure(.badSyntax("unterminated [\"...\"] in '\(text)'"))
                    }
                    components.append(.key(quoted))
                    i += 2
                } else {
                    var digits = ""
                    while i < chars.count, chars[i] != "]" { digits.unicodeScalars.append(chars[i]); i += 1 }
                    guard i < chars.count, let n = Int(digits), n >= 0 else {
                        return .failure(.badSyntax("'[\(digits)' is not a list index (use [0], [1], ...)"))
                    }
                    components.append(.index(n))
                    i += 1
                }
                expectKey = false
                if i < chars.count, chars[i] != ".", chars[i] != "[" {
                    return .failure(.badSyntax("expected '.' or '[' after ']' at position \(i + 1)"))
                }
                if i < chars.count, chars[i] == "." {
                    expectKey = true
                    i += 1
                    if i >= chars.count { return .failure(.badSyntax("path ends with '.'")) }
                }
            } else {
                key.unicodeScalars.append(c)
                i += 1
            }
        }
        if !key.isEmpty { components.append(.key(key)) } else if expectKey {
            return .failure(.badSyntax("path ends with '.'"))
        }
        return .success(Path(components: components))
    }

    static func text(of components: [Component]) -> String {
        if components.isEmpty { return "@" }
        var out = ""
        for c in components {
            switch c {
            case .key(let k):
                if k.contains(".") || k.contains("[") || k.contains("]") || k.isEmpty {
                    out += "[\"\(k)\"]"
                } else {
                    if !out.isEmpty { out += "." }
                    out += k
                }
            case .index(let n): out += "[\(n)]"
            }
        }
        return out
    }
}
