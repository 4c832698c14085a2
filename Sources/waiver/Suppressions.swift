import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverUseCases

struct Suppressions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scanner suppressions (#checkov:skip, .trivyignore, # nosemgrep, ...) under governance.",
        subcommands: [Scan.self])

    enum FailOn: String, ExpressibleByArgument, CaseIterable { case ungoverned, never }
    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, sarif }

    struct Scan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find scanner suppressions and tell governed ones (an active exception covers them) from ungoverned ones.",
            discussion: """
                Inline: #checkov:skip=, #tfsec:ignore:, #trivy:ignore:, # nosemgrep, # kics-scan ignore-line|ignore-block|disable=. \
                Files: .trivyignore, .trivyignore.yaml, .snyk, .checkov.yaml, .tfsec/config.yml|json, .semgrepignore. \
                A suppression is governed when an active exception to its rule covers its subject (the Terraform resource it sits \
                in, the path its entry names, or its file and line), or when it names an active exception to its rule (EX-12 in its \
                justification or in the comment above it, as `waiver export` writes). Exit 1 when one is ungoverned under \
                --fail-on ungoverned (the default when $CI is set).
                """)
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Argument(help: ArgumentHelp("The folder (or file) to scan.", valueName: "dir")) var directory: String = "."
        @Option(name: .long, help: ArgumentHelp("The workspace whose exceptions govern them.", valueName: "name")) var workspace: String = "default"
        @Option(name: .long, help: "text, json or sarif.") var format: Format = .text
        @Option(name: .long, help: ArgumentHelp("Write the report to this file (atomically) instead of stdout.", valueName: "file")) var output: String?
        @Option(name: .long, help: "Exit 1 when a suppression is ungoverned (ungoverned), or never (default: ungoverned when $CI is set, else never).")
        var failOn: FailOn?
        @Flag(name: .long, help: "File one exception request per ungoverned suppression (its justification as the reason, else --reason).")
        var request = false
        @Option(name: .long, help: ArgumentHelp("With --request: the reason for suppressions without a justification.", valueName: "text")) var reason: String?
        @Option(name: .long, help: ArgumentHelp("With --request: requested duration in days.", valueName: "n")) var days: Int?
        @Option(name: .long, help: "With --request: likelihood (low, medium, high).") var likelihood: RiskFactor?
        @Option(name: .long, help: "With --request: impact (low, medium, high).") var impact: RiskFactor?
        @Option(name: .long, help: ArgumentHelp("With --request: a ticket reference (INC-42) or URL.", valueName: "ref")) var ticket: String?

        func validate() throws {
            if !request, reason != nil || days != nil || likelihood != nil || impact != nil || ticket != nil {
                throw ValidationError("--reason, --days, --likelihood, --impact and --ticket go with --request")
            }
        }

        func run() async throws {
            let scanned = try SuppressionScanner.scan(directory)
            for p in scanned.problems { FileHandle.standardError.write(Data("warning: \(p.description)\n".utf8)) }
            let workspace = try RequestLimits.workspace(workspace)
            // The register's own use cases: a local register, or a server's with --server.
            let service = try await registerOptions.service(config: config, needPolicies: false)
            var rows = try await SuppressionService.govern(scanned.suppressions, service: service, workspace: workspace, now: service.now)
            if request {
                let (requests, skipped) = try SuppressionService.requests(rows, workspace: workspace, reason: reason, days: days, likelihood: likelihood,
                                                                          impact: impact, ticket: ticket)
                warn(skipped)
                for f in try await service.requestAll(requests) {
                    FileHandle.standardError.write(Data("waiver: \(f.record.displayId) requested for \(f.record.policy) on \(f.record.resources.joined(separator: ", "))\n".utf8))
                }
                rows = try await SuppressionService.govern(scanned.suppressions, service: service, workspace: workspace, now: service.now)
            }
            let text: String
            switch format {
            case .text: text = SuppressionOutput.text(rows, files: scanned.filesRead)
            case .json: text = SuppressionOutput.json(rows, files: scanned.filesRead)
            case .sarif: text = SuppressionOutput.sarif(rows, workspace: workspace)
            }
            try emit(text, to: output)
            let fail = failOn ?? (CIEnvironment.isCI(ProcessInfo.processInfo.environment) ? .ungoverned : .never)
            if fail == .ungoverned, rows.contains(where: { !$0.governed }) { throw Exit(code: 1) }
        }
    }
}

extension ScannerExport: ExpressibleByArgument {}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the active exceptions in a scanner's own format, each with its id and expiry.",
        discussion: """
            trivyignore-yaml (.trivyignore.yaml), trivyignore (.trivyignore), snyk (.snyk), checkov (a baseline for \
            checkov --baseline: exactly the approved check and resource pairs), kyverno (PolicyException resources) and \
            sarif-suppressions (a SARIF log with an external suppression per excepted finding). Only approved exceptions \
            before their expiry instant are written.
            """)
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Option(name: .long, help: ArgumentHelp("trivyignore-yaml, trivyignore, snyk, checkov, kyverno or sarif-suppressions.", valueName: "format"))
    var format: ScannerExport
    @Option(name: .long, help: ArgumentHelp("Only this workspace's exceptions.", valueName: "name")) var workspace: String?
    @Option(name: .long, help: ArgumentHelp("Write to this file (atomically) instead of stdout.", valueName: "file")) var output: String?

    func run() async throws {
        let service = try await registerOptions.service(config: config, needPolicies: false)
        let approved = try await service.list(ListQuery(status: .approved, workspace: workspace))
        try emit(format.render(approved, now: try currentTime()), to: output)
    }
}
