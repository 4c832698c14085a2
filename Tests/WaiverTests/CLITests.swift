import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// The built `waiver` binary next to this test bundle (or $WAIVER_BIN).
let waiverBinary: String = {
    if let env = ProcessInfo.processInfo.environment["WAIVER_BIN"] { return env }
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("waiver").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir.deleteLastPathComponent()
    }
    return repoRoot + "/.build/debug/waiver"
}()


struct Run {
    let code: Int32
    let out: String
    let err: String
}

/// Runs the binary with arguments in a directory and collects exit code, stdout and stderr.
func waiver(_ args: [String], in cwd: String = repoRoot, env: [String: String] = [:], stdin: Data? = nil) throws -> Run {
    // Checks record into a register in a scratch folder, out of the checkout, unless a test names one.
    let scratch = TempDir()
    var environment = ["WAIVER_REGISTER": scratch.path + "/register.sqlite"]
    environment.merge(env) { _, new in new }
    return try runProgram(waiverBinary, args, in: cwd, env: environment, unset: env["WAIVER_NOW"] == nil ? ["WAIVER_NOW"] : [], stdin: stdin)
}

/// Runs a program with arguments in a directory (this process's environment, plus `env`, less
/// `unset`) and collects exit code, stdout and stderr.
func runProgram(_ executable: String, _ args: [String], in cwd: String, env: [String: String] = [:], unset: [String] = [], stdin: Data? = nil) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    var environment = ProcessInfo.processInfo.environment
    for key in unset { environment.removeValue(forKey: key) }
    environment.merge(env) { _, new in new }
    p.environment = environment
    // Output goes to files, so a large report cannot fill a pipe and stall the child. The folder goes with the call.
    let scratch = TempDir()
    let outPath = scratch.write("stdout", ""), errPath = scratch.write("stderr", "")
    guard let outHandle = FileHandle(forWritingAtPath: outPath), let errHandle = FileHandle(forWritingAtPath: errPath) else {
        throw CocoaError(.fileWriteUnknown)
    }
    p.standardOutput = outHandle
    p.standardError = errHandle
    // Standard input through a pipe (not a file), as `terraform show -json plan.out | waiver check --plan -` gives it.
    let input = Pipe()
    p.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try p.run()
    if let stdin {
        // A child that exits without reading must not take the test runner down with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let writer = input.fileHandleForWriting
        DispatchQueue.global().async {
            try? writer.write(contentsOf: stdin)
            try? writer.close()
        }
    }
    p.waitUntilExit()
    try outHandle.close()
    try errHandle.close()
    let outData = FileManager.default.contents(atPath: outPath) ?? Data()
    let errData = FileManager.default.contents(atPath: errPath) ?? Data()
    return Run(code: p.terminationStatus, out: String(decoding: outData, as: UTF8.self), err: String(decoding: errData, as: UTF8.self))
}

@Suite("The waiver binary, end to end", .serialized)
struct CLITests {
    /// `--plan -` and `/dev/stdin` read standard input, a pipe, as `terraform show -json plan.out |` gives it.
    @Test func aPlanOnStandardInput() async throws {
        let plan = try Data(contentsOf: URL(fileURLWithPath: repoRoot + "/Examples/plans/web-app.json"))
        let fromFile = try waiver(["check", "--plan", "Examples/plans/web-app.json", "--workspace", "w"])
        for name in ["-", "/dev/stdin"] {
            let r = try waiver(["check", "--plan", name, "--workspace", "w"], stdin: plan)
            #expect(r.code == 1 && r.out.hasSuffix(fromFile.out.split(separator: "\n").last.map { String($0) + "\n" } ?? "?"), "\(name): \(r.err)")
        }
        let empty = try waiver(["check", "--plan", "-", "--workspace", "w"], stdin: Data())
        #expect(empty.code == 2 && empty.err.contains("stdin"), "\(empty.err)")
    }

    /// Shell completion (swift-argument-parser's), as the README tells users to install it: the bash
    /// script registers a completion for `waiver` when sourced, and offers the subcommands.
    @Test func shellCompletionScripts() async throws {
        let bash = try waiver(["--generate-completion-script", "bash"])
        #expect(bash.code == 0 && bash.out.contains("check") && bash.out.contains("approve"))
        let dir = TempDir()
        let script = dir.write("waiver.bash", bash.out)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "source \(script) && complete -p waiver"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && said.contains("waiver"), "\(said)")
        #expect(try waiver(["--generate-completion-script", "zsh"]).out.hasPrefix("#compdef waiver"))
        #expect(try waiver(["--generate-completion-script", "fish"]).code == 0)
    }

    @Test func checksTheExamplePlanAndBlocks() async throws {
        let r = try waiver(["check", "--plan", "Examples/plans/web-app.json"])
        #expect(r.code == 1)
        #expect(r.err.isEmpty)
        #expect(r.out.contains("BLOCKING  NET-001"))
        #expect(r.out.contains("resource: module.network.aws_security_group.bastion"))
        #expect(r.out.hasSuffix("BLOCKED: 13 resources, 5 violations (5 blocking, 0 excepted, 0 pending), 2 unknown\n"))
    }

    @Test func aCompliantPlanPasses() async throws {
        let r = try waiver(["check", "--plan", "Examples/plans/compliant.json"])
        #expect(r.code == 0)
        #expect(r.out.hasSuffix("PASS: 7 resources, 0 violations (0 blocking, 0 excepted, 0 pending), 0 unknown\n"))
    }

    @Test func unknownBlocksWhenAsked() async throws {
        let dir = TempDir()
        let plan = dir.write("plan.json", planJSON([change("aws_instance.a", after: #"{"tags":{"Name":"web-prod-a"}}"#, unknown: #"{"instance_type":true}"#)]))
        dir.write("p/p.yaml", "policies:\n  - { id: COST-1, title: t, resource_types: [aws_instance], require: { path: instance_type, in: [t3.micro] } }\n")
        let warn = try waiver(["check", "--plan", plan, "--policies", dir.path + "/p"])
        #expect(warn.code == 0)
        #expect(warn.out.contains("UNKNOWN   COST-1"))
        let block = try waiver(["check", "--plan", plan, "--policies", dir.path + "/p", "--unknown=block"])
        #expect(block.code == 1)
    }

    @Test func jsonToAFileWithASummaryOnStderr() async throws {
        let dir = TempDir()
        let out = dir.path + "/report.json"
        let r = try waiver(["check", "--plan", "Examples/plans/web-app.json", "--format", "json", "--output", out, "--workspace", "shop-prod"])
        #expect(r.code == 1)
        #expect(r.out.isEmpty)
        #expect(r.err == "waiver: BLOCKED: 13 resources, 5 violations (5 blocking, 0 excepted, 0 pending), 2 unknown\n")
        let v = try JSONReader.parse(try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(v["verdict"] == "blocked")
        #expect(v["workspace"] == "shop-prod")
        #expect(v["results"]?.arrayValue?.count == 7)
    }

    @Test(arguments: ["sarif", "junit", "markdown"])
    func everyFormatRuns(_ format: String) throws {
        let r = try waiver(["check", "--plan", "Examples/plans/web-app.json", "--format", format])
        #expect(r.code == 1)
        #expect(!r.out.isEmpty)
        #expect(!r.out.contains("hunter2") && !r.out.contains("S3cr3t"))
    }

    @Test func sarifAloneNeedsNoPlan() async throws {
        let r = try waiver(["check", "--sarif", "Tests/WaiverTests/Fixtures/golden/scan.sarif", "--format", "json"])
        #expect(r.code == 1)
        let v = try JSONReader.parse(Data(r.out.utf8))
        #expect(v["summary"]?["violations"] == 2)
    }

    @Test func initWritesAStarterPackThatChecks() async throws {
        let dir = TempDir()
        let first = try waiver(["init"], in: dir.path)
        #expect(first.code == 0)
        #expect(first.out.contains("32 policies: 29 checked on plans, 3 program controls, in 10 files, with their tests"), "\(first.out)")
        #expect(StarterPack.policyCount >= 20 && StarterPack.policyCount <= 30)
        let again = try waiver(["init"], in: dir.path)
        #expect(again.code == 2)
        #expect(again.err.hasPrefix("error: ./waiver.yaml already exists"))
        let check = try waiver(["check", "--plan", repoRoot + "/Examples/plans/web-app.json"], in: dir.path)
        #expect(check.code == 1)
        #expect(check.out.contains("NET-001"))
    }

    @Test func helpAndVersion() async throws {
        let help = try waiver(["--help"])
        #expect(help.code == 0)
        #expect(help.out.contains("check"))
        let checkHelp = try waiver(["check", "--help"])
        #expect(checkHelp.code == 0 && checkHelp.out.contains("--unknown"))
    }
}

@Suite("Bad input: exit 2, one short line, nothing evaluated or written", .serialized)
struct CLIBadInputTests {
    func expectRefused(_ args: [String], in cwd: String = repoRoot, _ fragment: String) throws {
        let r = try waiver(args, in: cwd)
        #expect(r.code == 2, "exit \(r.code) for \(args): \(r.err)")
        #expect(r.out.isEmpty)
        #expect(r.err.contains(fragment), "stderr: \(r.err)")
        #expect(r.err.hasPrefix("error: "))
    }

    @Test func usageErrors() async throws {
        try expectRefused(["check"], "give a plan (--plan FILE), at least one SARIF report (--sarif FILE) or a folder to scan for suppressions")
        try expectRefused(["check", "--plan", "x.json", "--format", "pdf"], "pdf")
        try expectRefused(["check", "--plan", "x.json", "--bogus"], "--bogus")
        try expectRefused(["frobnicate"], "frobnicate")
    }

    @Test func missingFiles() async throws {
        try expectRefused(["check", "--plan", "no/such/plan.json"], "error: no/such/plan.json: no such file")
        try expectRefused(["check", "--sarif", "missing.sarif"], "missing.sarif: no such file")
        try expectRefused(["check", "--plan", "Examples/plans/web-app.json", "--policies", "nope"], "nope: policy directory not found")
        try expectRefused(["check", "--plan", "Examples/plans/web-app.json", "--config", "nope.yaml"], "nope.yaml: configuration file not found")
    }

    @Test func badPlans() async throws {
        let dir = TempDir()
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        let cases: [(String, Data, String)] = [
            ("empty.json", Data(), "the file is empty"),
            ("truncated.json", Data(#"{"format_version":"1.2","resource_changes":[{"address":"#.utf8), "truncated"),
            ("deep.json", Data(planJSON([change("aws_instance.a", after: deep)]).utf8), "nesting deeper than 512 levels"),
            ("utf8.json", Data(#"{"format_version":"1.2","x":""#.utf8) + Data([0xFF, 0xFE, 0xC3]) + Data(#""}"#.utf8), "invalid UTF-8"),
            ("types.json", Data(#"{"format_version":"1.2","resource_changes":[{"address":["a"]}]}"#.utf8), "resource_changes[0].address must be a string, found array"),
            ("notplan.json", Data(#"{"version":4,"resources":[]}"#.utf8), "not a Terraform plan"),
        ]
        for (name, data, fragment) in cases {
            let path = dir.write(name, data)
            try expectRefused(["check", "--plan", path], fragment)
            let r = try waiver(["check", "--plan", path])
            #expect(r.err.split(separator: "\n").count == 1, "\(name): \(r.err)")
        }
    }

    @Test func badPoliciesNameFileLineAndId() async throws {
        let dir = TempDir()
        dir.write("p/net.yaml", "policies:\n  - id: NET-001\n    title: t\n    forbid: { path: from_port, greater_than: 22 }\n")
        try expectRefused(["check", "--plan", "Examples/plans/web-app.json", "--policies", dir.path + "/p"],
                          "p/net.yaml:4: NET-001: unknown operator 'greater_than' (did you mean 'gt'?)")
        dir.write("d/a.yaml", "policies:\n  - { id: X-1, title: t, forbid: { path: a, exists: true } }\n")
        dir.write("d/b.yaml", "policies:\n  - { id: X-1, title: t, forbid: { path: a, exists: true } }\n")
        try expectRefused(["check", "--plan", "Examples/plans/web-app.json", "--policies", dir.path + "/d"],
                          "d/b.yaml:2: X-1: duplicate policy id (also defined at \(dir.path)/d/a.yaml:2)")
    }

    @Test func badConfigurationNamesKeyAndLine() async throws {
        let dir = TempDir()
        dir.write("waiver.yaml", "policies: policies/\nexceptions:\n  max_days: 365\n")
        try expectRefused(["check", "--plan", repoRoot + "/Examples/plans/web-app.json"], in: dir.path,
                          "waiver.yaml:3: exceptions.max_days: 'exceptions.max_days' must be between 1 and 90, found 365")
    }

    @Test func anInvalidSarifReportIsAnInputError() async throws {
        let dir = TempDir()
        let path = dir.write("bad.sarif", #"{"version":"2.1.0","runs":[{"results":[]}]}"#)
        try expectRefused(["check", "--sarif", path], "not a valid SARIF 2.1.0 report: runs[0] has no tool.driver")
    }

    @Test func nothingIsHalfWrittenOnBadInput() async throws {
        let dir = TempDir()
        let out = dir.write("report.json", "previous report")
        let bad = dir.write("bad.json", "{")
        try expectRefused(["check", "--plan", bad, "--format", "json", "--output", out], "truncated")
        #expect(dir.read("report.json") == "previous report")
    }
}

@Suite("Starter pack")
struct StarterPackTests {
    @Test func embeddedPackMatchesTheRepository() async throws {
        for file in StarterPack.files {
            let onDisk = try String(contentsOfFile: repoRoot + "/" + file.path, encoding: .utf8)
            #expect(onDisk == file.contents, "\(file.path) differs: run scripts/gen-starter-pack.py")
        }
        let disk = try (PolicyLoader.files(in: repoRoot + "/policies") + PolicyLoader.files(in: repoRoot + "/policies", tests: true)).map { ($0 as NSString).lastPathComponent }
        #expect(disk.sorted() == StarterPack.files.dropFirst().map { ($0.path as NSString).lastPathComponent }.sorted())
    }

    @Test func everyStarterPolicyHasDescriptionAndRemediation() async throws {
        let policies = try PolicyLoader.load(directory: repoRoot + "/policies")
        #expect(policies.filter { $0.rule != .control }.count == StarterPack.policyCount)
        #expect(policies.filter { $0.rule == .control }.map(\.id) == ["CTRL-HR-001", "CTRL-DEV-001", "CTRL-IAM-001"])
        for p in policies {
            #expect(!p.description.isEmpty, "\(p.id) has no description")
            #expect(!p.remediation.isEmpty, "\(p.id) has no remediation")
        }
        let config = try ConfigLoader.load(path: repoRoot + "/waiver.yaml", required: true)
        #expect(ConfigLoader.validate(policies, against: config).isEmpty)
        let ids = Set(policies.map(\.id))
        for required in ["NAME-001", "COST-001", "NET-001", "NET-002", "NET-003"] { #expect(ids.contains(required)) }
        #expect(ids.contains { $0.hasPrefix("AZ-") } && ids.contains { $0.hasPrefix("GCP-") })
    }
}
