import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

struct Request: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Request an exception to a policy for resources in a workspace (or a person, device or account).",
        discussion: "The request is logged and pending until someone else from the routed groups approves it.")

    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions

    @Option(name: .long, help: ArgumentHelp("Policy (or control) id from the policy files (a renewal's default: the renewed one's).", valueName: "id")) var policy: String?
    @Option(name: .long, help: ArgumentHelp("Resource address (repeatable); for a program exception, the person, device or account.", valueName: "address"))
    var resource: [String] = []
    @Option(name: .long, help: ArgumentHelp("Subject kind: resource (default), person, device or account.", valueName: "kind"))
    var kind: SubjectKind?
    @Option(name: .long, help: ArgumentHelp("Workspace (program exceptions default to 'program'; a renewal's, to the renewed one's).", valueName: "name")) var workspace: String?
    @Option(name: .long, help: ArgumentHelp("Why the exception is needed.", valueName: "text")) var reason: String
    @Option(name: .long, help: ArgumentHelp("Requested duration in days (default from waiver.yaml; capped per policy).", valueName: "n")) var days: Int?
    @Option(name: .long, help: "Likelihood: low, medium (default) or high.") var likelihood: RiskFactor?
    @Option(name: .long, help: "Impact: low, medium or high (default from the policy's severity).") var impact: RiskFactor?
    @Option(name: .long, help: ArgumentHelp("A mitigation or compensating control (repeatable).", valueName: "text")) var mitigation: [String] = []
    @Option(name: .long, help: ArgumentHelp("A file to keep as evidence, addressed by its SHA-256 (repeatable).", valueName: "file")) var evidence: [String] = []
    @Option(name: .long, help: ArgumentHelp("What the Nth --evidence file shows, in words (repeatable, one per --evidence).", valueName: "text"))
    var evidenceText: [String] = []
    @Option(name: .long, help: ArgumentHelp("A ticket reference (INC-42) or URL (a renewal's default: the renewed one's).", valueName: "ref")) var ticket: String?
    @Option(name: .long, help: ArgumentHelp("The exception this request renews.", valueName: "EX-ID")) var renews: String?
    @Option(name: .long, help: ArgumentHelp("The owner of the device or account (required for --kind device|account); they may not approve it.", valueName: "name"))
    var owner: String?
    @Option(name: .long, help: .hidden) var format: OutputFormatChoice = .text

    func validate() throws {
        if renews == nil && policy == nil { throw ValidationError("--policy is required (except on a renewal, which keeps the renewed one's)") }
        if renews == nil && (kind ?? .resource) == .resource && workspace == nil { throw ValidationError("--workspace is required for resource exceptions") }
        if evidenceText.count > evidence.count { throw ValidationError("\(evidenceText.count) --evidence-text but \(evidence.count) --evidence: each text describes the --evidence at its place") }
    }

    func run() async throws {
        let service = try await registerOptions.service(config: config, needPolicies: true)
        let uploads = try evidence.enumerated().map { i, path in try readEvidence(path, displayText: i < evidenceText.count ? evidenceText[i] : nil) }
        let filed = try await service.request(
            ExceptionRequest(policy: policy ?? "", workspace: workspace ?? "", subjectKind: kind, resources: resource, reason: reason,
                             days: days, likelihood: likelihood, impact: impact, mitigations: mitigation, renews: try renews.map(exceptionId),
                             owner: owner, ticket: ticket),
            evidence: uploads)
        if let w = filed.warning { warn([w]) }
        let record = filed.record
        if format == .json {
            try emit(JSONWriter.write(RegisterOutput.value(record, now: service.now)), to: nil)
        } else {
            print("\(record.displayId) requested: \(record.policy) in \(record.workspace), \(record.requestedDays) days, \(record.riskLevel) risk; pending approval by \(record.rule.minApprovals) of \(record.rule.groups.joined(separator: ", "))")
        }
    }
}

enum OutputFormatChoice: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct Approve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Approve a pending exception (never your own; only members of the routed groups).",
        discussion: "Several ids decide a batch (one pipeline run's requests): each is decided on its own, each rule checked per exception; exit 2 when any was refused.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: ArgumentHelp("Exception id (EX-7); several for a batch.", valueName: "id")) var ids: [String]
    @Option(name: .long, help: ArgumentHelp("Comment kept with the approval.", valueName: "text")) var comment: String?
    @Option(name: .long, help: ArgumentHelp("Approve for fewer days than requested.", valueName: "n")) var days: Int?
    @Option(name: .long, help: ArgumentHelp("Re-rate the risk upward (a level of risk.levels): the approvals that level needs apply at once.", valueName: "level"))
    var risk: String?

    func validate() throws {
        if ids.isEmpty { throw ValidationError("name the exception to approve (EX-7)") }
        if ids.count > 1, days != nil || risk != nil { throw ValidationError("--days and --risk are for one exception at a time") }
    }

    func run() async throws {
        let service = try await registerOptions.service(config: config, needPolicies: false)
        if ids.count > 1 {
            try await decideBatch(service, ids, .approve, comment: comment)
            return
        }
        let d = try await service.approve(try exceptionId(ids[0]), comment: comment, days: days, risk: risk)
        let e = d.record
        if risk != nil, e.riskRaisedBy == d.actor { print("\(e.displayId): risk raised to \(RegisterOutput.riskText(e)); it needs \(e.rule.minApprovals) of \(e.rule.groups.joined(separator: ", "))") }
        if e.status == .approved, let x = e.expiresAt {
            print("\(e.displayId) approved by \(d.actor): active until \(iso(x))")
        } else {
            print("\(e.displayId): approval by \(d.actor) recorded; still needs \(d.stillNeeds ?? "nothing")")
        }
    }
}

struct Reject: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reject a pending exception (several for a batch), with a comment saying why.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: ArgumentHelp("Exception id (EX-7); several for a batch.", valueName: "id")) var ids: [String]
    @Option(name: .long, help: ArgumentHelp("Why it is rejected.", valueName: "text")) var comment: String

    func validate() throws {
        if ids.isEmpty { throw ValidationError("name the exception to reject (EX-7)") }
    }

    func run() async throws {
        let service = try await registerOptions.service(config: config, needPolicies: false)
        if ids.count > 1 {
            try await decideBatch(service, ids, .reject, comment: comment)
            return
        }
        let d = try await service.reject(try exceptionId(ids[0]), comment: comment)
        print("\(d.record.displayId) rejected by \(d.actor)")
    }
}

/// Decides several requests, each on its own; one line each, refusals on stderr; exit 2 when any was refused.
func decideBatch(_ service: any RegisterService, _ ids: [String], _ action: BatchAction, comment: String?) async throws {
    let numbers = try ids.map(exceptionId)
    let outcomes = try await service.decideAll(numbers, action: action, comment: comment)
    for o in outcomes {
        if o.decided != nil { print(o.line) } else { FileHandle.standardError.write(Data("error: \(o.line)\n".utf8)) }
    }
    if outcomes.contains(where: { $0.decided == nil }) { throw Exit(code: 2) }
}

struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke an exception early (approvers of its policy, or its requester), with a comment.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: "Exception id (EX-7).") var id: String
    @Option(name: .long, help: ArgumentHelp("Why it is revoked.", valueName: "text")) var comment: String

    func run() async throws {
        let d = try await registerOptions.service(config: config, needPolicies: false).revoke(try exceptionId(id), comment: comment)
        print("\(d.record.displayId) revoked by \(d.actor)")
    }
}

enum ListFormat: String, ExpressibleByArgument, CaseIterable { case text, json, csv }

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List exceptions in the register.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Option(name: .long, help: "Only this status (pending, approved, rejected, revoked, expired, closed).") var status: ExceptionStatus?
    @Option(name: .long, help: ArgumentHelp("Only this policy.", valueName: "id")) var policy: String?
    @Option(name: .long, help: ArgumentHelp("Only this workspace.", valueName: "name")) var workspace: String?
    @Option(name: .long, help: ArgumentHelp("Only active exceptions expiring within this duration (7d, 12h).", valueName: "duration")) var expiringWithin: String?
    @Option(name: .long, help: ArgumentHelp("Only exceptions filed with this ticket reference or URL.", valueName: "ref")) var ticket: String?
    @Flag(name: .long, help: "Only my own requests: pending, active with days left, and decided with the decision's comment.") var mine = false
    @Option(name: .long, help: "text, json or csv.") var format: ListFormat = .text

    func run() async throws {
        var within: Int?
        if let text = expiringWithin {
            guard let d = parseDuration(text) else { throw UsageError("--expiring-within: '\(text)' is not a duration (use 30m, 12h, 7d or 2w)") }
            within = d
        }
        let service = try await registerOptions.service(config: config, needPolicies: false)
        if mine, format == .text {
            // The three groups with each decision's comment (from the audit log).
            try emit(RegisterOutput.myRequests(try await service.myRequests().map { ($0.record, $0.decision) }, now: service.now), to: nil)
            return
        }
        let query = ListQuery(status: status, policy: policy, workspace: workspace, expiringWithin: within, ticket: ticket, mine: mine)
        switch format {
        case .text: try emit(RegisterOutput.listText(try await service.list(query), now: service.now), to: nil)
        case .json:
            let rows = try await service.exportRows(query)
            try emit(JSONWriter.write(.array(rows.map { RegisterOutput.value($0.record, history: $0.history, now: service.now) })), to: nil)
        case .csv: try emit(RegisterOutput.csv(try await service.exportRows(query).map { ($0.record, $0.history) }), to: nil)
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one exception with its approvals, evidence and full history.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: "Exception id (EX-7).") var id: String
    @Option(name: .long, help: "text or json.") var format: OutputFormatChoice = .text

    func run() async throws {
        let service = try await registerOptions.service(config: config, needPolicies: false)
        let shown = try await service.show(try exceptionId(id))
        switch format {
        case .text: try emit(RegisterOutput.show(shown.record, history: shown.history, now: service.now), to: nil)
        case .json: try emit(JSONWriter.write(RegisterOutput.value(shown.record, history: shown.history, now: service.now)), to: nil)
        }
    }
}

enum ReportFormat: String, ExpressibleByArgument, CaseIterable { case text, json, markdown }

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exception frequency per policy, workspace and requester; renewals; policies to review; orphaned exceptions.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Option(name: .long, help: ArgumentHelp("Start of the period (2026-10-01 or an ISO 8601 instant).", valueName: "date")) var from: String?
    @Option(name: .long, help: ArgumentHelp("End of the period, exclusive.", valueName: "date")) var to: String?
    @Option(name: .long, help: "text, json or markdown.") var format: ReportFormat = .text

    func run() async throws {
        func date(_ text: String?, _ flag: String) throws -> Date? {
            guard let text else { return nil }
            guard let d = parseInstant(text) else { throw UsageError("\(flag): '\(text)' is not a date (2026-10-01 or 2026-10-01T00:00:00Z)") }
            return d
        }
        let start = try date(from, "--from"), end = try date(to, "--to")
        if let start, let end, end <= start { throw UsageError("--to must be after --from") }
        let report = try await registerOptions.service(config: config, needPolicies: false).report(from: start, to: end)
        switch format {
        case .text: try emit(RegisterOutput.reportText(report, markdown: false), to: nil)
        case .markdown: try emit(RegisterOutput.reportText(report, markdown: true), to: nil)
        case .json: try emit(JSONWriter.write(RegisterOutput.reportValue(report)), to: nil)
        }
    }
}

struct Expire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-check exceptions past expiry: closed if the resources are compliant in the latest check, expired (blocking again) if not.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions

    func run() async throws {
        let outcomes = try await registerOptions.service(config: config, needPolicies: true).expire()
        for o in outcomes {
            if o.exception.status == .closed {
                print("\(o.exception.displayId) closed: \(o.exception.policy) is compliant on its resources in \(o.exception.workspace)")
            } else {
                print("\(o.exception.displayId) expired: \(o.exception.policy) still violated by \(o.stillViolating.joined(separator: ", ")); the pipeline blocks again")
            }
        }
        print("\(outcomes.count) exception\(outcomes.count == 1 ? "" : "s") re-checked")
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Verify or export the tamper-evident audit log; sign checkpoints of it.",
                                                    subcommands: [Verify.self, Export.self, Package.self, Checkpoint.self, Keygen.self])

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the register as evidence; exit 0 when intact, 1 naming what does not verify.",
            discussion: """
                Recomputes the hash chain over every row of the log, checks that every exception's stored \
                state is the state the log records for it, and re-hashes every evidence file. A chain alone \
                cannot show events cut from its end: `verify` prints the head as an anchor (SEQ:HASH) to keep \
                outside the register (--anchor), and with --public-key it checks the chain against signed \
                checkpoints (the register's own, or those in --checkpoint FILE), which nobody without the \
                signing key can forge.
                """)
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Option(name: .long, help: ArgumentHelp("Verify an exported JSON Lines file instead of the register.", valueName: "file")) var file: String?
        @Option(name: .long, help: ArgumentHelp("An anchor kept from an earlier verify (repeatable).", valueName: "seq:hash")) var anchor: [String] = []
        @Option(name: .long, help: ArgumentHelp("The checkpoint signer's public key (ed25519:BASE64, or a file holding it).", valueName: "key"))
        var publicKey: String?
        @Option(name: .long, help: ArgumentHelp("Signed checkpoints kept elsewhere, one JSON object a line (with --public-key).", valueName: "file"))
        var checkpoint: String?

        func validate() throws {
            for a in anchor where AuditAnchor(a) == nil {
                throw ValidationError("--anchor: '\(a.prefix(80))' is not \(AuditAnchor.syntax)")
            }
            if checkpoint != nil && publicKey == nil { throw ValidationError("--checkpoint needs --public-key to check its signature") }
        }

        func run() async throws {
            var anchors = anchor.compactMap(AuditAnchor.init)
            let key = try publicKey.map(loadPublicKey)
            let given = try checkpoint.map(loadCheckpoints)
            let result: AuditVerification
            if let file {
                var findings: [String] = []
                var verified = 0
                if let key {
                    for c in given ?? [] {
                        if let why = c.problem(with: key) { findings.append("checkpoint at event \(c.seq): \(why)") } else {
                            anchors.append(AuditAnchor(seq: Int(c.seq), hash: c.hash))
                            verified += 1
                        }
                    }
                    if (given ?? []).isEmpty { findings.append("no signed checkpoint to verify the export against (--checkpoint FILE)") }
                }
                var r = try AuditExport.verify(path: file, anchors: anchors)
                r.findings = findings
                r.checkpoints = verified
                result = r
            } else {
                result = try await registerOptions.service(config: config, needPolicies: false).verifyAudit(anchors: anchors, publicKey: key, given: given)
            }
            for line in AuditOutput.lines(result, anchors: anchor.count) { print(line) }
            if !result.intact { throw Exit(code: 1) }
        }
    }

    /// Signs the head of the log with the key kept outside the register and keeps the checkpoint.
    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign the audit log's head with the Ed25519 key kept outside the register; print the checkpoint (JSON).",
            discussion: "Locally the key comes from --signing-key FILE or $WAIVER_SIGNING_KEY; with --server the server signs with its own key.")
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Option(name: .long, help: ArgumentHelp("The private key file (from `waiver audit keygen`); default $WAIVER_SIGNING_KEY.", valueName: "file"))
        var signingKey: String?
        @Option(name: .long, help: ArgumentHelp("Append the checkpoint to this file too (one JSON object a line).", valueName: "file"))
        var output: String?

        func run() async throws {
            let key = registerOptions.serverURL == nil ? try loadSigningKey(signingKey) : nil
            let json = try await registerOptions.service(config: config, needPolicies: false, signingKey: key).checkpoint().json
            print(json)
            if let output {
                guard let handle = FileHandle(forWritingAtPath: output) ?? {
                    FileManager.default.createFile(atPath: output, contents: nil) ? FileHandle(forWritingAtPath: output) : nil
                }() else { throw UsageError("\(output): cannot write") }
                defer { try? handle.close() }
                try handle.seekToEnd()
                handle.write(Data((json + "\n").utf8))
            }
        }
    }

    /// The auditor's take-away for a period: one ZIP with the register and audit log exports, every
    /// evidence file, the verification report and a summary per control and policy.
    struct Package: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the audit package of a period: register and audit log exports, evidence, verification, summary (ZIP).",
            discussion: "The exceptions filed in the period or active during it, each with its decisions and risk history; the whole audit log (a chain verifies only whole) with what verifying it found; SHA256SUMS of every file.")
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Option(name: .long, help: ArgumentHelp("The period's first day (2026-10-01) or instant.", valueName: "date")) var from: String
        @Option(name: .long, help: ArgumentHelp("The period's last day, included (2026-12-31), or an instant (excluded).", valueName: "date")) var to: String
        @Option(name: .long, help: ArgumentHelp("Where to write the ZIP (atomically).", valueName: "file")) var output: String
        @Option(name: .long, help: ArgumentHelp("Verify the signed checkpoints with this public key (ed25519:BASE64, or a file holding it).", valueName: "key"))
        var publicKey: String?

        func run() async throws {
            guard let start = parseInstant(from) else { throw UsageError("--from: '\(from)' is not a date (2026-10-01) or an instant") }
            guard let end = AuditPackage.periodEnd(to) else { throw UsageError("--to: '\(to)' is not a date (2026-12-31) or an instant") }
            let service = try await registerOptions.service(config: config, needPolicies: false)
            // The policies give the summary its titles and framework controls (the local files, when there are any).
            let policies = (try? config.loadConfiguration()).flatMap { (c, base) in try? PolicyLoader.load(directory: config.policyDirectory(c, base: base).0) } ?? []
            let files = try await AuditPackage.files(service: service, from: start, to: end, policies: policies, publicKey: try publicKey.map(loadPublicKey))
            try AuditPackage.write(files, to: output, at: service.now)
            let evidence = files.filter { $0.path.hasPrefix("evidence/") }.count
            print("\(output): audit package of \(iso(start)) to \(iso(end)): \(files.count) files, \(evidence) evidence file\(evidence == 1 ? "" : "s")")
        }
    }

    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an Ed25519 key pair for signed checkpoints: the private key to a file (mode 600), the public key to stdout.")
        @Option(name: .long, help: ArgumentHelp("Where to write the private key (refused if it exists).", valueName: "file")) var output: String

        func run() async throws {
            guard !FileManager.default.fileExists(atPath: output) else { throw UsageError("\(output): exists; a key is never overwritten") }
            let key = SigningKey.generate()
            guard FileManager.default.createFile(atPath: output, contents: Data((key.text + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw UsageError("\(output): cannot write")
            }
            print(key.publicKey.text)
            FileHandle.standardError.write(Data("waiver: private key written to \(output) (keep it outside the register's host or readable by the server only); the public key above verifies its checkpoints\n".utf8))
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the audit log as JSON Lines (one event a line, with hashes) for auditors.")
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Option(name: .long, help: "jsonl.") var format: String = "jsonl"
        @Option(name: .long, help: ArgumentHelp("Write to this file (atomically) instead of stdout.", valueName: "file")) var output: String?

        func validate() throws {
            if format != "jsonl" { throw ValidationError("--format: only jsonl is supported") }
        }

        func run() async throws {
            try await emit(try registerOptions.service(config: config, needPolicies: false).exportAudit(), to: output)
        }
    }
}

/// The signing key: a file holding `ed25519-private:...`, or $WAIVER_SIGNING_KEY holding it.
func loadSigningKey(_ file: String?) throws -> SigningKey {
    let text: String
    if let file {
        guard let data = FileManager.default.contents(atPath: file) else { throw UsageError("\(file): cannot read the signing key") }
        text = String(decoding: data, as: UTF8.self)
    } else if let env = ProcessInfo.processInfo.environment["WAIVER_SIGNING_KEY"], !env.isEmpty {
        text = env
    } else {
        throw UsageError("no signing key: pass --signing-key FILE or set $WAIVER_SIGNING_KEY (make one with `waiver audit keygen`)")
    }
    guard let key = SigningKey(text: text) else {
        throw UsageError("\(file ?? "$WAIVER_SIGNING_KEY"): not an Ed25519 private key (ed25519-private:BASE64, as `waiver audit keygen` writes it)")
    }
    return key
}

/// A public key given as text (`ed25519:BASE64`) or as a file holding it.
func loadPublicKey(_ text: String) throws -> PublicSigningKey {
    if let key = PublicSigningKey(text: text) { return key }
    if let data = FileManager.default.contents(atPath: text), let key = PublicSigningKey(text: String(decoding: data, as: UTF8.self)) { return key }
    throw UsageError("--public-key: '\(text.prefix(80))' is neither an Ed25519 public key (ed25519:BASE64) nor a file holding one")
}

/// Checkpoints kept in a file, one JSON object a line.
func loadCheckpoints(_ path: String) throws -> [WaiverStore.Checkpoint] {
    guard let data = FileManager.default.contents(atPath: path) else { throw UsageError("\(path): cannot read") }
    var out: [WaiverStore.Checkpoint] = []
    for (i, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) {
        do {
            out.append(try WaiverStore.Checkpoint(json: try JSONReader.parse(Data(line), maxDepth: 8)))
        } catch {
            throw UsageError("\(path):\(i + 1): not a checkpoint: \(error)")
        }
    }
    return out
}

struct EvidenceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "evidence", abstract: "Evidence kept with an exception.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an evidence file to an exception, with display text saying what it shows.",
            discussion: """
                Any time after filing, also after a decision (closure evidence: "background check cleared"). \
                Its requester, the person or owner it is about, its approvers' groups and administrators may add evidence.
                """)
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Argument(help: "Exception id (EX-7).") var id: String
        @Argument(help: "The file to keep (addressed by its SHA-256).") var file: String
        @Option(name: .long, help: ArgumentHelp("What the file shows, in words; shown with it everywhere and exported.", valueName: "text"))
        var displayText: String?

        func run() async throws {
            let service = try await registerOptions.service(config: config, needPolicies: false)
            let upload = try readEvidence(file, displayText: displayText)
            let e = try await service.addEvidence(try exceptionId(id), upload)
            let kept = e.evidence.last { $0.name == upload.name } ?? e.evidence.last
            print("\(e.displayId): evidence \(kept?.name ?? upload.name) kept (sha256:\(kept?.sha256 ?? "?"))\(kept?.displayText.map { ": “\($0)”" } ?? "")")
        }
    }
}

struct Policies: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The loaded policies: list them, test them.", subcommands: [ListPolicies.self, TestPolicies.self])

    struct TestPolicies: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test",
            abstract: "Run the test cases kept beside the policies (*_test.yaml); exit 1 when a case fails.",
            discussion: """
                A case names a resource (type, after values, attributes known only after apply) and the outcome \
                expected of each policy: violated, compliant or unknown. The policies are evaluated as a check does.
                """)
        @OptionGroup var config: ConfigOptions
        @Argument(help: ArgumentHelp("The policy folder (default: the configuration's).", valueName: "dir")) var directory: String?

        func run() async throws {
            let dir: String
            if let directory { dir = directory } else {
                let (configuration, base) = try config.loadConfiguration()
                dir = config.policyDirectory(configuration, base: base).path
            }
            let policies = try PolicyLoader.load(directory: dir)
            let cases = try PolicyTestLoader.load(directory: dir)
            if cases.isEmpty { throw UsageError("\(dir): no test cases (*_test.yaml files with a `tests:` list)") }
            let results = PolicyTesting.run(cases, policies: policies)
            print(PolicyTesting.text(results, policies: policies, directory: dir), terminator: "")
            if results.contains(where: { !$0.passed }) { throw Exit(code: 1) }
        }
    }

    struct ListPolicies: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List the loaded policies: id, severity, category, enforcement, the exception rules in force, the file, the title.")
        @OptionGroup var config: ConfigOptions
        @Option(name: .long, help: "text or json.") var format: OutputFormatChoice = .text

        func run() async throws {
            let (configuration, base) = try config.loadConfiguration()
            let (dir, _) = config.policyDirectory(configuration, base: base)
            let policies = try PolicyLoader.load(directory: dir)
            let errors = ConfigLoader.validate(policies, against: configuration)
            if !errors.isEmpty { throw InputErrors(errors) }
            let register = Register(store: InMemoryRegisterStore(), configuration: configuration, policies: policies)
            let rows = PolicyListing.rows(policies, register: register, directory: dir)
            try emit(format == .json ? JSONWriter.write(PolicyListing.value(rows)) : PolicyListing.text(rows), to: nil)
        }
    }
}

struct Review: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Quarterly reviews of policies.", subcommands: [RecordReview.self])

    struct RecordReview: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "record",
            abstract: "Record what a quarterly review decided about a policy (shown on its page and in the report).")
        @OptionGroup var config: ConfigOptions
        @OptionGroup var registerOptions: RegisterOptions
        @Option(name: .long, help: ArgumentHelp("The quarter reviewed.", valueName: "2026-Q4")) var quarter: String
        @Option(name: .long, help: ArgumentHelp("The policy reviewed.", valueName: "id")) var policy: String
        @Option(name: .long, help: ArgumentHelp("What was decided (\"split into two policies\").", valueName: "text")) var decision: String
        @Option(name: .long, help: ArgumentHelp("The change that carries it out (a pull request URL).", valueName: "url")) var link: String?

        func run() async throws {
            let r = try await registerOptions.service(config: config, needPolicies: true).recordReview(quarter: quarter, policy: policy, decision: decision, link: link)
            print("\(r.policy) \(r.quarter) review recorded by \(r.by): \(r.decision)\(r.link.map { " (\($0))" } ?? "")")
        }
    }
}

struct Attest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-attest a program exception at its review: still needed, mitigations still in place (its approvers).",
        discussion: "For policies with exceptions.review_every: a review falls due a cycle after the approval or the last attestation; missed by 7 days, the exception expires.")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: ArgumentHelp("Exception id (EX-7).", valueName: "id")) var id: String
    @Option(name: .long, help: ArgumentHelp("What the review found.", valueName: "text")) var comment: String

    func run() async throws {
        let d = try await registerOptions.service(config: config, needPolicies: true).attest(try exceptionId(id), comment: comment)
        print("\(d.record.displayId) attested by \(d.actor): reviewed at \(d.record.reviewedAt.map(iso) ?? "?"), active until \(d.record.expiresAt.map(iso) ?? "?")")
    }
}

struct Close: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Close an active exception as remediated, with the evidence added for it (waiver evidence add first).")
    @OptionGroup var config: ConfigOptions
    @OptionGroup var registerOptions: RegisterOptions
    @Argument(help: ArgumentHelp("Exception id (EX-7).", valueName: "id")) var id: String
    @Option(name: .long, help: ArgumentHelp("How it was remediated.", valueName: "text")) var comment: String

    func run() async throws {
        let d = try await registerOptions.service(config: config, needPolicies: false).closeRemediated(try exceptionId(id), comment: comment)
        print("\(d.record.displayId) closed by \(d.actor): remediated")
    }
}
