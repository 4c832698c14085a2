import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

/// Evidence files kept in the register's evidence folder under their SHA-256.
enum EvidenceStore {
    static let maxBytes = 100 << 20

    static func put(path: String, into folder: String, by actor: String, at now: Date) throws -> EvidenceFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw UsageError("\(path): cannot read evidence file")
        }
        guard data.count <= maxBytes else { throw UsageError("\(path): evidence file over \(maxBytes >> 20) MiB") }
        let sha = AuditChain.sha256(data)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let target = (folder as NSString).appendingPathComponent(sha)
            if !FileManager.default.fileExists(atPath: target) {
                try data.write(to: URL(fileURLWithPath: target), options: [.atomic])
            }
        } catch {
            throw UsageError("\(folder): cannot store evidence: \(error.localizedDescription)")
        }
        return EvidenceFile(sha256: sha, name: (path as NSString).lastPathComponent, size: data.count, addedBy: actor, at: Register.second(now))
    }
}

/// Verifying an exported audit log offline.
enum AuditExport {
    static func verify(path: String, anchors: [AuditAnchor] = []) throws -> AuditVerification {
        guard let data = FileManager.default.contents(atPath: path) else { throw UsageError("\(path): no such file") }
        var verifier = AuditChain.Verifier(anchors: anchors)
        var lineNumber = 0
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            let e: AuditEvent
            do {
                e = try AuditChain.event(exportLine: try JSONReader.parse(Data(line)))
            } catch let error as JSONSyntaxError {
                throw UsageError("\(path):\(lineNumber): not a JSON line: \(error)")
            } catch {
                throw UsageError("\(path):\(lineNumber): \(error)")
            }
            if !verifier.feed(e) { break }
        }
        return verifier.result
    }
}
