import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore
import WaiverUseCases

/// Options of every command that uses the register.
struct RegisterOptions: ParsableArguments {
    @Option(name: .customLong("register"), help: ArgumentHelp(
        "Local register file (default $WAIVER_REGISTER, else .waiver/register.sqlite; created on first use). A local register does not authenticate: the actor is whoever --actor says.",
        valueName: "path"))
    var registerFlag: String?

    /// The register file: --register, else $WAIVER_REGISTER, else .waiver/register.sqlite.
    var register: String { registerFlag ?? environment("WAIVER_REGISTER") ?? ".waiver/register.sqlite" }

    @Option(name: .long, help: ArgumentHelp("Who is acting (default: $WAIVER_ACTOR, else the login name). Not authenticated on a local register.", valueName: "name"))
    var actor: String?

    @Option(name: .long, help: ArgumentHelp("Use the shared register of `waiver serve` at this URL (default $WAIVER_SERVER), with the token in $WAIVER_TOKEN; the actor is the token's user.", valueName: "url"))
    var server: String?

    var actorName: String {
        if let actor, !actor.isEmpty { return actor }
        let env = ProcessInfo.processInfo.environment
        if let a = env["WAIVER_ACTOR"], !a.isEmpty { return a }
        return env["USER"] ?? env["LOGNAME"] ?? ProcessInfo.processInfo.userName
    }

    /// The evidence folder next to the register file.
    var evidenceDirectory: String { ((register as NSString).deletingLastPathComponent as NSString).appendingPathComponent("evidence") }

    /// Opens the register; with the configuration's webhooks, local writes queue their deliveries in
    /// the outbox as the server's do (a served register's file written by `waiver expire`, say).
    func openStore(webhooks: [Configuration.Webhook] = [], email: Configuration.Email? = nil) throws -> SQLiteRegisterStore {
        do {
            return try SQLiteRegisterStore(path: register, webhooks: webhooks, email: email)
        } catch {
            throw UsageError("\(register): cannot open the register: \(error)")
        }
    }
}

/// The current time: the clock, or `$WAIVER_NOW` (an ISO 8601 instant) so that tests and replays
/// can set time to the second. Domain code never reads the clock; commands pass this in.
func currentTime() throws -> Date {
    if let text = ProcessInfo.processInfo.environment["WAIVER_NOW"], !text.isEmpty {
        guard let d = parseInstant(text) else { throw UsageError("WAIVER_NOW: '\(text)' is not an ISO 8601 instant") }
        return d
    }
    return Date()
}

/// Loads configuration and (optionally) policies, and opens the register with the rules.
struct RegisterContext {
    let configuration: Configuration
    let policies: [Policy]
    let store: SQLiteRegisterStore
    let register: Register
    let actor: String

    init(config: ConfigOptions, register options: RegisterOptions, needPolicies: Bool, extraPolicies: [Policy] = []) throws {
        let (configuration, base) = try config.loadConfiguration()
        let (dir, explicit) = config.policyDirectory(configuration, base: base)
        var policies: [Policy] = []
        if needPolicies || explicit || FileManager.default.fileExists(atPath: dir) {
            policies = try PolicyLoader.load(directory: dir)
        }
        for p in extraPolicies where !policies.contains(where: { $0.id == p.id }) { policies.append(p) }
        self.configuration = configuration
        self.policies = policies
        self.store = try options.openStore(webhooks: configuration.notify, email: configuration.email)
        self.register = Register(store: store, configuration: configuration, policies: policies)
        self.actor = options.actorName
        warn(register.unmeetableRules())
    }
}

extension RegisterOptions {
    /// The register's use cases: over HTTP with `--server` (or `$WAIVER_SERVER`), else on the local
    /// register with the CLI's actor. Every register command calls one and renders its answer.
    func service(config: ConfigOptions, needPolicies: Bool, signingKey: SigningKey? = nil) async throws -> any RegisterService {
        let now = try currentTime()
        if let client = try await client() { return RemoteRegisterService(client: client, now: now) }
        let ctx = try RegisterContext(config: config, register: self, needPolicies: needPolicies)
        return LocalRegisterService(register: ctx.register, evidence: EvidenceFolder(path: evidenceDirectory), actor: ctx.actor, now: now,
                                    audit: ctx.store, signingKey: signingKey)
    }
}

/// Reads a file given as evidence (`--evidence FILE`): its name and bytes.
func readEvidence(_ path: String, displayText: String? = nil) throws -> EvidenceUpload {
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    guard size <= LocalRegisterService.maxEvidenceBytes else { throw UsageError("\(path): evidence file over \(LocalRegisterService.maxEvidenceBytes >> 20) MiB") }
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw UsageError("\(path): cannot read evidence file") }
    return EvidenceUpload(name: (path as NSString).lastPathComponent, data: data, displayText: displayText)
}

/// Says each warning on stderr, one line each.
func warn(_ lines: [String]) {
    for line in lines { FileHandle.standardError.write(Data("waiver: warning: \(line)\n".utf8)) }
}

func exceptionId(_ text: String) throws -> Int {
    guard let id = ExceptionRecord.parseId(text) else { throw UsageError("'\(text)' is not an exception id (EX-7 or 7)") }
    return id
}

extension RiskFactor: ExpressibleByArgument {}
extension SubjectKind: ExpressibleByArgument {}
extension ExceptionStatus: ExpressibleByArgument {}
