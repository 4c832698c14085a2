/// The top-level attributes a set of policies can read, per resource type.
///
/// Paths inside `some`/`every` are relative to the element, and `$` fields come from the resource
/// itself, so a policy reads exactly the first keys of its top-level paths. The plan reader builds
/// only those attributes (and their `after_unknown`/`after_sensitive` masks) and skips the rest,
/// which is most of a plan: the outcome of every policy is the same as with every attribute read.
public struct AttributeSelection: Sendable {
    /// Per evaluated policy: the keys it reads (`nil`: every attribute).
    private let rules: [(policy: Policy, keys: Set<String>?)]
    private let readsEverything: Bool

    /// Every attribute of every resource (no policies known, or a caller that wants the whole plan).
    public static let all = AttributeSelection(rules: [], readsEverything: true)

    private init(rules: [(policy: Policy, keys: Set<String>?)], readsEverything: Bool) {
        self.rules = rules
        self.readsEverything = readsEverything
    }

    public init(policies: [Policy]) {
        var rules: [(policy: Policy, keys: Set<String>?)] = []
        for policy in policies {
            let condition: Condition
            switch policy.rule {
            case .forbid(let c), .require(let c): condition = c
            case .external, .control: continue
            }
            var keys = Set<String>()
            let bounded = Self.collect(condition, into: &keys)
            rules.append((policy, bounded ? keys : nil))
        }
        self.init(rules: rules, readsEverything: false)
    }

    /// The attributes to build for a resource of this type; `nil` means all of them.
    public func keys(forType type: String) -> Set<String>? {
        if readsEverything { return nil }
        var out = Set<String>()
        for rule in rules where rule.policy.applies(toType: type) {
            guard let keys = rule.keys else { return nil }
            out.formUnion(keys)
        }
        return out
    }

    /// Adds the first keys of the condition's top-level paths; false when a path reads the whole resource.
    private static func collect(_ c: Condition, into keys: inout Set<String>) -> Bool {
        func add(_ path: Path) -> Bool {
            if path.field != nil { return true }
            guard case .key(let k)? = path.components.first else { return false }
            keys.insert(k)
            return true
        }
        switch c {
        case .leaf(let path, _): return add(path)
        case .some(let path, _), .every(let path, _): return add(path)
        case .not(let inner): return collect(inner, into: &keys)
        case .all(let cs), .any(let cs):
            for inner in cs where !collect(inner, into: &keys) { return false }
            return true
        }
    }
}
