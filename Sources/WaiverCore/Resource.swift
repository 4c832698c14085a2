/// What a plan does to a resource.
public enum ResourceAction: String, Sendable, CaseIterable {
    case create, update, replace, noop = "no-op", read, delete, forget
}

/// A resource to evaluate: its address and fields, attributes after the change (with values unknown
/// until apply marked `.unknown`) and the mask of sensitive attributes (`after_sensitive`).
public struct Resource: Sendable {
    public var address: String
    public var type: String
    public var name: String
    public var module: String
    public var provider: String
    public var action: ResourceAction
    public var attributes: Value
    /// Terraform's `after_sensitive`: `true` where a value is sensitive, nested like the attributes.
    public var sensitive: Value?

    public init(
        address: String, type: String, name: String, module: String = "", provider: String = "",
        action: ResourceAction = .create, attributes: Value, sensitive: Value? = nil
    ) {
        self.address = address
        self.type = type
        self.name = name
        self.module = module
        self.provider = provider
        self.action = action
        self.attributes = attributes
        self.sensitive = sensitive
    }

    func field(_ f: Path.ResourceField) -> String {
        switch f {
        case .address: return address
        case .type: return type
        case .name: return name
        case .module: return module
        case .provider: return provider
        case .action: return action.rawValue
        }
    }
}
