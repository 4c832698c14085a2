import Foundation
import WaiverCore
import Yams

/// Finds the suppressions teams write for their scanners (see `Suppression`), with file and line.
///
/// Inline comments are read from text files of every kind (Terraform, YAML, Dockerfiles, code); in
/// Terraform a comment is tied to the block it sits in, or to the block that starts right below
/// it, so its subject is that resource's address. Ignore files are read by their documented
/// formats. Bounded: files over 4 MiB, binary files and folders like `.git` and `.terraform` are
/// skipped, and at most 200,000 files are read.
public enum SuppressionScanner {
    public static let maxFileBytes = 4 << 20
    public static let maxFiles = 200_000
    static let skippedFolders: Set<String> = [".git", ".terraform", "node_modules", ".build", ".venv", "venv", "__pycache__", ".waiver"]

    public struct Result: Sendable {
        public var suppressions: [Suppression]
        /// Files that could not be read as they should (an ignore file that is not valid YAML), with why.
        public var problems: [InputError]
        public var filesRead: Int
    }

    /// Scans a folder (or one file).
    public static func scan(_ root: String) throws(InputError) -> Result {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir) else { throw InputError(file: root, message: "no such file or folder") }
        var files: [String] = []
        if isDir.boolValue {
            guard let walker = FileManager.default.enumerator(at: URL(fileURLWithPath: root), includingPropertiesForKeys: [.isDirectoryKey, .isSymbolicLinkKey, .fileSizeKey],
                                                              options: []) else { throw InputError(file: root, message: "cannot list the folder") }
            let base = URL(fileURLWithPath: root).standardizedFileURL.path
            for case let url as URL in walker {
                let values = try? url.resourceValues(forKeys: [.isDirectoryKey, .isSymbolicLinkKey, .fileSizeKey])
                if values?.isSymbolicLink == true { if values?.isDirectory == true { walker.skipDescendants() }; continue }
                if values?.isDirectory == true {
                    if skippedFolders.contains(url.lastPathComponent) || url.lastPathComponent.hasPrefix(".build") { walker.skipDescendants() }
                    continue
                }
                if (values?.fileSize ?? 0) > maxFileBytes { continue }
                let path = url.standardizedFileURL.path
                files.append(path.hasPrefix(base + "/") ? String(path.dropFirst(base.count + 1)) : path)
                if files.count > maxFiles { throw InputError(file: root, message: "more than \(maxFiles.formatted()) files: scan a smaller folder") }
            }
        } else {
            files = [URL(fileURLWithPath: root).lastPathComponent]
        }
        let dir = isDir.boolValue ? root : URL(fileURLWithPath: root).deletingLastPathComponent().path
        var out: [Suppression] = []
        var problems: [InputError] = []
        var read = 0
        for name in files.sorted() {
            guard let data = FileManager.default.contents(atPath: dir + "/" + name), !data.prefix(8192).contains(0),
                  let text = String(data: data, encoding: .utf8) else { continue }
            read += 1
            out += parse(text, file: name, problems: &problems)
        }
        return Result(suppressions: out, problems: problems, filesRead: read)
    }

    /// The suppressions in one file's text, read by the file's name: an ignore file by its format,
    /// anything else for inline comments.
    public static func parse(_ text: String, file name: String, problems: inout [InputError]) -> [Suppression] {
        let base = (name as NSString).lastPathComponent
        switch base {
        case ".trivyignore": return trivyIgnore(text, file: name)
        case ".trivyignore.yaml", ".trivyignore.yml": return yamlFile(text, file: name, problems: &problems, trivyYAML)
        case ".snyk": return yamlFile(text, file: name, problems: &problems, snyk)
        case ".checkov.yaml", ".checkov.yml": return yamlFile(text, file: name, problems: &problems, checkovConfig)
        case ".semgrepignore": return semgrepIgnore(text, file: name)
        case "config.yml", "config.yaml", "config.json" where (name as NSString).deletingLastPathComponent.hasSuffix(".tfsec"):
            return yamlFile(text, file: name, problems: &problems, tfsecConfig)
        default: return inline(text, file: name)
        }
    }

    // MARK: - Inline comments

    // Lines and searches work on UTF-8 bytes: every marker is ASCII, so a match starts and ends on
    // character boundaries, and a repository of tens of thousands of files is read at byte speed
    // (Foundation's string search made the first version 10x slower).

    /// The text's lines (LF or CRLF), without their line breaks.
    static func lines(_ text: String) -> [Substring] {
        var out: [Substring] = []
        let u = text.utf8
        var start = u.startIndex
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == 0x0A {
                var end = i
                if end > start, u[u.index(before: end)] == 0x0D { end = u.index(before: end) }
                out.append(text[start..<end])
                start = u.index(after: i)
            }
            i = u.index(after: i)
        }
        out.append(text[start..<u.endIndex])
        return out
    }

    /// The first occurrence of an ASCII needle in a line, by bytes.
    static func find(_ needle: String, in s: Substring) -> Range<String.Index>? {
        let n = Array(needle.utf8)
        guard let first = n.first else { return nil }
        let u = s.utf8
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == first {
                var j = u.index(after: i), k = 1
                while k < n.count, j < u.endIndex, u[j] == n[k] { j = u.index(after: j); k += 1 }
                if k == n.count { return i..<j }
            }
            i = u.index(after: i)
        }
        return nil
    }

    static func isBlank(_ s: Substring) -> Bool { s.utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 } }

    /// A Terraform block header: `resource "T" "N" {`, `data "T" "N" {`, `module "N" {`.
    static func blockAddress(_ line: Substring) -> String? {
        guard let first = line.utf8.first(where: { $0 != 0x20 && $0 != 0x09 }), first == UInt8(ascii: "r") || first == UInt8(ascii: "d") || first == UInt8(ascii: "m") else { return nil }
        let t = line.trimmingCharacters(in: .whitespaces)
        let words = t.split(separator: " ", omittingEmptySubsequences: true)
        guard let kind = words.first, ["resource", "data", "module"].contains(kind), t.hasSuffix("{") else { return nil }
        let labels = words.dropFirst().filter { $0.hasPrefix("\"") && $0.hasSuffix("\"") && $0.count >= 2 }.map { String($0.dropFirst().dropLast()) }
        switch kind {
        case "resource" where labels.count >= 2: return "\(labels[0]).\(labels[1])"
        case "data" where labels.count >= 2: return "data.\(labels[0]).\(labels[1])"
        case "module" where labels.count >= 1: return "module.\(labels[0])"
        default: return nil
        }
    }

    /// The comment part of a line (after `#`, `//` or `/*`, or the line inside a block comment), or nil.
    static func comment(_ line: Substring) -> (text: Substring, alone: Bool)? {
        let u = line.utf8
        /// The end of a comment marker starting at i, if one does.
        func marker(at i: String.Index, alone: Bool) -> String.Index? {
            guard i < u.endIndex else { return nil }
            let next = u.index(after: i)
            let second: UInt8? = next < u.endIndex ? u[next] : nil
            switch u[i] {
            case UInt8(ascii: "#"): return next
            case UInt8(ascii: "/") where second == UInt8(ascii: "/") || second == UInt8(ascii: "*"): return u.index(after: next)
            case UInt8(ascii: "*") where alone: return next
            case UInt8(ascii: "-") where second == UInt8(ascii: "-"): return u.index(after: next)
            case UInt8(ascii: "<"):
                var j = next
                for expected in "!--".utf8 {
                    guard j < u.endIndex, u[j] == expected else { return nil }
                    j = u.index(after: j)
                }
                return j
            default: return nil
            }
        }
        var i = u.startIndex
        while i < u.endIndex, u[i] == 0x20 || u[i] == 0x09 { i = u.index(after: i) }
        if let end = marker(at: i, alone: true) { return (line[end...], true) }
        // After code: the first marker that follows a space or a tab.
        while i < u.endIndex {
            if u[i] == 0x20 || u[i] == 0x09, let end = marker(at: u.index(after: i), alone: false) { return (line[end...], false) }
            i = u.index(after: i)
        }
        return nil
    }

    static func inline(_ text: String, file: String) -> [Suppression] {
        let whole = Substring(text)
        guard ["checkov:skip", "tfsec:ignore", "trivy:ignore", "nosemgrep", "kics-scan"].contains(where: { find($0, in: whole) != nil }) else { return [] }
        let lines = Self.lines(text)
        let terraform = file.hasSuffix(".tf") || file.hasSuffix(".hcl")
        // Which block each line is in, and the block that starts on each line.
        var enclosing = [String?](repeating: nil, count: lines.count)
        var startsHere = [String?](repeating: nil, count: lines.count)
        if terraform {
            var current: String?
            var depth = 0
            for (i, l) in lines.enumerated() {
                if depth == 0, let a = blockAddress(l) { current = a; startsHere[i] = a }
                enclosing[i] = depth > 0 || startsHere[i] != nil ? current : nil
                for c in l.utf8 { if c == UInt8(ascii: "{") { depth += 1 } else if c == UInt8(ascii: "}") { depth = max(0, depth - 1) } }
                if depth == 0 { current = nil }
            }
        }
        // The next line with code after each line, in one backward pass (a file of comment lines
        // costs linear time, not quadratic).
        let quiet = lines.map { isBlank($0) || comment($0)?.alone == true }
        var nextCode = [Int](repeating: lines.count, count: lines.count + 1)
        if !lines.isEmpty {
            for i in stride(from: lines.count - 1, through: 0, by: -1) { nextCode[i] = quiet[i] ? nextCode[i + 1] : i }
        }
        /// The block a comment on line i governs: the one it sits in, else a block starting on the next line with code.
        func block(_ i: Int) -> String? {
            if let e = enclosing[i] { return e }
            let j = nextCode[i + 1]
            return j < lines.count && j <= i + 3 ? startsHere[j] : nil
        }
        /// The line a comment governs: its own when it follows code, else the next line with code.
        func target(_ i: Int, alone: Bool) -> Int {
            guard alone else { return i }
            let j = nextCode[i + 1]
            return j < lines.count ? j : i
        }
        var out: [Suppression] = []
        for (i, l) in lines.enumerated() {
            guard let (c, alone) = comment(l) else { continue }
            let n = i + 1
            let previous = i > 0 ? comment(lines[i - 1]).map { String($0.text) } : nil
            func subject(_ line: Int) -> String { block(i) ?? "\(file):\(line + 1)" }
            func add(_ tool: String, _ syntax: String, _ rule: String, _ subj: String, why: String?, exp: String? = nil) {
                let why = why.flatMap { $0.trimmingCharacters(in: .whitespaces).nilIfEmpty }
                out.append(Suppression(tool: tool, syntax: syntax, rule: rule, file: file, line: n, subject: subj, justification: why, expires: exp,
                                       names: Suppression.namedException(in: why) ?? Suppression.namedException(in: previous)))
            }
            if let r = find("checkov:skip=", in: c) {
                let rest = c[r.upperBound...]
                let id = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
                if !id.isEmpty {
                    var why = rest.dropFirst(id.count)
                    if why.hasPrefix(":") { why = why.dropFirst() }
                    add("checkov", "checkov:skip", String(id), subject(i), why: String(why.replacingOccurrences(of: "*/", with: "")))
                }
            }
            for (marker, tool) in [("tfsec:ignore:", "tfsec"), ("trivy:ignore:", "trivy")] {
                var rest = c[...]
                while let r = find(marker, in: rest) {
                    let token = rest[r.upperBound...].prefix { !$0.isWhitespace }
                    let parts = token.components(separatedBy: ":exp:")
                    let id = parts[0].split(separator: "[").first.map(String.init) ?? parts[0]
                    if !id.isEmpty {
                        let after = rest[r.upperBound...].dropFirst(token.count).trimmingCharacters(in: .whitespaces)
                        add(tool, String(marker.dropLast()), id, subject(i), why: after.isEmpty ? nil : after, exp: parts.count > 1 ? parts[1] : nil)
                    }
                    rest = rest[r.upperBound...]
                }
            }
            if let r = find("nosemgrep", in: c) {
                var rest = c[r.upperBound...].trimmingCharacters(in: .whitespaces)
                var rules: [String] = ["*"]
                if rest.hasPrefix(":") {
                    rest = String(rest.dropFirst())
                    let list = rest.prefix { !$0.isWhitespace || $0 == " " }
                        .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                        .compactMap { $0.split(separator: " ").first.map(String.init) }.filter { !$0.isEmpty }
                    if !list.isEmpty { rules = list }
                }
                let t = target(i, alone: alone)
                for rule in rules { add("semgrep", "nosemgrep", rule, "\(file):\(t + 1)", why: nil) }
            }
            if let r = find("kics-scan ", in: c) {
                let rest = c[r.upperBound...].trimmingCharacters(in: .whitespaces)
                if rest.hasPrefix("ignore-line") {
                    add("kics", "kics-scan ignore-line", "*", "\(file):\(target(i, alone: alone) + 1)", why: nil)
                } else if rest.hasPrefix("ignore-block") {
                    add("kics", "kics-scan ignore-block", "*", block(i) ?? "\(file):\(target(i, alone: alone) + 1)", why: nil)
                } else if rest.hasPrefix("disable=") {
                    for id in rest.dropFirst("disable=".count).split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !id.isEmpty {
                        add("kics", "kics-scan disable", id, file, why: nil)
                    }
                } else if rest == "ignore" || rest.hasPrefix("ignore ") {
                    add("kics", "kics-scan ignore", "*", file, why: nil)
                }
            }
        }
        return out
    }

    // MARK: - Ignore files

    /// `.trivyignore`: one id per line, `exp:YYYY-MM-DD` after it; the comment lines above an entry are its justification.
    static func trivyIgnore(_ text: String, file: String) -> [Suppression] {
        var out: [Suppression] = []
        var notes: [String] = []
        for (i, raw) in lines(text).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { notes = []; continue }
            if line.hasPrefix("#") { notes.append(line.dropFirst().trimmingCharacters(in: .whitespaces)); continue }
            let words = line.split(separator: " ")
            let exp = words.dropFirst().first { $0.hasPrefix("exp:") }.map { String($0.dropFirst(4)) }
            let why = notes.isEmpty ? nil : notes.joined(separator: " ")
            out.append(Suppression(tool: "trivy", syntax: ".trivyignore", rule: String(words[0]), file: file, line: i + 1, subject: "*",
                                   justification: why, expires: exp, names: Suppression.namedException(in: why)))
            notes = []
        }
        return out
    }

    /// `.semgrepignore`: each pattern hides every rule's findings in the paths it matches.
    static func semgrepIgnore(_ text: String, file: String) -> [Suppression] {
        lines(text).enumerated().compactMap { i, raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), !line.hasPrefix(":include") else { return nil }
            return Suppression(tool: "semgrep", syntax: ".semgrepignore", rule: "*", file: file, line: i + 1, subject: line)
        }
    }

    static func yamlFile(_ text: String, file: String, problems: inout [InputError],
                         _ read: (Node, String) -> [Suppression]) -> [Suppression] {
        var yaml = YAMLFile(file: file)
        guard let root = yaml.compose(Data(text.utf8)) else {
            problems += yaml.errors
            return []
        }
        return read(root, file)
    }

    static func line(_ node: Node) -> Int { (node.mark?.line ?? 0) }

    static func strings(_ node: Node?) -> [(String, Node)] {
        guard let node else { return [] }
        switch node {
        case .scalar(let s): return s.string.split(separator: ",").map { ($0.trimmingCharacters(in: .whitespaces), node) }.filter { !$0.0.isEmpty }
        case .sequence(let seq): return seq.compactMap { n in n.scalar.map { ($0.string, n) } }
        default: return []
        }
    }

    /// `.trivyignore.yaml`: `vulnerabilities`, `misconfigurations`, `secrets`, `licenses`, each a list of
    /// `{id, paths, purls, expired_at, statement}`.
    static func trivyYAML(_ root: Node, _ file: String) -> [Suppression] {
        var out: [Suppression] = []
        for section in ["vulnerabilities", "misconfigurations", "secrets", "licenses"] {
            for entry in root[Node(section)]?.sequence ?? [] {
                guard let id = entry["id"]?.string else { continue }
                let statement = entry["statement"]?.string
                let scopes = strings(entry["paths"]).map(\.0) + strings(entry["purls"]).map(\.0)
                for subject in scopes.isEmpty ? ["*"] : scopes {
                    out.append(Suppression(tool: "trivy", syntax: ".trivyignore.yaml \(section)", rule: id, file: file, line: line(entry), subject: subject,
                                           justification: statement, expires: entry["expired_at"]?.string, names: Suppression.namedException(in: statement)))
                }
            }
        }
        return out
    }

    /// `.snyk`: `ignore: { ID: [ { PATH: { reason, expires } } ] }`.
    static func snyk(_ root: Node, _ file: String) -> [Suppression] {
        var out: [Suppression] = []
        for (key, rules) in root["ignore"]?.mapping ?? [:] {
            guard let id = key.string else { continue }
            for item in rules.sequence ?? [] {
                for (path, details) in item.mapping ?? [:] {
                    let reason = details["reason"]?.string
                    out.append(Suppression(tool: "snyk", syntax: ".snyk ignore", rule: id, file: file, line: line(path), subject: path.string ?? "*",
                                           justification: reason, expires: details["expires"]?.string, names: Suppression.namedException(in: reason)))
                }
            }
        }
        return out
    }

    /// `.checkov.yaml`: `skip-check` (a list or a comma-separated string) skips the checks everywhere.
    static func checkovConfig(_ root: Node, _ file: String) -> [Suppression] {
        strings(root["skip-check"]).map { id, node in
            Suppression(tool: "checkov", syntax: ".checkov.yaml skip-check", rule: id, file: file, line: line(node), subject: "*")
        }
    }

    /// `.tfsec/config.yml` or `.json`: `exclude` lists the checks tfsec skips everywhere.
    static func tfsecConfig(_ root: Node, _ file: String) -> [Suppression] {
        strings(root["exclude"]).map { id, node in
            Suppression(tool: "tfsec", syntax: ".tfsec exclude", rule: id, file: file, line: line(node), subject: "*")
        }
    }
}

