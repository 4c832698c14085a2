import AsyncHTTPClient
import Foundation
import Testing
import NIOCore
import NIOHTTP1
import Yams
@testable import WaiverCore

/// GitHub's and GitLab's comment APIs, played by `Tests/Integrations/forge_api.py` on loopback.
final class ForgeAPI: Peer, @unchecked Sendable {
    init() throws {
        try super.init(script: "Integrations/forge_api.py", needs: "(the standard library only)")
    }

    func get(_ path: String) async throws -> Value {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + path), timeout: .seconds(30))
        return try JSONReader.parse(Data(try await response.body.collect(upTo: 16 << 20).readableBytesView))
    }
    var comments: [Value] { get async throws { try await get("/_comments").arrayValue ?? [] } }
    var calls: [String] {
        get async throws { try await get("/_log").arrayValue?.map { "\($0["method"]?.stringValue ?? "") \($0["path"]?.stringValue ?? "")" } ?? [] }
    }
}

/// Runs a shell script (as a CI runner would: bash, errexit and pipefail) with this environment, in `cwd`.
func runShell(_ script: String, env: [String: String], in cwd: String) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-eo", "pipefail", "-c", script]
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    // The waiver under test first on PATH, as an installed binary would be.
    var environment = ["PATH": (waiverBinary as NSString).deletingLastPathComponent + ":/usr/local/bin:/usr/bin:/bin", "HOME": cwd, "LANG": "C.UTF-8"]
    environment.merge(env) { $1 }
    p.environment = environment
    let scratch = TempDir()
    let out = scratch.write("out", ""), err = scratch.write("err", "")
    p.standardOutput = FileHandle(forWritingAtPath: out)
    p.standardError = FileHandle(forWritingAtPath: err)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return Run(code: p.terminationStatus, out: scratch.read("out") ?? "", err: scratch.read("err") ?? "")
}

/// `KEY=value` lines (GITHUB_OUTPUT) as a dictionary.
func keyValues(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let eq = line.firstIndex(of: "=") else { continue }
        out[String(line[..<eq])] = String(line[line.index(after: eq)...])
    }
    return out
}

@Suite("Pipelines adopt Waiver in one step", .serialized)
struct IntegrationTests {
    let webApp = repoRoot + "/Examples/plans/web-app.json"

    /// action.yml passes every input the check step reads, and names outputs the step writes.
    @Test func theActionWiresItsInputsAndOutputs() throws {
        let action = try #require(try Yams.load(yaml: String(contentsOfFile: repoRoot + "/action.yml", encoding: .utf8)) as? [String: Any])
        let inputs = try #require(action["inputs"] as? [String: Any])
        let steps = try #require((action["runs"] as? [String: Any])?["steps"] as? [[String: Any]])
        let check = try #require(steps.first { $0["id"] as? String == "check" })
        let env = try #require(check["env"] as? [String: String])
        let script = try String(contentsOfFile: repoRoot + "/integrations/github/check.sh", encoding: .utf8)
        for name in inputs.keys where !["upload-sarif", "fail-on-block"].contains(name) {
            let variable = "INPUT_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
            #expect(env[variable] == "${{ inputs.\(name) }}", "\(name) is not passed to the check step")
            #expect(script.contains(variable), "check.sh does not read \(variable)")
        }
        #expect(steps.contains { ($0["uses"] as? String)?.hasPrefix("github/codeql-action/upload-sarif@") == true })
        let outputs = try #require(action["outputs"] as? [String: [String: String]])
        for (name, o) in outputs { #expect(o["value"] == "${{ steps.check.outputs.\(name) }}", "\(name)") }
    }

    /// The action's check step, run with the environment GitHub sets, twice on one pull request:
    /// outputs, job summary, SARIF, and one comment created then updated in place.
    @Test func theGitHubActionWritesOutputsSummaryAndOneComment() async throws {
        let forge = try ForgeAPI()
        let dir = TempDir()
        let event = dir.write("event.json", #"{"action":"synchronize","pull_request":{"number":7}}"#)
        func run(_ extra: [String: String]) throws -> (Run, [String: String], String) {
            let output = dir.write("github_output", ""), summary = dir.write("step_summary", "")
            var env = [
                "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": output, "GITHUB_STEP_SUMMARY": summary, "GITHUB_EVENT_PATH": event,
                "GITHUB_EVENT_NAME": "pull_request", "GITHUB_REPOSITORY": "acme/infra", "GITHUB_API_URL": forge.url, "GITHUB_ACTOR": "dev",
                "GITHUB_RUN_ID": "4242", "RUNNER_TEMP": dir.path + "/runner-temp", "WAIVER_REGISTER": dir.path + "/register.sqlite",
                "WAIVER_POLICIES": repoRoot + "/policies", "WAIVER_CONFIG": repoRoot + "/waiver.yaml",
                "INPUT_PLAN": webApp, "INPUT_WORKSPACE": "shop", "INPUT_COMMENT": "true", "INPUT_GITHUB_TOKEN": "forge-token",
                "INPUT_SARIF": "", "INPUT_SERVER": "", "INPUT_TOKEN": "", "INPUT_REQUEST": "false", "INPUT_REASON": "", "INPUT_ARGS": "", "INPUT_VERSION": "0.1.0",
            ]
            env.merge(extra) { $1 }
            let r = try runShell("bash " + repoRoot + "/integrations/github/check.sh", env: env, in: dir.path)
            return (r, keyValues(dir.read("github_output") ?? ""), dir.read("step_summary") ?? "")
        }
        let (first, outputs, summary) = try run([:])
        #expect(first.code == 0, "the step leaves failing to the action's last step: \(first.err)")
        #expect(first.out.contains("BLOCKED: 13 resources, 5 violations"))
        #expect(outputs["exit-code"] == "1" && outputs["verdict"] == "blocked")
        #expect(outputs["blocking"] == "5" && outputs["violations"] == "5" && outputs["unknown"] == "2" && outputs["pending"] == "0")
        #expect(summary.hasPrefix("### Waiver: ❌ blocked"))
        let sarif = try #require(outputs["sarif-file"])
        #expect(try JSONReader.parse(try Data(contentsOf: URL(fileURLWithPath: sarif)))["version"] == "2.1.0")
        #expect(try await forge.comments.count == 1)
        #expect(try await forge.comments.first?["body"]?.stringValue?.hasPrefix("<!-- waiver-check: shop -->\n### Waiver: ❌ blocked") == true)

        // The next push: requests filed; the same comment now says they are pending.
        let (second, again, _) = try run(["INPUT_REQUEST": "true", "INPUT_REASON": "launch week"])
        #expect(second.code == 0)
        #expect(again["pending"] == "5" && again["exit-code"] == "1")
        #expect(try await forge.comments.count == 1, "one comment per pull request, updated in place")
        #expect(try await forge.comments.first?["body"]?.stringValue?.contains("pending") == true)
        #expect(try await forge.calls.filter { $0.hasPrefix("POST") }.count == 1)
        #expect(try await forge.calls.filter { $0.hasPrefix("PATCH /repos/acme/infra/issues/comments/") }.count == 1)
        // Invalid input: exit code 2 and no report outputs, so the last step fails the job plainly.
        let (bad, badOutputs, _) = try run(["INPUT_PLAN": dir.write("bad.json", "{")])
        #expect(bad.code == 0 && badOutputs["exit-code"] == "2" && badOutputs["verdict"] == nil)
    }

    /// The GitLab component's job script, run as the runner does with GitLab's variables: the JUnit
    /// and code quality reports its artifacts name, and one merge-request note.
    @Test func theGitLabComponentWritesItsReportsAndOneNote() async throws {
        let forge = try ForgeAPI()
        let text = try String(contentsOfFile: repoRoot + "/templates/waiver.yml", encoding: .utf8)
        let documents = try Array(Yams.load_all(yaml: text))
        #expect(documents.count == 2)
        let spec = try #require(((documents[0] as? [String: Any])?["spec"] as? [String: Any])?["inputs"] as? [String: [String: Any]])
        let job = try #require((documents[1] as? [String: Any])?["waiver-check"] as? [String: Any])
        let variables = try #require(job["variables"] as? [String: String])
        let script = try #require(job["script"] as? [String]).joined(separator: "\n")
        let reports = try #require((job["artifacts"] as? [String: Any])?["reports"] as? [String: String])
        let given = ["plan": webApp, "workspace": "shop"]
        var env: [String: String] = [
            "CI": "true", "GITLAB_CI": "true", "CI_API_V4_URL": forge.url + "/api/v4", "CI_PROJECT_ID": "42", "CI_MERGE_REQUEST_IID": "3",
            "WAIVER_GITLAB_TOKEN": "forge-token", "WAIVER_POLICIES": repoRoot + "/policies", "WAIVER_CONFIG": repoRoot + "/waiver.yaml",
        ]
        // `$[[ inputs.x ]]` as GitLab interpolates it: the value given, else the input's default.
        for (name, value) in variables {
            var v = value
            for (input, decl) in spec { v = v.replacingOccurrences(of: "$[[ inputs.\(input) ]]", with: given[input] ?? "\(decl["default"] ?? "")") }
            env[name] = v
        }
        let dir = TempDir()
        env["WAIVER_REGISTER"] = dir.path + "/register.sqlite"
        let first = try runShell(script, env: env, in: dir.path)
        #expect(first.code == 1, "\(first.err)")
        #expect(first.out.contains("BLOCKED: 13 resources, 5 violations"))
        let junit = try #require(reports["junit"]), quality = try #require(reports["codequality"])
        if inCI || pythonHas(["junitparser"]) {
            let seen = try consumer("junit", dir.path + "/" + junit)
            #expect(problems(seen) == [] && seen["failures"]?.intValue == 5)
        }
        let issues = try #require(try JSONReader.parse(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + quality))).arrayValue)
        #expect(issues.count == 7)
        for i in issues {
            // What GitLab's widget needs of each issue (docs.gitlab.com, code quality report format).
            #expect(i["description"]?.stringValue?.isEmpty == false && i["check_name"]?.stringValue != nil && i["fingerprint"]?.stringValue?.count == 64)
            #expect(["info", "minor", "major", "critical", "blocker"].contains(i["severity"]?.stringValue ?? ""))
            #expect(i["location"]?["path"]?.stringValue == URL(fileURLWithPath: webApp).absoluteString)
            #expect((i["location"]?["lines"]?["begin"]?.intValue ?? 0) >= 1)
        }
        #expect(try await forge.comments.count == 1)
        let second = try runShell(script, env: env, in: dir.path)
        #expect(second.code == 1)
        #expect(try await forge.comments.count == 1)
        #expect(try await forge.calls.contains { $0.hasPrefix("PUT /api/v4/projects/42/merge_requests/3/notes/") })
    }

    /// Atlantis's custom workflow: its `run` steps with the variables Atlantis sets, and a terraform
    /// that writes the example plan.
    @Test func theAtlantisWorkflowRunsItsSteps() throws {
        let config = try #require(try Yams.load(yaml: String(contentsOfFile: repoRoot + "/integrations/atlantis/atlantis.yaml", encoding: .utf8)) as? [String: Any])
        let steps = try #require((((config["workflows"] as? [String: Any])?["waiver"] as? [String: Any])?["plan"] as? [String: Any])?["steps"] as? [Any])
        let runs = steps.compactMap { ($0 as? [String: String])?["run"] }
        #expect(runs.count == 2)
        let dir = TempDir()
        dir.write("bin/terraform", "#!/bin/sh\n[ \"$1\" = show ] && exec cat '\(webApp)'\nexit 0\n")
        chmod(dir.path + "/bin/terraform", 0o755)
        let env = ["PLANFILE": dir.path + "/default.tfplan", "SHOWFILE": dir.path + "/default.json", "WORKSPACE": "default", "BASE_REPO_NAME": "infra",
                   "PULL_AUTHOR": "dev", "PULL_NUM": "7", "DIR": dir.path, "WAIVER_REGISTER": dir.path + "/register.sqlite",
                   "WAIVER_POLICIES": repoRoot + "/policies", "WAIVER_CONFIG": repoRoot + "/waiver.yaml"]
        let r = try runShell("export PATH=\(dir.path)/bin:$PATH\n" + runs.joined(separator: "\n"), env: env, in: dir.path)
        #expect(r.code == 1, "\(r.err)")
        #expect(r.out.contains("waiver check: workspace infra-default") && r.out.contains("BLOCKED: 13 resources, 5 violations"))
        #expect(!r.out.contains("\u{1B}["))
    }

    /// The generic CI script, and the Jenkinsfile that calls it and publishes its reports.
    @Test func theGenericScriptAndTheJenkinsfileAgree() throws {
        let dir = TempDir()
        let r = try runShell(repoRoot + "/integrations/ci/waiver-check.sh --unknown block",
                             env: ["WAIVER_PLAN": webApp, "WAIVER_WORKSPACE": "shop", "WAIVER_REGISTER": dir.path + "/register.sqlite",
                                   "WAIVER_POLICIES": repoRoot + "/policies", "WAIVER_CONFIG": repoRoot + "/waiver.yaml"], in: dir.path)
        #expect(r.code == 1, "\(r.err)")
        #expect(r.out.contains("Unknown outcomes block this check"))
        let jenkinsfile = try String(contentsOfFile: repoRoot + "/integrations/jenkins/Jenkinsfile", encoding: .utf8)
        #expect(jenkinsfile.contains("sh(script: 'integrations/ci/waiver-check.sh', returnStatus: true)"))
        for published in ["waiver-reports/waiver-junit.xml", "waiver-reports/waiver.sarif"] {
            #expect(jenkinsfile.contains(published))
            #expect(FileManager.default.fileExists(atPath: dir.path + "/" + published), "\(published) is not written")
        }
        #expect(dir.read("waiver-reports/waiver.md")?.hasPrefix("### Waiver: ❌ blocked") == true)
    }
}

/// HCP Terraform's side of a run task (`Tests/Integrations/hcp_terraform.py`): it sends signed run
/// task requests, serves the plan behind its JSON API (with a redirect to its archive), and takes
/// the callback.
final class HCPTerraform: Peer, @unchecked Sendable {
    init() throws {
        try super.init(script: "Integrations/hcp_terraform.py", needs: "(the standard library only)")
    }

    func call(_ method: HTTPMethod, _ path: String, _ body: Value? = nil) async throws -> Value {
        var request = HTTPClientRequest(url: url + path)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(string: JSONWriter.write(body, pretty: false))) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return try JSONReader.parse(Data(try await response.body.collect(upTo: 16 << 20).readableBytesView))
    }

    /// Starts a run whose post-plan task calls `target`; answers what the target said and the run's id.
    func run(_ target: String, key: String, plan: String, wrongSignature: Bool = false, verification: Bool = false, failCallbacks: Int = 0,
             createdBy: String = "dev") async throws -> (status: Int, run: String) {
        let v = try await call(.POST, "/control/run", [
            "target": .string(target), "key": .string(key), "plan": .string(plan), "wrong_signature": .bool(wrongSignature),
            "verification": .bool(verification), "fail_callbacks": .number(Double(failCallbacks)), "created_by": .string(createdBy),
        ])
        return (v["status"]?.intValue ?? 0, v["run_id"]?.stringValue ?? "")
    }

    func callbacks(_ run: String) async throws -> [Value] {
        try await call(.GET, "/_callbacks").arrayValue?.filter { $0["run"]?.stringValue == run } ?? []
    }

    /// Waits (up to 30 s) for a callback the peer accepted.
    func delivered(_ run: String) async throws -> [Value] {
        for _ in 0..<300 {
            let got = try await callbacks(run)
            if got.contains(where: { $0["status"]?.intValue == 200 }) { return got }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await callbacks(run)
    }
}

@Suite("HCP Terraform run task", .serialized)
struct RunTaskTests {
    @Test func aRunTaskChecksThePlanAndCallsBackWithOutcomes() async throws {
        let hcp = try HCPTerraform()
        let w = try Workspace()
        let config = (w.dir.read("waiver.yaml") ?? "") + """
            run_tasks:
              terraform:
                hmac_key_env: WAIVER_RUN_TASK_KEY
                address: \(hcp.url)
                workspace: "{organization}/{workspace}"

            """
        w.dir.write("waiver.yaml", config)
        let dev = try w.addUser("dev", ["developers"]), sam = try w.addUser("sam", ["security"])
        let server = LiveServer(w, args: ["--public-url", "https://waiver.example.com"], env: ["WAIVER_RUN_TASK_KEY": "s3cret-hmac-key"])
        try server.start()
        defer { _ = server.stop() }
        let target = server.url + "/api/v1/run-tasks/terraform"
        let plan = repoRoot + "/Examples/plans/web-app.json"

        // A request not signed with the key: 401, and nothing is fetched or called back.
        let forged = try await hcp.run(target, key: "s3cret-hmac-key", plan: plan, wrongSignature: true)
        #expect(forged.status == 401)
        // HCP Terraform's check when the task is created: 200, no run behind it.
        let verification = try await hcp.run(target, key: "s3cret-hmac-key", plan: plan, verification: true)
        #expect(verification.status == 200)

        // A run: 200 at once; the first callback fails and is retried.
        let first = try await hcp.run(target, key: "s3cret-hmac-key", plan: plan, failCallbacks: 1)
        #expect(first.status == 200)
        let calls = try await hcp.delivered(first.run)
        #expect(calls.map { $0["status"]?.intValue ?? 0 } == [500, 200])
        #expect(calls.allSatisfy { $0["authorized"] == true && $0["content_type"] == "application/vnd.api+json" })
        let result = try #require(calls.last?["body"]?["data"])
        #expect(result["type"] == "task-results")
        #expect(result["attributes"]?["status"] == "failed")
        #expect(result["attributes"]?["message"]?.stringValue?.hasPrefix("BLOCKED: 13 resources, 5 violations (5 blocking") == true)
        let outcomes = result["relationships"]?["outcomes"]?["data"]?.arrayValue ?? []
        #expect(outcomes.count == 7)
        #expect(outcomes.allSatisfy { $0["type"] == "task-result-outcomes" && $0["attributes"]?["outcome-id"]?.stringValue?.count == 32 })
        let statuses = outcomes.compactMap { $0["attributes"]?["tags"]?["Status"]?.arrayValue?.first?["label"]?.stringValue }
        #expect(statuses.filter { $0 == "Blocking" }.count == 5 && statuses.filter { $0 == "Unknown" }.count == 2)
        // The plan was fetched with the run's token, through HCP Terraform's redirect to its archive.
        let log = try await hcp.call(.GET, "/_log").arrayValue ?? []
        #expect(log.contains { $0["path"] == .string("/api/v2/plans/\(first.run)/json-output") && $0["authorization"]?.stringValue?.hasPrefix("Bearer tfc-") == true })
        #expect(log.contains { $0["path"] == .string("/archivist/\(first.run)") })
        let forgedCalls = try await hcp.callbacks(forged.run), verificationCalls = try await hcp.callbacks(verification.run)
        #expect(forgedCalls.isEmpty && verificationCalls.isEmpty)

        // An approved exception: the next run reports that violation excepted, with the exception's page.
        let asked = try server.run(["request", "--policy", "NET-001", "--resource", "module.network.aws_security_group.bastion", "--workspace", "acme/payments-prod",
                                    "--reason", "vendor access", "--likelihood", "low", "--impact", "low"], token: dev)
        #expect(asked.code == 0, "\(asked.err)")
        #expect(try server.run(["approve", "EX-1"], token: sam).code == 0)
        let second = try await hcp.run(target, key: "s3cret-hmac-key", plan: plan)
        let again = try #require(try await hcp.delivered(second.run).last?["body"]?["data"])
        let net = try #require(again["relationships"]?["outcomes"]?["data"]?.arrayValue?.first { $0["attributes"]?["description"]?.stringValue?.hasPrefix("NET-001") == true })
        #expect(net["attributes"]?["tags"]?["Status"]?.arrayValue?.first?["label"] == "Excepted")
        #expect(net["attributes"]?["url"] == "https://waiver.example.com/exceptions/EX-1")
        #expect(again["attributes"]?["message"]?.stringValue?.contains("1 excepted") == true)
        // Each run is recorded like any check, by hcp-terraform, in the mapped workspace.
        let audit = try server.run(["audit", "export"], token: sam).out
        #expect(audit.components(separatedBy: "\"hcp-terraform\"").count - 1 >= 2, "\(audit.prefix(2000))")
        #expect(audit.contains("acme/payments-prod"))
    }
}
