import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

extension OutputFormat: ExpressibleByArgument {}
extension UnknownMode: ExpressibleByArgument {}
extension Severity: ExpressibleByArgument {}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate policies on a Terraform plan and scanners' SARIF reports; gate the pipeline.",
        usage: "waiver check (--plan <file> | --sarif <file> ...) [<options>]",
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

    @Option(name: .long, help: ArgumentHelp("Also gate on the scanner suppressions in this folder (#checkov:skip, .trivyignore, # nosemgrep, ...): each is a finding of its rule, blocking unless an exception governs it.", valueName: "dir"))
    var suppressions: String?

    @Option(name: .long, help: ArgumentHelp("Workspace the plan belongs to; exceptions are scoped to it.", valueName: "name"))
    var workspace: String = "default"

    @Option(name: .long, help: ArgumentHelp("Report format: text, json, sarif, junit, markdown or codequality (GitLab) (default $WAIVER_FORMAT, else text). Repeatable: the Nth --format goes to the Nth --output.", valueName: "format"))
    var format: [OutputFormat] = []

    @Option(name: .long, help: ArgumentHelp("Write the report to this file (atomically) instead of stdout; `-` is stdout. Repeatable, one per --format.", valueName: "file"))
    var output: [String] = []

    @Flag(name: .long, help: "No informational lines on stderr (requests filed, the tally, waiting); errors and warnings still show.")
    var quiet = false

    @Flag(name: .long, inversion: .prefixedNo, help: "Colour the text report (default: on a terminal, unless $NO_COLOR is set).")
    var color: Bool?

    @Flag(name: .long, help: "Read the register but do not record the check (no writable register needed; no --request).")
    var noRecord = false

    @Option(name: .long, help: ArgumentHelp("Reports name files relative to this folder, as code scanning needs (default: the git top level, else the current folder).", valueName: "dir"))
    var sarifRoot: String?

    @Option(name: .long, help: ArgumentHelp("Whether outcomes known only after apply block.", valueName: "mode"))
    var unknown: UnknownMode = .warn

    @Option(name: .long, help: ArgumentHelp("Only violations of this severity or higher block (low, medium, high, critical); the others are reported as advisory.", valueName: "severity"))
    var failOn: Severity?

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

    @Option(name: .long, help: ArgumentHelp("Author of the change being checked: they may not approve exceptions requested for it (default from the CI's variables where it names one).", valueName: "name"))
    var commitAuthor: String?

    @Option(name: .long, help: ArgumentHelp("The commit checked, shown to approvers (default from GitHub Actions, GitLab CI, Jenkins or HCP Terraform variables).", valueName: "sha"))
    var commit: String?

    @Option(name: .long, help: ArgumentHelp("The pipeline run, shown to approvers (default from the CI's variables).", valueName: "url"))
    var runUrl: String?

    @Option(name: .long, help: ArgumentHelp("The pull or merge request, shown to approvers (default from the CI's variables).", valueName: "url"))
    var changeUrl: String?

    @Option(name: .long, help: ArgumentHelp("With --request: a ticket reference (INC-42) or URL filed with each request.", valueName: "ref"))
    var ticket: String?

    @Option(name: .long, help: ArgumentHelp("With --request: the exception the requests renew (the request for its policy and resources renews it).", valueName: "EX-ID"))
    var renews: String?

    @Option(name: .long, help: ArgumentHelp("Wait until pending requests are decided (30m, 2h); exit 3 if still pending then.", valueName: "duration"))
    var wait: String?

    /// `--wait` takes seconds, minutes or hours, at most a day: a pipeline job waits no longer.
    static func waitSeconds(_ text: String) -> Int? {
        guard let unit = text.trimmingCharacters(in: .whitespaces).last, "smh".contains(unit),
              let n = parseDuration(text), n >= 1, n <= 86_400 else { return nil }
        return n
    }

    /// The reports asked for, each with where it goes (nil: stdout).
    func reports() throws -> [(format: OutputFormat, path: String?)] {
        var formats = format
        if formats.isEmpty, let env = ProcessInfo.processInfo.environment["WAIVER_FORMAT"], !env.isEmpty {
            guard let f = OutputFormat(rawValue: env) else {
                throw ValidationError("$WAIVER_FORMAT: '\(env.clipped(40))' is not one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            formats = [f]
        }
        if formats.isEmpty { formats = [.text] }
        if formats.count == 1, output.count <= 1 { return [(formats[0], output.first.flatMap { $0 == "-" ? nil : $0 })] }
        guard output.count == formats.count else {
            throw ValidationError("\(formats.count) --format but \(output.count) --output: give one --output per --format (`-` for stdout)")
        }
        let pairs = zip(formats, output).map { (format: $0, path: $1 == "-" ? nil : $1) }
        if pairs.filter({ $0.path == nil }).count > 1 { throw ValidationError("only one report can go to stdout (`--output -`)") }
        let files = pairs.compactMap(\.path)
        if Set(files).count < files.count { throw ValidationError("two reports would be written to the same --output file") }
        return pairs
    }

    func validate() throws {
        if request && (reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--request needs --reason saying why the exceptions are needed")
        }
        if request && noRecord { throw ValidationError("--request files requests in the register: it cannot be used with --no-record") }
        if !request, ticket != nil || renews != nil { throw ValidationError("--ticket and --renews go with --request") }
        if let renews, ExceptionRecord.parseId(renews) == nil { throw ValidationError("--renews: '\(renews)' is not an exception id (EX-7)") }
        if let wait, Self.waitSeconds(wait) == nil {
            throw ValidationError("--wait: '\(wait)' is not a duration in seconds, minutes or hours up to 24h (30s, 30m, 2h)")
        }
        if plan == nil && sarif.isEmpty && suppressions == nil {
            throw ValidationError("give a plan (--plan FILE), at least one SARIF report (--sarif FILE) or a folder to scan for suppressions (--suppressions DIR)")
        }
        do { _ = try RequestLimits.workspace(workspace) } catch { throw ValidationError("--workspace: \(error)") }
        var isDirectory: ObjCBool = false
        if let sarifRoot, !(FileManager.default.fileExists(atPath: sarifRoot, isDirectory: &isDirectory) && isDirectory.boolValue) {
            throw ValidationError("--sarif-root: '\(sarifRoot)' is not a folder")
        }
        _ = try reports()
    }

    /// Informational lines on stderr, unless --quiet.
    func say(_ line: String) {
        if !quiet { FileHandle.standardError.write(Data("waiver: \(line)\n".utf8)) }
    }

    /// The register a local check reads, and whether it can record into it: `--no-record` reads
    /// only; a register this user cannot write is read only, said in one line; a register that does
    /// not exist and cannot be created is empty.
    func localStore(_ configuration: Configuration) throws -> (any RegisterStore, record: Bool) {
        let path = registerOptions.register
        let fm = FileManager.default
        let exists = fm.fileExists(atPath: path)
        let folder = (path as NSString).deletingLastPathComponent
        let writable = exists ? fm.isWritableFile(atPath: path) && fm.isWritableFile(atPath: folder.isEmpty ? "." : folder)
            : Self.creatable(folder.isEmpty ? "." : folder)
        if !noRecord && writable {
            return (try registerOptions.openStore(webhooks: configuration.notify, email: configuration.email), true)
        }
        if !noRecord {
            if request { throw UsageError("\(path): the register cannot be written, so no request can be filed (check runs with --no-record without --request)") }
            warn(["\(path): the register cannot be written; the check is not recorded (as with --no-record)"])
        }
        guard exists else { return (InMemoryRegisterStore(), false) }
        do {
            return (try SQLiteRegisterStore(readingOnly: path), false)
        } catch let e as RegisterError {
            throw UsageError("\(e)")
        } catch {
            throw UsageError("\(path): cannot read the register: \(error)")
        }
    }

    /// Whether a folder exists and can be written, or could be created under one that can.
    static func creatable(_ folder: String) -> Bool {
        var dir = folder
        let fm = FileManager.default
        while !fm.fileExists(atPath: dir) {
            let parent = (dir as NSString).deletingLastPathComponent
            if parent == dir || parent.isEmpty { dir = "."; break }
            dir = parent
        }
        return fm.isWritableFile(atPath: dir)
    }

    func run() async throws {
        // WAIVER_TIMINGS=1 prints how long each phase took to stderr (for the benchmark).
        let timer = ProcessInfo.processInfo.environment["WAIVER_TIMINGS"] == "1"
            ? PhaseTimer { FileHandle.standardError.write(Data("waiver: \($0)\n".utf8)) } : nil
        let targets = try reports()
        let spec = request ? RequestSpec(reason: reason ?? "", days: days, likelihood: likelihood, impact: impact, mitigations: mitigation,
                                         ticket: ticket, renews: renews.flatMap(ExceptionRecord.parseId)) : nil
        // The change checked: the flags, else what the CI's own variables say.
        let ci = CIEnvironment.detect(ProcessInfo.processInfo.environment)
        var input = CheckInput(plan: plan, sarif: sarif, workspace: workspace, unknown: unknown, formats: targets.map(\.format),
                               commitAuthor: commitAuthor ?? ci?.commitAuthor, request: spec, paths: ReportPaths(root: sarifRoot))
        input.commit = commit ?? ci?.commit
        input.runURL = runUrl ?? ci?.runURL
        input.changeURL = changeUrl ?? ci?.changeURL
        input.failOn = failOn
        input.suppressions = suppressions
        let runner: any CheckUseCase
        if let client = try await registerOptions.client() {
            if noRecord { throw UsageError("--no-record is for a local register: a server records every check") }
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
            let (store, record) = try localStore(configuration)
            runner = LocalCheck(configuration: configuration, policies: policies, store: store,
                                actor: registerOptions.actorName, now: { try currentTime() }, timer: timer, record: record)
        }
        var outcome = try await runner.check(input)
        for f in outcome.filed {
            say("\(f.id) requested for \(f.policy) on \(f.resources.joined(separator: ", "))\(f.link.map { ": \($0)" } ?? "")")
        }
        warn(outcome.warnings)
        if let wait, let seconds = Self.waitSeconds(wait), !outcome.pending.isEmpty {
            // The requests were filed and the check recorded; wait for the decisions, then check
            // again (nothing new to request), recorded as the workspace's latest state.
            let service = try await registerOptions.service(config: options, needPolicies: false)
            try await waitForDecisions(Set(outcome.pending), seconds: seconds, service: service)
            var again = input
            again.request = nil
            outcome = try await runner.check(again)
        }
        try finish(outcome, targets: targets)
        timer?.phase("write")
    }

    /// Waits with backoff (1 s doubling, at most 30 s) while requests are pending, until `seconds`
    /// ran out, saying what it waits for (who may decide), how long is left (about once a minute),
    /// and each decision as it comes (a rejection with who and why).
    func waitForDecisions(_ ids: Set<String>, seconds: Int, service: any RegisterService) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        var waiting = ids
        var told = clock.now
        var first = true
        var delay = 1.0
        while !waiting.isEmpty {
            for id in waiting.sorted() {
                guard let n = ExceptionRecord.parseId(id) else { waiting.remove(id); continue }
                let shown = try await service.show(n)
                let e = shown.record
                if e.status == .pending {
                    if first { say("waiting up to \(formatDuration(seconds)) for \(id) (\(e.policy)): \(e.awaiting)") }
                    continue
                }
                waiting.remove(id)
                say(WaitNews.decided(e, history: shown.history))
            }
            first = false
            let left = deadline - clock.now
            if waiting.isEmpty || left <= .zero { break }
            if clock.now - told >= .seconds(60) {
                told = clock.now
                say("still waiting for \(waiting.sorted().joined(separator: ", ")): \(WaitNews.left(Int(left.components.seconds))) left")
            }
            try await Task.sleep(for: .seconds(max(0.2, min(delay, Double(left.components.seconds) + 1))))
            delay = min(delay * 2, 30)
        }
        if !waiting.isEmpty { say("\(waiting.sorted().joined(separator: ", ")) still pending after \(formatDuration(seconds))") }
    }

    /// Writes the reports and ends with the exit code the verdict calls for.
    func finish(_ outcome: CheckOutcome, targets: [(format: OutputFormat, path: String?)]) throws {
        let env = ProcessInfo.processInfo.environment
        for t in targets {
            var text = outcome.renderings[t.format] ?? ""
            if t.format == .text, t.path == nil {
                // Colour on a terminal; never with NO_COLOR (any value, https://no-color.org) or --no-color.
                let wanted = color ?? ((env["NO_COLOR"] ?? "").isEmpty && isatty(STDOUT_FILENO) == 1 && env["TERM"] != "dumb")
                if wanted { text = TextOutput.colored(text) }
            }
            try emit(text, to: t.path)
        }
        if targets.allSatisfy({ $0.path != nil }) {
            // Keep the CI log informative when the report goes to a file.
            say("\(outcome.passed ? "PASS" : "BLOCKED"): \(outcome.summary.line)")
        }
        if wait != nil, outcome.summary.pending > 0 { throw Exit(code: 3) }
        if !outcome.passed { throw Exit(code: 1) }
    }
}
