import Crypto
import Foundation
import GRDB
import WaiverCore

/// A signed statement of the audit log's head: "event SEQ has hash HASH", signed with Ed25519 at TIME.
///
/// An anchor proves nothing to someone who cannot tell a real one from a forged one. A checkpoint
/// can be told: only the holder of the private key (kept outside the register) can make one, and
/// anyone with the public key can check it. Verifying the chain against a checkpoint proves that no
/// event up to it was changed, removed, reordered or replaced, even by someone who can write the
/// register file, as long as they cannot read the key.
public struct Checkpoint: Sendable, Equatable {
    public var seq: Int64
    public var hash: String
    public var time: Int64
    /// The first 16 hex digits of the SHA-256 of the public key that signs.
    public var keyId: String
    /// The Ed25519 signature of `message`, base64.
    public var signature: String

    public init(seq: Int64, hash: String, time: Int64, keyId: String, signature: String) {
        self.seq = seq
        self.hash = hash
        self.time = time
        self.keyId = keyId
        self.signature = signature
    }

    /// The exact bytes signed.
    public static func message(seq: Int64, hash: String, time: Int64) -> Data {
        Data("waiver-checkpoint/v1\n\(seq)\n\(hash)\n\(time)\n".utf8)
    }

    public static func sign(_ anchor: AuditAnchor, at time: Date, with key: SigningKey) throws -> Checkpoint {
        let t = Int64(time.timeIntervalSince1970.rounded(.down))
        let signature = try key.privateKey.signature(for: message(seq: Int64(anchor.seq), hash: anchor.hash, time: t))
        return Checkpoint(seq: Int64(anchor.seq), hash: anchor.hash, time: t, keyId: key.publicKey.id, signature: signature.base64EncodedString())
    }

    /// Why this checkpoint does not verify with the key, or nil when it does.
    public func problem(with key: PublicSigningKey) -> String? {
        guard keyId == key.id else { return "signed by key \(keyId.prefix(16)), not by the given key \(key.id)" }
        guard let raw = Data(base64Encoded: signature), key.key.isValidSignature(raw, for: Self.message(seq: seq, hash: hash, time: time)) else {
            return "its signature does not verify with key \(key.id) (forged or changed)"
        }
        return nil
    }

    public var value: Value {
        ["seq": .number(Double(seq)), "hash": .string(hash), "time": .number(Double(time)),
         "time_iso": .string(iso(Date(timeIntervalSince1970: Double(time)))), "key_id": .string(keyId), "signature": .string(signature)]
    }

    public var json: String { JSONWriter.write(value, pretty: false) }

    /// Reads a checkpoint as `json` wrote it (or as the API returns it).
    public init(json v: Value) throws(ExportLineError) {
        guard let seq = v["seq"]?.numberValue, seq == seq.rounded(), seq >= 1, seq <= 9_007_199_254_740_992,
              let time = v["time"]?.numberValue, time == time.rounded(), time >= 0, time <= 9_007_199_254_740_992,
              let hash = v["hash"]?.stringValue, hash.utf8.count == 64, hash.utf8.allSatisfy(\.isHexDigitASCII),
              let keyId = v["key_id"]?.stringValue, let signature = v["signature"]?.stringValue
        else { throw ExportLineError("a checkpoint has seq, hash (64 hex digits), time, key_id and signature") }
        self.init(seq: Int64(seq), hash: hash.lowercased(), time: Int64(time), keyId: keyId, signature: signature)
    }
}

/// The public half: `ed25519:<base64 of the 32 raw bytes>`.
public struct PublicSigningKey: Sendable {
    public let key: Curve25519.Signing.PublicKey
    public var id: String { String(AuditChain.sha256(key.rawRepresentation).prefix(16)) }
    public var text: String { "ed25519:" + key.rawRepresentation.base64EncodedString() }

    public init(_ key: Curve25519.Signing.PublicKey) { self.key = key }

    /// Parses `ed25519:BASE64` (or the bare base64).
    public init?(text: String) {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasPrefix("ed25519:") { t = String(t.dropFirst(8)) }
        guard let raw = Data(base64Encoded: t), raw.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return nil }
        self.key = key
    }
}

/// The private key that signs checkpoints: `ed25519-private:<base64 of the 32 raw bytes>`, kept in a
/// file or an environment variable outside the register.
public struct SigningKey: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey
    public var publicKey: PublicSigningKey { PublicSigningKey(privateKey.publicKey) }
    public var text: String { "ed25519-private:" + privateKey.rawRepresentation.base64EncodedString() }

    public static func generate() -> SigningKey { SigningKey(privateKey: Curve25519.Signing.PrivateKey()) }

    init(privateKey: Curve25519.Signing.PrivateKey) { self.privateKey = privateKey }

    public init?(text: String) {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.hasPrefix("ed25519-private:") else { return nil }
        t = String(t.dropFirst("ed25519-private:".count))
        guard let raw = Data(base64Encoded: t), raw.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else { return nil }
        privateKey = key
    }
}

/// What `audit verify --public-key` checks the chain against: the checkpoints given (a file kept
/// elsewhere), or else those the register holds.
public struct CheckpointCheck: Sendable {
    public var publicKey: PublicSigningKey
    public var given: [Checkpoint]?
    public init(publicKey: PublicSigningKey, given: [Checkpoint]? = nil) {
        self.publicKey = publicKey
        self.given = given
    }
}

extension SQLiteRegisterStore {
    /// Signs the log's head (after verifying the chain up to it) and keeps the checkpoint; queued for
    /// every webhook as `audit.checkpoint`. Returns nil for an empty log. A head already signed is
    /// not signed again.
    public func checkpoint(with key: SigningKey, now: Date) throws -> Checkpoint? {
        let chain = try verifyChain(anchors: try checkpoints().suffix(1).map { AuditAnchor(seq: Int($0.seq), hash: $0.hash) })
        if let bad = chain.firstBad {
            throw RegisterError.conflict("the audit log does not verify at event \(bad) (\(chain.problem ?? "")): no checkpoint is signed over it")
        }
        guard let head = chain.head else { return nil }
        if let last = try checkpoints().last, last.seq == Int64(head.seq), last.keyId == key.publicKey.id { return last }
        let c = try Checkpoint.sign(head, at: now, with: key)
        try pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO checkpoint (seq, hash, time, keyId, signature) VALUES (?, ?, ?, ?, ?)",
                           arguments: [c.seq, c.hash, c.time, c.keyId, c.signature])
            for hook in webhooks {
                try db.execute(sql: """
                    INSERT INTO webhookDelivery (eventSeq, url, format, secretEnv, action, body, nextAttemptAt) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [c.seq, hook.url, hook.format, hook.secretEnv, "audit.checkpoint", WebhookBody.render(c, format: hook.format), c.time])
            }
        }
        return c
    }

    /// Every checkpoint the register holds, oldest first.
    public func checkpoints() throws -> [Checkpoint] {
        try pool.read { db in
            try CheckpointRow.fetchAll(db, sql: "SELECT seq, hash, time, keyId, signature FROM checkpoint ORDER BY seq").map(\.checkpoint)
        }
    }
}
