import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore
import ZIPFoundation

/// The audit package: what an auditor takes away for a period, in one ZIP (`waiver audit package`,
/// the download on `/audit`). Built through the use cases, so it is the same from a local register
/// and from a server:
///
/// - `register.csv`, `register.json`: the exceptions of the period (filed in it, or active during it)
///   with every decision, the risk history and the evidence's display text;
/// - `audit-log.jsonl`: the whole audit log (a chain verifies only whole), and `verification.txt` /
///   `verification.json`: what verifying it said (chain, stored states, evidence bytes, signed
///   checkpoints when a public key is known);
/// - `evidence/SHA256-NAME`: every evidence file of those exceptions;
/// - `summary.md`: per policy (and per control the policies name), what was excepted, decided and
///   still open, for a human reader;
/// - `SHA256SUMS`: every file's SHA-256 (`sha256sum -c SHA256SUMS`).
public enum AuditPackage {
    public struct File: Sendable, Equatable {
        public var path: String
        public var data: Data
    }

    /// The files of the package for [from, to).
    public static func files(service: any RegisterService, from: Date, to: Date, policies: [Policy], publicKey: PublicSigningKey?) async throws -> [File] {
        guard to > from else { throw RegisterError.invalid("the package's period ends (--to) before it starts (--from)") }
        let rows = try await service.exportRows(ListQuery()).filter { overlaps($0.record, from: from, to: to) }
        var files: [File] = []
        func add(_ path: String, _ text: String) { files.append(File(path: path, data: Data(text.utf8))) }
        add("register.csv", RegisterOutput.csv(rows.map { ($0.record, $0.history) }))
        add("register.json", JSONWriter.write(.array(rows.map { RegisterOutput.value($0.record, history: $0.history, now: service.now) })))
        add("audit-log.jsonl", try await service.exportAudit())
        let v = try await service.verifyAudit(anchors: [], publicKey: publicKey, given: nil)
        var report = AuditOutput.lines(v, anchors: 0).joined(separator: "\n") + "\n"
        report += publicKey == nil ? "signed checkpoints: not checked (no public key given)\n" : ""
        report += "verified at \(iso(service.now)); check the log again offline: waiver audit verify --file audit-log.jsonl\n"
        add("verification.txt", report)
        add("verification.json", JSONWriter.write(AuditOutput.value(v)))
        var seen = Set<String>()
        for row in rows {
            for f in row.record.evidence where seen.insert(f.sha256).inserted {
                guard let bytes = try await service.evidence(sha256: f.sha256) else { continue }
                files.append(File(path: "evidence/\(f.sha256)-\(safeName(f.name))", data: bytes))
            }
        }
        add("summary.md", summary(rows.map(\.record), policies: policies, from: from, to: to, verification: v, now: service.now))
        let sums = files.map { "\(AuditChain.sha256($0.data))  \($0.path)" }.joined(separator: "\n") + "\n"
        add("SHA256SUMS", sums)
        return files
    }

    /// Writes the files as a ZIP archive at `path`, atomically (a temporary file renamed).
    public static func write(_ files: [File], to path: String, at date: Date) throws {
        let temp = path + ".partial-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: temp) }
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: temp), accessMode: .create) } catch {
            throw RegisterError.invalid("\(path): cannot create the package (\(error))")
        }
        for f in files {
            try archive.addEntry(with: "waiver-audit/" + f.path, type: .file, uncompressedSize: Int64(f.data.count), modificationDate: date,
                                 compressionMethod: .deflate) { position, size in
                f.data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: temp, toPath: path)
    }

    /// A period's end as given: a date is its whole day (the end is the next midnight, UTC), an
    /// instant is the end itself.
    public static func periodEnd(_ text: String) -> Date? {
        guard let d = parseInstant(text) else { return nil }
        return text.trimmingCharacters(in: .whitespaces).count == 10 ? d.addingTimeInterval(86_400) : d
    }

    /// Whether an exception belongs to the period: filed in it, or approved and active at some time in it.
    static func overlaps(_ e: ExceptionRecord, from: Date, to: Date) -> Bool {
        if e.createdAt >= from && e.createdAt < to { return true }
        guard let decided = e.decidedAt, decided < to, e.status != .rejected else { return false }
        return (e.expiresAt ?? .distantFuture) > from
    }

    /// An evidence name as a file name inside the archive (no folders, no control characters).
    static func safeName(_ name: String) -> String {
        let kept = name.unicodeScalars.map { s -> Character in
            s.properties.generalCategory == .control || "/\\:".unicodeScalars.contains(s) ? "_" : Character(s)
        }
        return String(String(kept).prefix(120))
    }

    /// The human-readable summary: per framework control (when policies name them) and per policy.
    static func summary(_ exceptions: [ExceptionRecord], policies: [Policy], from: Date, to: Date, verification v: AuditVerification, now: Date) -> String {
        let byId = Dictionary(policies.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var out = "# Waiver audit package\n\n"
        out += "Period: \(iso(from)) to \(iso(to)) (exclusive). Built \(iso(now)).\n\n"
        out += "Audit log: \(v.intact ? "intact" : "NOT intact"), \(v.events) events"
        out += v.checkpoints > 0 ? ", \(v.checkpoints) signed checkpoint\(v.checkpoints == 1 ? "" : "s") verified" : ""
        out += v.head.map { "; head \($0.description)" } ?? ""
        out += ".\n"
        for f in v.findings { out += "- \(f)\n" }
        out += "\n\(exceptions.count) exception\(exceptions.count == 1 ? "" : "s") filed in or active during the period.\n"
        func table(_ items: [ExceptionRecord]) -> String {
            var t = "| Exception | Status | Workspace | Subject | Requester | Risk | Approved by | Expires | Evidence |\n|---|---|---|---|---|---|---|---|---|\n"
            for e in items {
                let subject = e.resources.count == 1 ? e.resources[0] : "\(e.resources.count) resources"
                let cells = [e.displayId, e.status.rawValue, e.workspace, subject, e.requester, e.riskLevel,
                             e.approvals.map(\.approver).joined(separator: ", "), e.expiresAt.map(iso) ?? "",
                             e.evidence.map { $0.displayText ?? $0.name }.joined(separator: "; ")]
                t += "| " + cells.map(cell).joined(separator: " | ") + " |\n"
            }
            return t
        }
        let controls = Dictionary(grouping: exceptions.flatMap { e in (byId[e.policy]?.controls ?? []).map { ($0, e) } }, by: \.0)
        if !controls.isEmpty {
            out += "\n## By framework control\n"
            for key in controls.keys.sorted() {
                let items = controls[key]?.map(\.1) ?? []
                out += "\n### \(cell(key))\n\n\(items.count) exception\(items.count == 1 ? "" : "s"), through \(Set(items.map(\.policy)).sorted().joined(separator: ", ")).\n\n"
                out += table(items)
            }
        }
        out += "\n## By policy\n"
        for (policy, items) in Dictionary(grouping: exceptions, by: \.policy).sorted(by: { $0.key < $1.key }) {
            let p = byId[policy]
            out += "\n### \(cell(policy))\(p.map { " · " + cell($0.title) } ?? "")\n\n"
            let counts = Dictionary(grouping: items, by: \.status).map { "\($0.value.count) \($0.key.rawValue)" }.sorted().joined(separator: ", ")
            out += "\(items.count) exception\(items.count == 1 ? "" : "s") (\(counts)); \(items.filter { $0.renews != nil }.count) renewal\(items.filter { $0.renews != nil }.count == 1 ? "" : "s").\n\n"
            out += table(items)
        }
        return out
    }

    /// A table cell's text: one line, pipes escaped, clipped.
    static func cell(_ s: String) -> String {
        String(s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ").prefix(300))
    }
}
