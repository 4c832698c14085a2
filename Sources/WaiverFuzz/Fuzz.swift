import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// Which reader is fuzzed: $WAIVER_FUZZ_TARGET = plan | sarif | policy | config | audit | suppressions.
let targets = ["plan", "sarif", "policy", "config", "audit", "suppressions"]

#if FUZZING
import CFuzzSupport

nonisolated(unsafe) var target = "plan"

/// The executable's entry point (SwiftPM links `main` to it): libFuzzer's driver with our callback.
@_cdecl("WaiverFuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    target = ProcessInfo.processInfo.environment["WAIVER_FUZZ_TARGET"] ?? "plan"
    _ = StarterPolicies.all.count  // loaded before the loop, so its one-time allocations are not an input's
    var count = argc
    var args = argv
    return LLVMFuzzerRunDriver(&count, &args) { data, size in fuzzOne(data, size) }
}

/// One input (libFuzzer's runtime also looks this symbol up by name).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    run(target, data.map { Data(bytes: $0, count: size) } ?? Data())
    return 0
}
#else
/// `WaiverFuzz TARGET FILE...`: runs saved inputs (a seed corpus, a crash libFuzzer found) through the harness.
@main
enum Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let target = args.first, targets.contains(target) else {
            FileHandle.standardError.write(Data("usage: WaiverFuzz \(targets.joined(separator: "|")) FILE...\n".utf8))
            exit(2)
        }
        for path in args.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            run(target, data)
        }
        print("replayed \(args.count - 1) inputs through \(target)")
    }
}
#endif

/// Every input must end in a value or an error: a trap is a crash libFuzzer reports.
func run(_ target: String, _ data: Data) {
    switch target {
    case "plan":
        if let plan = try? PlanReader.parse(data, file: "fuzz.json") {
            _ = CheckEngine(policies: StarterPolicies.all).check(resources: plan.resources.map { ($0, file: "fuzz.json") }, external: [], workspace: "w")
        }
    case "sarif":
        if let found = try? SarifReader.parse(data, file: "fuzz.sarif") {
            _ = CheckEngine(policies: []).check(resources: [], external: found, workspace: "w")
        }
    case "policy":
        _ = try? PolicyLoader.load(files: [("fuzz.yaml", data)])
    case "config":
        _ = try? ConfigLoader.parse(data, file: "waiver.yaml")
    case "audit":
        for line in data.split(separator: 0x0A) {
            if let v = try? JSONReader.parse(Data(line)) { _ = try? AuditChain.event(exportLine: v) }
        }
    case "suppressions":
        // The same text as a Terraform file and as each ignore file the scan reads.
        guard let text = String(data: data, encoding: .utf8) else { return }
        var problems: [InputError] = []
        for name in ["main.tf", "app.py", ".trivyignore", ".trivyignore.yaml", ".snyk", ".checkov.yaml", ".tfsec/config.yml", ".semgrepignore"] {
            _ = SuppressionScanner.parse(text, file: name, problems: &problems)
        }
    default:
        break
    }
}

/// The starter pack, loaded once, so plan inputs are evaluated by real policies.
enum StarterPolicies {
    nonisolated(unsafe) static let all: [Policy] = {
        let files = StarterPack.files.filter { $0.path.hasPrefix("policies/") }.map { ($0.path, Data($0.contents.utf8)) }
        return (try? PolicyLoader.load(files: files)) ?? []
    }()
}
