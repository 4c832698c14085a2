import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import WaiverCore
import WaiverStore

/// Sends reminders before expiry (each once, across restarts) and re-checks exceptions past expiry.
/// It runs once at start, so anything that fell due while the server was down is processed then.
public struct SchedulerService: Service {
    let state: ServerState
    let logger: Logger
    /// Opened once the server listens: no pass runs (no expiry, no reminder, no webhook queued) for a
    /// server that then fails to bind its port and exits.
    var ready: ServerReady?

    public func run() async throws {
        if let ready, !(await ready.wait()) { return }
        while !Task.isCancelled {
            // One replica at a time runs a pass (on PostgreSQL, under an advisory lock).
            do { _ = try await state.store.asLeader { try await tick(now: state.settings.now()) } } catch { logger.error("scheduler pass failed: \(error)") }
            let interval = state.settings.schedulerInterval
            // Sleep until the next pass, or stop at once when the server shuts down.
            if (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) == nil { return }
        }
    }


    /// Program exceptions under a review cycle: a notice to the requester and the approvers when a
    /// review falls due, once per due date (a reminder row keyed by the negative due instant).
    func reviewNotices(now: Date) async throws -> Int {
        var sent = 0
        for e in try await state.store.exceptions(ExceptionFilter(statuses: [.approved])) where e.isActive(at: now) {
            guard let every = state.register.reviewEvery(e), let due = e.reviewDue(every: every), now >= due else { continue }
            let event = AuditDraft(actor: "scheduler", action: "exception.reminder", subject: e.displayId,
                                   payload: ["review_due": .string(iso(due)), "expires_unless_attested": .string(iso(due.addingTimeInterval(Double(Register.reviewGrace)))),
                                             "requester": .string(e.requester), "approvers": .array(e.rule.groups.map(Value.string))],
                                   time: now)
            if try await state.store.markReminder(exceptionId: e.id, offset: -Int(due.timeIntervalSince1970), event: event) { sent += 1 }
        }
        return sent
    }

    /// One pass: reminders due at `now`, then expiry. A reminder offset at or beyond the exception's
    /// own approved duration is skipped (a 7-day exception gets no "14 days before" reminder at approval).
    @discardableResult
    public func tick(now: Date) async throws -> (reminders: Int, expired: [ExpiryOutcome]) {
        var sent = 0
        let offsets = state.settings.configuration.reminders
        for e in try await state.store.exceptions(ExceptionFilter(statuses: [.approved])) where e.isActive(at: now) {
            guard let expires = e.expiresAt else { continue }
            // The nearest offset already reached is the one to send; earlier (longer) ones that were
            // missed while the server was down are not sent late.
            let duration = expires.timeIntervalSince(e.decidedAt ?? e.createdAt)
            guard let offset = offsets.filter({ Double($0) < duration && now >= expires.addingTimeInterval(-Double($0)) }).min() else { continue }
            let event = AuditDraft(actor: "scheduler", action: "exception.reminder", subject: e.displayId,
                                   payload: ["expires": .string(iso(expires)), "before": .string(formatDuration(offset)),
                                             "requester": .string(e.requester), "approvers": .array(e.rule.groups.map(Value.string))],
                                   time: now)
            if try await state.store.markReminder(exceptionId: e.id, offset: offset, event: event) {
                sent += 1
                state.metrics.remindersSent.increment()
            }
        }
        sent += try await nudge(now: now)
        sent += try await reviewNotices(now: now)
        let expired = try await state.register.expire(now: now, actor: "scheduler")
        // A signed checkpoint of the head, every `checkpointInterval` while the log grows.
        if let key = state.settings.signingKey {
            let last = try await state.store.checkpoints().last
            if last.map({ now.timeIntervalSince1970 - Double($0.time) >= state.settings.checkpointInterval }) ?? true,
               let c = try await state.store.checkpoint(with: key, now: now), c.seq != last?.seq {
                logger.info("scheduler: signed checkpoint at event \(c.seq)")
            }
        }
        // Bounded growth: delivered webhook rows past their retention, and sessions that ended.
        let pruned = try await state.store.prune(deliveredBefore: now.addingTimeInterval(-Double(state.settings.configuration.keepDeliveries)),
                                           sessionsIdleBefore: now.addingTimeInterval(-Web.sessionIdleSeconds), now: now)
        if pruned.deliveries > 0 || pruned.sessions > 0 {
            logger.info("scheduler: pruned \(pruned.deliveries) delivered webhooks, \(pruned.sessions) ended sessions")
        }
        state.metrics.schedulerRuns.increment()
        if sent > 0 || !expired.isEmpty { logger.info("scheduler: \(sent) reminders, \(expired.count) exceptions re-checked") }
        return (sent, expired)
    }
}


extension SchedulerService {
    /// Requests still pending after `notify.nudge_after` are sent again to their approvers, and after
    /// `notify.escalate_after` to the groups `notify.escalate_to` names for their approver groups:
    /// each once, recorded like reminders (the offsets -1 and -2 of the reminders table), as
    /// `exception.nudged` and `exception.escalated` events, which the outbox turns into e-mail.
    func nudge(now: Date) async throws -> Int {
        let config = state.settings.configuration
        guard config.nudgeAfter != nil || config.escalateAfter != nil else { return 0 }
        var sent = 0
        for e in try await state.store.exceptions(ExceptionFilter(statuses: [.pending])) {
            let common: [(String, Value)] = [
                ("requester", .string(e.requester)), ("requested", .string(iso(e.createdAt))),
                ("approvers", .array(e.rule.groups.map(Value.string))), ("conflicted", .array(e.conflicted.map(Value.string))),
                ("approved_by", .array(e.approvals.map { .string($0.approver) })),
            ]
            if let after = config.nudgeAfter, now >= e.createdAt.addingTimeInterval(Double(after)) {
                let event = AuditDraft(actor: "scheduler", action: "exception.nudged", subject: e.displayId,
                                       payload: .object(Value.Object(common + [("after", .string(formatDuration(after)))])), time: now)
                if try await state.store.markReminder(exceptionId: e.id, offset: -1, event: event) { sent += 1 }
            }
            if let after = config.escalateAfter, now >= e.createdAt.addingTimeInterval(Double(after)) {
                var to: [String] = []
                for g in e.rule.groups { for t in config.escalateTo[g] ?? [] where !to.contains(t) { to.append(t) } }
                guard !to.isEmpty else { continue }
                let event = AuditDraft(actor: "scheduler", action: "exception.escalated", subject: e.displayId,
                                       payload: .object(Value.Object(common + [("to", .array(to.map(Value.string))), ("after", .string(formatDuration(after)))])),
                                       time: now)
                if try await state.store.markReminder(exceptionId: e.id, offset: -2, event: event) { sent += 1 }
            }
        }
        return sent
    }
}

/// Delivers queued webhook events with an HMAC-SHA256 signature, retrying with exponential backoff.
/// It runs apart from requests, so a slow or failing receiver never slows the API.
public struct WebhookService: Service {
    public static let maxAttempts = 12
    let state: ServerState
    let logger: Logger

    /// Opened once the server listens (as the scheduler's).
    var ready: ServerReady?

    public func run() async throws {
        if let ready, !(await ready.wait()) { return }
        while !Task.isCancelled {
            // A full batch means a backlog: the next one goes at once, without the pause.
            let attempted = (try? await deliverBatch(now: state.settings.now()).attempted) ?? 0
            if attempted >= Self.batch { continue }
            let interval = state.settings.webhookInterval
            if (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) == nil { return }
        }
    }

    /// Deliveries claimed per pass, and sent at once per receiver.
    public static let batch = 200
    public static let perReceiver = 8
    /// How long a claimed batch is this replica's: longer than the worst case of sending it
    /// (200 to one receiver, 8 at a time, 10 s each).
    public static let lease: TimeInterval = 300

    /// The signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    public static func signature(body: String, secret: String, timestamp: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + AuditChain.hex(mac)
    }

    /// Delay before the next attempt after `attempts` failures: 2 s doubling, at most an hour.
    public static func backoff(afterAttempts attempts: Int) -> TimeInterval {
        min(3600, 2 * pow(2, Double(max(0, attempts - 1))))
    }

    /// Sends up to `batch` due deliveries, up to `perReceiver` at once to each receiver (in order of
    /// their ids within a receiver's window); successes are marked in one transaction. Returns how
    /// how many were delivered.
    @discardableResult
    public func deliverDue(now: Date) async throws -> Int { try await deliverBatch(now: now).delivered }

    func deliverBatch(now: Date) async throws -> (attempted: Int, delivered: Int) {
        let due = try await state.store.claimDeliveries(now: now, limit: Self.batch, maxAttempts: Self.maxAttempts, lease: state.settings.webhookLease)
        guard !due.isEmpty else { return (0, 0) }
        var byReceiver: [String: [WebhookDelivery]] = [:]
        for d in due { byReceiver[d.url, default: []].append(d) }
        let receivers = Array(byReceiver.values)
        // The claim is this replica's for `webhookLease` seconds: past half of it, the rest of a
        // receiver's list is left for the next claim (by this replica or another) rather than sent
        // by two at once.
        let claimed = ContinuousClock.now, lease = state.settings.webhookLease
        // Receivers in parallel; within one, windows of `perReceiver` requests at once.
        let outcomes: [(WebhookDelivery, String?)] = await withTaskGroup(of: [(WebhookDelivery, String?)].self) { group in
            for list in receivers {
                group.addTask {
                    var results: [(WebhookDelivery, String?)] = []
                    var start = 0
                    while start < list.count {
                        if Double((ContinuousClock.now - claimed).components.seconds) >= lease / 2 { break }
                        let window = list[start..<min(list.count, start + Self.perReceiver)]
                        let sent = await withTaskGroup(of: (WebhookDelivery, String?).self) { inner in
                            for d in window { inner.addTask { (d, await send(d, now: now)) } }
                            var out: [(WebhookDelivery, String?)] = []
                            for await r in inner { out.append(r) }
                            return out
                        }
                        // Marked as each window lands, not at the end of the batch: a replica lost
                        // mid-batch leaves at most one window per receiver sent but not marked
                        // (sent again after its lease: deliveries are at least once, and receivers
                        // drop repeats by X-Waiver-Delivery).
                        do { try await state.store.markDelivered(sent.filter { $0.1 == nil }.map(\.0.id), at: now) } catch {
                            logger.error("webhook: marking \(sent.count) deliveries failed: \(error)")
                        }
                        results += sent
                        start += Self.perReceiver
                    }
                    return results
                }
            }
            var all: [(WebhookDelivery, String?)] = []
            for await r in group { all += r }
            return all
        }
        for (d, failure) in outcomes where failure != nil {
            let attempts = d.attempts + 1
            try await state.store.markFailed(d.id, error: failure ?? "", retryAt: now.addingTimeInterval(Self.backoff(afterAttempts: attempts)))
            state.metrics.delivery(attempts >= Self.maxAttempts ? "gave_up" : "failed")
            logger.warning("webhook \(d.id) to \(d.url) failed (attempt \(attempts)): \(failure ?? "")")
        }
        let delivered = outcomes.filter { $0.1 == nil }.count
        for _ in 0..<delivered { state.metrics.delivery("delivered") }
        return (due.count, delivered)
    }

    /// One delivery: nil when the receiver answered 2xx (or the SMTP server took the message), else why not.
    func send(_ d: WebhookDelivery, now: Date) async -> String? {
        if d.format == "email" { return await mail(d, now: now) }
        do {
            var request = HTTPClientRequest(url: d.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "waiver-webhook")
            request.headers.add(name: "X-Waiver-Event", value: d.action)
            request.headers.add(name: "X-Waiver-Delivery", value: String(d.id))
            // The body as sent (with the exception's link), built once: the signature covers exactly it.
            let body = WebhookBody.linked(d.body, format: d.format, base: state.settings.publicURL)
            if let env = d.secretEnv {
                guard let secret = state.settings.environment(env), !secret.isEmpty else {
                    throw WebhookFailure(message: "the signing secret $\(env) is not set on the server")
                }
                request.headers.add(name: "X-Waiver-Signature", value: Self.signature(body: body, secret: secret, timestamp: Int64(now.timeIntervalSince1970)))
            }
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            _ = try? await response.body.collect(upTo: 64 << 10)
            guard (200..<300).contains(response.status.code) else { throw WebhookFailure(message: "HTTP \(response.status.code)") }
            return nil
        } catch {
            return "\(error)"
        }
    }
}

extension WebhookService {
    /// An e-mail in the outbox (`mailto:` rows, queued by the store as `MailRules` says): rendered
    /// from its event with the link to the exception, and sent through `notify.email`.
    func mail(_ d: WebhookDelivery, now: Date) async -> String? {
        guard let email = state.settings.configuration.email else { return "notify.email is not configured on this server" }
        let to = String(d.url.dropFirst("mailto:".count))
        let (subject, text) = MailMessage.render(eventJSON: d.body, publicURL: state.settings.publicURL)
        let message = MailMessage.compose(from: email.from, to: to, subject: subject, text: text, date: now, id: "delivery-\(d.id)")
        let client = SMTPClient(settings: email, password: email.passwordEnv.flatMap { state.settings.environment($0) })
        do {
            try await client.send(to: to, message: message)
            return nil
        } catch {
            return "\(error)"
        }
    }
}

struct WebhookFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A one-way gate: closed until the server is listening, then open for good.
public final class ServerReady: @unchecked Sendable {
    private let lock = NSLock()
    private var opened = false
    public init() {}

    public func open() { lock.withLock { opened = true } }
    public var isOpen: Bool { lock.withLock { opened } }

    /// Waits until open; false when the server shuts down (or the task is cancelled) first: it did not
    /// start, or it stops before it ever listened (as the router tests' application does).
    func wait() async -> Bool {
        let opened = try? await cancelWhenGracefulShutdown {
            while !self.isOpen { try await Task.sleep(for: .milliseconds(20)) }
        }
        return opened != nil && isOpen
    }
}
