import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// What a check asks for besides its inputs: requests to file for blocking violations.
public struct RequestSpec: Sendable, Equatable {
    public var reason: String
    public var days: Int?
    public var likelihood: RiskFactor?
    public var impact: RiskFactor?
    public var mitigations: [String]
    /// A ticket reference or URL filed with each request.
    public var ticket: String?
    /// The exception the requests renew: the request for its policy and resources renews it.
    public var renews: Int?
    public init(reason: String, days: Int? = nil, likelihood: RiskFactor? = nil, impact: RiskFactor? = nil, mitigations: [String] = [],
                ticket: String? = nil, renews: Int? = nil) {
        self.ticket = ticket
        self.renews = renews
        self.reason = reason
        self.days = days
        self.likelihood = likelihood
        self.impact = impact
        self.mitigations = mitigations
    }
}

/// The steps of `waiver check`, shared by the CLI (local register) and the server.
public enum CheckService {
    /// Evaluates resources already read from a plan, plus SARIF reports.
    public static func evaluate(
        policies: [Policy], configuration: Configuration, resources: [(Resource, file: String)], sarif: [(name: String, data: Data)],
        workspace: String, unknown: UnknownMode, keepCompliant: Bool, failOn: Severity? = nil
    ) throws -> CheckReport {
        try evaluate(policies: policies, configuration: configuration, sarif: sarif, workspace: workspace, unknown: unknown,
                     keepCompliant: keepCompliant, failOn: failOn) { run in
            for (resource, file) in resources { run.add(resource, file: file) }
        }
    }

    /// Evaluates a plan file while it is read (each resource as soon as it is read, none kept), plus SARIF reports.
    public static func evaluate(
        policies: [Policy], configuration: Configuration, plan: (path: String, name: String)?, sarif: [(name: String, data: Data)],
        workspace: String, unknown: UnknownMode, keepCompliant: Bool, failOn: Severity? = nil
    ) throws -> CheckReport {
        // Only the attributes the policies read are built from the plan.
        let selection = AttributeSelection(policies: policies)
        return try evaluate(policies: policies, configuration: configuration, sarif: sarif, workspace: workspace, unknown: unknown,
                            keepCompliant: keepCompliant, failOn: failOn) { run in
            guard let plan else { return }
            _ = try PlanReader.read(path: plan.path, selection: selection) { run.add($0, file: plan.name) }
        }
    }

    private static func evaluate(
        policies: [Policy], configuration: Configuration, sarif: [(name: String, data: Data)], workspace: String, unknown: UnknownMode,
        keepCompliant: Bool, failOn: Severity?, feed: (inout CheckRun) throws -> Void
    ) throws -> CheckReport {
        var external: [ExternalFinding] = []
        for s in sarif { external += try SarifReader.parse(s.data, file: s.name) }
        let engine = CheckEngine(policies: policies, sarifCategories: configuration.sarif, unknownMode: unknown, keepCompliant: keepCompliant, failOn: failOn)
        return try CheckEngine.withBudget { () throws -> CheckReport in
            var run = CheckRun(engine)
            try feed(&run)
            return run.finish(external: external, workspace: workspace)
        }
    }

    /// The requests a check files for its blocking violations.
    static func requests(_ report: CheckReport, register: Register, provenance: Provenance, request: RequestSpec?,
                         renewing: ExceptionRecord?) throws -> [ExceptionRequest] {
        guard let request else { return [] }
        return try register.requests(for: report, reason: request.reason, days: request.days, likelihood: request.likelihood,
                                     impact: request.impact, mitigations: request.mitigations, provenance: provenance, ticket: request.ticket,
                                     renewing: renewing)
    }

    /// The whole register step of a check in one transaction: what the register covers, the requests
    /// for what still blocks (all or none), and the recorded check with its final statuses.
    public static func checkIn(
        _ evaluated: CheckReport, register: Register, actor: String, provenance: Provenance, request: RequestSpec?, now: Date
    ) async throws -> (report: CheckReport, filed: [ExceptionRecord], evaluation: Int) {
        var renewing: ExceptionRecord?
        if let n = request?.renews {
            guard let old = try await register.store.exception(id: n) else { throw RegisterError.notFound("\(ExceptionRecord.display(n)) not found (--renews)") }
            renewing = old
        }
        return try await register.checkIn(evaluated, requests: { try requests($0, register: register, provenance: provenance, request: request, renewing: renewing) },
                             actor: actor, provenance: provenance, now: now, violations: violations)
    }

    /// What a check records of each finding: the values that broke it as an exception binds them (`Finding.boundValues`) and their digest, severity and category.
    public static func violations(_ report: CheckReport) -> [RecordedViolation] {
        report.findings.map { f in
            RecordedViolation(policy: f.policy, resource: f.resource, status: f.status, digest: AuditChain.sha256(Data(f.boundValues.utf8)),
                              message: f.boundValues, severity: f.severity, category: f.category)
        }
    }

    /// Records the check in the register.
    public static func record(_ report: CheckReport, register: Register, actor: String, provenance: Provenance = Provenance(), now: Date) async throws -> Int {
        try await register.recordCheck(report, violations: violations(report), actor: actor, provenance: provenance, now: now)
    }
}

extension CheckService {
    /// The warnings for filed requests no one could ever approve as the groups stand.
    public static func requestWarnings(_ filed: [ExceptionRecord], register: Register) -> [String] {
        filed.compactMap { e in register.impossibility(of: e.rule, excluding: [e.requester] + e.conflicted + e.subjectPeople)
            .map { "\(e.displayId): exceptions to \(e.policy) at \(e.riskLevel) risk \($0): it would stay pending forever" } }
    }

    /// A check's JSON answer, the same from a local register and from the server: the result model
    /// of `--format json`, the recorded evaluation, the requests filed, and their warnings.
    public static func resultValue(_ report: CheckReport, evaluation: Int?, filed: [ExceptionRecord], warnings: [String]) -> Value {
        JSONOutput.value(report, trailing: resultTrailing(evaluation: evaluation, filed: filed, warnings: warnings))
    }

    /// `resultValue` as text, written result by result.
    public static func resultJSON(_ report: CheckReport, evaluation: Int?, filed: [ExceptionRecord], warnings: [String]) -> String {
        JSONOutput.render(report, trailing: resultTrailing(evaluation: evaluation, filed: filed, warnings: warnings))
    }

    /// What a check's answer adds to the report's JSON.
    static func resultTrailing(evaluation: Int?, filed: [ExceptionRecord], warnings: [String]) -> [(String, Value)] {
        var o: [(String, Value)] = []
        if let evaluation { o.append(("evaluation", .number(Double(evaluation)))) }
        o.append(("requested", .array(filed.map { .string($0.displayId) })))
        if !warnings.isEmpty { o.append(("request_warnings", .array(warnings.map(Value.string)))) }
        return o
    }
}

/// What `waiver check` asks, wherever it runs: the documents, the workspace, how to render, and the
/// requests to file.
public struct CheckInput: Sendable {
    public var plan: String?
    public var sarif: [String]
    public var workspace: String
    public var unknown: UnknownMode
    /// The reports to render, in order (at least one).
    public var formats: [OutputFormat]
    public var commitAuthor: String?
    /// The commit, pipeline run and pull request checked (shown to approvers of what it requests).
    public var commit: String?
    public var runURL: String?
    public var changeURL: String?
    /// `--fail-on SEVERITY`: violations below it are advisory for this check.
    public var failOn: Severity?
    public var request: RequestSpec?
    /// How reports name the files (relative to the repository root); nil names them as typed.
    public var paths: ReportPaths?
    /// `--suppressions DIR`: the scanner suppressions found there are findings of the check, blocking unless governed.
    public var suppressions: String?
    public init(plan: String?, sarif: [String], workspace: String, unknown: UnknownMode, formats: [OutputFormat], commitAuthor: String?, request: RequestSpec?,
                paths: ReportPaths? = nil) {
        self.paths = paths
        self.plan = plan
        self.sarif = sarif
        self.workspace = workspace
        self.unknown = unknown
        self.formats = formats.isEmpty ? [.text] : formats
        self.commitAuthor = commitAuthor
        self.request = request
    }
}

extension CheckInput {
    /// What the client declares about the change checked.
    public var provenance: Provenance {
        Provenance(declaredCommitAuthor: commitAuthor, commit: commit, runURL: runURL, changeURL: changeURL)
    }

    /// The first report asked for.
    public var format: OutputFormat { formats.first ?? .text }
    /// JUnit lists every case evaluated, so the compliant ones are kept when it is asked for.
    public var keepsCompliant: Bool { formats.contains(.junit) }

    /// The plan's name in the report.
    public var planName: String? { plan.map { paths?.name($0) ?? $0 } }
    /// The SARIF reports' names in the report.
    public var sarifNames: [String] { sarif.map { paths?.name($0) ?? $0 } + (suppressions.map { [suppressionsName($0)] } ?? []) }

    /// How the report names the suppressions a check scanned: `suppressions in DIR`.
    func suppressionsName(_ dir: String) -> String { "suppressions in " + (paths?.name(dir) ?? dir) }

    /// The SARIF reports, read and prepared (locations relative to the root, snippets from the
    /// checked-out files), with their names: the same for a local check and one sent to a server.
    public func sarifDocuments() throws(InputError) -> [(name: String, data: Data)] {
        var out: [(name: String, data: Data)] = []
        for (typed, name) in zip(sarif, sarifNames) {
            let data = try InputFile.utf8(try InputFile.read(typed), file: typed)
            out.append((name, paths.map { SarifPreparation.prepare(data, paths: $0) } ?? data))
        }
        // `--suppressions DIR`: the scan as one more report, the same for a local check and one sent
        // to a server (no physical location, so nothing is added to it on the way).
        if let dir = suppressions {
            out.append((suppressionsName(dir), SuppressionOutput.checkInput(try SuppressionScanner.scan(dir).suppressions)))
        }
        return out
    }
}

/// A request a check filed: its id, policy and resources.
public struct FiledRequest: Sendable, Equatable {
    public var id: String
    public var policy: String
    public var resources: [String]
    /// Its page, when the check ran on a server with a public URL.
    public var link: String?
    public init(id: String, policy: String, resources: [String], link: String? = nil) {
        self.id = id
        self.policy = policy
        self.resources = resources
        self.link = link
    }
}

/// A check's answer: the renderings asked for, the verdict and counts, what it filed, and the
/// exceptions its pending findings wait on.
public struct CheckOutcome: Sendable {
    public var renderings: [OutputFormat: String]
    public var passed: Bool
    public var summary: Summary
    public var filed: [FiledRequest]
    public var warnings: [String]
    public var pending: [String]
    public init(renderings: [OutputFormat: String], passed: Bool, summary: Summary, filed: [FiledRequest], warnings: [String], pending: [String]) {
        self.renderings = renderings
        self.passed = passed
        self.summary = summary
        self.filed = filed
        self.warnings = warnings
        self.pending = pending
    }
}

/// `waiver check`: locally (the CLI's policies and register) or on a server (its policies, the
/// shared register). The CLI calls one, waits on `stillPending`, and renders the outcome alike.
public protocol CheckUseCase: Sendable {
    /// Evaluates, applies the register, files the requests asked for and records the check, in one transaction.
    func check(_ input: CheckInput) async throws -> CheckOutcome
}

/// Reports how long each phase of a local check took (`WAIVER_TIMINGS=1`).
public final class PhaseTimer: @unchecked Sendable {
    let lock = NSLock()
    let clock = ContinuousClock()
    var mark: ContinuousClock.Instant
    let report: @Sendable (String) -> Void
    public init(report: @escaping @Sendable (String) -> Void) {
        self.report = report
        mark = clock.now
    }
    public func phase(_ name: String) {
        let line: String = lock.withLock {
            let now = clock.now
            defer { mark = now }
            return "\(name): \(now - mark)"
        }
        report(line)
    }
}

/// The check on the CLI's policies and a local register.
public struct LocalCheck: CheckUseCase {
    public let configuration: Configuration
    public let policies: [Policy]
    public let store: any RegisterStore
    public let actor: String
    public let now: @Sendable () throws -> Date
    public let timer: PhaseTimer?
    /// Whether the check is recorded (and requests may be filed); without, the register is only read.
    public let record: Bool

    public init(configuration: Configuration, policies: [Policy], store: any RegisterStore, actor: String,
                now: @escaping @Sendable () throws -> Date, timer: PhaseTimer?, record: Bool = true) {
        self.record = record
        self.configuration = configuration
        self.policies = policies
        self.store = store
        self.actor = actor
        self.now = now
        self.timer = timer
    }

    public func check(_ input: CheckInput) async throws -> CheckOutcome {
        let sarifInputs = try input.sarifDocuments()
        let workspace = try RequestLimits.workspace(input.workspace)
        let evaluated: CheckReport
        do {
            // The plan is evaluated while it is read: its resources are never all in memory.
            evaluated = try CheckService.evaluate(
                policies: policies, configuration: configuration, plan: input.plan.map { ($0, input.planName ?? $0) }, sarif: sarifInputs,
                workspace: workspace, unknown: input.unknown, keepCompliant: input.keepsCompliant, failOn: input.failOn)
        } catch var e as InputError {
            // A report the reader refuses is named as the user typed it, not as reports name it.
            if let i = input.sarifNames.firstIndex(of: e.file), i < input.sarif.count { e.file = input.sarif[i] }
            throw e
        }
        timer?.phase("read and evaluate")
        let register = Register(store: store, configuration: configuration, policies: evaluated.policies)
        let provenance = try input.provenance.validated()
        let final: CheckReport, filed: [ExceptionRecord], evaluation: Int?
        if record {
            // The requests (all or none) and the recorded check commit in one transaction.
            (final, filed, evaluation) = try await CheckService.checkIn(evaluated, register: register, actor: actor,
                                                                       provenance: provenance,
                                                                       request: input.request, now: try now())
        } else {
            guard input.request == nil else { throw RegisterError.invalid("filing requests needs a register that can be written (drop --no-record)") }
            var report = evaluated
            try await register.applyExceptions(to: &report, now: try now())
            (final, filed, evaluation) = (report, [], nil)
        }
        timer?.phase("register")
        let warnings = CheckService.requestWarnings(filed, register: register)
        var renderings: [OutputFormat: String] = [:]
        for format in input.formats {
            renderings[format] = format == .json
                ? CheckService.resultJSON(final, evaluation: evaluation, filed: filed, warnings: warnings)
                : format.render(final)
        }
        timer?.phase("render")
        return CheckOutcome(renderings: renderings, passed: final.passed, summary: final.summary,
                            filed: filed.map { FiledRequest(id: $0.displayId, policy: $0.policy, resources: $0.resources) }, warnings: warnings,
                            pending: final.findings.filter { $0.status == .pending }.compactMap(\.exception))
    }

}
