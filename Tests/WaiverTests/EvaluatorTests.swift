import Testing
@testable import WaiverCore

/// A resource with the given attributes (and optional sensitive mask) for evaluator tests.
func resource(_ attributes: Value, type: String = "aws_thing", sensitive: Value? = nil) -> Resource {
    Resource(address: "\(type).r", type: type, name: "r", module: "module.m", provider: "registry.terraform.io/hashicorp/aws",
             action: .create, attributes: attributes, sensitive: sensitive)
}

func path(_ s: String) -> Path {
    guard case .success(let p) = Path.parse(s) else { fatalError("bad test path \(s)") }
    return p
}

func eval(_ c: Condition, _ attributes: Value) -> Tri {
    Evaluator.Scope.with(resource(attributes)) { Evaluator().evaluate(c, $0) }
}

struct LeafCase: CustomTestStringConvertible, Sendable {
    let name: String
    let op: Operator
    let value: Value?  // nil: the attribute is missing
    let expected: Tri
    var testDescription: String { name }
}

@Suite("Operators on present, missing, null and unknown values")
struct OperatorTests {
    static let cases: [LeafCase] = [
        // equals / not_equals
        .init(name: "equals holds on the same string", op: .equals("a"), value: "a", expected: .yes),
        .init(name: "equals fails on another string", op: .equals("a"), value: "b", expected: .no),
        .init(name: "equals compares numbers as numbers", op: .equals(22), value: .number(22.0), expected: .yes),
        .init(name: "equals accepts a numeric string for a number", op: .equals(22), value: "22", expected: .yes),
        .init(name: "equals does not confuse a word with a number", op: .equals(22), value: "twenty-two", expected: .no),
        .init(name: "equals on booleans", op: .equals(true), value: true, expected: .yes),
        .init(name: "equals on lists compares elements", op: .equals(["a", 1]), value: ["a", 1.0], expected: .yes),
        .init(name: "equals on a missing value is false", op: .equals("a"), value: nil, expected: .no),
        .init(name: "equals on null is false", op: .equals("a"), value: .null, expected: .no),
        .init(name: "equals on an unknown value is unknown", op: .equals("a"), value: .unknown, expected: .unknown),
        .init(name: "equals on a list with an unknown element is unknown", op: .equals(["a", "b"]), value: ["a", .unknown], expected: .unknown),
        .init(name: "equals on a list with a known difference is false", op: .equals(["a", "b"]), value: ["c", .unknown], expected: .no),
        .init(name: "not_equals holds on another value", op: .notEquals("a"), value: "b", expected: .yes),
        .init(name: "not_equals fails on the same value", op: .notEquals("a"), value: "a", expected: .no),
        .init(name: "not_equals holds on a missing value", op: .notEquals("a"), value: nil, expected: .yes),
        .init(name: "not_equals holds on null", op: .notEquals("a"), value: .null, expected: .yes),
        .init(name: "not_equals on unknown is unknown", op: .notEquals("a"), value: .unknown, expected: .unknown),
        // in / not_in
        .init(name: "in holds for a listed value", op: .in(["t3.micro", "t3.small"]), value: "t3.small", expected: .yes),
        .init(name: "in fails for an unlisted value", op: .in(["t3.micro"]), value: "m5.4xlarge", expected: .no),
        .init(name: "in matches numbers across int and float", op: .in([22, 3389]), value: .number(3389.0), expected: .yes),
        .init(name: "in on a missing value is false", op: .in(["a"]), value: nil, expected: .no),
        .init(name: "in on unknown is unknown", op: .in(["a"]), value: .unknown, expected: .unknown),
        .init(name: "not_in holds for an unlisted value", op: .notIn(["a"]), value: "b", expected: .yes),
        .init(name: "not_in fails for a listed value", op: .notIn(["a"]), value: "a", expected: .no),
        .init(name: "not_in holds on a missing value", op: .notIn(["a"]), value: nil, expected: .yes),
        .init(name: "not_in on unknown is unknown", op: .notIn(["a"]), value: .unknown, expected: .unknown),
        // matches
        .init(name: "matches a conforming name", op: .matches(try! Pattern("^[a-z]+-(dev|prod)$")), value: "web-prod", expected: .yes),
        .init(name: "matches fails on a nonconforming name", op: .matches(try! Pattern("^[a-z]+-(dev|prod)$")), value: "WebProd", expected: .no),
        .init(name: "matches is unanchored unless anchored", op: .matches(try! Pattern("prod")), value: "web-prod-1", expected: .yes),
        .init(name: "matches fails on a number", op: .matches(try! Pattern("1")), value: 1, expected: .no),
        .init(name: "matches on a missing value is false", op: .matches(try! Pattern(".*")), value: nil, expected: .no),
        .init(name: "matches on unknown is unknown", op: .matches(try! Pattern(".*")), value: .unknown, expected: .unknown),
        // contains / not_contains
        .init(name: "contains finds a list element", op: .contains("0.0.0.0/0"), value: ["10.0.0.0/8", "0.0.0.0/0"], expected: .yes),
        .init(name: "contains fails when no element matches", op: .contains("0.0.0.0/0"), value: ["10.0.0.0/8"], expected: .no),
        .init(name: "contains finds a substring", op: .contains("Action"), value: "{\"Action\":\"*\"}", expected: .yes),
        .init(name: "contains with an unknown element and a known match is true", op: .contains("a"), value: [.unknown, "a"], expected: .yes),
        .init(name: "contains with an unknown element and no known match is unknown", op: .contains("a"), value: [.unknown, "b"], expected: .unknown),
        .init(name: "contains on a missing list is false", op: .contains("a"), value: nil, expected: .no),
        .init(name: "contains on an unknown list is unknown", op: .contains("a"), value: .unknown, expected: .unknown),
        .init(name: "not_contains holds when absent", op: .notContains("a"), value: ["b"], expected: .yes),
        .init(name: "not_contains fails when present", op: .notContains("a"), value: ["a"], expected: .no),
        .init(name: "not_contains holds on a missing list", op: .notContains("a"), value: nil, expected: .yes),
        .init(name: "not_contains with an unknown element is unknown", op: .notContains("a"), value: [.unknown], expected: .unknown),
        // numeric comparisons
        .init(name: "gt holds above", op: .gt(22), value: 23, expected: .yes),
        .init(name: "gt fails at the bound", op: .gt(22), value: 22, expected: .no),
        .init(name: "gte holds at the bound", op: .gte(22), value: 22, expected: .yes),
        .init(name: "lt holds below", op: .lt(22), value: 21.5, expected: .yes),
        .init(name: "lte holds at the bound", op: .lte(22), value: 22, expected: .yes),
        .init(name: "lte fails above", op: .lte(22), value: 443, expected: .no),
        .init(name: "lte compares a numeric string", op: .lte(22), value: "22", expected: .yes),
        .init(name: "gt fails on a non-numeric string", op: .gt(1), value: "many", expected: .no),
        .init(name: "gt fails on a boolean", op: .gt(0), value: true, expected: .no),
        .init(name: "gte on a missing value is false", op: .gte(1), value: nil, expected: .no),
        .init(name: "lt on unknown is unknown", op: .lt(1), value: .unknown, expected: .unknown),
        // exists
        .init(name: "exists true holds on a value", op: .exists(true), value: "x", expected: .yes),
        .init(name: "exists true holds on false", op: .exists(true), value: false, expected: .yes),
        .init(name: "exists true fails on missing", op: .exists(true), value: nil, expected: .no),
        .init(name: "exists true fails on null", op: .exists(true), value: .null, expected: .no),
        .init(name: "exists false holds on missing", op: .exists(false), value: nil, expected: .yes),
        .init(name: "exists false holds on null", op: .exists(false), value: .null, expected: .yes),
        .init(name: "exists false fails on a value", op: .exists(false), value: 0, expected: .no),
        .init(name: "exists on unknown is unknown", op: .exists(true), value: .unknown, expected: .unknown),
        // empty
        .init(name: "empty true holds on an empty list", op: .empty(true), value: [], expected: .yes),
        .init(name: "empty true holds on an empty map", op: .empty(true), value: .object(.init()), expected: .yes),
        .init(name: "empty true holds on an empty string", op: .empty(true), value: "", expected: .yes),
        .init(name: "empty true holds on a missing value", op: .empty(true), value: nil, expected: .yes),
        .init(name: "empty true fails on a non-empty list", op: .empty(true), value: ["a"], expected: .no),
        .init(name: "empty false holds on a non-empty map", op: .empty(false), value: ["k": "v"], expected: .yes),
        .init(name: "empty false fails on a missing value", op: .empty(false), value: nil, expected: .no),
        .init(name: "empty on unknown is unknown", op: .empty(false), value: .unknown, expected: .unknown),
        .init(name: "empty fails on a number", op: .empty(true), value: 0, expected: .no),
    ]

    @Test("leaf", arguments: cases)
    func leaf(_ c: LeafCase) {
        var attrs = Value.Object()
        if let v = c.value { attrs.append("x", v) }
        #expect(eval(.leaf(path("x"), c.op), .object(attrs)) == c.expected)
    }
}

@Suite("Combinators, some/every, paths and resource fields")
struct CombinatorTests {
    let t: Condition = .leaf(path("yes"), .equals(true))
    let f: Condition = .leaf(path("yes"), .equals(false))
    let u: Condition = .leaf(path("later"), .equals(true))
    let attrs: Value = ["yes": true, "later": .unknown]

    @Test func allFollowsThreeValuedLogic() {
        #expect(eval(.all([t, t]), attrs) == .yes)
        #expect(eval(.all([t, f]), attrs) == .no)
        #expect(eval(.all([u, f]), attrs) == .no)
        #expect(eval(.all([t, u]), attrs) == .unknown)
    }

    @Test func anyFollowsThreeValuedLogic() {
        #expect(eval(.any([f, f]), attrs) == .no)
        #expect(eval(.any([f, t]), attrs) == .yes)
        #expect(eval(.any([u, t]), attrs) == .yes)
        #expect(eval(.any([f, u]), attrs) == .unknown)
    }

    @Test func notInvertsAndKeepsUnknown() {
        #expect(eval(.not(t), attrs) == .no)
        #expect(eval(.not(f), attrs) == .yes)
        #expect(eval(.not(u), attrs) == .unknown)
    }

    let ssh: Condition = .all([
        .leaf(path("cidr_blocks"), .contains("0.0.0.0/0")),
        .leaf(path("from_port"), .lte(22)),
        .leaf(path("to_port"), .gte(22)),
    ])

    @Test func someFindsTheOneOffendingBlock() {
        let attrs: Value = ["ingress": [
            ["cidr_blocks": ["0.0.0.0/0"], "from_port": 443, "to_port": 443],
            ["cidr_blocks": ["0.0.0.0/0"], "from_port": 22, "to_port": 22],
        ]]
        #expect(eval(.some(path("ingress"), ssh), attrs) == .yes)
    }

    @Test func someIsFalseWhenNoBlockOffends() {
        let attrs: Value = ["ingress": [["cidr_blocks": ["10.0.0.0/8"], "from_port": 22, "to_port": 22]]]
        #expect(eval(.some(path("ingress"), ssh), attrs) == .no)
    }

    @Test func someOverMissingOrEmptyListIsFalseAndEveryIsTrue() {
        for attrs: Value in [[:], ["ingress": []], ["ingress": .null]] {
            #expect(eval(.some(path("ingress"), ssh), attrs) == .no)
            #expect(eval(.every(path("ingress"), ssh), attrs) == .yes)
        }
    }

    @Test func someAndEveryOverAnUnknownListAreUnknown() {
        let attrs: Value = ["ingress": .unknown]
        #expect(eval(.some(path("ingress"), ssh), attrs) == .unknown)
        #expect(eval(.every(path("ingress"), ssh), attrs) == .unknown)
    }

    @Test func someWithAnUnknownElementIsUnknownUnlessAnotherMatches() {
        let bad: Value = ["cidr_blocks": ["0.0.0.0/0"], "from_port": 22, "to_port": 22]
        let fine: Value = ["cidr_blocks": ["10.0.0.0/8"], "from_port": 22, "to_port": 22]
        #expect(eval(.some(path("ingress"), ssh), ["ingress": [.unknown, fine]]) == .unknown)
        #expect(eval(.some(path("ingress"), ssh), ["ingress": [.unknown, bad]]) == .yes)
    }

    @Test func everyRequiresAllElements() {
        let c: Condition = .leaf(path("encrypted"), .equals(true))
        #expect(eval(.every(path("disks"), c), ["disks": [["encrypted": true], ["encrypted": true]]]) == .yes)
        #expect(eval(.every(path("disks"), c), ["disks": [["encrypted": true], ["encrypted": false]]]) == .no)
    }

    @Test func someOverAMapVisitsItsValues() {
        let c: Condition = .leaf(path("public"), .equals(true))
        #expect(eval(.some(path("buckets"), c), ["buckets": ["a": ["public": false], "b": ["public": true]]]) == .yes)
    }

    @Test func pathsWithIndexesAndQuotedKeys() {
        let attrs: Value = ["ingress": [["from_port": 22]], "tags": ["kubernetes.io/role": "elb"]]
        #expect(eval(.leaf(path("ingress[0].from_port"), .equals(22)), attrs) == .yes)
        #expect(eval(.leaf(path("ingress[1].from_port"), .exists(false)), attrs) == .yes)
        #expect(eval(.leaf(path("tags[\"kubernetes.io/role\"]"), .equals("elb")), attrs) == .yes)
    }

    @Test func aWholeUnknownObjectMakesEveryPathBelowUnknown() {
        let attrs: Value = ["settings": .unknown]
        #expect(eval(.leaf(path("settings.ip.ipv4_enabled"), .equals(true)), attrs) == .unknown)
        #expect(eval(.leaf(path("settings.ip"), .exists(false)), attrs) == .unknown)
    }

    @Test func aPathThroughAScalarIsMissing() {
        #expect(eval(.leaf(path("name.first"), .exists(false)), ["name": "x"]) == .yes)
    }

    @Test func resourceFieldsAreReadable() {
        let r = Resource(address: "module.net.aws_sg.web[\"a\"]", type: "aws_sg", name: "web", module: "module.net",
                         provider: "registry.terraform.io/hashicorp/aws", action: .replace, attributes: [:])
        let ev = Evaluator()
        func holds(_ p: String, _ v: Value) -> Bool {
            ev.outcome(of: .forbid(.leaf(path(p), .equals(v))), on: r) == .violation
        }
        #expect(holds("$address", "module.net.aws_sg.web[\"a\"]"))
        #expect(holds("$type", "aws_sg"))
        #expect(holds("$name", "web"))
        #expect(holds("$module", "module.net"))
        #expect(holds("$provider", "registry.terraform.io/hashicorp/aws"))
        #expect(holds("$action", "replace"))
        #expect(!holds("$action", "create"))
    }

    @Test func forbidAndRequireMapToOutcomes() {
        let ev = Evaluator()
        let r = resource(["instance_type": "m5.4xlarge", "ami": .unknown])
        #expect(ev.outcome(of: .require(.leaf(path("instance_type"), .in(["t3.micro"]))), on: r) == .violation)
        #expect(ev.outcome(of: .require(.leaf(path("instance_type"), .in(["m5.4xlarge"]))), on: r) == .compliant)
        #expect(ev.outcome(of: .forbid(.leaf(path("instance_type"), .equals("m5.4xlarge"))), on: r) == .violation)
        #expect(ev.outcome(of: .forbid(.leaf(path("ami"), .equals("x"))), on: r) == .unknown)
        #expect(ev.outcome(of: .require(.leaf(path("ami"), .equals("x"))), on: r) == .unknown)
    }
}

@Suite("Explanations name the values that decided, and never show sensitive ones")
struct ExplainTests {
    @Test func explainsOnlyTheOffendingElement() {
        let r = resource(["ingress": [
            ["cidr_blocks": ["0.0.0.0/0"], "from_port": 443, "to_port": 443],
            ["cidr_blocks": ["0.0.0.0/0"], "from_port": 22, "to_port": 22],
        ]])
        let rule = Policy.Rule.forbid(.some(path("ingress"), .all([
            .leaf(path("cidr_blocks"), .contains("0.0.0.0/0")),
            .leaf(path("from_port"), .lte(22)),
        ])))
        let evidence = Evaluator().explain(rule, on: r)
        #expect(evidence.map(\.path) == ["ingress[1].cidr_blocks", "ingress[1].from_port"])
        #expect(evidence[1].text == "ingress[1].from_port = 22 (<= 22)")
    }

    @Test func explainsAFailedRequirement() {
        let r = resource(["instance_type": "m5.4xlarge"])
        let evidence = Evaluator().explain(.require(.leaf(path("instance_type"), .in(["t3.micro"]))), on: r)
        #expect(evidence.map(\.text) == ["instance_type = \"m5.4xlarge\" (expected: in [\"t3.micro\"])"])
    }

    @Test func masksSensitiveValuesAtAnyDepth() {
        let r = resource(
            ["password": "hunter2", "settings": [["secret": "s3cr3t", "name": "ok"]]],
            sensitive: ["password": true, "settings": [["secret": true]]])
        let rule = Policy.Rule.forbid(.any([
            .leaf(path("password"), .exists(true)),
            .leaf(path("settings"), .exists(true)),
        ]))
        let text = Evaluator().explain(rule, on: r).map(\.text).joined(separator: " ")
        #expect(!text.contains("hunter2"))
        #expect(!text.contains("s3cr3t"))
        #expect(text.contains("(sensitive)"))
        #expect(text.contains("\"ok\""))
    }

    @Test func aSensitiveParentMasksItsChildren() {
        let r = resource(["db": ["password": "hunter2"]], sensitive: ["db": true])
        let text = Evaluator().explain(.forbid(.leaf(path("db.password"), .equals("hunter2"))), on: r).map(\.text).joined()
        #expect(!text.contains("hunter2"))
    }

    @Test func explainsUnknownOutcomes() {
        let r = resource(["ami": .unknown])
        let evidence = Evaluator().explain(.require(.leaf(path("ami"), .equals("x"))), on: r)
        #expect(evidence.first?.held == nil)
        #expect(evidence.first?.text.contains("known only after apply") == true)
    }
}

@Suite("Paths, globs and suggestions")
struct PathTests {
    @Test(arguments: [
        ("tags.Name", [Path.Component.key("tags"), .key("Name")]),
        ("ingress[0].from_port", [.key("ingress"), .index(0), .key("from_port")]),
        ("a[1][2]", [.key("a"), .index(1), .index(2)]),
        ("tags[\"kubernetes.io/role\"]", [.key("tags"), .key("kubernetes.io/role")]),
    ])
    func parses(_ text: String, _ components: [Path.Component]) throws {
        let p = try Path.parse(text).get()
        #expect(p.components == components)
    }

    @Test(arguments: ["", "a..b", "a.", "a[x]", "a[-1]", "a[0]b", ".a"])
    func rejectsBadSyntax(_ text: String) {
        if case .success = Path.parse(text) { Issue.record("accepted '\(text)'") }
    }

    @Test func unknownResourceFieldSuggestsTheClosest() {
        guard case .failure(.unknownField(_, let suggestion)) = Path.parse("$adress") else {
            Issue.record("accepted $adress"); return
        }
        #expect(suggestion == "$address")
    }

    @Test func globs() {
        #expect(Glob("aws_*").matches("aws_instance"))
        #expect(!Glob("aws_*").matches("azurerm_vm"))
        #expect(Glob("aws_s3_*_policy").matches("aws_s3_bucket_policy"))
        #expect(Glob("aws_?nstance").matches("aws_instance"))
        #expect(Glob("aws_instance").matches("aws_instance"))
        #expect(!Glob("aws_instance").matches("aws_instances"))
        #expect(Glob("*").matches(""))
    }

    @Test func suggestions() {
        #expect(closestMatch(to: "greater_then", in: Operator.names) == nil || closestMatch(to: "lte", in: Operator.names) == "lte")
        #expect(closestMatch(to: "not_equal", in: Operator.names) == "not_equals")
        #expect(closestMatch(to: "resouce_types", in: ["resource_types", "remediation"]) == "resource_types")
        #expect(closestMatch(to: "zzzzzz", in: ["equals"]) == nil)
    }
}
