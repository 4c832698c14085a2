import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats

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

    func validate() throws {
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
        phase("sarif")
        let report = engine.check(resources: resources, external: external, workspace: workspace)
        phase("evaluate")
        let rendered = format.render(report)
        phase("render")
        try emit(rendered, to: output)
        phase("write")
        if output != nil, format != .text {
            // Keep the CI log informative when the report goes to a file.
            FileHandle.standardError.write(Data("waiver: \(report.passed ? "PASS" : "BLOCKED"): \(TextOutputTally.line(report))\n".utf8))
        }
        if !report.passed { throw Exit(code: 1) }
    }
}

enum TextOutputTally {
    static func line(_ report: CheckReport) -> String {
        let s = report.summary
        return "\(s.resources) resources, \(s.violations) violations: \(s.blocking) blocking, \(s.excepted) excepted, \(s.pending) pending, \(s.unknown) unknown"
    }
}
