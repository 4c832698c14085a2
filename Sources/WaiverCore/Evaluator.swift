import Foundation

/// One piece of the reason a resource violates a policy: the value at a path and the test it met or failed.
public struct Evidence: Sendable, Equatable {
    public var path: String
    /// The value as shown to people: sensitive values masked, unknown ones spelled out.
    public var shown: String
    public var test: String
    /// Whether the test held on the value.
    public var held: Bool?

    public var text: String {
        switch held {
        case .some(true): return "\(path) = \(shown) (\(test))"
        case .some(false): return "\(path) = \(shown) (expected: \(test))"
        case .none: return "\(path) is known only after apply (\(test))"
        }
    }
}

/// Outcome of one policy on one resource.
public enum Outcome: Sendable, Equatable {
    case compliant
    case violation
    case unknown
}

/// Evaluates conditions on resources with three-valued logic (see policy-language.md).
public struct Evaluator: Sendable {
    public init() {}

    /// The outcome of a policy's rule on a resource.
    public func outcome(of rule: Policy.Rule, on resource: Resource) -> Outcome {
        switch rule {
        case .forbid(let c):
            switch Scope.with(resource, { evaluate(c, $0) }) {
            case .yes: return .violation
            case .no: return .compliant
            case .unknown: return .unknown
            }
        case .require(let c):
            switch Scope.with(resource, { evaluate(c, $0) }) {
            case .yes: return .compliant
            case .no: return .violation
            case .unknown: return .unknown
            }
        case .external, .control:
            return .compliant
        }
    }

    /// Why a rule came out as it did: the values that decided it (at most `limit` of them).
    public func explain(_ rule: Policy.Rule, on resource: Resource, limit: Int = 6) -> [Evidence] {
        let condition: Condition
        let want: Tri
        switch rule {
        case .forbid(let c): condition = c; want = .yes
        case .require(let c): condition = c; want = .no
        case .external, .control: return []
        }
        var evidence: [Evidence] = []
        Scope.with(resource) { scope in
            let target = evaluate(condition, scope) == .unknown ? Tri.unknown : want
            _ = explain(condition, scope, want: target, into: &evidence, limit: limit * 2)
        }
        // The same leaf can decide through two branches (e.g. `any` of two port tests): say it once.
        var seen = Set<String>()
        return Array(evidence.filter { seen.insert($0.text).inserted }.prefix(limit))
    }

    // MARK: - Scope

    /// Where paths are resolved: the resource's attributes, or an element inside `some`/`every`.
    ///
    /// The resource is borrowed, not copied: a scope is made and copied for every policy on every
    /// resource and every list element, and copying a `Resource` retains seven references. A scope
    /// lives only inside `with`, while the resource it points to is alive.
    struct Scope {
        let resource: UnsafePointer<Resource>
        var value: Value
        var mask: Value?
        var prefix: String

        private init(resource: UnsafePointer<Resource>) {
            self.resource = resource
            self.value = resource.pointee.attributes
            self.mask = resource.pointee.sensitive
            self.prefix = ""
        }

        static func with<T>(_ resource: Resource, _ body: (Scope) -> T) -> T {
            withUnsafePointer(to: resource) { body(Scope(resource: $0)) }
        }

        func child(_ v: Value, mask m: Value?, label: String) -> Scope {
            var s = self
            s.value = v
            s.mask = m
            s.prefix = label
            return s
        }

        func label(_ path: Path) -> String {
            if path.field != nil { return path.description }
            if path.components.isEmpty { return prefix.isEmpty ? "@" : prefix }
            if prefix.isEmpty { return path.description }
            if case .index? = path.components.first { return prefix + path.description }
            return prefix + "." + path.description
        }
    }

    enum Lookup {
        case value(Value, mask: Value?)
        case missing
        case unknown
    }

    static func lookup(_ path: Path, in scope: Scope) -> Lookup {
        if let f = path.field { return .value(.string(scope.resource.pointee.field(f)), mask: nil) }
        var v = scope.value
        var m = scope.mask
        if case .bool(true)? = m {
            // A sensitive parent: everything below it is sensitive too.
        }
        for c in path.components {
            switch (c, v) {
            case (_, .unknown): return .unknown
            case (.key(let k), .object(let o)):
                guard let next = o[k] else { return .missing }
                v = next
                if case .bool(true)? = m {} else { m = m?[k] }
            case (.index(let i), .array(let a)):
                guard i < a.count else { return .missing }
                v = a[i]
                if case .bool(true)? = m {} else { m = m?.arrayValue.flatMap { i < $0.count ? $0[i] : nil } }
            default:
                return .missing
            }
        }
        switch v {
        case .unknown: return .unknown
        case .null: return .missing
        default: return .value(v, mask: m)
        }
    }

    // MARK: - Evaluation

    func evaluate(_ c: Condition, _ scope: Scope) -> Tri {
        switch c {
        case .leaf(let path, let op):
            return Evaluator.leaf(Evaluator.lookup(path, in: scope), op)
        case .all(let cs):
            var sawUnknown = false
            for sub in cs {
                switch evaluate(sub, scope) {
                case .no: return .no
                case .unknown: sawUnknown = true
                case .yes: break
                }
            }
            return sawUnknown ? .unknown : .yes
        case .any(let cs):
            var sawUnknown = false
            for sub in cs {
                switch evaluate(sub, scope) {
                case .yes: return .yes
                case .unknown: sawUnknown = true
                case .no: break
                }
            }
            return sawUnknown ? .unknown : .no
        case .not(let sub):
            return !evaluate(sub, scope)
        case .some(let path, let sub), .every(let path, let sub):
            let isSome: Bool
            if case .some = c { isSome = true } else { isSome = false }
            // The hot path: no element labels are built here (only `explain` needs them).
            let found = Evaluator.lookup(path, in: scope)
            let items: [Value]
            let masks: Value?
            switch found {
            case .unknown: return .unknown
            case .missing: return isSome ? .no : .yes
            case .value(.array(let a), let m): items = a; masks = m
            case .value(.object(let o), let m): items = o.values; masks = m.map { Evaluator.maskValues($0, o) }
            case .value: return isSome ? .no : .yes
            }
            var sawUnknown = false
            for (i, v) in items.enumerated() {
                let m: Value?
                if case .bool(true)? = masks { m = masks } else { m = masks?.arrayValue.flatMap { i < $0.count ? $0[i] : nil } }
                let r = evaluate(sub, scope.child(v, mask: m, label: ""))
                if isSome, r == .yes { return .yes }
                if !isSome, r == .no { return .no }
                if r == .unknown { sawUnknown = true }
            }
            return sawUnknown ? .unknown : (isSome ? .no : .yes)
        }
    }

    /// A map's sensitivity mask laid out like its values, so elements can be masked by position.
    static func maskValues(_ mask: Value, _ object: Value.Object) -> Value {
        if case .bool = mask { return mask }
        return .array(object.keys.map { mask[$0] ?? .bool(false) })
    }

    /// Like `evaluate`, also collecting evidence from the parts whose outcome equals `want`.
    func explain(_ c: Condition, _ scope: Scope, want: Tri, into out: inout [Evidence], limit: Int) -> Tri {
        switch c {
        case .leaf(let path, let op):
            let found = Evaluator.lookup(path, in: scope)
            let r = Evaluator.leaf(found, op)
            if r == want, out.count < limit {
                let shown: String
                var test = op.text
                switch found {
                case .value(let v, let m):
                    shown = v.rendered(mask: m, limit: 100)
                    if case .matches = op, r == .unknown { test += " (\(Pattern.limitNote))" }
                    // Saying which literal a sensitive value equals would reveal it: name the test only.
                    if let m, Evaluator.hasSensitive(m) { test = op.name + " [operand hidden: sensitive value]" }
                case .missing: shown = "(not set)"
                case .unknown: shown = "(known after apply)"
                }
                let held: Bool? = r == .unknown ? nil : (r == .yes)
                out.append(Evidence(path: scope.label(path), shown: shown, test: test, held: held))
            }
            return r
        case .all(let cs), .any(let cs):
            var local: [Evidence] = []
            for sub in cs {
                var part: [Evidence] = []
                let r = explain(sub, scope, want: want, into: &part, limit: limit)
                if r == want { local.append(contentsOf: part) }
            }
            let r = evaluate(c, scope)
            if r == want { out.append(contentsOf: local.prefix(max(0, limit - out.count))) }
            return r
        case .not(let sub):
            var part: [Evidence] = []
            let r = !explain(sub, scope, want: !want, into: &part, limit: limit)
            if r == want { out.append(contentsOf: part.prefix(max(0, limit - out.count))) }
            return r
        case .some(let path, let sub), .every(let path, let sub):
            let r = evaluate(c, scope)
            guard r == want else { return r }
            switch Evaluator.elements(path, scope) {
            case .unknown:
                if out.count < limit {
                    out.append(Evidence(path: scope.label(path), shown: "(known after apply)", test: "list", held: nil))
                }
            case .missing:
                if out.count < limit {
                    out.append(Evidence(path: scope.label(path), shown: "(not set)", test: "list", held: want == .yes))
                }
            case .list(let items):
                for (v, m, label) in items where out.count < limit {
                    var part: [Evidence] = []
                    let er = explain(sub, scope.child(v, mask: m, label: label), want: want, into: &part, limit: limit)
                    if er == want { out.append(contentsOf: part.prefix(max(0, limit - out.count))) }
                }
            }
            return r
        }
    }

    enum Elements {
        case list([(Value, Value?, String)])
        case missing
        case unknown
    }

    static func elements(_ path: Path, _ scope: Scope) -> Elements {
        switch lookup(path, in: scope) {
        case .unknown: return .unknown
        case .missing: return .missing
        case .value(let v, let m):
            let base = scope.label(path)
            switch v {
            case .array(let a):
                var items: [(Value, Value?, String)] = []
                items.reserveCapacity(a.count)
                for (i, e) in a.enumerated() {
                    let em: Value?
                    if case .bool(true)? = m { em = m } else { em = m?.arrayValue.flatMap { i < $0.count ? $0[i] : nil } }
                    items.append((e, em, "\(base)[\(i)]"))
                }
                return .list(items)
            case .object(let o):
                return .list(o.pairs.map { k, e in
                    let em: Value?
                    if case .bool(true)? = m { em = m } else { em = m?[k] }
                    return (e, em, "\(base).\(k)")
                })
            default:
                return .missing
            }
        }
    }

    /// Whether a sensitivity mask marks anything at all as sensitive.
    static func hasSensitive(_ mask: Value) -> Bool {
        switch mask {
        case .bool(let b): return b
        case .array(let a): return a.contains(where: hasSensitive)
        case .object(let o): return o.values.contains(where: hasSensitive)
        default: return false
        }
    }

    // MARK: - Leaves

    static func leaf(_ found: Lookup, _ op: Operator) -> Tri {
        let v: Value
        switch found {
        case .unknown: return .unknown
        case .missing:
            switch op {
            case .exists(let want): return Tri(!want)
            case .notEquals, .notIn, .notContains: return .yes
            case .empty(let want): return Tri(want)
            default: return .no
            }
        case .value(let value, _): v = value
        }
        switch op {
        case .exists(let want): return Tri(want)
        case .equals(let x): return equal(v, x)
        case .notEquals(let x): return !equal(v, x)
        case .in(let xs): return anyOf(xs) { equal(v, $0) }
        case .notIn(let xs): return !anyOf(xs) { equal(v, $0) }
        case .matches(let p):
            guard case .string(let s) = v else { return .no }
            return p.match(s)
        case .contains(let x): return contains(v, x)
        case .notContains(let x): return !contains(v, x)
        case .gt(let n): return compare(v) { $0 > n }
        case .gte(let n): return compare(v) { $0 >= n }
        case .lt(let n): return compare(v) { $0 < n }
        case .lte(let n): return compare(v) { $0 <= n }
        case .empty(let want):
            switch v {
            case .array(let a): return Tri(a.isEmpty == want)
            case .object(let o): return Tri(o.isEmpty == want)
            case .string(let s): return Tri(s.isEmpty == want)
            default: return .no
            }
        case .portsOutside(let allowed):
            // A value that is not a port spec (or holds unknown parts) cannot be decided.
            let spec = PortSpec.relevant(v)
            guard !Evaluator.containsUnknown(spec), let opened = PortSpec.ranges(spec) else { return .unknown }
            return Tri(PortSpec.outside(opened, allowed: allowed))
        }
    }

    static func containsUnknown(_ v: Value) -> Bool {
        switch v {
        case .unknown: return true
        case .array(let a): return a.contains(where: containsUnknown)
        case .object(let o): return o.values.contains(where: containsUnknown)
        default: return false
        }
    }

    /// Yes when the test holds for some item, unknown when it is unknown for some and holds for none.
    static func anyOf(_ items: [Value], _ test: (Value) -> Tri) -> Tri {
        var sawUnknown = false
        for item in items {
            switch test(item) {
            case .yes: return .yes
            case .unknown: sawUnknown = true
            case .no: break
            }
        }
        return sawUnknown ? .unknown : .no
    }

    static func number(_ v: Value) -> Double? {
        switch v {
        case .number(let n): return n
        case .string(let s):
            // Only JSON's (and Terraform's) number syntax: "0x10", "inf", "1_000" or " 22" are strings, not numbers.
            guard isJSONNumber(s), let n = Double(s), n.isFinite else { return nil }
            return n
        default: return nil
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, checked byte by byte.
    static func isJSONNumber(_ s: String) -> Bool {
        var u = Array(s.utf8)[...]
        func digits() -> Int {
            var n = 0
            while let c = u.first, (0x30...0x39).contains(c) { u = u.dropFirst(); n += 1 }
            return n
        }
        if u.first == 0x2D { u = u.dropFirst() }
        guard let first = u.first, (0x30...0x39).contains(first) else { return false }
        if first == 0x30 { u = u.dropFirst() } else { _ = digits() }
        if u.first == 0x2E {
            u = u.dropFirst()
            guard digits() > 0 else { return false }
        }
        if u.first == 0x65 || u.first == 0x45 {
            u = u.dropFirst()
            if u.first == 0x2B || u.first == 0x2D { u = u.dropFirst() }
            guard digits() > 0 else { return false }
        }
        return u.isEmpty
    }

    static func compare(_ v: Value, _ test: (Double) -> Bool) -> Tri {
        guard let n = number(v) else { return .no }
        return Tri(test(n))
    }

    /// Three-valued deep equality: numbers as numbers (a numeric string equals its number),
    /// unknown parts make the answer unknown unless a known part already differs.
    static func equal(_ a: Value, _ b: Value) -> Tri {
        switch (a, b) {
        case (.unknown, _), (_, .unknown): return .unknown
        case let (.number(x), .number(y)): return Tri(x == y)
        case (.number, .string), (.string, .number):
            guard let x = number(a), let y = number(b) else { return .no }
            return Tri(x == y)
        case let (.array(xs), .array(ys)):
            guard xs.count == ys.count else { return .no }
            var sawUnknown = false
            for (x, y) in zip(xs, ys) {
                switch equal(x, y) {
                case .no: return .no
                case .unknown: sawUnknown = true
                case .yes: break
                }
            }
            return sawUnknown ? .unknown : .yes
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return .no }
            var sawUnknown = false
            for (k, xv) in x.pairs {
                guard let yv = y[k] else { return .no }
                switch equal(xv, yv) {
                case .no: return .no
                case .unknown: sawUnknown = true
                case .yes: break
                }
            }
            return sawUnknown ? .unknown : .yes
        default:
            return Tri(a == b)
        }
    }

    static func contains(_ v: Value, _ x: Value) -> Tri {
        switch v {
        case .array(let items): return anyOf(items) { equal($0, x) }
        case .string(let s):
            guard case .string(let needle) = x else { return .no }
            return Tri(s.contains(needle))
        default: return .no
        }
    }
}
