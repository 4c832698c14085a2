import ArgumentParser
import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// The `waiver` command: policy checks for pipelines, and the register of exceptions to them.
struct Waiver: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waiver",
        abstract: "Policy checks for infrastructure pipelines, with logged, approved and expiring exceptions.",
        discussion: """
            Exit codes: 0 success (check: nothing blocking), 1 check found blocking violations, \
            2 usage error or invalid input (one line on stderr naming the file and line), \
            3 check --wait: requests still pending.
            """,
        version: waiverVersion,
        subcommands: [Check.self, Request.self, Approve.self, Reject.self, Revoke.self, Attest.self, Close.self, List.self, Show.self, EvidenceCommand.self, Policies.self, Suppressions.self, ExportCommand.self, Report.self, Review.self, Expire.self, Audit.self, Serve.self, Admin.self, Init.self]
    )
}

/// Options every command that reads configuration shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: ArgumentHelp("Configuration file (default: $WAIVER_CONFIG, else ./waiver.yaml when present).", valueName: "file"))
    var configFlag: String?

    @Option(name: .customLong("policies"), help: ArgumentHelp("Policy directory (default: $WAIVER_POLICIES, else `policies:` in the configuration).", valueName: "dir"))
    var policiesFlag: String?

    /// --config, else $WAIVER_CONFIG (a configuration named either way must exist).
    var config: String? { configFlag ?? environment("WAIVER_CONFIG") }
    /// --policies, else $WAIVER_POLICIES.
    var policies: String? { policiesFlag ?? environment("WAIVER_POLICIES") }

    /// Loads the configuration, and the directory its relative paths are resolved against.
    func loadConfiguration() throws -> (Configuration, baseDirectory: String) {
        let path = config ?? "waiver.yaml"
        let configuration = try ConfigLoader.load(path: path, required: config != nil)
        let base = config.map { ($0 as NSString).deletingLastPathComponent } ?? ""
        return (configuration, base)
    }

    /// The policy directory to use: `--policies`, else the configuration's, relative to the configuration file.
    func policyDirectory(_ configuration: Configuration, base: String) -> (path: String, explicit: Bool) {
        if let policies { return (policies, true) }
        let p = configuration.policies
        if p.hasPrefix("/") || base.isEmpty { return (p, config != nil) }
        return ((base as NSString).appendingPathComponent(p), true)
    }
}

/// An environment variable's value, nil when unset or empty.
func environment(_ name: String) -> String? {
    ProcessInfo.processInfo.environment[name].flatMap { $0.isEmpty ? nil : $0 }
}

/// Raised to end a command with an exit code after its output was written.
struct Exit: Error {
    let code: Int32
}

/// A refused operation or bad input found by the command itself: exit 2 with this message.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Writes output to a file atomically (a temporary file renamed into place), or to stdout.
func emit(_ text: String, to path: String?) throws {
    // The text's own bytes are written, not a copy of them (a report of a million results is hundreds of megabytes).
    var text = text
    try text.withUTF8 { utf8 in
        let data = utf8.baseAddress.map { Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0), count: utf8.count, deallocator: .none) } ?? Data()
        guard let path, path != "-" else {
            FileHandle.standardOutput.write(data)
            return
        }
        let url = URL(fileURLWithPath: path)
        do {
            if path.hasPrefix("/dev/") {
                try data.write(to: url)
            } else {
                try data.write(to: url, options: [.atomic])
            }
        } catch {
            throw UsageError("\(path): cannot write output: \(error.localizedDescription)")
        }
    }
}

@main
enum Main {
    static func main() async {
        let code: Int32
        do {
            var command = try Waiver.parseAsRoot()
            if var command = command as? AsyncParsableCommand { try await command.run() } else { try command.run() }
            code = 0
        } catch let exit as Exit {
            code = exit.code
        } catch let e as InputErrors {
            for err in e.errors { printError(err.description) }
            code = 2
        } catch let e as InputError {
            printError(e.description)
            code = 2
        } catch let e as RegisterError {
            printError(e.description)
            code = 2
        } catch let e as UsageError {
            printError(e.description)
            code = 2
        } catch let e as CorruptRegister {
            printError(e.description)
            code = 2
        } catch let e where StoreError.userMessage(for: e) != nil {
            printError(StoreError.userMessage(for: e) ?? "register database error")
            code = 2
        } catch {
            let exitCode = Waiver.exitCode(for: error)
            if exitCode == .success {
                // --help and --version
                print(Waiver.fullMessage(for: error))
                code = 0
            } else if let hint = unknownCommand() {
                printError(hint)
                code = 2
            } else {
                let message = Waiver.message(for: error)
                printError(message.isEmpty ? String(describing: error) : message)
                if Waiver.fullMessage(for: error).contains("Usage:") {
                    FileHandle.standardError.write(Data("(see `waiver help` or `waiver <command> --help`)\n".utf8))
                }
                code = 2
            }
        }
        exit(code)
    }

    /// A first word that is no command, with the closest command (`waiver chek` → did you mean 'check'?).
    static func unknownCommand() -> String? {
        let args = CommandLine.arguments.dropFirst()
        guard let word = args.first, !word.hasPrefix("-") else { return nil }
        let names = Waiver.configuration.subcommands.compactMap { $0.configuration.commandName ?? $0._commandName } + ["help"]
        guard !names.contains(word) else { return nil }
        let hint = closestMatch(to: word, in: names).map { " (did you mean '\($0)'?)" } ?? ""
        return "unknown command '\(word.clipped(60))'\(hint); the commands are \(names.dropLast().joined(separator: ", "))"
    }

    static func printError(_ message: String) {
        FileHandle.standardError.write(Data("error: \(message.clipped(String.maxMessage))\n".utf8))
    }
}
