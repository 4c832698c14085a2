import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

extension OutputFormat: ExpressibleByArgument {}
extension UnknownMode: ExpressibleByArgument {}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate policies on a Terraform plan and scanners' SARIF reports; gate the pipeline.",
        discussion: """
            Reads `terraform show -json PLAN` output and/or SARIF 2.1.0 reports. Exit 0 when nothing \
            blocks, 1 when a violation blocks, 2 on invalid input (nothing is evaluated then).
            """
    )

    @OptionGroup var options: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions

    @Option(name: .long, help: ArgumentHelp("Terraform plan JSON (`terraform show -json plan.out`).", valueName: "file"))
    var plan: String?

    @Option(name: .long, help: ArgumentHelp("A scanner's SARIF 2.1.0 report (Checkov, Trivy, tfsec, KICS, Semgrep...); repeatable.", valueName: "file"))
    var sarif: [String] = []

    @Option(name: .long, help: ArgumentHelp("Workspace the plan belongs to; exceptions are scoped to it.", valueName: "name"))
    var workspace: String = "default"

    @Option(name: .long, help: ArgumentHelp("Output format: text, json, sarif, junit or markdown.", valueName: "format"))
    var format: OutputFormat = .text

    @Option(name: .long, help: ArgumentHelp("Write the report to this file instead of stdout (written atomically).", valueName: "file"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Outcomes known only after apply: warn (default) or block.", valueName: "mode"))
    var unknown: UnknownMode = .warn

    @Flag(name: .long, help: "File an exception request for every blocking violation (needs --reason).")
    var request = false

    @Option(name: .long, help: ArgumentHelp("With --request: why the exceptions are needed.", valueName: "text"))
    var reason: String?

    @Option(name: .long, help: ArgumentHelp("With --request: requested duration in days.", valueName: "n"))
    var days: Int?

    @Option(name: .long, help: "With --request: likelihood (low, medium, high).")
    var likelihood: RiskFactor?

    @Option(name: .long, help: "With --request: impact (low, medium, high; default from each policy's severity).")
    var impact: RiskFactor?

    @Option(name: .long, help: ArgumentHelp("With --request: a mitigation (repeatable).", valueName: "text"))
    var mitigation: [String] = []

    @Option(name: .long, help: ArgumentHelp("Author of the change being checked: they may not approve exceptions requested for it.", valueName: "name"))
    var commitAuthor: String?

    @Option(name: .long, help: ArgumentHelp("Wait until pending requests are decided (30m, 2h); exit 3 if still pending then.", valueName: "duration"))
    var wait: String?

    func validate() throws {
        if request && (reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--request needs --reason saying why the exceptions are needed")
        }
        if let wait, parseDuration(wait) == nil {
            throw ValidationError("--wait: '\(wait)' is not a duration (use 30s, 30m or 2h)")
        }
        if plan == nil && sarif.isEmpty {
            throw ValidationError("give a plan (--plan FILE) or at least one SARIF report (--sarif FILE)")
        }
        do { _ = try RequestLimits.workspace(workspace) } catch { throw ValidationError("--workspace: \(error)") }
    }

    func run() async throws {
        // WAIVER_TIMINGS=1 prints how long each phase took to stderr (for the benchmark).
        let timings = ProcessInfo.processInfo.environment["WAIVER_TIMINGS"] == "1"
        let clock = ContinuousClock()
        var mark = clock.now
        func phase(_ name: String) {
            guard timings else { return }
            let now = clock.now
            FileHandle.standardError.write(Data("waiver: \(name): \(now - mark)\n".utf8))
            mark = now
        }
        let spec = request ? RequestSpec(reason: reason ?? "", days: days, likelihood: likelihood, impact: impact, mitigations: mitigation) : nil
        if let client = try registerOptions.client() { return try await runRemote(client, spec: spec) }

        let (configuration, base) = try options.loadConfiguration()
        let (dir, explicit) = options.policyDirectory(configuration, base: base)
        var policies: [Policy] = []
        if plan != nil || explicit || FileManager.default.fileExists(atPath: dir) {
            policies = try PolicyLoader.load(directory: dir)
        }
        let crossErrors = ConfigLoader.validate(policies, against: configuration)
        if !crossErrors.isEmpty { throw InputErrors(crossErrors) }
        phase("configuration and policies")
        // Only the attributes the policies read are built from the plan.
        let selection = AttributeSelection(policies: policies)
        let resources = try plan.map { p in try PlanReader.read(path: p, selection: selection).resources.map { ($0, file: p) } } ?? []
        let sarifInputs = try sarif.map { (name: $0, data: try InputFile.read($0)) }
        phase("read")
        let evaluated = try CheckService.evaluate(
            policies: policies, configuration: configuration, resources: resources, sarif: sarifInputs, workspace: try RequestLimits.workspace(workspace),
            unknown: unknown, keepCompliant: format == .junit)
        phase("evaluate")

        // The register: mark what exceptions cover, file requests, wait, record the check.
        let store = try registerOptions.openStore(webhooks: configuration.notify)
        let register = Register(store: store, configuration: configuration, policies: evaluated.policies)
        let actor = registerOptions.actorName
        func said(_ filed: [ExceptionRecord]) {
            for e in filed {
                FileHandle.standardError.write(Data("waiver: \(e.displayId) requested for \(e.policy) on \(e.resources.joined(separator: ", "))\n".utf8))
                if let why = register.impossibility(of: e.rule, excluding: [e.requester] + e.conflicted + e.subjectPeople) {
                    warn(["\(e.displayId): exceptions to \(e.policy) at \(e.riskLevel) risk \(why): it would stay pending forever"])
                }
            }
        }
        var report: CheckReport
        if let wait, let seconds = parseDuration(wait) {
            // Requests are filed (all or none) before the wait; the check is recorded after it, with the decisions.
            let (marked, filed) = try await CheckService.applyRegister(evaluated, register: register, actor: actor, commitAuthor: commitAuthor, request: spec, now: try currentTime())
            report = marked
            said(filed)
            try await poll(seconds: seconds, pending: { report.summary.pending }) {
                report = evaluated
                try await register.applyExceptions(to: &report, now: try currentTime())
            }
            phase("register")
            _ = try await CheckService.record(report, register: register, actor: actor, now: try currentTime())
        } else {
            // The requests (all or none) and the recorded check commit in one transaction.
            let (final, filed, _) = try await CheckService.checkIn(evaluated, register: register, actor: actor, commitAuthor: commitAuthor, request: spec, now: try currentTime())
            report = final
            said(filed)
            phase("register")
        }
        phase("record")
        let rendered = format.render(report)
        phase("render")
        try finish(rendered: rendered, passed: report.passed, pending: report.summary.pending, tally: report.summary.line)
        phase("write")
    }

    /// Waits with backoff (1 s doubling, at most 30 s) while requests are pending, until `seconds` ran out.
    func poll(seconds: Int, pending: () -> Int, refresh: () async throws -> Void) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        var delay = 1.0
        while pending() > 0, clock.now < deadline {
            let remaining = deadline - clock.now
            try await Task.sleep(for: .seconds(max(0.2, min(delay, Double(remaining.components.seconds) + 1))))
            delay = min(delay * 2, 30)
            try await refresh()
        }
    }

    /// Writes the report and ends with the exit code the verdict calls for.
    func finish(rendered: String, passed: Bool, pending: Int, tally: String) throws {
        try emit(rendered, to: output)
        if output != nil, format != .text {
            // Keep the CI log informative when the report goes to a file.
            FileHandle.standardError.write(Data("waiver: \(passed ? "PASS" : "BLOCKED"): \(tally)\n".utf8))
        }
        if wait != nil, pending > 0 { throw Exit(code: 3) }
        if !passed { throw Exit(code: 1) }
    }

    /// `check --server`: the server evaluates with its own policies against the shared register.
    func runRemote(_ client: ServerClient, spec: RequestSpec?) async throws {
        // The documents go as they are (normalized to UTF-8), inside a JSON envelope.
        let planBytes = try plan.map { try PlanReader.normalized(try InputFile.read($0), file: $0) }
        let sarifBytes = try sarif.map { try InputFile.utf8(try InputFile.read($0), file: $0) }
        func envelope(request spec: RequestSpec?) -> Data {
            var meta = Value.Object([("workspace", .string(workspace)), ("format", .string(format.rawValue)), ("unknown", .string(unknown.rawValue))])
            if let commitAuthor { meta.append("commit_author", .string(commitAuthor)) }
            if let spec {
                var r = Value.Object([("reason", .string(spec.reason)), ("mitigations", .array(spec.mitigations.map(Value.string)))])
                if let d = spec.days { r.append("days", .number(Double(d))) }
                if let l = spec.likelihood { r.append("likelihood", .string(l.rawValue)) }
                if let i = spec.impact { r.append("impact", .string(i.rawValue)) }
                meta.append("request", .object(r))
            }
            var out = Array(JSONWriter.write(.object(meta), pretty: false).utf8.dropLast())  // without the closing brace
            if let planBytes {
                out.append(contentsOf: ",\"plan\":".utf8)
                out.append(contentsOf: planBytes)
            }
            if !sarifBytes.isEmpty {
                out.append(contentsOf: ",\"sarif\":[".utf8)
                for (i, bytes) in sarifBytes.enumerated() {
                    if i > 0 { out.append(0x2C) }
                    out.append(contentsOf: bytes)
                }
                out.append(0x5D)
            }
            out.append(0x7D)
            return Data(out)
        }
        var result = try await client.call(.POST, "/api/v1/evaluations", body: envelope(request: spec)).json()
        for id in result["requested"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            FileHandle.standardError.write(Data("waiver: \(id) requested\n".utf8))
        }
        warn(result["request_warnings"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        let pending = (result["results"]?.arrayValue ?? []).filter { $0["status"] == "pending" }.compactMap { $0["exception"]?.stringValue }
        if let wait, let seconds = parseDuration(wait), !pending.isEmpty {
            var waiting = Set(pending)
            try await poll(seconds: seconds, pending: { waiting.count }) {
                for id in waiting {
                    if try await client.json(.GET, "/api/v1/exceptions/\(id)")["status"] != "pending" { waiting.remove(id) }
                }
            }
            // Evaluate again for the final statuses (nothing new to request); it is recorded as the latest state.
            result = try await client.call(.POST, "/api/v1/evaluations", body: envelope(request: nil)).json()
        }
        let rendered = format == .json ? JSONWriter.write(result) : (result["rendered"]?.stringValue ?? "")
        let s = result["summary"]
        func n(_ k: String) -> Int { s?[k]?.intValue ?? 0 }
        let tally = Summary(resources: n("resources"), violations: n("violations"), blocking: n("blocking"), excepted: n("excepted"),
                            pending: n("pending"), unknown: n("unknown")).line
        try finish(rendered: rendered, passed: result["verdict"] == "pass", pending: n("pending"), tally: tally)
    }
}
