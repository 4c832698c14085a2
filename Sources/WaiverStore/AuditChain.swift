import Crypto
import Foundation
import WaiverCore

/// The hash chain of the audit log: each event's hash is SHA-256 over a canonical encoding of its
/// sequence number, time, actor, action, subject, payload and the previous event's hash.
public enum AuditChain {
    /// The `prevHash` of the first event.
    public static let genesis = String(repeating: "0", count: 64)

    /// The canonical bytes an event's hash covers: a compact JSON array, so no field can bleed into another.
    public static func canonical(seq: Int, time: Int64, actor: String, action: String, subject: String, payload: String, prevHash: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.utf8.count + actor.utf8.count + action.utf8.count + subject.utf8.count + 120)
        out.append(0x5B)
        out.append(contentsOf: String(seq).utf8)
        out.append(0x2C)
        out.append(contentsOf: String(time).utf8)
        for field in [actor, action, subject, payload, prevHash] {
            out.append(0x2C)
            Value.appendQuotedJSON(field, to: &out)
        }
        out.append(0x5D)
        return out
    }

    public static func hash(seq: Int, time: Int64, actor: String, action: String, subject: String, payload: String, prevHash: String) -> String {
        hex(SHA256.hash(data: canonical(seq: seq, time: time, actor: actor, action: action, subject: subject, payload: payload, prevHash: prevHash)))
    }

    /// Whether an event's stored hash is the hash of its content (no hex string is built).
    public static func contentMatches(_ e: AuditEvent) -> Bool {
        let bytes = canonical(seq: e.seq, time: Int64(e.time.timeIntervalSince1970), actor: e.actor, action: e.action,
                              subject: e.subject, payload: e.payload, prevHash: e.prevHash)
        let digest = SHA256.hash(data: bytes)
        var stored = e.hash
        return stored.withUTF8 { h in
            guard h.count == 64 else { return false }
            var i = 0
            for b in digest {
                if h[i] != hexDigits[Int(b >> 4)] || h[i + 1] != hexDigits[Int(b & 0x0F)] { return false }
                i += 2
            }
            return true
        }
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// Whether raw column bytes hash to the stored hash: the database fast path of `contentMatches`.
    /// `fields` are actor, action, subject, payload and prevHash as UTF-8; `scratch` is reused.
    static func rawContentMatches(seq: Int64, time: Int64, fields: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer,
                                                                    UnsafeRawBufferPointer, UnsafeRawBufferPointer),
                                  hash: UnsafeRawBufferPointer, scratch: inout [UInt8]) -> Bool {
        guard hash.count == 64 else { return false }
        // Written in place into a buffer with room for the worst case: two numbers, five quoted fields.
        let need = 64 + Value.quotedJSONCapacity(fields.0.count + fields.1.count + fields.2.count + fields.3.count + fields.4.count)
        if scratch.count < need { scratch = [UInt8](repeating: 0, count: max(need, 2 * scratch.count)) }
        let digest = scratch.withUnsafeMutableBufferPointer { b -> SHA256.Digest? in
            guard let p = b.baseAddress else { return nil }
            var o = 0
            p[o] = 0x5B; o += 1
            o += writeDecimal(seq, to: p + o)
            p[o] = 0x2C; o += 1
            o += writeDecimal(time, to: p + o)
            func field(_ f: UnsafeRawBufferPointer) {
                p[o] = 0x2C; o += 1
                o += Value.writeQuotedJSON(utf8: f, to: p + o)
            }
            field(fields.0); field(fields.1); field(fields.2); field(fields.3); field(fields.4)
            p[o] = 0x5D; o += 1
            return SHA256.hash(data: UnsafeRawBufferPointer(start: p, count: o))
        }
        guard let digest else { return false }
        var i = 0
        for b in digest {
            if hash[i] != hexDigits[Int(b >> 4)] || hash[i + 1] != hexDigits[Int(b & 0x0F)] { return false }
            i += 2
        }
        return true
    }

    /// A whole number in decimal, as `String(n)` writes it, at `p` (room for 20 bytes); how many bytes.
    static func writeDecimal(_ n: Int64, to p: UnsafeMutablePointer<UInt8>) -> Int {
        guard n != 0 else { p[0] = 0x30; return 1 }
        var o = 0
        if n < 0 { p[0] = 0x2D; o = 1 }
        var m = n.magnitude, digits = 0
        var t = m
        while t > 0 { digits += 1; t /= 10 }
        var k = o + digits - 1
        while m > 0 { p[k] = UInt8(truncatingIfNeeded: 0x30 &+ m % 10); m /= 10; k -= 1 }
        return o + digits
    }

    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in digest {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of bytes, as lower-case hex.
    public static func sha256(_ data: some DataProtocol) -> String { hex(SHA256.hash(data: data)) }

    /// SHA-256 of a file, read in 1 MiB pieces.
    public static func sha256(file path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hex(hasher.finalize())
    }

    /// 64 ASCII bytes (a hex SHA-256) held inline, compared without allocating.
    public struct Hex64: Equatable, Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        public var valid = false

        public init(_ bytes: UnsafeRawBufferPointer) {
            guard bytes.count == 64 else { return }
            withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: bytes) }
            valid = true
        }

        public init(_ text: String) {
            var t = text
            self = t.withUTF8 { Hex64(UnsafeRawBufferPointer($0)) }
        }

        /// The 64 characters back as text.
        public var text: String {
            guard valid else { return "" }
            return withUnsafeBytes(of: words) { String(decoding: $0, as: UTF8.self) }
        }

        public static func == (a: Hex64, b: Hex64) -> Bool {
            a.valid && b.valid && a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
                && a.words.4 == b.words.4 && a.words.5 == b.words.5 && a.words.6 == b.words.6 && a.words.7 == b.words.7
        }
    }

    /// What the order checks need of an event: its number, its links, and whether its content matched its hash.
    public struct Link: Sendable {
        public var seq: Int
        public var prevHash: Hex64
        public var hash: Hex64
        public var contentOK: Bool
        public init(seq: Int, prevHash: Hex64, hash: Hex64, contentOK: Bool) {
            self.seq = seq
            self.prevHash = prevHash
            self.hash = hash
            self.contentOK = contentOK
        }
    }

    /// Checks events one at a time, in order; keeps only the last hash.
    public struct Verifier {
        public private(set) var count = 0
        var lastHash = Hex64(AuditChain.genesis)
        public private(set) var firstBad: Int?
        public private(set) var problem: String?
        /// Anchors kept outside the register, by event number.
        let anchors: [Int: AuditAnchor]

        public init(anchors: [AuditAnchor] = []) {
            var byEvent: [Int: AuditAnchor] = [:]
            for a in anchors { byEvent[a.seq] = a }
            self.anchors = byEvent
        }

        /// Goes on after `head`, as if every event up to it had been fed and verified; anchors at or
        /// before it are not checked.
        init(anchors: [AuditAnchor], resumingAt head: AuditAnchor) {
            self.init(anchors: anchors.filter { $0.seq > head.seq })
            count = head.seq
            lastHash = Hex64(head.hash)
        }

        /// Feeds the next event; returns false once a bad event was found.
        @discardableResult
        public mutating func feed(_ e: AuditEvent) -> Bool {
            feed(Link(seq: e.seq, prevHash: Hex64(e.prevHash), hash: Hex64(e.hash), contentOK: AuditChain.contentMatches(e)))
        }

        @discardableResult
        public mutating func feed(_ e: Link) -> Bool {
            guard firstBad == nil else { return false }
            let expectedSeq = count + 1
            if e.seq < 1 {
                fail(e.seq, "sequence numbers start at 1: a row numbered \(e.seq) was put in the log behind its back")
                return false
            }
            if e.seq != expectedSeq {
                fail(e.seq, e.seq > expectedSeq
                    ? "event \(expectedSeq)\(e.seq - expectedSeq > 1 ? "-\(e.seq - 1)" : "") is missing: the log goes from \(count) to \(e.seq)"
                    : "out of order: event \(e.seq) comes after \(count)")
                return false
            }
            if e.prevHash != lastHash {
                fail(e.seq, "its link to event \(count) does not match (an event before it was changed, removed or reordered)")
                return false
            }
            if !e.contentOK {
                fail(e.seq, "its content does not match its hash (the event was changed)")
                return false
            }
            if let anchor = anchors[e.seq], e.hash != Hex64(anchor.hash) {
                fail(e.seq, "its hash is not the one anchored as \(anchor) (the log was rewritten up to this event)")
                return false
            }
            count += 1
            lastHash = e.hash
            return true
        }

        mutating func fail(_ seq: Int, _ why: String) {
            firstBad = seq
            problem = why
        }

        public var result: AuditVerification {
            let head = count > 0 ? AuditAnchor(seq: count, hash: lastHash.text) : nil
            if firstBad == nil, let beyond = anchors.keys.filter({ $0 > count }).min() {
                // A chain cut short is still a chain: only the anchor shows what is gone.
                return AuditVerification(events: count, firstBad: count + 1,
                                         problem: "the log ends at event \(count), but event \(beyond) was anchored: events were cut from the end",
                                         head: head)
            }
            return AuditVerification(events: count, firstBad: firstBad, problem: problem, head: head)
        }
    }

    /// Verifies onward from a head verified before: the event at the head must still be there with
    /// the same hash and content, and each later one must follow; anchors past the head are checked.
    public struct ResumingVerifier {
        let head: AuditAnchor
        var verifier: Verifier
        var headStands: Bool?

        /// An anchor at or before the head can only be checked by verifying the whole chain: then it does not resume.
        public init(head: AuditAnchor, anchors: [AuditAnchor]) {
            self.head = head
            verifier = Verifier(anchors: anchors, resumingAt: head)
            if anchors.contains(where: { $0.seq <= head.seq }) { headStands = false }
        }

        public mutating func feed(_ e: AuditEvent) {
            guard let stands = headStands else {
                headStands = e.seq == head.seq && Hex64(e.hash) == Hex64(head.hash) && AuditChain.contentMatches(e)
                return
            }
            if stands { verifier.feed(e) }
        }

        /// Nil when the head does not stand (the caller verifies the whole chain).
        public var result: AuditVerification? {
            guard headStands == true else { return nil }
            var r = verifier.result
            r.resumedAfter = head.seq
            return r
        }
    }

    /// Reads one line of an export back into an event. Every field must be there, of its type; `seq`
    /// and `time` whole numbers (no fraction, no exponent past 2^53); `time_iso` the same instant as
    /// `time`; and no other field, so a line carries nothing the hash does not cover.
    public static func event(exportLine v: Value) throws(ExportLineError) -> AuditEvent {
        guard case .object(let o) = v else { throw ExportLineError("not a JSON object") }
        let allowed: Set<String> = ["seq", "time", "time_iso", "actor", "action", "subject", "payload", "prev_hash", "hash"]
        if let extra = o.keys.first(where: { !allowed.contains($0) }) {
            throw ExportLineError("field \"\(extra.prefix(60))\" is not covered by the event's hash")
        }
        if Set(o.keys).count != o.keys.count { throw ExportLineError("a field appears twice") }
        func whole(_ key: String, min: Double) throws(ExportLineError) -> Int64 {
            guard let n = o[key]?.numberValue else { throw ExportLineError("\(key) must be a whole number") }
            guard n == n.rounded(), n >= min, n <= 9_007_199_254_740_992 else {
                throw ExportLineError("\(key) \(Value.formatNumber(n).prefix(40)) is not a whole number from \(Int64(min)) to 2^53")
            }
            return Int64(n)
        }
        func text(_ key: String) throws(ExportLineError) -> String {
            guard let s = o[key]?.stringValue else { throw ExportLineError("\(key) must be a string") }
            return s
        }
        let seq = try whole("seq", min: 1), time = try whole("time", min: 0)
        let date = Date(timeIntervalSince1970: Double(time))
        if let shown = o["time_iso"] {
            guard shown.stringValue == iso(date) else { throw ExportLineError("time_iso is not the instant of time \(time) (\(iso(date)))") }
        }
        return AuditEvent(seq: Int(seq), time: date, actor: try text("actor"), action: try text("action"), subject: try text("subject"),
                          payload: try text("payload"), prevHash: try text("prev_hash"), hash: try text("hash"))
    }

    /// The JSON Lines record of an event, as exported for auditors.
    public static func exportLine(_ e: AuditEvent) -> String {
        var o = Value.Object()
        o.append("seq", .number(Double(e.seq)))
        o.append("time", .number(Double(Int64(e.time.timeIntervalSince1970))))
        o.append("time_iso", .string(iso(e.time)))
        o.append("actor", .string(e.actor))
        o.append("action", .string(e.action))
        o.append("subject", .string(e.subject))
        o.append("payload", .string(e.payload))
        o.append("prev_hash", .string(e.prevHash))
        o.append("hash", .string(e.hash))
        return JSONWriter.write(.object(o), pretty: false)
    }
}

/// Why a line of an audit export cannot be read as an event.
public struct ExportLineError: Error, CustomStringConvertible {
    public let description: String
    init(_ text: String) { description = text }
}

/// Verification of any `RegisterStore` through the protocol alone: the chain streamed in order,
/// anchors, and every exception's stored state against the log. SQLite has a faster path for the
/// chain (`SQLiteRegisterStore.verifyAudit`, hashed on all cores); the findings are the same.
public enum RegisterVerification {
    public static func verify(_ store: any RegisterStore, anchors: [AuditAnchor] = []) async throws -> AuditVerification {
        var verifier = AuditChain.Verifier(anchors: anchors)
        var requested: [String] = []
        try await store.forEachAuditEvent { e in
            verifier.feed(e)
            if e.action == "exception.requested" { requested.append(e.subject) }
        }
        var result = verifier.result
        result.findings = try await states(store, requested: requested)
        return result
    }

    /// The chain onward from a head verified before; nil when that head no longer hashes as it did.
    static func resume(_ store: any RegisterStore, after head: AuditAnchor, anchors: [AuditAnchor]) async throws -> AuditVerification? {
        var v = AuditChain.ResumingVerifier(head: head, anchors: anchors)
        try await store.forEachAuditEvent(from: head.seq) { v.feed($0) }
        return v.result
    }

    /// `states(_:requested:)` with the requests the log records read from its index.
    static func states(_ store: any RegisterStore) async throws -> [String] {
        try await states(store, requested: try await store.requestedInLog())
    }

    /// Every exception must be the state the newest event about it records, and every exception
    /// the log records a request of must exist.
    static func states(_ store: any RegisterStore, requested: [String]) async throws -> [String] {
        var findings: [String] = []
        let records = try await store.exceptions(ExceptionFilter())
        for r in records { if let why = r.untrusted { findings.append("\(r.displayId): \(why)") } }
        let known = Set(records.map(\.displayId))
        var seen = Set<String>()
        for subject in requested where !known.contains(subject) && seen.insert(subject).inserted {
            findings.append("\(subject): the log records its request, but the register has no such exception (the row was deleted)")
        }
        return findings
    }
}

extension RegisterVerification {
    /// The signed checkpoints that verify, as anchors; a finding for each that does not (and for
    /// none at all); how many verified. `given` checkpoints (a file kept elsewhere) win over `stored`.
    public static func checkpointAnchors(_ check: CheckpointCheck?, stored: @autoclosure () throws -> [Checkpoint]) rethrows
        -> (anchors: [AuditAnchor], findings: [String], verified: Int) {
        guard let check else { return ([], [], 0) }
        var anchors: [AuditAnchor] = [], findings: [String] = [], verified = 0
        let list = try check.given ?? stored()
        if list.isEmpty {
            findings.append("no signed checkpoint to verify against: the register holds none (pass one kept elsewhere with --checkpoint FILE)")
        }
        for c in list {
            if let why = c.problem(with: check.publicKey) { findings.append("checkpoint at event \(c.seq): \(why)") } else {
                anchors.append(AuditAnchor(seq: Int(c.seq), hash: c.hash))
                verified += 1
            }
        }
        return (anchors, findings, verified)
    }

    /// What `audit verify` checks on any store: the chain against anchors and signed checkpoints,
    /// every state against the log, and (with `evidenceDirectory`) every evidence file's SHA-256.
    public static func verifyAudit(_ store: any RegisterStore, anchors given: [AuditAnchor], evidenceDirectory: String?,
                                   checkpoints check: CheckpointCheck?, stored: [Checkpoint], resume: AuditAnchor? = nil) async throws -> AuditVerification {
        var (anchors, findings, verified) = checkpointAnchors(check, stored: stored)
        anchors = given + anchors
        var result: AuditVerification
        if let resume, let resumed = try await self.resume(store, after: resume, anchors: anchors) {
            result = resumed
            result.findings = try await states(store)
        } else {
            result = try await verify(store, anchors: anchors + (resume.map { [$0] } ?? []))
        }
        result.checkpoints = verified
        findings += result.findings
        if let folder = evidenceDirectory {
            var checked: [String: Bool] = [:]
            for e in try await store.exceptions(ExceptionFilter()) {
                for f in e.evidence {
                    let path = (folder as NSString).appendingPathComponent(f.sha256)
                    let ok = checked[f.sha256] ?? (FileManager.default.fileExists(atPath: path) && (try? AuditChain.sha256(file: path)) == f.sha256)
                    checked[f.sha256] = ok
                    if !ok {
                        let missing = !FileManager.default.fileExists(atPath: path)
                        findings.append("\(e.displayId): evidence \(f.name) (\(f.sha256.prefix(12))…) \(missing ? "is missing from \(folder)" : "no longer hashes to its recorded SHA-256: its bytes were replaced")")
                    }
                }
            }
        }
        result.findings = findings
        return result
    }
}
