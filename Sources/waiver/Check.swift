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

    @Option(name: .long, help: ArgumentHelp("Reports name files relative to this folder, as code scanning needs (default: the git top level, else the current folder).", valueName: "dir"))
    var sarifRoot: String?

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
        let timer = ProcessInfo.processInfo.environment["WAIVER_TIMINGS"] == "1"
            ? PhaseTimer { FileHandle.standardError.write(Data("waiver: \($0)\n".utf8)) } : nil
        let spec = request ? RequestSpec(reason: reason ?? "", days: days, likelihood: likelihood, impact: impact, mitigations: mitigation) : nil
        let input = CheckInput(plan: plan, sarif: sarif, workspace: workspace, unknown: unknown, format: format, commitAuthor: commitAuthor, request: spec,
                               paths: ReportPaths(root: sarifRoot))
        let runner: any CheckUseCase
        if let client = try await registerOptions.client() {
            runner = RemoteCheck(client: client)
        } else {
            let (configuration, base) = try options.loadConfiguration()
            let (dir, explicit) = options.policyDirectory(configuration, base: base)
            var policies: [Policy] = []
            if plan != nil || explicit || FileManager.default.fileExists(atPath: dir) {
                policies = try PolicyLoader.load(directory: dir)
            }
            let crossErrors = ConfigLoader.validate(policies, against: configuration)
            if !crossErrors.isEmpty { throw InputErrors(crossErrors) }
            timer?.phase("configuration and policies")
            runner = LocalCheck(configuration: configuration, policies: policies, store: try registerOptions.openStore(webhooks: configuration.notify, email: configuration.email),
                                actor: registerOptions.actorName, now: { try currentTime() }, timer: timer)
        }
        var outcome = try await runner.check(input)
        for f in outcome.filed {
            FileHandle.standardError.write(Data("waiver: \(f.id) requested for \(f.policy) on \(f.resources.joined(separator: ", "))\(f.link.map { ": \($0)" } ?? "")\n".utf8))
        }
        warn(outcome.warnings)
        if let wait, let seconds = parseDuration(wait), !outcome.pending.isEmpty {
            // The requests were filed and the check recorded; wait for the decisions, then check
            // again (nothing new to request), recorded as the workspace's latest state.
            var waiting = Set(outcome.pending)
            try await poll(seconds: seconds, pending: { waiting.count }) { waiting = try await runner.stillPending(waiting) }
            var again = input
            again.request = nil
            outcome = try await runner.check(again)
        }
        try finish(rendered: outcome.rendered, passed: outcome.passed, pending: outcome.summary.pending, tally: outcome.summary.line)
        timer?.phase("write")
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
}
