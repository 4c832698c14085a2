import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

extension OutputFormat: ExpressibleByArgument {}
extension UnknownMode: ExpressibleByArgument {}

struct Check: ParsableCommand {
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
        if workspace.isEmpty || workspace.count > 200 || workspace.contains(where: \.isNewline) {
            throw ValidationError("--workspace must be a name of 1 to 200 characters on one line")
        }
    }

    func run() throws {
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
        let (configuration, base) = try options.loadConfiguration()
        let (dir, explicit) = options.policyDirectory(configuration, base: base)
        var policies: [Policy] = []
        if plan != nil || explicit || FileManager.default.fileExists(atPath: dir) {
            policies = try PolicyLoader.load(directory: dir)
        }
        phase("configuration and policies")
        let crossErrors = ConfigLoader.validate(policies, against: configuration)
        if !crossErrors.isEmpty { throw InputErrors(crossErrors) }

        var resources: [(Resource, file: String)] = []
        if let plan {
            let parsed = try PlanReader.read(path: plan)
            resources = parsed.resources.map { ($0, plan) }
        }
        phase("plan")
        var external: [ExternalFinding] = []
        for file in sarif { external += try SarifReader.read(path: file) }

        let engine = CheckEngine(
            policies: policies, sarifCategories: configuration.sarif, unknownMode: unknown,
            keepCompliant: format == .junit)
        let evaluated = engine.check(resources: resources, external: external, workspace: workspace)
        phase("evaluate")

        // The register: mark what exceptions cover, file requests, wait, record the check.
        let store = try registerOptions.openStore()
        let register = Register(store: store, configuration: configuration, policies: evaluated.policies)
        let actor = registerOptions.actorName
        var report = evaluated
        try register.applyExceptions(to: &report, now: try currentTime())
        if request {
            var filed = 0
            for finding in report.findings where finding.status == .blocking {
                let e = try register.request(
                    ExceptionRequest(policy: finding.policy, workspace: workspace, resources: [finding.resource], reason: reason ?? "",
                                     days: days, likelihood: likelihood, impact: impact, mitigations: mitigation,
                                     conflicted: commitAuthor.map { [$0] } ?? []),
                    actor: actor, now: try currentTime())
                FileHandle.standardError.write(Data("waiver: \(e.displayId) requested for \(finding.policy) on \(finding.resource)\n".utf8))
                filed += 1
            }
            if filed > 0 {
                report = evaluated
                try register.applyExceptions(to: &report, now: try currentTime())
            }
        }
        if let wait, let seconds = parseDuration(wait), report.summary.pending > 0 {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(seconds)
            var delay = 1.0
            while report.summary.pending > 0, clock.now < deadline {
                let remaining = deadline - clock.now
                let pause = min(delay, Double(remaining.components.seconds) + 1)
                Thread.sleep(forTimeInterval: max(0.2, pause))
                delay = min(delay * 2, 30)
                report = evaluated
                try register.applyExceptions(to: &report, now: try currentTime())
            }
        }
        phase("register")
        let violations = report.findings.map { f in
            RecordedViolation(policy: f.policy, resource: f.resource, status: f.status, digest: AuditChain.sha256(Data(f.message.utf8)))
        }
        _ = try register.recordCheck(report, violations: violations, actor: actor, now: try currentTime())
        phase("record")
        let rendered = format.render(report)
        phase("render")
        try emit(rendered, to: output)
        phase("write")
        if output != nil, format != .text {
            // Keep the CI log informative when the report goes to a file.
            FileHandle.standardError.write(Data("waiver: \(report.passed ? "PASS" : "BLOCKED"): \(TextOutputTally.line(report))\n".utf8))
        }
        if wait != nil, report.summary.pending > 0 { throw Exit(code: 3) }
        if !report.passed { throw Exit(code: 1) }
    }
}

enum TextOutputTally {
    static func line(_ report: CheckReport) -> String {
        let s = report.summary
        return "\(s.resources) resources, \(s.violations) violations: \(s.blocking) blocking, \(s.excepted) excepted, \(s.pending) pending, \(s.unknown) unknown"
    }
}
