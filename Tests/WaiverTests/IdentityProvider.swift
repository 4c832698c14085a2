import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
@testable import WaiverCore

/// The real OpenID Connect provider of `Tests/Identity/oidc_provider.py` (Flask, joserfc), started on a
/// free loopback port for one test and stopped with it. Without Python's `flask` and `joserfc` the
/// test fails under CI (which installs them) and is reported as a failure naming what is missing
/// elsewhere too: an identity test that silently passes without its provider proves nothing.
final class IdentityProvider: Peer, @unchecked Sendable {
    var issuer: String { url }

    init() throws {
        try super.init(script: "oidc_provider.py", needs: "flask joserfc authlib")
    }

    func post(_ path: String, _ body: Value) async throws -> Value {
        var request = HTTPClientRequest(url: issuer + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: JSONWriter.write(body, pretty: false)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return try JSONReader.parse(Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    func get(_ path: String) async throws -> Value {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: issuer + path), timeout: .seconds(30))
        return try JSONReader.parse(Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    /// A token with these claims, signed with the current key (or a key it never publishes).
    func mint(_ claims: Value.Object, stranger: Bool = false, kid: String? = nil) async throws -> String {
        var body = Value.Object([("claims", .object(claims))])
        if stranger { body.append("key", "stranger") }
        if let kid { body.append("kid", .string(kid)) }
        return try await post("/control/mint", .object(body))["token"]?.stringValue ?? ""
    }

    /// A new current signing key, published beside the old; its id.
    func rotate() async throws -> String { try await post("/control/rotate", .object(Value.Object([])))["kid"]?.stringValue ?? "" }

    var jwksFetches: Int { get async throws { try await get("/control/stats")["jwks_fetches"]?.intValue ?? -1 } }
}

/// A test peer under `Tests/` (a Python script that prints `LISTENING <url>` first), started for one
/// test and stopped (SIGTERM) when the test lets go of it.
class Peer: @unchecked Sendable {
    let process = Process()
    let url: String

    init(script: String, arguments: [String] = [], needs: String) throws {
        url = try startPeer(process, script: script, arguments: arguments, needs: needs)
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}

/// Whether `python3` can import these modules (the libraries the test peers are built on).
func pythonHas(_ modules: [String]) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import " + modules.joined(separator: ", ")]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}

/// Tests that start a peer of `Tests/Identity` need its Python libraries: outside CI they are skipped,
/// saying what to install, when those are missing; under `CI=true` (`.ci/run` installs them) they run,
/// and fail if a peer cannot start.
func needsPeers(_ modules: [String]) -> ConditionTrait {
    .enabled(if: inCI || pythonHas(modules), "needs Python's \(modules.joined(separator: ", ")) (pip install \(modules.joined(separator: " ")))")
}

/// Starts one of the test peers of `Tests/Identity` and returns what follows `LISTENING ` on its first
/// line (its URL or port). Its log is drained, so it never blocks on a full pipe.
func startPeer(_ process: Process, script: String, arguments: [String], needs: String) throws -> String {
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    // "name.py" is in Tests/Identity; "Folder/name.py" is under Tests.
    process.arguments = ["python3", repoRoot + (script.contains("/") ? "/Tests/" : "/Tests/Identity/") + script] + arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    var line = Data()
    while true {
        let byte = out.fileHandleForReading.readData(ofLength: 1)
        if byte.isEmpty || byte == Data([0x0A]) { break }
        line.append(byte)
    }
    let text = String(decoding: line, as: UTF8.self)
    guard text.hasPrefix("LISTENING ") else {
        process.terminate()
        let why = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw UsageErrorForTests("\(script) did not start (pip install \(needs)): \(why.suffix(400))")
    }
    err.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
    return String(text.dropFirst("LISTENING ".count))
}

/// Times as claims: seconds since 1970.
func epoch(_ d: Date) -> Value { .number(d.timeIntervalSince1970.rounded()) }
