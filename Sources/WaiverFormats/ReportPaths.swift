import Crypto
import Foundation
import WaiverCore

/// How a report names the files it points at: relative to the repository root (`--sarif-root`,
/// by default the git top level above the working directory), as GitHub code scanning requires,
/// never as typed (`/abs/…`, `./x`, `../x`). A file outside the root is named by its absolute
/// `file://` URI.
public struct ReportPaths: Sendable, Equatable {
    /// The repository root, absolute and without `.` or `..`.
    public let root: String
    /// The directory the check runs in, absolute: typed paths and scanners' relative URIs are read from here.
    public let cwd: String

    public init(root: String?, cwd: String = FileManager.default.currentDirectoryPath) {
        let dir = Self.standardized(cwd)
        self.cwd = dir
        self.root = root.map { Self.standardized($0.hasPrefix("/") ? $0 : dir + "/" + $0) } ?? Self.gitTopLevel(from: dir) ?? dir
    }

    /// The nearest directory at or above `dir` holding `.git` (a folder, or a file in a worktree).
    public static func gitTopLevel(from dir: String) -> String? {
        var d = standardized(dir)
        while true {
            if FileManager.default.fileExists(atPath: d + "/.git") { return d }
            guard d != "/", let slash = d.lastIndex(of: "/") else { return nil }
            d = slash == d.startIndex ? "/" : String(d[..<slash])
        }
    }

    /// An absolute path with `.`, `..` and repeated slashes resolved (`..` above `/` stays at `/`).
    static func standardized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Standard input and descriptors keep their names: they are no file in the repository.
    static func isStream(_ path: String) -> Bool { path == "-" || path.hasPrefix("/dev/") || path.hasPrefix("/proc/") }

    /// The absolute path of a path as typed (relative to the working directory).
    public func absolute(_ typed: String) -> String {
        Self.standardized(typed.hasPrefix("/") ? typed : cwd + "/" + typed)
    }

    /// Whether an absolute path lies inside the root.
    public func contains(_ absolutePath: String) -> Bool {
        let p = Self.standardized(absolutePath)
        return root == "/" || p.hasPrefix(root + "/")
    }

    /// A file as the report names it: relative to the root, or its `file://` URI outside it.
    public func name(_ typed: String) -> String {
        if Self.isStream(typed) { return typed }
        let abs = absolute(typed)
        if contains(abs) { return root == "/" ? String(abs.dropFirst()) : String(abs.dropFirst(root.count + 1)) }
        return URL(fileURLWithPath: abs).absoluteString
    }

    /// A scanner's artifact URI as the report names it. A relative reference is read from the
    /// working directory (where scanners run), a `file://` URI is a path; other schemes stay.
    public func scannerURI(_ uri: String) -> String {
        if uri.hasPrefix("file://") {
            guard let path = URL(string: uri)?.path, !path.isEmpty else { return uri }
            return name(path)
        }
        if uri.contains("://") || uri.isEmpty { return uri }
        return name(uri)
    }
}

/// Prepares a scanner's SARIF report for a check: each result's location named relative to the
/// repository root, and, where the scanner gave no snippet, the lines it points at copied from the
/// checked-out file, so a finding keeps its identity when lines above it move (see `SarifReader`).
/// The CLI does this before evaluating locally or sending to a server, which has no files.
public enum SarifPreparation {
    /// The largest source file read for snippets, and the most lines taken from one region.
    static let maxSourceBytes = 8 << 20
    static let maxSnippetLines = 200
    static let maxFilesRead = 2_000

    public static func prepare(_ data: Data, paths: ReportPaths) -> Data {
        // A report that does not parse is left as it is: the reader names the problem.
        guard case .object(var root)? = try? JSONReader.parse(data), case .array(var runs)? = root["runs"] else { return data }
        var files = SourceLines(paths: paths)
        var changed = false
        for r in runs.indices {
            guard case .object(var run) = runs[r], case .array(var results)? = run["results"] else { continue }
            let artifacts = run["artifacts"]?.arrayValue ?? []
            for i in results.indices {
                guard case .object(var result) = results[i], case .array(var locations)? = result["locations"],
                      case .object(var location)? = locations.first, case .object(var physical)? = location["physicalLocation"],
                      case .object(var artifact)? = physical["artifactLocation"] else { continue }
                var uri = artifact["uri"]?.stringValue
                if uri == nil, let ai = artifact["index"]?.intValue, ai >= 0, ai < artifacts.count {
                    uri = artifacts[ai]["location"]?["uri"]?.stringValue
                }
                guard let original = uri else { continue }
                let named = paths.scannerURI(original)
                var touched = named != artifact["uri"]?.stringValue || artifact["uriBaseId"] != nil
                artifact["uri"] = .string(named)
                artifact["uriBaseId"] = nil
                physical["artifactLocation"] = .object(artifact)
                if case .object(var region)? = physical["region"], region["snippet"]?["text"]?.stringValue == nil,
                   let start = region["startLine"]?.intValue, start >= 1, !original.contains("://") || original.hasPrefix("file://") {
                    let end = max(start, region["endLine"]?.intValue ?? start)
                    let path = original.hasPrefix("file://") ? (URL(string: original)?.path ?? "") : paths.absolute(original.removingPercentEncoding ?? original)
                    // Only files in the repository are read: a report naming /etc/passwd gets no snippet
                    // (which a check through a server would send along).
                    if paths.contains(path), let text = files.lines(path, from: start, to: min(end, start + maxSnippetLines - 1)) {
                        region["snippet"] = ["text": .string(text)]
                        physical["region"] = .object(region)
                        touched = true
                    }
                }
                // A result already named from the root and with its snippet is left as it is.
                guard touched else { continue }
                location["physicalLocation"] = .object(physical)
                locations[0] = .object(location)
                result["locations"] = .array(locations)
                results[i] = .object(result)
                changed = true
            }
            run["results"] = .array(results)
            runs[r] = .object(run)
        }
        guard changed else { return data }
        root["runs"] = .array(runs)
        return Data(JSONWriter.write(.object(root), pretty: false).utf8)
    }

    /// Source files read once each: text only (valid UTF-8, no NUL), bounded in size and number.
    struct SourceLines {
        let paths: ReportPaths
        var cache: [String: [Substring]?] = [:]

        mutating func lines(_ path: String, from start: Int, to end: Int) -> String? {
            let all: [Substring]?
            if let cached = cache[path] {
                all = cached
            } else {
                all = cache.count < SarifPreparation.maxFilesRead ? Self.load(path) : nil
                cache[path] = all
            }
            guard let all, start <= all.count else { return nil }
            return all[(start - 1)..<min(end, all.count)].joined(separator: "\n")
        }

        static func load(_ path: String) -> [Substring]? {
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= SarifPreparation.maxSourceBytes,
                  let data = FileManager.default.contents(atPath: path), !data.contains(0),
                  let text = String(data: data, encoding: .utf8) else { return nil }
            return text.split(separator: "\n", omittingEmptySubsequences: false)
        }
    }
}

/// How a scanner's finding is told apart from others, so an exception to it survives edits that
/// only move it: its logical location (a resource name) when the scanner gives one; else the
/// scanner's own fingerprints; else its rule and the text of the lines it points at, whitespace
/// aside; else its file and line.
public enum FindingIdentity {
    /// The first `length` hex digits of the text's SHA-256.
    public static func hex(_ text: String, length: Int = 64) -> String {
        String(SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined().prefix(length))
    }

    /// `file#` and 12 hex digits of the fingerprints, sorted by name.
    public static func fingerprinted(_ uri: String, _ prints: [(String, String)]) -> String {
        uri + "#" + hex(prints.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: "\n"), length: 12)
    }

    /// `file#` and 12 hex digits of the rule and the snippet, each line trimmed, blank lines dropped.
    public static func snippet(_ uri: String, rule: String, _ text: String) -> String {
        uri + "#" + hex(rule + "\u{0}" + normalized(text), length: 12)
    }

    /// A snippet as identity and binding compare it: each line trimmed, blank lines dropped, so
    /// re-indenting changes nothing.
    public static func normalized(_ snippet: String) -> String {
        snippet.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "\n")
    }
}
