import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write waiver.yaml and a starter pack of policies into a directory.",
        discussion: "Refuses to overwrite existing files unless --force is given."
    )

    @Option(name: .long, help: ArgumentHelp("Directory to write into.", valueName: "dir"))
    var directory: String = "."

    @Flag(name: .long, help: "Overwrite files that already exist.")
    var force = false

    func run() async throws {
        let fm = FileManager.default
        let targets = StarterPack.files.map { ((directory as NSString).appendingPathComponent($0.path), $0.contents) }
        if !force {
            let existing = targets.map(\.0).filter { fm.fileExists(atPath: $0) }
            if let first = existing.first {
                throw UsageError("\(first) already exists (use --force to overwrite\(existing.count > 1 ? "; \(existing.count) files would be overwritten" : ""))")
            }
        }
        for (path, contents) in targets {
            let folder = (path as NSString).deletingLastPathComponent
            do {
                try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Data(contents.utf8).write(to: URL(fileURLWithPath: path), options: [.atomic])
            } catch {
                throw UsageError("\(path): cannot write: \(error.localizedDescription)")
            }
            print("wrote \(path)")
        }
        let files = StarterPack.files.filter { $0.path.hasPrefix("policies/") && !PolicyTestLoader.isTestFile($0.path) }
        let policies = try PolicyLoader.load(files: files.map { ($0.path, Data($0.contents.utf8)) })
        print("\(policies.described), in \(files.count) files, with their tests. Try: waiver check --plan plan.json; waiver policies test")
    }
}
