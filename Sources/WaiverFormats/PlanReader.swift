import Foundation
import WaiverCore

/// A Terraform plan read from `terraform show -json` output.
public struct Plan: Sendable {
    public var formatVersion: String
    public var terraformVersion: String?
    /// Managed resources to evaluate: pure deletions, forgets and data sources are left out.
    public var resources: [Resource]
    /// How many `resource_changes` entries were read, evaluated or not.
    public var changeCount: Int
}

/// Reads Terraform plan JSON (format_version 0.x and 1.x).
///
/// Only `resource_changes` is built into values, and only `after`, `after_unknown` and
/// `after_sensitive` of each change; everything else is checked for syntax and skipped. With an
/// `AttributeSelection`, only the attributes the policies read are built.
public enum PlanReader {
    public static func read(path: String, selection: AttributeSelection = .all) throws(InputError) -> Plan {
        let raw = try InputFile.read(path, maxBytes: InputFile.maxMappedBytes)
        return try parse(raw, file: path, selection: selection)
    }

    /// Reads a plan handing each resource to `each` as soon as it is read, so that a check keeps only
    /// what its report needs and never the whole plan's resources; the returned plan's `resources`
    /// are empty.
    public static func read(path: String, selection: AttributeSelection = .all, each: (Resource) -> Void) throws(InputError) -> Plan {
        let raw = try InputFile.read(path, maxBytes: InputFile.maxMappedBytes)
        return try parse(raw, file: path, selection: selection, each: each)
    }

    /// The plan as plain UTF-8 JSON: byte-order marks and UTF-16 decoded, the wrapper's echo line removed.
    public static func normalized(_ raw: Data, file: String) throws(InputError) -> Data {
        let data = try InputFile.utf8(raw, file: file)
        // hashicorp/setup-terraform's wrapper echoes "[command]... show -json" before the JSON.
        if data.starts(with: Array("[command]".utf8)), let nl = data.firstIndex(of: 0x0A) {
            return data[(nl + 1)...]
        }
        return data
    }

    public static func parse(_ raw: Data, file: String, selection: AttributeSelection = .all) throws(InputError) -> Plan {
        var resources: [Resource] = []
        var plan = try parse(raw, file: file, selection: selection) { resources.append($0) }
        plan.resources = resources
        return plan
    }

    /// `parse`, handing each resource to `each` instead of keeping them.
    public static func parse(_ raw: Data, file: String, selection: AttributeSelection = .all, each: (Resource) -> Void) throws(InputError) -> Plan {
        let data = try normalized(raw, file: file)
        let result: Result<Plan, InputError> = data.withUnsafeBytes { rawBuffer in
            var reader = JSONReader(rawBuffer.bindMemory(to: UInt8.self))
            do throws(JSONSyntaxError) {
                return try parseDocument(&reader, file: file, selection: selection, each: each)
            } catch {
                return .failure(InputError(file: file, line: error.line, message: error.message + " (column \(error.column))"))
            }
        }
        return try result.get()
    }

    /// Reads a plan from a reader positioned at it (e.g. inside a request envelope), in one pass.
    public static func parseDocument(
        _ r: inout JSONReader, file: String, atEnd: Bool, selection: AttributeSelection = .all
    ) throws(JSONSyntaxError) -> Result<Plan, InputError> {
        var resources: [Resource] = []
        let plan = try parseDocument(&r, file: file, expectEnd: atEnd, selection: selection) { resources.append($0) }
        return plan.map { var p = $0; p.resources = resources; return p }
    }

    private static func parseDocument(
        _ r: inout JSONReader, file: String, expectEnd: Bool = true, selection: AttributeSelection, each: (Resource) -> Void
    ) throws(JSONSyntaxError) -> Result<Plan, InputError> {
        guard try r.nextKind() == "object" else {
            throw r.error("not a Terraform plan: expected a JSON object at the top (from `terraform show -json PLAN`)")
        }
        var formatVersion: String?
        var terraformVersion: String?
        var changeCount = 0
        var sawChanges = false
        var keysByType: [String: KeyFilter?] = [:]
        func keys(_ type: String) -> KeyFilter? {
            if let known = keysByType[type] { return known }
            let found = selection.keys(forType: type).map(KeyFilter.init)
            keysByType[type] = .some(found)
            return found
        }
        try r.readObject(depth: expectEnd ? 0 : 1) { (r: inout JSONReader, key: String) throws(JSONSyntaxError) in
            switch key {
            case "format_version":
                guard try r.nextKind() == "string" else { throw r.error("format_version must be a string") }
                formatVersion = try r.readString()
            case "terraform_version":
                guard try r.nextKind() == "string" else { throw r.error("terraform_version must be a string") }
                terraformVersion = try r.readString()
            case "resource_changes":
                sawChanges = true
                let kind = try r.nextKind()
                if kind == "null" { try r.skipValue(); return }
                guard kind == "array" else { throw r.error("resource_changes must be an array, found \(kind)") }
                try r.readArray(depth: 1) { (r: inout JSONReader, index: Int) throws(JSONSyntaxError) in
                    changeCount += 1
                    if let resource = try readChange(&r, index: index, keys: keys) { each(resource) }
                }
            default:
                try r.skipValue(depth: 1)
            }
        }
        if expectEnd { try r.expectEnd() }
        guard let version = formatVersion else {
            return .failure(InputError(file: file, message: sawChanges
                ? "not a Terraform plan: no format_version"
                : "not a Terraform plan: no format_version and no resource_changes (is this `terraform show -json PLAN` output?)"))
        }
        let major = version.split(separator: ".").first.flatMap { Int($0) }
        guard major == 0 || major == 1 else {
            return .failure(InputError(file: file, message: "unsupported plan format_version \"\(version)\" (supported: 0.x and 1.x)"))
        }
        return .success(Plan(formatVersion: version, terraformVersion: terraformVersion, resources: [], changeCount: changeCount))
    }

    /// `keys(type)` names the attributes to build for a type (nil: all); a change whose `type` comes
    /// after its `change` (unusual key order) is built whole.
    private static func readChange(
        _ r: inout JSONReader, index: Int, keys: (String) -> KeyFilter?
    ) throws(JSONSyntaxError) -> Resource? {
        let at = "resource_changes[\(index)]"
        guard try r.nextKind() == "object" else { throw r.error("\(at) must be an object") }
        var address: String?, mode: String?, type: String?, name: String?, module = "", provider = ""
        var actions: [String]?
        var after: Value = .null, unknown: Value = .bool(false), sensitive: Value = .bool(false)
        func string(_ r: inout JSONReader, _ field: String) throws(JSONSyntaxError) -> String {
            let kind = try r.nextKind()
            guard kind == "string" else { throw r.error("\(at).\(field) must be a string, found \(kind)") }
            return try r.readString()
        }
        try r.readObject(depth: 2) { (r: inout JSONReader, key: String) throws(JSONSyntaxError) in
            switch key {
            case "address": address = try string(&r, key)
            case "mode": mode = try string(&r, key)
            case "type": type = try string(&r, key)
            case "name": name = try string(&r, key)
            case "module_address": module = try string(&r, key)
            case "provider_name": provider = try string(&r, key)
            case "change":
                let kind = try r.nextKind()
                guard kind == "object" else { throw r.error("\(at).change must be an object, found \(kind)") }
                try r.readObject(depth: 3) { (r: inout JSONReader, key: String) throws(JSONSyntaxError) in
                    switch key {
                    case "actions":
                        let v = try r.readValue(depth: 4)
                        guard let list = v.arrayValue, !list.isEmpty,
                              case let names = list.compactMap(\.stringValue), names.count == list.count
                        else { throw r.error("\(at).change.actions must be a non-empty list of strings") }
                        actions = names
                    case "after": after = try r.readValue(depth: 4, keeping: type.flatMap(keys))
                    case "after_unknown": unknown = try r.readValue(depth: 4, keeping: type.flatMap(keys))
                    case "after_sensitive": sensitive = try r.readValue(depth: 4, keeping: type.flatMap(keys))
                    default: try r.skipValue(depth: 4)
                    }
                }
            default:
                try r.skipValue(depth: 3)
            }
        }
        guard let address else { throw r.error("\(at) has no address") }
        guard let type else { throw r.error("\(at) (\(address)) has no type") }
        guard let actions else { throw r.error("\(at) (\(address.clipped())) has no change.actions") }
        let action: ResourceAction
        switch actions {
        case ["create"], ["create", "forget"]: action = .create
        case ["update"]: action = .update
        case ["delete", "create"], ["create", "delete"]: action = .replace
        case ["no-op"]: action = .noop
        case ["read"]: action = .read
        case ["delete"], ["delete", "forget"]: action = .delete
        case ["forget"]: action = .forget
        default:
            throw r.error("\(at) (\(address.clipped())): unknown change.actions \("\(actions)".clipped()) (expected create, update, delete+create, create+delete, no-op, read, delete or forget)")
        }
        // Data sources and resources that will no longer exist are not evaluated.
        if mode == "data" || action == .delete || action == .forget { return nil }
        if after.isNull { after = .object(Value.Object()) }
        let attributes = applyUnknown(after, unknown)
        let sensitiveMask: Value? = {
            if case .bool(false) = sensitive { return nil }
            if case .object(let o) = sensitive, o.isEmpty { return nil }
            return sensitive
        }()
        return Resource(
            address: address, type: type, name: name ?? "", module: module, provider: provider,
            action: action, attributes: attributes, sensitive: sensitiveMask)
    }

    /// Marks the values that `after_unknown` flags as `.unknown`, at any depth: whole objects,
    /// single attributes and single list elements. Parts of the mask that flag nothing are skipped
    /// without touching the value.
    static func applyUnknown(_ value: Value, _ mask: Value) -> Value {
        switch mask {
        case .bool(true): return .unknown
        case .object(let m):
            guard case .object(var o) = value else {
                guard value.isNull, !isNoop(mask) else { return value }
                var fresh = Value.Object()
                for (k, sub) in m.pairs where !isNoop(sub) { fresh.append(k, applyUnknown(.null, sub)) }
                return .object(fresh)
            }
            for (k, sub) in m.pairs where !isNoop(sub) {
                if let i = o.keys.lastIndex(of: k) {
                    o.values[i] = applyUnknown(o.values[i], sub)
                } else {
                    o.append(k, applyUnknown(.null, sub))
                }
            }
            return .object(o)
        case .array(let m):
            guard case .array(var a) = value, !isNoop(mask) else { return value }
            for (i, sub) in m.enumerated() where !isNoop(sub) {
                if i < a.count { a[i] = applyUnknown(a[i], sub) } else if case .bool(true) = sub { a.append(.unknown) }
            }
            return .array(a)
        default:
            return value
        }
    }

    /// Whether a mask flags nothing (false, or containers of nothing but such).
    static func isNoop(_ mask: Value) -> Bool {
        switch mask {
        case .bool(true): return false
        case .object(let m): return m.values.allSatisfy(isNoop)
        case .array(let a): return a.allSatisfy(isNoop)
        default: return true
        }
    }
}
