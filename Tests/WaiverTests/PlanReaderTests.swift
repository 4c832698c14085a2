import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats
import WaiverUseCases

func readPlan(_ text: String) throws(InputError) -> Plan {
    try PlanReader.parse(Data(text.utf8), file: "plan.json")
}

func planError(_ data: Data) -> InputError? {
    do {
        _ = try PlanReader.parse(data, file: "plan.json")
        return nil
    } catch {
        return error
    }
}

@Suite("Terraform plan reader")
struct PlanReaderTests {
    @Test(arguments: ["0.1", "0.2", "1.0", "1.1", "1.2"])
    func readsEveryFormatVersion(_ version: String) throws {
        let plan = try readPlan(planJSON([change("aws_instance.a", after: "{\"instance_type\":\"t3.micro\"}")], version: version))
        #expect(plan.formatVersion == version)
        #expect(plan.resources.map(\.address) == ["aws_instance.a"])
        #expect(plan.resources.first?.attributes["instance_type"] == "t3.micro")
    }

    @Test func rejectsAnUnsupportedFormatVersion() {
        #expect(planError(Data(planJSON([], version: "2.0").utf8))?.message.contains("unsupported plan format_version \"2.0\"") == true)
    }

    @Test func mapsActionsAndSkipsDataSourcesDeletionsAndForgets() async throws {
        let plan = try readPlan(planJSON([
            change("aws_instance.create", actions: ["create"]),
            change("aws_instance.update", actions: ["update"]),
            change("aws_instance.replace1", actions: ["delete", "create"]),
            change("aws_instance.replace2", actions: ["create", "delete"]),
            change("aws_instance.noop", actions: ["no-op"]),
            change("aws_instance.gone", actions: ["delete"], after: "null"),
            change("aws_instance.forgotten", actions: ["forget"], after: "null"),
            change("data.aws_ami.x", type: "aws_ami", actions: ["read"], mode: "data"),
        ]))
        #expect(plan.changeCount == 8)
        #expect(plan.resources.map(\.address) == [
            "aws_instance.create", "aws_instance.update", "aws_instance.replace1", "aws_instance.replace2", "aws_instance.noop",
        ])
        #expect(plan.resources.map(\.action) == [.create, .update, .replace, .replace, .noop])
    }

    @Test func rejectsUnknownActions() {
        let e = planError(Data(planJSON([change("aws_instance.a", actions: ["explode"])]).utf8))
        #expect(e?.description.contains("resource_changes[0] (aws_instance.a): unknown change.actions") == true)
    }

    @Test func readsModulesCountAndForEachAddresses() async throws {
        let plan = try readPlan(planJSON([
            change("module.a.module.b.module.c.aws_s3_bucket.x[\"logs\"]", type: "aws_s3_bucket", module: "module.a.module.b.module.c"),
            change("module.net[1].aws_subnet.private[0]", type: "aws_subnet", module: "module.net[1]"),
        ]))
        #expect(plan.resources.map(\.module) == ["module.a.module.b.module.c", "module.net[1]"])
        #expect(plan.resources.map(\.type) == ["aws_s3_bucket", "aws_subnet"])
        #expect(plan.resources[0].name == "x")
    }

    @Test func marksUnknownValuesAtAnyDepth() async throws {
        let plan = try readPlan(planJSON([change(
            "aws_security_group.a",
            after: #"{"name":"a","ingress":[{"from_port":22,"cidr_blocks":["10.0.0.0/8","x"]}],"tags":{"Name":"n"}}"#,
            unknown: #"{"id":true,"ingress":[{"cidr_blocks":[false,true]}],"settings":true,"tags":{}}"#)]))
        let attrs = try #require(plan.resources.first?.attributes)
        #expect(attrs["id"] == .unknown)  // absent from `after`, unknown in the mask
        #expect(attrs["settings"] == .unknown)
        #expect(attrs["name"] == "a")
        #expect(attrs["ingress"]?.arrayValue?.first?["cidr_blocks"] == ["10.0.0.0/8", .unknown])
        #expect(attrs["ingress"]?.arrayValue?.first?["from_port"] == 22)
        #expect(attrs["tags"]?["Name"] == "n")
    }

    @Test func keepsTheSensitiveMask() async throws {
        let plan = try readPlan(planJSON([change(
            "aws_db_instance.a", after: #"{"password":"hunter2","port":5432}"#, sensitive: #"{"password":true}"#)]))
        #expect(plan.resources.first?.sensitive == ["password": true])
        #expect(plan.resources.first?.attributes["password"] == "hunter2")
    }

    static let sample = planJSON([change("aws_instance.a", after: "{\"instance_type\":\"t3.micro\",\"tags\":{\"Name\":\"é-ü\"}}")])

    @Test func readsUTF8WithBOM() async throws {
        let plan = try PlanReader.parse(Data([0xEF, 0xBB, 0xBF]) + Data(Self.sample.utf8), file: "p")
        #expect(plan.resources.first?.attributes["tags"]?["Name"] == "é-ü")
    }

    @Test func readsUTF16LittleEndianWithBOMAndCRLF() async throws {
        let text = Self.sample.replacingOccurrences(of: ",", with: ",\r\n")
        let data = Data([0xFF, 0xFE]) + text.data(using: .utf16LittleEndian)!
        let plan = try PlanReader.parse(data, file: "p")
        #expect(plan.resources.first?.attributes["tags"]?["Name"] == "é-ü")
    }

    @Test func readsUTF16BigEndianWithBOM() async throws {
        let data = Data([0xFE, 0xFF]) + Self.sample.data(using: .utf16BigEndian)!
        #expect(try PlanReader.parse(data, file: "p").resources.count == 1)
    }

    @Test func skipsTheSetupTerraformWrapperLine() async throws {
        let data = Data(("[command]/home/runner/work/_temp/terraform-bin show -json plan.tfplan\n" + Self.sample).utf8)
        #expect(try PlanReader.parse(data, file: "p").resources.count == 1)
    }

    @Test func skipsPlannedValuesAndPriorStateWithoutBuildingThem() async throws {
        let text = #"{"format_version":"1.2","planned_values":{"root_module":{"resources":[{"x":[1,2,{"y":"z"}]}]}},"prior_state":{"values":{}},"configuration":{"a":null},"resource_changes":[],"checks":[true,false,null,1.5e3,-0]}"#
        #expect(try readPlan(text).resources.isEmpty)
    }

    @Test func aPlanWithoutChangesIsEmpty() async throws {
        #expect(try readPlan(#"{"format_version":"1.2","terraform_version":"1.9.0"}"#).resources.isEmpty)
    }

    @Test(arguments: [
        ("", "the file is empty"),
        ("   \n", "unexpected end of input"),
        (#"{"format_version":"1.2","resource_changes":[{"address":"a""#, "truncated"),
        (#"{"format_version":"1.2","resource_changes":["#, "truncated"),
        (#"[1,2,3]"#, "not a Terraform plan"),
        (#"{"resource_changes":[]}"#, "no format_version"),
        (#"{"hello":"world"}"#, "no format_version and no resource_changes"),
        (#"{"format_version":1.2}"#, "format_version must be a string"),
        (#"{"format_version":"1.2","resource_changes":{}}"#, "resource_changes must be an array, found object"),
        (#"{"format_version":"1.2","resource_changes":[42]}"#, "resource_changes[0] must be an object"),
        (#"{"format_version":"1.2","resource_changes":[{"address":7}]}"#, "resource_changes[0].address must be a string, found number"),
        (#"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","change":{"actions":"create"}}]}"#, "change.actions must be a non-empty list of strings"),
        (#"{"format_version":"1.2","resource_changes":[{"address":"a","type":"t","change":{}}]}"#, "has no change.actions"),
        (#"{"format_version":"1.2","resource_changes":[{"type":"t"}]}"#, "has no address"),
        (#"{"format_version":"1.2",}"#, "expected a string key"),
        (#"{"format_version":"1.2"} trailing"#, "after the end of the JSON document"),
        (#"{"format_version":"1.2","x":tru}"#, "invalid literal"),
        (#"{"format_version":"1.2","x":01}"#, "may not start with 0"),
        (#"{"format_version":"1.2","x":"a\qb"}"#, "bad escape"),
        (#"{"format_version":"1.2","x":"a\u12"}"#, "bad \\u escape"),
        (#"{"format_version":"1.2","x":"0123456789abcdef0123\u12zz4567"}"#, "bad \\u escape"),
        (#"{"format_version":"1.2","x":"0123456789abcdefghij"#, "unterminated string"),
        ("{\"format_version\":\"1.2\",\"x\":\"0123456789abcdef\u{1F}ghij\"}", "control character in string"),
        ("{\"format_version\":\"1.2\",\"x\":\"a\u{01}b\"}", "control character in string"),
    ])
    func rejectsBadInput(_ text: String, _ fragment: String) {
        let e = planError(Data(text.utf8))
        #expect(e?.description.contains(fragment) == true, "got \(String(describing: e))")
        #expect(e?.file == "plan.json")
    }

    @Test func reportsTheLineOfASyntaxError() {
        let e = planError(Data("{\n  \"format_version\": \"1.2\",\n  \"resource_changes\": [\n    {,}\n  ]\n}".utf8))
        #expect(e?.line == 4)
    }

    @Test func rejectsInvalidUTF8() {
        var data = Data(#"{"format_version":"1.2","x":""#.utf8)
        data += Data([0xC3, 0x28, 0xFF])
        data += Data(#""}"#.utf8)
        #expect(planError(data)?.message.contains("invalid UTF-8") == true)
    }

    @Test func boundsNestingDepthWithoutCrashing() {
        let depth = 200_000
        let text = planJSON([change("aws_instance.a", after: String(repeating: "[", count: depth) + String(repeating: "]", count: depth))])
        let e = planError(Data(text.utf8))
        #expect(e?.message.contains("nesting deeper than 512 levels") == true)
        let objects = "{\"format_version\":\"1.2\",\"planned_values\":" + String(repeating: "{\"a\":", count: depth) + "1" + String(repeating: "}", count: depth) + "}"
        #expect(planError(Data(objects.utf8))?.message.contains("nesting deeper") == true)
    }

    @Test func aMissingFileIsAnInputError() {
        #expect(throws: InputError.self) { try PlanReader.read(path: "/nonexistent/plan.json") }
    }

    @Test func unicodeEscapesAndSurrogatePairs() async throws {
        let v = try JSONReader.parse(Data(#"["\u00e9\ud83d\ude00\n\"\/", 1.5e2, -3, true, null, {}]"#.utf8))
        #expect(v == ["é😀\n\"/", 150, -3, true, .null, .object(.init())])
    }

    /// Strings are scanned eight bytes at a time: a quote, backslash, control or non-ASCII byte at
    /// any position of a word, or in the tail shorter than a word, must still be seen.
    @Test func stringsAreReadExactlyWhateverTheirLengthAndWhereTheSpecialBytesFall() async throws {
        for length in 0..<40 {
            for at in 0..<max(1, length) {
                var chars = Array(repeating: Character("a"), count: length)
                var expected = chars
                if length > 0 { chars[at] = "é"; expected[at] = "é" }
                let plain = String(chars)
                let v = try JSONReader.parse(Data("[\"\(plain)\", \"x\\\"\(plain)\\\\\"]".utf8))
                #expect(v == [.string(String(expected)), .string("x\"" + String(expected) + "\\")], "length \(length), at \(at)")
            }
        }
    }

    @Test func readsOnlyTheKeptMembersOfAnObjectAndStillChecksTheRest() async throws {
        let text = #"{"a": 1, "b\u0061d": [1, {"x": "y"}], "tags": {"Name": "n"}, "tägs": 2, "quo\"te": 3}"#
        let v: Value = try Data(text.utf8).withUnsafeBytes { raw in
            var r = JSONReader(raw.bindMemory(to: UInt8.self))
            return try r.readValue(keeping: KeyFilter(["tags", "bad", "tägs", "quo\"te"]))
        }
        #expect(v == ["bad": [1, ["x": "y"]], "tags": ["Name": "n"], "tägs": 2, "quo\"te": 3])
        let broken = Data(#"{"a": [1, tru], "tags": {}}"#.utf8)
        #expect(throws: JSONSyntaxError.self) {
            try broken.withUnsafeBytes { raw in
                var r = JSONReader(raw.bindMemory(to: UInt8.self))
                _ = try r.readValue(keeping: KeyFilter(["tags"]))
            }
        }
    }
}

@Suite("Reading only the attributes the policies read")
struct AttributeSelectionTests {
    static let policyFile = """
        policies:
          - id: NAME
            title: names
            resource_types: ["aws_*"]
            require: { path: tags.Name, matches: '^[a-z-]+$' }
          - id: PORTS
            title: ports
            resource_types: [aws_security_group]
            forbid:
              any:
                - { some: ingress, where: { all: [{ path: from_port, lte: 22 }, { path: cidr_blocks, contains: "0.0.0.0/0" }] } }
                - not: { path: $address, matches: '^module' }
                - { path: 'labels["a.b"]', exists: true }
          - id: WHOLE
            title: everything
            resource_types: [google_*]
            forbid: { every: "@", where: { path: "@", equals: 1 } }
          - id: SCAN
            title: from a scanner
            source: sarif
        """

    @Test func keysAreTheFirstStepOfEveryTopLevelPathOfThePoliciesThatApply() async throws {
        let selection = AttributeSelection(policies: try policies([("p.yaml", Self.policyFile)]))
        #expect(selection.keys(forType: "aws_security_group") == ["tags", "ingress", "labels"])
        #expect(selection.keys(forType: "aws_instance") == ["tags"])
        #expect(selection.keys(forType: "azurerm_thing") == [])
        // A policy that reads the resource's attributes as a whole gets all of them.
        #expect(selection.keys(forType: "google_bucket") == nil)
        #expect(AttributeSelection.all.keys(forType: "aws_instance") == nil)
    }

    @Test func aSelectiveReadBuildsOnlyTheSelectedAttributesAndTheirMasks() async throws {
        let text = planJSON([
            change("aws_instance.a", after: #"{"ami":"x","tags":{"Name":"a"},"password":"p"}"#,
                   unknown: #"{"arn":true,"tags":{"Name":true}}"#, sensitive: #"{"password":true,"tags":{}}"#),
            // `change` before `type`: the reader cannot know the type in time and builds everything.
            #"{"address":"aws_instance.b","change":{"actions":["create"],"after":{"ami":"y","tags":{}}},"type":"aws_instance"}"#,
        ])
        let selection = AttributeSelection(policies: try policies([("p.yaml", Self.policyFile)]))
        let plan = try PlanReader.parse(Data(text.utf8), file: "plan.json", selection: selection)
        #expect(plan.resources[0].attributes == ["tags": ["Name": .unknown]])
        #expect(plan.resources[0].sensitive == ["tags": .object(.init())])
        #expect(plan.resources[1].attributes == ["ami": "y", "tags": .object(.init())])
    }

    /// A plan of a mebibyte or more is mapped, not read: the same bytes, and the same report.
    @Test func aLargePlanIsMappedAndReadTheSame() throws {
        let dir = TempDir()
        var changes: [String] = []
        for i in 0..<4_000 { changes.append(change("aws_instance.web_\(i)", after: #"{"instance_type":"m5.8xlarge","tags":{"Name":"web-\#(i)"}}"#)) }
        let text = planJSON(changes)
        #expect(text.utf8.count >= 1 << 20)
        let path = dir.write("plan.json", text)
        let mapped = try InputFile.read(path, maxBytes: InputFile.maxMappedBytes)
        #expect(mapped == Data(text.utf8))
        let pack = try PolicyLoader.load(directory: repoRoot + "/policies")
        let report = try expectSameReport(path, policies: pack)
        #expect(report.contains("aws_instance.web_3999"))
    }

    /// The size limit is the size of the file a path names, through a symbolic link too (it used to
    /// be the link's own size, so a link let any file through).
    @Test func theSizeLimitFollowsSymbolicLinks() throws {
        let dir = TempDir()
        let target = dir.write("big.json", Data(repeating: 0x20, count: 2 << 20))
        let link = dir.path + "/link.json"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        #expect(throws: InputError.self) { try InputFile.read(link, maxBytes: 1 << 20) }
        do { _ = try InputFile.read(link, maxBytes: 1 << 20) } catch {
            #expect(error.message == "file is 2097152 bytes, over the limit of 1048576")
        }
        #expect(try InputFile.read(link, maxBytes: 4 << 20).count == 2 << 20)
    }

    /// The selection must never change a result: every example plan gives the same report either way.
    @Test(arguments: ["compliant.json", "multi-cloud.json", "web-app.json"])
    func theReportIsTheSameAsReadingEveryAttribute(_ name: String) throws {
        let pack = try PolicyLoader.load(directory: repoRoot + "/policies")
        let report = try expectSameReport(repoRoot + "/Examples/plans/" + name, policies: pack)
        #expect(report.contains("\"resource\"") == (name != "compliant.json"))
    }
}

/// Checks a plan read whole and read with the policies' selection: the JSON reports must be identical.
@discardableResult
func expectSameReport(_ file: String, policies: [Policy]) throws -> String {
    let engine = CheckEngine(policies: policies, keepCompliant: true)
    func report(_ selection: AttributeSelection) throws -> String {
        let plan = try PlanReader.read(path: file, selection: selection)
        return JSONWriter.write(JSONOutput.value(engine.check(resources: plan.resources.map { ($0, file: file) }, external: [], workspace: "w")))
    }
    let whole = try report(.all)
    #expect(try report(AttributeSelection(policies: policies)) == whole, "\(file)")
    // A check evaluates each resource as it is read and keeps none: the same report again.
    let streamed = try CheckService.evaluate(policies: policies, configuration: Configuration(), plan: (file, file), sarif: [], workspace: "w",
                                             unknown: .warn, keepCompliant: true)
    #expect(JSONWriter.write(JSONOutput.value(streamed)) == whole, "\(file) read while evaluated")
    return whole
}
