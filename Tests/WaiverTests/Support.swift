import Foundation
import GRDB
import Testing
@testable import WaiverCore
@testable import WaiverFormats

/// A temporary directory removed when the value goes away.
final class TempDir: Sendable {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "waiver-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        write(name, Data(text.utf8))
    }

    @discardableResult
    func write(_ name: String, _ data: Data) -> String {
        let full = (path as NSString).appendingPathComponent(name)
        try? FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: full, contents: data)
        return full
    }

    func read(_ name: String) -> String? {
        FileManager.default.contents(atPath: (path as NSString).appendingPathComponent(name)).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The repository root, found from this file's location.
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The fixtures folder of this test target.
let fixtures = repoRoot + "/Tests/WaiverTests/Fixtures"

/// The shared corpus of real plans and SARIF reports, when this machine has it.
let corpus = repoRoot + "/../shared/corpus"
let hasCorpus = FileManager.default.fileExists(atPath: corpus + "/terraform-plans")

/// Loads policies from YAML text given as (file name, contents) pairs.
func policies(_ files: [(String, String)]) throws(InputErrors) -> [Policy] {
    try PolicyLoader.load(files: files.map { ($0.0, Data($0.1.utf8)) })
}

/// The errors loading these policy files produces.
func policyErrors(_ files: [(String, String)]) -> [InputError] {
    do {
        _ = try PolicyLoader.load(files: files.map { ($0.0, Data($0.1.utf8)) })
        return []
    } catch {
        return error.errors
    }
}

/// A minimal plan JSON with the given resource_changes entries.
func planJSON(_ changes: [String], version: String = "1.2") -> String {
    "{\"format_version\":\"\(version)\",\"terraform_version\":\"1.9.0\",\"resource_changes\":[\(changes.joined(separator: ","))]}"
}

/// One resource_changes entry.
func change(
    _ address: String, type: String? = nil, actions: [String] = ["create"], after: String = "{}",
    unknown: String = "{}", sensitive: String = "{}", mode: String = "managed", module: String? = nil
) -> String {
    let t = type ?? String(address.split(separator: ".").dropLast().last ?? "")
    let name = String(address.split(separator: ".").last ?? "").split(separator: "[").first.map(String.init) ?? ""
    let acts = actions.map { "\"\($0)\"" }.joined(separator: ",")
    let mod = module.map { ",\"module_address\":\"\($0)\"" } ?? ""
    return """
        {"address":"\(address.replacingOccurrences(of: "\"", with: "\\\""))","mode":"\(mode)","type":"\(t)","name":"\(name)","provider_name":"registry.terraform.io/hashicorp/aws"\(mod),\
        "change":{"actions":[\(acts)],"before":null,"after":\(after),"after_unknown":\(unknown),"before_sensitive":false,"after_sensitive":\(sensitive)}}
        """
}

/// Writes to a register file as an attacker with write access would: the append-only triggers
/// dropped, then any SQL.
func tamper(_ path: String, _ sql: String) throws {
    let q = try DatabaseQueue(path: path)
    try q.write { db in
        try db.execute(sql: "DROP TRIGGER IF EXISTS auditEvent_noUpdate; DROP TRIGGER IF EXISTS auditEvent_noDelete;")
        try db.execute(sql: sql)
    }
}

/// The message of the `RegisterError` a register operation throws, nil when it succeeds, or
/// "unexpected …" for any other error.
func refusal(_ body: () async throws -> Void) async -> String? {
    do {
        try await body()
        return nil
    } catch let e as RegisterError {
        return e.description
    } catch {
        return "unexpected \(error)"
    }
}
