import Foundation
import Testing
@testable import WaiverServer
@testable import WaiverCore

/// A free TCP port on 127.0.0.1.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// `waiver serve` as a child process on a free loopback port.
final class LiveServer {
    let workspace: Workspace
    let port = freePort()
    var process: Process?
    var url: String { "http://127.0.0.1:\(port)" }
    let database: String
    let extra: [String]
    let environment: [String: String]
    let log: String

    init(_ w: Workspace, database: String? = nil, args: [String] = [], env: [String: String] = [:], log: String = "server.log") {
        workspace = w
        self.database = database ?? "sqlite:" + w.register
        extra = args
        environment = env
        self.log = log
    }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: waiverBinary)
        p.arguments = ["serve", "--port", String(port), "--database", database, "--scheduler-interval", "3600"] + extra
        p.currentDirectoryURL = URL(fileURLWithPath: workspace.dir.path)
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.standardOutput = FileHandle.nullDevice
        let handle = FileHandle(forWritingAtPath: workspace.dir.path + "/" + log) ?? FileHandle(forWritingAtPath: workspace.dir.write(log, ""))
        handle?.seekToEndOfFile()
        p.standardError = handle
        try p.run()
        process = p
        for _ in 0..<100 {
            if let r = try? waiver(["audit", "verify", "--server", url], in: workspace.dir.path, env: ["WAIVER_TOKEN": "wvr_000000000000_" + String(repeating: "0", count: 64)]),
               r.err.contains("HTTP 401") { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw UsageErrorForTests("the server did not start: \(workspace.dir.read(log) ?? "")")
    }

    /// SIGKILL: no shutdown, no flush, as a node loss.
    func kill() {
        guard let p = process else { return }
        Foundation.kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// SIGTERM, and the exit status.
    func stop() -> Int32 {
        guard let p = process else { return -1 }
        p.terminate()
        p.waitUntilExit()
        process = nil
        return p.terminationStatus
    }

    deinit { process?.terminate() }

    func run(_ args: [String], token: String) throws -> Run {
        try waiver(args + ["--server", url], in: workspace.dir.path, env: ["WAIVER_TOKEN": token, "WAIVER_REGISTER": workspace.dir.path + "/unused.sqlite"])
    }
}

struct UsageErrorForTests: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite("waiver serve, live on a loopback port", .serialized)
struct ServeLiveTests {
    @Test func aWholeLifecycleThroughTheCLIAndARestart() async throws {
        let w = try Workspace()
        let dev = try w.addUser("dev", ["developers"]), sam = try w.addUser("sam", ["security"]), fin = try w.addUser("fin", ["finance"])
        let pat = try w.addUser("pat", ["security"])
        #expect(dev.hasPrefix("wvr_") && dev.count == 4 + 12 + 1 + 64)
        let server = LiveServer(w)
        try server.start()

        // The pipeline checks, blocks, requests exceptions and waits briefly: still pending -> exit 3.
        let check = try server.run(["check", "--plan", webApp, "--workspace", "shop", "--request", "--reason", "launch", "--wait", "1s"], token: dev)
        #expect(check.code == 3, "\(check.err)")
        #expect(check.out.contains("5 pending"))
        let list = try server.run(["list", "--status", "pending"], token: sam)
        #expect(list.out.contains("5 exceptions"))
        // Separation of duties over the wire.
        let net = try #require(list.out.split(separator: "\n").first { $0.contains("NET-001") }.map { String($0.prefix(while: { $0 != " " })) })
        let own = try server.run(["approve", net], token: dev)
        #expect(own.code == 2 && own.err.contains("they requested it") && own.err.contains("HTTP 403"))
        #expect(try server.run(["approve", net], token: fin).code == 2)
        // High risk: two distinct approvers.
        #expect(try server.run(["approve", net, "--comment", "ok"], token: sam).out.contains("still needs 1 more approval"))
        let approved = try server.run(["approve", net], token: pat)
        #expect(approved.code == 0 && approved.out.contains("approved by pat: active until"), "\(approved.err)")
        #expect(try server.run(["show", net], token: fin).out.contains("approved by: sam"))
        #expect(try server.run(["report", "--format", "json"], token: fin).out.contains("\"exceptions\": 5"))
        let verified = try server.run(["audit", "verify"], token: fin).out
        #expect(verified.hasPrefix("audit log intact"))
        let head = try #require(verified.split(separator: "\n").first { $0.hasPrefix("head: ") }?.split(separator: " ")[1])

        // SIGTERM: a graceful stop. Then a restart on the same file: nothing is lost.
        #expect(server.stop() == 0)
        try server.start()
        let after = try server.run(["show", net, "--format", "json"], token: fin)
        #expect(after.out.contains("\"status\": \"approved\""))
        let excepted = try server.run(["check", "--plan", webApp, "--workspace", "shop", "--format", "json"], token: dev)
        #expect(excepted.out.contains("\"status\": \"excepted\""))
        // The anchor noted before the restart still matches: nothing up to it changed.
        #expect(try server.run(["audit", "verify", "--anchor", String(head)], token: fin).out.contains("1 anchor matched"))
        // A revoked token stops working.
        let id = String(dev.split(separator: "_")[1])
        #expect(try waiver(["admin", "revoke-token", id, "--database", "sqlite:" + w.register], in: w.dir.path).code == 0)
        let revoked = try server.run(["list"], token: dev)
        #expect(revoked.code == 2 && revoked.err.contains("HTTP 401"))
        #expect(server.stop() == 0)
    }
}

@Suite("One set of use cases: a local register and --server answer alike", .serialized)
struct LocalAndRemoteTests {
    /// The same commands on a local register and through a server, at the same instant: the same
    /// exit codes and the same output (audit sequence numbers aside: the server's log also holds its users).
    @Test func aLocalRegisterAndTheServerAnswerAlike() async throws {
        let now = "2026-11-22T10:00:00Z"
        let local = try Workspace(), shared = try Workspace()
        var tokens: [String: String] = [:]
        // The server's users and groups are the local waiver.yaml's (Workspace).
        for (name, group) in [("dev", "developers"), ("sam", "security"), ("pat", "security"), ("fin", "finance"), ("cfo", "finance"),
                              ("em", "engineering-managers"), ("lee", "engineering-managers"), ("ciso", "ciso")] {
            tokens[name] = try shared.addUser(name, [group])
        }
        let server = LiveServer(shared, env: ["WAIVER_NOW": now])
        try server.start()
        defer { _ = server.stop() }
        func normalized(_ text: String) -> String {
            text.replacingOccurrences(of: #"#[0-9]+ "#, with: "#_ ", options: .regularExpression)
                .replacingOccurrences(of: #""seq": [0-9]+"#, with: #""seq": _"#, options: .regularExpression)
        }
        func both(_ args: [String], as actor: String, _ step: String, sameErrors: Bool = false) throws {
            let l = try local.run(args, as: actor, at: now)
            let r = try waiver(args + ["--server", server.url], in: shared.dir.path,
                               env: ["WAIVER_TOKEN": tokens[actor] ?? "", "WAIVER_NOW": now, "WAIVER_REGISTER": shared.dir.path + "/unused.sqlite"])
            #expect(l.code == r.code, "\(step): exit \(l.code) locally, \(r.code) through the server: \(l.err) | \(r.err)")
            #expect(normalized(l.out) == normalized(r.out), "\(step) differs:\n--- local\n\(l.out)\n--- server\n\(r.out)")
            if sameErrors { #expect(l.err == r.err, "\(step): standard error differs:\n--- local\n\(l.err)\n--- server\n\(r.err)") }
        }
        try both(["request", "--policy", "NET-001", "--workspace", "shop", "--resource", "aws_security_group.web", "--reason", "vendor access",
                  "--days", "7", "--likelihood", "high", "--impact", "high", "--mitigation", "source IPs pinned"], as: "dev", "request (high risk)")
        try both(["request", "--policy", "COST-001", "--workspace", "shop", "--resource", "aws_instance.batch", "--reason", "batch memory"], as: "dev", "request")
        try both(["approve", "EX-1", "--comment", "ok for the window"], as: "sam", "first approval")
        try both(["approve", "EX-1"], as: "dev", "own approval (refused)")
        try both(["approve", "EX-1", "--days", "5"], as: "pat", "second approval")
        try both(["approve", "EX-1"], as: "ciso", "the CISO's approval (critical risk)")
        try both(["reject", "EX-2", "--comment", "resize instead"], as: "fin", "reject")
        // A renewal says only its reason: policy, workspace and resources come from the renewed one, on both.
        try both(["request", "--renews", "EX-1", "--reason", "the vendor needs another week"], as: "dev", "renewal")
        try both(["list"], as: "fin", "list")
        try both(["list", "--format", "json"], as: "fin", "list json")
        try both(["list", "--expiring-within", "7d", "--format", "csv"], as: "fin", "list expiring")
        try both(["show", "EX-1"], as: "fin", "show")
        try both(["show", "EX-3", "--format", "json"], as: "fin", "show json")
        try both(["report", "--format", "json"], as: "fin", "report")
        try both(["revoke", "EX-1", "--comment", "vendor done early"], as: "sam", "revoke")
        try both(["expire"], as: "sam", "expire")
        try both(["show", "EX-9"], as: "sam", "show missing")
        // check is a use case too: the same report, the same requests filed and said, the same JSON.
        let plan = repoRoot + "/Examples/plans/web-app.json"
        try both(["check", "--plan", plan, "--workspace", "web"], as: "dev", "check", sameErrors: true)
        try both(["check", "--plan", plan, "--workspace", "web", "--request", "--reason", "launch week", "--commit-author", "pat",
                  "--format", "json"], as: "dev", "check filing requests, json", sameErrors: true)
        try both(["check", "--plan", plan, "--workspace", "web", "--format", "markdown"], as: "dev", "check, markdown")
        try both(["list", "--status", "pending"], as: "fin", "the requests the check filed")
        try both(["approve", "EX-5"], as: "pat", "the commit author's approval (refused)")
        // Several reports from one check, one per --output, alike from both.
        try both(["check", "--plan", plan, "--workspace", "web", "--format", "json", "--output", "-", "--format", "junit", "--output", "r.xml",
                  "--format", "sarif", "--output", "r.sarif", "--format", "markdown", "--output", "r.md"], as: "dev", "check, four reports")
        for file in ["r.xml", "r.sarif", "r.md"] {
            let l = try #require(local.dir.read(file)), r = try #require(shared.dir.read(file))
            #expect(l == r, "\(file) differs")
        }
        #expect(local.dir.read("r.xml")?.hasPrefix("<?xml") == true)
        #expect(local.dir.read("r.sarif")?.contains("\"version\": \"2.1.0\"") == true)
        #expect(local.dir.read("r.md")?.hasPrefix("### Waiver") == true)
    }
}

@Suite("The pages' templates are in the binary", .serialized)
struct EmbeddedTemplatesTests {
    @Test func embeddedTemplatesMatchTheRepository() async throws {
        let folder = repoRoot + "/Sources/WaiverServer/Templates"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".mustache") }
        #expect(Set(files.map { String($0.dropLast(".mustache".count)) }) == Set(EmbeddedTemplates.all.keys))
        for file in files {
            let onDisk = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
            #expect(EmbeddedTemplates.all[String(file.dropLast(".mustache".count))] == onDisk, "\(file) differs: run scripts/gen-templates.py")
        }
    }

    @Test func aTemplateFolderThatIsNotThereStopsTheServerWithOneLine() async throws {
        let w = try Workspace()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: waiverBinary)
        p.arguments = ["serve", "--port", String(freePort()), "--database", "sqlite:" + w.register]
        p.currentDirectoryURL = URL(fileURLWithPath: w.dir.path)
        var env = ProcessInfo.processInfo.environment
        env["WAIVER_TEMPLATES"] = w.dir.path + "/no-such-folder"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: w.dir.write("server.log", ""))
        try p.run()
        // It must stop by itself; a server that starts anyway is stopped after 10 s and fails the test.
        for _ in 0..<100 where p.isRunning { try await Task.sleep(for: .seconds(0.1)) }
        let startedAnyway = p.isRunning
        if startedAnyway { p.terminate() }
        p.waitUntilExit()
        let err = w.dir.read("server.log") ?? ""
        #expect(!startedAnyway && p.terminationStatus == 2, "exit \(p.terminationStatus): \(err)")
        #expect(err.contains("no-such-folder: $WAIVER_TEMPLATES names no readable folder"), "\(err)")
    }

    @Test func aCopiedBinaryAloneServesItsPages() async throws {
        let w = try Workspace()
        // The binary, copied into a folder of its own: no resource bundle beside it.
        let bin = TempDir()
        let copy = bin.path + "/waiver"
        try FileManager.default.copyItem(atPath: waiverBinary, toPath: copy)
        #expect(try FileManager.default.contentsOfDirectory(atPath: bin.path) == ["waiver"])
        let port = freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: copy)
        p.arguments = ["serve", "--port", String(port), "--database", "sqlite:" + w.register, "--scheduler-interval", "3600"]
        p.currentDirectoryURL = URL(fileURLWithPath: w.dir.path)
        var env = ProcessInfo.processInfo.environment
        env["WAIVER_TEMPLATES"] = nil
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: w.dir.write("server.log", ""))
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        var page = ""
        for _ in 0..<100 {
            if let c = RawConnection(from: "127.0.0.1", port: port) {
                c.send("GET /login HTTP/1.1\r\nHost: waiver\r\nConnection: close\r\n\r\n")
                page = c.readAll()
                c.shut()
                if !page.isEmpty { break }
            }
            try await Task.sleep(for: .seconds(0.1))
        }
        #expect(page.hasPrefix("HTTP/1.1 200"), "\(page.prefix(300)) \(w.dir.read("server.log") ?? "")")
        #expect(page.contains("<form") && page.contains("token"), "\(page.prefix(600))")
    }
}

@Suite("Serving: operations", .serialized)
struct ServeOperationsTests {
    /// A server that cannot bind its port exits 2 before any scheduler pass: an exception past its
    /// expiry is still approved afterwards and no event was appended (before, it expired it first).
    @Test func aServerThatCannotBindChangesNothing() async throws {
        let w = try Workspace()
        #expect(try w.run(["request", "--policy", "COST-001", "--resource", "a", "--workspace", "shop", "--reason", "x", "--days", "1"]).code == 0)
        #expect(try w.run(["approve", "EX-1"], as: "fin").code == 0)
        // Hold a port.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = listen(fd, 1)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let before = try w.run(["audit", "export"]).out.split(separator: "\n").count
        let r = try waiver(["serve", "--port", String(port), "--database", "sqlite:" + w.register, "--scheduler-interval", "1"], in: w.dir.path,
                           env: ["WAIVER_NOW": "2026-11-30T10:00:00Z"])
        #expect(r.code == 2, "\(r.err)")
        #expect(try w.run(["show", "EX-1", "--format", "json"]).out.contains("\"status\": \"approved\""))
        #expect(try w.run(["audit", "export"]).out.split(separator: "\n").count == before)
    }
}
