import Foundation
import GRDB
import WaiverCore

/// A whole register as stored, for `waiver admin copy-register`: the audit log event for event
/// (so the copy's chain is the same chain), every exception as stored (an untrusted row stays
/// untrusted), recorded checks, users, tokens (hashes only), reminders sent and checkpoints.
public struct RegisterDump: Sendable {
    public struct StoredToken: Sendable, Equatable {
        public var record: TokenRecord
        public var secretHash: String
    }
    public struct SentReminder: Sendable, Equatable {
        public var exceptionId: Int
        public var offset: Int
        public var sentAt: Date
    }
    public var events: [AuditEvent] = []
    public var exceptions: [ExceptionRecord] = []
    public var evaluations: [Evaluation] = []
    public var users: [User] = []
    public var tokens: [StoredToken] = []
    public var reminders: [SentReminder] = []
    public var checkpoints: [Checkpoint] = []
    public init() {}
}

extension SQLiteRegisterStore {
    /// The whole register, read in one transaction.
    public func dump() throws -> RegisterDump {
        try pool.read { db in
            var d = RegisterDump()
            try forEachAuditEvent(db) { d.events.append($0) }
            d.exceptions = try load(db, where: "1 ORDER BY id", [], verify: false)
            for row in try Row.fetchAll(db, sql: "SELECT id, workspace FROM evaluation ORDER BY id") {
                let id: Int64 = try row.read("id", of: "a recorded check")
                let what = "recorded check \(id)"
                guard var e = try Self.evaluation(db, id: id) else { throw CorruptRegister(what: what, column: "id") }
                e.id = Int(id)
                d.evaluations.append(e)
            }
            d.users = try String.fetchAll(db, sql: "SELECT name FROM user ORDER BY name").compactMap { try Self.user(db, $0) }
            d.tokens = try Row.fetchAll(db, sql: "SELECT id, user, secretHash, createdAt, revokedAt FROM token ORDER BY createdAt, id").map {
                RegisterDump.StoredToken(
                    record: TokenRecord(id: try $0.read(at: 0, of: "a token"), user: try $0.read(at: 1, of: "a token"),
                                        createdAt: Self.date(try $0.read(at: 3, of: "a token") as Int64), revokedAt: Self.date(try $0.read(at: 4, of: "a token") as Int64?)),
                    secretHash: try $0.read(at: 2, of: "a token"))
            }
            d.reminders = try Row.fetchAll(db, sql: "SELECT exceptionId, offsetSeconds, sentAt FROM reminderSent ORDER BY exceptionId, offsetSeconds").map {
                RegisterDump.SentReminder(exceptionId: Int(try $0.read(at: 0, of: "a reminder") as Int64), offset: Int(try $0.read(at: 1, of: "a reminder") as Int64),
                                          sentAt: Self.date(try $0.read(at: 2, of: "a reminder") as Int64))
            }
            d.checkpoints = try Row.fetchAll(db, sql: "SELECT seq, hash, time, keyId, signature FROM checkpoint ORDER BY seq").map {
                Checkpoint(seq: try $0.read(at: 0, of: "a checkpoint"), hash: try $0.read(at: 1, of: "a checkpoint"), time: try $0.read(at: 2, of: "a checkpoint"),
                           keyId: try $0.read(at: 3, of: "a checkpoint"), signature: try $0.read(at: 4, of: "a checkpoint"))
            }
            return d
        }
    }
}
