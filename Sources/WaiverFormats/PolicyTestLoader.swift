import Foundation
import WaiverCore
import Yams

/// A policy test case (`*_test.yaml` beside the policies, as `opa test` and `conftest verify` keep
/// theirs): a resource's type and `after` values, and the outcome expected of each policy named.
public struct PolicyTestCase: Sendable, Equatable {
    public enum Outcome: String, Sendable, CaseIterable { case violated, compliant, unknown }

    public var name: String
    public var location: SourceLocation
    public var type: String
    public var address: String
    /// The resource's values after the change, as `terraform show -json` gives them.
    public var values: Value
    /// Top-level attributes known only after apply.
    public var unknown: [String]
    public var expect: [(policy: String, outcome: Outcome)]

    public static func == (a: PolicyTestCase, b: PolicyTestCase) -> Bool {
        a.name == b.name && a.location == b.location && a.type == b.type && a.address == b.address && a.values == b.values
            && a.unknown == b.unknown && a.expect.map { "\($0.policy)=\($0.outcome)" } == b.expect.map { "\($0.policy)=\($0.outcome)" }
    }

    /// The case as a one-resource plan document.
    public var planJSON: String {
        let unknownObject = Value.object(Value.Object(unknown.map { ($0, Value.bool(true)) }))
        let change: Value = .object(Value.Object([
            ("address", .string(address)), ("mode", "managed"), ("type", .string(type)), ("name", .string(address.split(separator: ".").last.map(String.init) ?? "test")),
            ("change", .object(Value.Object([("actions", ["create"]), ("before", .null), ("after", values), ("after_unknown", unknownObject),
                                             ("before_sensitive", .bool(false)), ("after_sensitive", .bool(false))]))),
        ]))
        return JSONWriter.write(.object(Value.Object([("format_version", "1.2"), ("resource_changes", .array([change]))])), pretty: false)
    }
}

/// Reads policy test files. Every problem is reported at once, with file and line.
public enum PolicyTestLoader {
    /// Test files sit beside the policies and are never read as policies.
    public static func isTestFile(_ path: String) -> Bool {
        let name = (path as NSString).lastPathComponent
        return name.hasSuffix("_test.yaml") || name.hasSuffix("_test.yml")
    }

    public static func load(directory: String) throws(InputErrors) -> [PolicyTestCase] {
        let paths: [String]
        do throws(InputError) { paths = try PolicyLoader.files(in: directory, tests: true) } catch { throw InputErrors([error]) }
        var cases: [PolicyTestCase] = []
        var errors: [InputError] = []
        for p in paths {
            do throws(InputErrors) {
                let data: Data
                do throws(InputError) { data = try InputFile.read(p, maxBytes: PolicyLoader.maxFileBytes) } catch { throw InputErrors([error]) }
                cases += try load(data, file: p)
            } catch { errors += error.errors }
        }
        if !errors.isEmpty { throw InputErrors(errors) }
        return cases
    }

    public static func load(_ data: Data, file: String) throws(InputErrors) -> [PolicyTestCase] {
        var yaml = YAMLFile(file: file)
        guard let root = yaml.compose(data) else {
            if !yaml.errors.isEmpty { throw InputErrors(yaml.errors) }
            return []
        }
        guard let top = yaml.mapping(root, nil, what: "a policy test file", known: ["tests"]), let list = top.first?.2 else {
            throw InputErrors(yaml.errors.isEmpty ? [InputError(file: file, message: "a policy test file holds `tests:`, a list of cases")] : yaml.errors)
        }
        guard case .sequence(let items) = list else {
            yaml.error(list, nil, "tests must be a list of cases")
            throw InputErrors(yaml.errors)
        }
        var cases: [PolicyTestCase] = []
        for (i, node) in items.enumerated() {
            let subject = "case \(i + 1)"
            guard let pairs = yaml.mapping(node, subject, what: "a test case", known: ["name", "resource", "expect"]) else { continue }
            var name = subject, type: String?, address: String?, values: Value = .object(Value.Object()), unknown: [String] = []
            var expect: [(String, PolicyTestCase.Outcome)] = []
            for (key, _, value) in pairs {
                switch key {
                case "name": name = yaml.string(value, subject, key) ?? name
                case "resource":
                    guard let r = yaml.mapping(value, subject, what: "resource", known: ["type", "address", "values", "unknown"]) else { continue }
                    for (k, _, v) in r {
                        switch k {
                        case "type": type = yaml.string(v, subject, "resource.type")
                        case "address": address = yaml.string(v, subject, "resource.address")
                        case "values":
                            guard case .mapping = v else { yaml.error(v, subject, "resource.values must be a mapping (the resource's after values)"); continue }
                            values = YAMLFile.value(v)
                        case "unknown": unknown = yaml.strings(v, subject, "resource.unknown") ?? []
                        default: break
                        }
                    }
                case "expect":
                    guard let e = yaml.mapping(value, subject, what: "expect (policy: violated, compliant or unknown)", known: []) else { continue }
                    for (policy, _, v) in e {
                        guard let text = yaml.string(v, subject, "expect.\(policy)") else { continue }
                        guard let o = PolicyTestCase.Outcome(rawValue: text) else {
                            yaml.error(v, subject, "expect.\(policy): '\(text.clipped(30))' is not violated, compliant or unknown")
                            continue
                        }
                        expect.append((policy, o))
                    }
                default: break
                }
            }
            guard let type else { yaml.error(node, subject, "a case needs resource.type"); continue }
            if expect.isEmpty { yaml.error(node, subject, "a case needs expect: { POLICY-ID: violated | compliant | unknown }"); continue }
            cases.append(PolicyTestCase(name: name, location: SourceLocation(file: file, line: node.mark?.line ?? 0), type: type,
                                        address: address ?? "\(type).test", values: values, unknown: unknown, expect: expect))
        }
        if !yaml.errors.isEmpty { throw InputErrors(yaml.errors) }
        return cases
    }
}
