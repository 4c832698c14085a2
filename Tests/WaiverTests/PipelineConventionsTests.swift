import Foundation
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// The command-line conventions of the field (Checkov, Trivy, conftest): several reports from one
/// run, --quiet, colour, environment variables, progress while --wait waits, a check without a
/// writable register, "did you mean".
@Suite("Command-line conventions")
struct PipelineConventionsTests {
    let webApp = repoRoot + "/Examples/plans/web-app.json"

    @Test func severalReportsFromOneRun() throws {
        let dir = TempDir()
        let r = try waiver(["check", "--plan", webApp, "--format", "sarif", "--output", dir.path + "/a.sarif", "--format", "junit", "--output", dir.path + "/b.xml",
                            "--format", "text", "--output", "-"])
        #expect(r.code == 1)
        #expect(r.out.contains("BLOCKED: 13 resources"))
        #expect(try JSONReader.parse(Data((dir.read("a.sarif") ?? "").utf8))["version"] == "2.1.0")
        #expect(dir.read("b.xml")?.contains("<testsuites") == true)
        // Pairs that do not match are refused before anything is evaluated or written.
        let bad = try waiver(["check", "--plan", webApp, "--format", "sarif", "--format", "junit", "--output", dir.path + "/c.sarif"])
        #expect(bad.code == 2 && bad.err.contains("2 --format but 1 --output"))
        #expect(dir.read("c.sarif") == nil)
        let twice = try waiver(["check", "--plan", webApp, "--format", "sarif", "--output", "-", "--format", "json", "--output", "-"])
        #expect(twice.code == 2 && twice.err.contains("only one report can go to stdout"))
    }

    @Test func quietLeavesOnlyTheReportAndErrors() throws {
        let w = try Workspace()
        let loud = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "launch", "--format", "json", "--output", "r.json"])
        #expect(loud.err.contains("requested for") && loud.err.contains("BLOCKED:"))
        let quiet = try w.run(["check", "--plan", webApp, "--workspace", "other", "--request", "--reason", "launch", "--format", "json", "--output", "r.json", "--quiet"])
        #expect(quiet.code == 1)
        #expect(quiet.err.isEmpty, "\(quiet.err)")
        #expect(w.dir.read("r.json")?.contains("\"pending\"") == true)
    }

    @Test func colourOnATerminalOnlyAndNeverWithNoColor() throws {
        // Standard output is a file here: no colour unless asked.
        let plain = try waiver(["check", "--plan", webApp])
        #expect(!plain.out.contains("\u{1B}["))
        let forced = try waiver(["check", "--plan", webApp, "--color"])
        #expect(forced.out.contains("\u{1B}[1;31mBLOCKING\u{1B}[0m"))
        #expect(forced.out.contains("\u{1B}[1;31mBLOCKED\u{1B}[0m: 13 resources"))
        // On a terminal (script(1) gives the command a pseudo-terminal): colour, unless NO_COLOR or --no-color.
        func onTerminal(_ extra: String, env: [String: String] = [:]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
            p.arguments = ["-qec", "\(waiverBinary) check --plan \(webApp) \(extra)", "/dev/null"]
            p.currentDirectoryURL = URL(fileURLWithPath: repoRoot)
            let scratch = TempDir()
            var environment = ProcessInfo.processInfo.environment
            environment["WAIVER_REGISTER"] = scratch.path + "/r.sqlite"
            environment["TERM"] = "xterm"
            environment.removeValue(forKey: "NO_COLOR")
            environment.merge(env) { $1 }
            p.environment = environment
            let out = scratch.write("out", "")
            p.standardOutput = FileHandle(forWritingAtPath: out)
            p.standardError = FileHandle.nullDevice
            p.standardInput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return scratch.read("out") ?? ""
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { Issue.record("script(1) is needed (util-linux)"); return }
        #expect(try onTerminal("").contains("\u{1B}[1;31mBLOCKING"))
        #expect(try !onTerminal("", env: ["NO_COLOR": "1"]).contains("\u{1B}["))
        #expect(try !onTerminal("--no-color").contains("\u{1B}["))
    }

    @Test func environmentVariablesForTheCommonOptions() throws {
        let dir = TempDir()
        let only = """
            policies:
              - id: ONLY-001
                title: Only this policy
                category: tagging
                severity: low
                resource_types: [aws_instance]
                require: {path: tags.team, exists: true}
            """
        dir.write("conf/waiver.yaml", "policies: ../rules\n")
        dir.write("rules/p.yaml", only)
        dir.write("other/p.yaml", only.replacingOccurrences(of: "ONLY-001", with: "OTHER-001"))
        func policiesApplied(_ env: [String: String]) throws -> Set<String> {
            let r = try waiver(["check", "--plan", webApp], in: dir.path, env: env)
            #expect(r.code == 1, "\(r.err)")
            return Set(try JSONReader.parse(Data(r.out.utf8))["results"]?.arrayValue?.compactMap { $0["policy"]?.stringValue } ?? [])
        }
        // WAIVER_CONFIG names the configuration (whose policies are ../rules), WAIVER_POLICIES overrides them.
        #expect(try policiesApplied(["WAIVER_FORMAT": "json", "WAIVER_CONFIG": dir.path + "/conf/waiver.yaml"]) == ["ONLY-001"])
        #expect(try policiesApplied(["WAIVER_FORMAT": "json", "WAIVER_CONFIG": dir.path + "/conf/waiver.yaml", "WAIVER_POLICIES": dir.path + "/other"]) == ["OTHER-001"])
        // The flag wins over the variable; a variable with a bad value is named.
        #expect(try waiver(["check", "--plan", webApp, "--format", "text"], env: ["WAIVER_FORMAT": "json"]).out.hasPrefix("waiver check:"))
        let bad = try waiver(["check", "--plan", webApp], env: ["WAIVER_FORMAT": "yaml"])
        #expect(bad.code == 2 && bad.err.contains("$WAIVER_FORMAT: 'yaml' is not one of"))
        let missing = try waiver(["check", "--plan", webApp], env: ["WAIVER_CONFIG": dir.path + "/nope.yaml"])
        #expect(missing.code == 2 && missing.err.contains("nope.yaml"))
    }

    @Test func waitSaysWhoItWaitsForAndWhoRejectedAndWhy() throws {
        let w = try Workspace()
        let plan = w.dir.write("plan.json", planJSON([change("aws_security_group.web", after: #"{"ingress":[{"from_port":22,"to_port":22,"protocol":"tcp","cidr_blocks":["0.0.0.0/0"]}],"tags":{"Name":"web-prod-sg","owner":"o","environment":"prod"}}"#)]))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: waiverBinary)
        p.arguments = ["check", "--plan", plan, "--workspace", "w", "--request", "--reason", "vendor access", "--likelihood", "low", "--impact", "low", "--wait", "30s"]
        p.currentDirectoryURL = URL(fileURLWithPath: w.dir.path)
        p.environment = ProcessInfo.processInfo.environment.merging(["WAIVER_ACTOR": "ci", "WAIVER_REGISTER": w.register]) { $1 }
        let err = w.dir.write("err", "")
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var rejected = false
        let deadline = Date().addingTimeInterval(20)
        while !rejected, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.3)
            let pending = (try? JSONReader.parse(Data(try w.run(["list", "--status", "pending", "--format", "json"]).out.utf8)).arrayValue) ?? []
            for item in pending {
                guard let id = item["id"]?.stringValue else { continue }
                rejected = try w.run(["reject", id, "--comment", "open to the world; use the bastion"], as: "sam").code == 0 || rejected
            }
        }
        p.waitUntilExit()
        #expect(rejected)
        #expect(p.terminationStatus == 1)
        let said = w.dir.read("err") ?? ""
        #expect(said.contains("waiting up to 30s for EX-1 (NET-001): 1 more approval from security"), "\(said)")
        #expect(said.contains("EX-1 rejected by sam: open to the world; use the bastion"), "\(said)")
    }

    @Test func waitTakesSecondsMinutesOrHoursUpToADay() throws {
        for bad in ["1w", "2d", "25h", "0s", "soon"] {
            let r = try waiver(["check", "--plan", webApp, "--wait", bad])
            #expect(r.code == 2 && r.err.contains("--wait: '\(bad)' is not a duration in seconds, minutes or hours up to 24h"), "\(bad): \(r.err)")
        }
    }

    @Test func noRecordReadsTheRegisterAndWritesNothing() throws {
        let w = try Workspace()
        // An approved exception, then a check that only reads.
        #expect(try w.run(["request", "--policy", "COST-002", "--resource", "aws_instance.batch", "--workspace", "shop", "--reason", "r",
                                "--likelihood", "low", "--impact", "low"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "fin").code == 0)
        let events = try w.run(["audit", "export"]).out
        let before = try FileManager.default.attributesOfItem(atPath: w.register)[.modificationDate] as? Date
        let r = try w.run(["check", "--plan", webApp, "--workspace", "shop", "--no-record", "--format", "json"])
        #expect(r.code == 1)
        #expect(r.out.contains("\"status\": \"excepted\""))
        #expect(try FileManager.default.attributesOfItem(atPath: w.register)[.modificationDate] as? Date == before)
        #expect(try w.run(["audit", "export"]).out == events)
        #expect(try w.run(["check", "--plan", webApp, "--no-record", "--request", "--reason", "x"]).err.contains("cannot be used with --no-record"))
        // No register at all: nothing is created.
        let empty = TempDir()
        let none = try waiver(["check", "--plan", webApp, "--no-record", "--policies", repoRoot + "/policies"], in: empty.path, env: ["WAIVER_REGISTER": empty.path + "/sub/register.sqlite"])
        #expect(none.code == 1)
        #expect(!FileManager.default.fileExists(atPath: empty.path + "/sub"))
    }

    /// A register this user cannot write (here: owned by root, checked as `nobody`) is read, with one
    /// line saying the check is not recorded, instead of a raw error dump.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"), "needs root and runuser to act as another user"))
    func aRegisterThatCannotBeWrittenIsReadOnly() throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "COST-002", "--resource", "aws_instance.batch", "--workspace", "shop", "--reason", "r",
                           "--likelihood", "low", "--impact", "low"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "fin").code == 0)
        // `nobody` can read the folder and the file, and write neither; the binary and the plan are readable.
        chmod(w.dir.path, 0o755)
        chmod(w.dir.path + "/.waiver", 0o755)
        chmod(w.register, 0o644)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", "nobody", "--", waiverBinary, "check", "--plan", webApp, "--workspace", "shop", "--register", w.register, "--format", "json"]
        p.currentDirectoryURL = URL(fileURLWithPath: w.dir.path)
        p.environment = ProcessInfo.processInfo.environment.merging(["WAIVER_NOW": "2026-11-22T10:00:00Z"]) { $1 }
        let out = w.dir.write("out", ""), err = w.dir.write("err", "")
        chmod(out, 0o666)
        chmod(err, 0o666)
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: err)
        try p.run()
        p.waitUntilExit()
        let said = w.dir.read("err") ?? ""
        #expect(p.terminationStatus == 1, "\(said)")
        #expect(said == "waiver: warning: \(w.register): the register cannot be written; the check is not recorded (as with --no-record)\n", "\(said)")
        #expect(!said.contains("NSCocoaErrorDomain"))
        #expect(w.dir.read("out")?.contains("\"status\": \"excepted\"") == true, "\(w.dir.read("out") ?? "")")
    }

    @Test func aMistypedCommandGetsDidYouMean() throws {
        let r = try waiver(["chek", "--plan", webApp])
        #expect(r.code == 2)
        #expect(r.err.hasPrefix("error: unknown command 'chek' (did you mean 'check'?)"))
        #expect(try waiver(["aprove", "EX-1"]).err.contains("did you mean 'approve'?"))
    }

    /// Help says each default once, and the usage line shows what a command needs.
    @Test func helpSaysEachDefaultOnceAndTheUsageShowsWhatIsNeeded() throws {
        let commands = ["check", "request", "approve", "reject", "revoke", "list", "show", "report", "expire", "audit export", "audit verify",
                        "audit checkpoint", "serve", "admin add-user", "admin users", "admin copy-register", "init"]
        for c in commands {
            let help = try waiver(c.split(separator: " ").map(String.init) + ["--help"], env: ["WAIVER_REGISTER": "/tmp/x.sqlite", "WAIVER_CONFIG": "/tmp/c.yaml"]).out
            let options = help.components(separatedBy: "OPTIONS:").last?.components(separatedBy: "\n  -") ?? []
            #expect(options.count > 1, "\(c)")
            for o in options {
                let words = o.split(whereSeparator: \.isWhitespace).joined(separator: " ").lowercased().replacingOccurrences(of: "(default: default)", with: "(default: the value)")
                #expect(words.components(separatedBy: "default").count <= 2, "\(c): \(words)")
                // A variable's value is never printed as if it were the built-in default.
                #expect(!words.contains("/tmp/x.sqlite") && !words.contains("/tmp/c.yaml"), "\(c): \(words)")
            }
        }
        #expect(try waiver(["check", "--help"]).out.contains("USAGE: waiver check (--plan <file> | --sarif <file> ...) [<options>]"))
        #expect(try waiver(["reject", "--help"]).out.contains("<id> ... --comment <text>"))
    }

    /// The man page (docs/man/waiver.1, made by scripts/man.sh) names every command and option the
    /// binary has: a new option without a regenerated page fails here.
    @Test func theManPageIsCurrent() throws {
        let page = try String(contentsOfFile: repoRoot + "/docs/man/waiver.1", encoding: .utf8)
        let dump = try JSONReader.parse(Data(try waiver(["--experimental-dump-help"]).out.utf8))
        var missing: [String] = []
        func walk(_ command: Value, path: [String]) {
            let name = command["commandName"]?.stringValue ?? ""
            if !path.isEmpty, command["shouldDisplay"] != false, !page.contains(".It Em \(name)") { missing.append((path + [name]).joined(separator: " ")) }
            for arg in command["arguments"]?.arrayValue ?? [] where arg["shouldDisplay"] != false {
                for n in arg["names"]?.arrayValue ?? [] where n["kind"] == "long" {
                    let long = n["name"]?.stringValue ?? ""
                    if long != "help", long != "version", !page.contains("Fl -\(long)") { missing.append((path + [name, "--" + long]).joined(separator: " ")) }
                }
            }
            for sub in command["subcommands"]?.arrayValue ?? [] { walk(sub, path: path + [name]) }
        }
        walk(try #require(dump["command"]), path: [])
        #expect(missing == [], "not in docs/man/waiver.1 (run scripts/man.sh): \(missing)")
    }

    @Test func adminHonoursWaiverRegister() throws {
        let dir = TempDir()
        let r = try waiver(["admin", "add-user", "ann", "--group", "security"], in: dir.path, env: ["WAIVER_REGISTER": dir.path + "/elsewhere.sqlite"])
        #expect(r.code == 0, "\(r.err)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/elsewhere.sqlite"))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/.waiver"))
        // --register is accepted there as everywhere.
        let users = try waiver(["admin", "users", "--register", dir.path + "/elsewhere.sqlite"], in: dir.path)
        #expect(users.out.contains("ann"), "\(users.err)")
    }
}
