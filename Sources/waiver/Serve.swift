import ArgumentParser
import Foundation
import Hummingbird
import Logging
import WaiverCore
import WaiverFormats
import WaiverPostgres
import WaiverServer
import WaiverStore

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the shared register: JSON API, scheduler (reminders, expiry) and webhooks.",
        usage: "waiver serve [<options>]",
        discussion: "Stops gracefully on SIGTERM or SIGINT: requests in flight finish, nothing is half written.")

    @OptionGroup var config: ConfigOptions
    @Option(name: .long, help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(name: .long, help: "Port to listen on.") var port: Int = 8080
    @Option(name: [.customLong("database"), .customLong("register")], help: ArgumentHelp("The register: sqlite:PATH or a file path (default $WAIVER_REGISTER, else .waiver/register.sqlite) or postgres://USER@HOST[:PORT]/DB[?sslmode=require] (password in the URL, $PGPASSWORD or --database-password-file). --register is the same option.", valueName: "url"))
    var databaseFlag: String?
    var database: String { databaseFlag ?? defaultDatabase }
    @Option(name: .long, help: ArgumentHelp("File holding the PostgreSQL password (when neither the URL nor $PGPASSWORD has it).", valueName: "file"))
    var databasePasswordFile: String?
    @Option(name: .long, help: ArgumentHelp("Largest request body accepted, in MiB.", valueName: "n")) var maxBodyMib: Int = 64
    @Option(name: .long, help: ArgumentHelp("Seconds between scheduler passes.", valueName: "n")) var schedulerInterval: Int = 60
    @Option(name: .long, help: ArgumentHelp("Ed25519 key that signs checkpoints of the audit log (default $WAIVER_SIGNING_KEY; none: no checkpoints).", valueName: "file"))
    var signingKey: String?
    @Option(name: .long, help: ArgumentHelp("Evidence files (default: evidence/ beside a SQLite register, .waiver/evidence with PostgreSQL). Replicas share one folder (a network file system).", valueName: "dir"))
    var evidenceDir: String?
    @Option(name: .long, help: ArgumentHelp("Seconds a replica's claim on a batch of webhook deliveries lasts; a replica that dies while sending hands them over after it.", valueName: "n"))
    var webhookLease: Int = 300
    @Option(name: .long, help: ArgumentHelp("Failed sign-ins and token checks a client address may make in a minute before it is refused (429).", valueName: "n"))
    var authFailuresPerMinute: Int = 20
    @Option(name: .long, help: ArgumentHelp("How often the scheduler signs a checkpoint while the log grows (30m, 1h, 1d).", valueName: "duration"))
    var checkpointEvery: String = "1h"
    @Option(name: .long, help: ArgumentHelp("The URL people and pipelines reach this server at (behind a load balancer, say): links in notifications, webhooks and check output (none without it), and single sign-on's redirect (default http://HOST:PORT).", valueName: "url"))
    var publicUrl: String?

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
        guard maxBodyMib >= 1, maxBodyMib <= 4096 else { throw ValidationError("--max-body-mib must be 1 to 4096") }
        guard schedulerInterval >= 1 else { throw ValidationError("--scheduler-interval must be at least 1") }
        guard (1...1_000_000).contains(authFailuresPerMinute) else { throw ValidationError("--auth-failures-per-minute must be 1 to 1000000") }
        guard (1...86_400).contains(webhookLease) else { throw ValidationError("--webhook-lease must be 1 to 86400 seconds") }
        guard let d = parseDuration(checkpointEvery), d >= 1 else { throw ValidationError("--checkpoint-every: '\(checkpointEvery)' is not a duration (30m, 1h, 1d)") }
        if let u = publicUrl {
            guard let c = URLComponents(string: u), ["http", "https"].contains(c.scheme ?? ""), c.host?.isEmpty == false, c.query == nil, c.fragment == nil else {
                throw ValidationError("--public-url: '\(u.clipped())' is not an http(s) URL without query or fragment")
            }
        }
    }

    func run() async throws {
        let postgres = try postgresURL(database, passwordFile: databasePasswordFile)
        let path = postgres == nil ? try databasePath(database) : ".waiver/register.sqlite"
        let (configuration, base) = try config.loadConfiguration()
        let (dir, _) = config.policyDirectory(configuration, base: base)
        let policies = try PolicyLoader.load(directory: dir)
        let crossErrors = ConfigLoader.validate(policies, against: configuration)
        if !crossErrors.isEmpty { throw InputErrors(crossErrors) }
        let fixedNow = try ProcessInfo.processInfo.environment["WAIVER_NOW"].flatMap { $0.isEmpty ? nil : $0 }.map { _ in try currentTime() }
        let env = ProcessInfo.processInfo.environment["WAIVER_SIGNING_KEY"] ?? ""
        let key = signingKey != nil || !env.isEmpty ? try loadSigningKey(signingKey) : nil
        var settings = ServerSettings(
            host: host, port: port, databasePath: path, configuration: configuration, policies: policies, evidenceDirectory: evidenceDir,
            maxBodyBytes: maxBodyMib << 20,
            schedulerInterval: .seconds(schedulerInterval), now: { fixedNow ?? Date() }, signingKey: key,
            checkpointInterval: TimeInterval(parseDuration(checkpointEvery) ?? 3600))
        settings.webhookLease = TimeInterval(webhookLease)
        settings.authFailureLimit = authFailuresPerMinute
        settings.publicURL = publicUrl.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        settings.policyDirectory = dir
        let state = try await ServerState.open(settings: settings, postgres: postgres)
        warn(try await state.decisions().unmeetableRules())
        let app = try buildApplication(state: state)
        FileHandle.standardError.write(Data("waiver: serving \(state.store.location) on http://\(host):\(port) with \(policies.described)\(key.map { "; signing checkpoints with key \($0.publicKey.id)" } ?? "")\n".utf8))
        try await app.runService()
    }
}

/// The register `serve` and `admin` use without --database: $WAIVER_REGISTER like every other command, else the default file.
let defaultDatabase = environment("WAIVER_REGISTER") ?? "sqlite:.waiver/register.sqlite"

/// `sqlite:PATH` (or a bare path) to a file path; other databases are refused clearly.
func databasePath(_ url: String) throws -> String {
    if url.hasPrefix("sqlite:") {
        let path = String(url.dropFirst("sqlite:".count))
        guard !path.isEmpty else { throw UsageError("--database: sqlite: needs a file path") }
        return path
    }
    if url.contains("://") { throw UsageError("--database: '\(url)' is not sqlite:PATH or postgres://USER@HOST/DB") }
    return url
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users and tokens of the shared register (run on the server host).",
        subcommands: [AddUser.self, RemoveUser.self, AddToken.self, RevokeToken.self, EndSessions.self, Users.self, Webhooks.self, CopyRegister.self])

    struct Options: ParsableArguments {
        @Option(name: [.customLong("database"), .customLong("register")], help: ArgumentHelp("The register: sqlite:PATH or a file path (default $WAIVER_REGISTER, else .waiver/register.sqlite) or postgres://USER@HOST[:PORT]/DB; --register is the same option.", valueName: "url"))
        var databaseFlag: String?
    var database: String { databaseFlag ?? defaultDatabase }
        @Option(name: .long, help: ArgumentHelp("File holding the PostgreSQL password.", valueName: "file")) var databasePasswordFile: String?
        @Option(name: .long, help: ArgumentHelp("Who is acting, for the audit log (default: the login name).", valueName: "name")) var actor: String?

        func open() async throws -> any ServerRegisterStore {
            try await openServerStore(database, passwordFile: databasePasswordFile)
        }

        var actorName: String { actor ?? ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName }
    }

    /// After users change: the approval rules of the server's policies that its users can no longer meet.
    static func warnUnmeetable(_ store: any ServerRegisterStore, config: ConfigOptions) async {
        guard let (configuration, base) = try? config.loadConfiguration() else { return }
        let (dir, _) = config.policyDirectory(configuration, base: base)
        guard let policies = try? PolicyLoader.load(directory: dir), let people = try? await store.people() else { return }
        warn(people.bind(Register(store: store, configuration: configuration, policies: policies)).unmeetableRules())
    }

    static func newToken(for user: String, store: any ServerRegisterStore, actor: String) async throws -> String {
        let t = APIToken.generate()
        try await store.addToken(id: t.id, secretHash: t.hash, user: user, actor: actor, now: try currentTime())
        return t.token
    }

    struct AddUser: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-user", abstract: "Add (or update) a user and print a new API token once.")
        @OptionGroup var options: Options
        @Argument(help: "User name (an email, usually).") var name: String
        @Option(name: .long, help: ArgumentHelp("A group the user belongs to (repeatable).", valueName: "group")) var group: [String] = []
        @Flag(name: .long, help: "Make the user an administrator (may revoke any exception; never approve their own).") var admin = false
        @OptionGroup var config: ConfigOptions

        func validate() throws {
            if name.isEmpty || name.count > 200 || name.contains(where: \.isWhitespace) { throw ValidationError("a user name is 1 to 200 characters without spaces") }
        }

        func run() async throws {
            let store = try await options.open()
            try await store.putUser(User(name: name, groups: group, admin: admin), actor: options.actorName, now: try currentTime())
            await print(try Admin.newToken(for: name, store: store, actor: options.actorName))
            FileHandle.standardError.write(Data("waiver: user \(name) saved (groups: \(group.joined(separator: ", "))\(admin ? "; admin" : "")). The token above is shown once: store it now.\n".utf8))
            await Admin.warnUnmeetable(store, config: config)
        }
    }

    struct RemoveUser: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-user", abstract: "Remove a user: their tokens and web sessions end at once.")
        @OptionGroup var options: Options
        @OptionGroup var config: ConfigOptions
        @Argument(help: "User name.") var name: String
        func run() async throws {
            let store = try await options.open()
            try await store.removeUser(name, actor: options.actorName, now: try currentTime())
            print("user \(name) removed; their tokens and sessions ended")
            await Admin.warnUnmeetable(store, config: config)
        }
    }

    struct EndSessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "end-sessions", abstract: "End every web session of a user (they sign in again).")
        @OptionGroup var options: Options
        @Argument(help: "User name.") var name: String
        func run() async throws {
            let n = try await options.open().endSessions(user: name, actor: options.actorName, now: try currentTime())
            print("\(n) session\(n == 1 ? "" : "s") of \(name) ended")
        }
    }

    struct AddToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-token", abstract: "Print a new API token for an existing user (shown once).")
        @OptionGroup var options: Options
        @Argument(help: "User name.") var name: String
        func run() async throws {
            await print(try Admin.newToken(for: name, store: try await options.open(), actor: options.actorName))
        }
    }

    struct RevokeToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke-token", abstract: "Revoke a token by its id (the part after wvr_).")
        @OptionGroup var options: Options
        @Argument(help: "Token id (12 hex digits, or the whole token).") var token: String
        func run() async throws {
            let id = token.hasPrefix("wvr_") ? String(token.split(separator: "_").dropFirst().first ?? "") : token
            try await options.open().revokeToken(id: id, actor: options.actorName, now: try currentTime())
            print("token \(id) revoked")
        }
    }

    struct Users: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users and their tokens (ids only).")
        @OptionGroup var options: Options
        func run() async throws {
            let store = try await options.open()
            let tokens = try await store.tokens()
            for u in try await store.users() {
                let live = tokens.filter { $0.user == u.name && $0.revokedAt == nil }.map(\.id)
                print("\(u.name)\(u.admin ? " (admin)" : "")  groups: \(u.groups.joined(separator: ", "))  tokens: \(live.joined(separator: ", "))")
            }
        }
    }

    struct CopyRegister: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy-register",
            abstract: "Copy a SQLite register into a new PostgreSQL database, with its chain, evidence and users, and verify the copy.",
            discussion: """
                The audit log is copied event for event (the same chain, the same head hash), exceptions keep their numbers, \
                users keep their groups and tokens (hashes only; web sessions are not copied: people sign in again). Evidence \
                files are copied into --evidence-to with their SHA-256 checked. Success is reported only when the copy verifies \
                as the source does: the same events, the same head, the same exceptions and findings. Pending webhook deliveries \
                are not copied. Stop `waiver serve` on the source first.
                """)
        @Option(name: .long, help: ArgumentHelp("The register to copy: sqlite:PATH.", valueName: "url")) var from: String
        @Option(name: .long, help: ArgumentHelp("A new, empty PostgreSQL database: postgres://USER@HOST[:PORT]/DB.", valueName: "url")) var to: String
        @Option(name: .long, help: ArgumentHelp("File holding the PostgreSQL password.", valueName: "file")) var databasePasswordFile: String?
        @Option(name: .long, help: ArgumentHelp("Evidence folder of the source (default: evidence/ beside it).", valueName: "dir")) var evidenceFrom: String?
        @Option(name: .long, help: ArgumentHelp("Evidence folder the PostgreSQL servers use (--evidence-dir of serve).", valueName: "dir"))
        var evidenceTo: String = ".waiver/evidence"

        func run() async throws {
            let path = try databasePath(from)
            guard FileManager.default.fileExists(atPath: path) else { throw UsageError("--from: \(path) does not exist") }
            guard let url = try postgresURL(to, passwordFile: databasePasswordFile) else { throw UsageError("--to: '\(to)' is not postgres://USER@HOST/DB") }
            let source: SQLiteRegisterStore
            do { source = try SQLiteRegisterStore(path: path) } catch { throw UsageError("\(path): cannot open the register: \(error)") }
            let evidenceFrom = self.evidenceFrom ?? ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("evidence")
            let before = try source.verifyAudit(anchors: [], evidenceDirectory: evidenceFrom, checkpoints: nil)
            let dump = try source.dump()
            // Evidence first: a copy whose files are missing is not reported as a copy.
            var files = 0
            for sha in Set(dump.exceptions.flatMap { $0.evidence.map(\.sha256) }).sorted() {
                let src = (evidenceFrom as NSString).appendingPathComponent(sha), dst = (evidenceTo as NSString).appendingPathComponent(sha)
                guard FileManager.default.fileExists(atPath: src), (try? AuditChain.sha256(file: src)) == sha else { continue }  // the finding says so
                do {
                    try FileManager.default.createDirectory(atPath: evidenceTo, withIntermediateDirectories: true)
                    if !FileManager.default.fileExists(atPath: dst) { try FileManager.default.copyItem(atPath: src, toPath: dst) }
                } catch {
                    throw UsageError("\(evidenceTo): cannot store evidence: \(error.localizedDescription)")
                }
                files += 1
            }
            let target: PostgresRegisterStore
            do { target = try await PostgresRegisterStore(url: url) } catch { throw UsageError(PostgresStoreError.userMessage(for: error) ?? "\(url): \(error)") }
            defer { target.close() }
            try await target.load(dump)
            let after = try await target.verifyAudit(anchors: before.head.map { [$0] } ?? [], evidenceDirectory: evidenceTo, checkpoints: nil, resume: nil)
            let copied = try await target.exceptions(ExceptionFilter()), original = try await source.exceptions(ExceptionFilter())
            let same = after.events == before.events && after.head == before.head && after.firstBad == before.firstBad
                && Set(after.findings) == Set(before.findings) && copied == original
            guard same else {
                throw UsageError("the copy in \(url) does not verify as the source does (source: \(before.events) events, head \(before.head?.description ?? "-"), \(before.findings.count) findings; copy: \(after.events) events, head \(after.head?.description ?? "-"), \(after.findings.count) findings); do not use it")
            }
            print("copied \(path) to \(url): \(dump.events.count) events (head \(after.head?.description ?? "-")), \(dump.exceptions.count) exceptions, \(dump.evaluations.count) recorded checks, \(dump.users.count) users, \(dump.tokens.count) tokens, \(files) evidence files; the copy verifies as the source does\(before.intact ? "" : " (with the source's \(before.findings.count) findings)")")
        }
    }

    struct Webhooks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show recent webhook deliveries: delivered, waiting to retry, failed.")
        @OptionGroup var options: Options
        func run() async throws {
            let list = try await options.open().deliveries()
            if list.isEmpty { print("No webhook deliveries."); return }
            for d in list {
                let state = d.deliveredAt.map { "delivered \(iso($0))" } ?? "attempt \(d.attempts), next \(iso(d.nextAttemptAt))\(d.lastError.map { ", last error: \($0)" } ?? "")"
                print("#\(d.id)  \(d.action)  \(d.url)  \(state)")
            }
        }
    }
}

/// The PostgreSQL URL `--database` names, with its password from the URL, `$PGPASSWORD` or the
/// file; nil for a SQLite register.
func postgresURL(_ database: String, passwordFile: String?) throws -> PostgresURL? {
    guard PostgresURL.names(database) else { return nil }
    do {
        return try PostgresURL(database, environmentPassword: ProcessInfo.processInfo.environment["PGPASSWORD"], passwordFile: passwordFile)
    } catch {
        throw UsageError(error.description)
    }
}

/// Opens the register `--database` names, SQLite or PostgreSQL.
func openServerStore(_ database: String, passwordFile: String?) async throws -> any ServerRegisterStore {
    if let url = try postgresURL(database, passwordFile: passwordFile) {
        do { return try await PostgresRegisterStore(url: url) } catch { throw UsageError(PostgresStoreError.userMessage(for: error) ?? "\(url): \(error)") }
    }
    let path = try databasePath(database)
    do { return try SQLiteRegisterStore(path: path) } catch { throw UsageError("\(path): cannot open the register: \(error)") }
}
