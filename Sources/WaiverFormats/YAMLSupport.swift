import Foundation
import WaiverCore
import Yams

/// Reads YAML with every problem collected and located (file and line), never dropping input silently.
struct YAMLFile {
    let file: String
    var errors: [InputError] = []

    init(file: String) { self.file = file }

    /// Parses the text into a node tree; a syntax error becomes an `InputError` with its line.
    mutating func compose(_ data: Data) -> Node? {
        let text: String
        do throws(InputError) {
            let utf8 = try InputFile.utf8(data, file: file)
            guard let s = String(validating: utf8, as: UTF8.self) else {
                errors.append(InputError(file: file, message: "not valid UTF-8 text"))
                return nil
            }
            text = s
        } catch {
            errors.append(error)
            return nil
        }
        do {
            guard let root = try Yams.compose(yaml: text, Resolver.basic) else { return nil }
            // Aliases share nodes, so a few hundred bytes can stand for billions of them (a "billion
            // laughs" bomb): the tree is counted with a bound before anything walks it.
            guard YAMLFile.countNodes(root, upTo: YAMLFile.maxNodes) <= YAMLFile.maxNodes else {
                errors.append(InputError(file: file, message: "more than \(YAMLFile.maxNodes.formatted()) YAML nodes once aliases are expanded (an alias bomb?); expand the aliases by hand"))
                return nil
            }
            return root
        } catch let e as YamlError {
            errors.append(YAMLFile.describe(e, file: file))
        } catch {
            errors.append(InputError(file: file, message: "invalid YAML: \(error)"))
        }
        return nil
    }

    /// The most nodes a policy or configuration file may hold, aliases expanded.
    static let maxNodes = 200_000

    /// Nodes in the tree, counting each alias use again; stops counting past `limit`.
    static func countNodes(_ root: Node, upTo limit: Int) -> Int {
        var count = 0
        var stack: [Node] = [root]
        while let node = stack.popLast() {
            count += 1
            if count > limit { return count }
            switch node {
            case .scalar: break
            case .sequence(let seq): stack.append(contentsOf: seq)
            case .mapping(let m):
                for (k, v) in m { stack.append(k); stack.append(v) }
            case .alias: break
            }
        }
        return count
    }

    static func describe(_ e: YamlError, file: String) -> InputError {
        switch e {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return InputError(file: file, line: mark.line, message: "invalid YAML: \(problem) (column \(mark.column))")
        case let .reader(problem, _, _, _):
            return InputError(file: file, message: "invalid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return InputError(file: file, line: context.mark.line, message: "duplicate key \(duplicates.joined(separator: ", "))")
        default:
            return InputError(file: file, message: "invalid YAML: \(e)")
        }
    }

    mutating func error(_ node: Node?, _ subject: String?, _ message: String) {
        errors.append(InputError(file: file, line: node?.mark?.line, subject: subject, message: message))
    }

    /// The key/value pairs of a mapping, with unknown keys reported (with the closest known key).
    mutating func mapping(_ node: Node, _ subject: String?, what: String, known: [String]) -> [(String, Node, Node)]? {
        guard case .mapping(let m) = node else {
            error(node, subject, "\(what) must be a mapping (key: value), found \(YAMLFile.kind(node))")
            return nil
        }
        var out: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let key = k.scalar?.string else {
                error(k, subject, "\(what): keys must be plain strings")
                continue
            }
            if !known.isEmpty, !known.contains(key) {
                let hint = closestMatch(to: key, in: known).map { " (did you mean '\($0)'?)" } ?? ""
                error(k, subject, "unknown key '\(key)' in \(what)\(hint)")
                continue
            }
            out.append((key, k, v))
        }
        return out
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "'\(s.string)'"
        case .alias: return "an alias"
        }
    }

    mutating func string(_ node: Node, _ subject: String?, _ key: String) -> String? {
        guard case .scalar(let s) = node, !(isNull(s)) else {
            error(node, subject, "'\(key)' must be a text value, found \(YAMLFile.kind(node))")
            return nil
        }
        return s.string
    }

    mutating func int(_ node: Node, _ subject: String?, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any, let n = Int(s.string) else {
            error(node, subject, "'\(key)' must be a whole number, found \(YAMLFile.kind(node))")
            return nil
        }
        guard range.contains(n) else {
            error(node, subject, "'\(key)' must be between \(range.lowerBound) and \(range.upperBound), found \(n)")
            return nil
        }
        return n
    }

    mutating func bool(_ node: Node, _ subject: String?, _ key: String) -> Bool? {
        if case .bool(let b) = YAMLFile.value(node) { return b }
        error(node, subject, "'\(key)' must be true or false, found \(YAMLFile.kind(node))")
        return nil
    }

    mutating func strings(_ node: Node, _ subject: String?, _ key: String) -> [String]? {
        guard case .sequence(let seq) = node else {
            error(node, subject, "'\(key)' must be a list, found \(YAMLFile.kind(node))")
            return nil
        }
        var out: [String] = []
        for item in seq {
            guard let s = string(item, subject, key) else { return nil }
            out.append(s)
        }
        return out
    }

    private func isNull(_ s: Node.Scalar) -> Bool {
        (s.style == .plain || s.style == .any) && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// A YAML node as a value, typed by the YAML 1.2 core schema: quoted scalars are strings;
    /// plain `true`/`false`, `null`/`~`, and numbers are typed; `yes`, `no`, `on`, `off` stay strings.
    static func value(_ node: Node, depth: Int = 0) -> Value {
        if depth > 64 { return .null }
        switch node {
        case .scalar(let s):
            if s.style != .plain && s.style != .any { return .string(s.string) }
            let t = s.string
            switch t {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            case "", "~", "null", "Null", "NULL": return .null
            default:
                if let first = t.unicodeScalars.first, "0123456789+-.".unicodeScalars.contains(first),
                   let n = Double(t), n.isFinite, !t.hasPrefix("+") || t.count > 1 {
                    return .number(n)
                }
                return .string(t)
            }
        case .sequence(let seq):
            return .array(seq.map { value($0, depth: depth + 1) })
        case .mapping(let m):
            var o = Value.Object()
            for (k, v) in m { o.append(k.scalar?.string ?? "", value(v, depth: depth + 1)) }
            return .object(o)
        case .alias:
            return .null
        }
    }
}
