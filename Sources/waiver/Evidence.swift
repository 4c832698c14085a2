import Foundation
import WaiverCore
import WaiverFormats
import WaiverStore

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
