import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// What one client may hold of the server: connections at once, and how long a request may take
/// to arrive. Together with the idle timeout and the server-wide connection cap, one client holding
/// many slow connections cannot stop other clients from being served.
public struct ConnectionLimits: Sendable {
    /// Connections the whole server accepts at once (below the common 1,024-descriptor limit, with
    /// room for the register's files and outgoing webhooks).
    public var maxConnections: Int = 768
    /// Connections one client address may hold at once.
    public var perClient: Int = 64
    /// From connecting (or the last response) to a request's complete head.
    public var headerTimeout: TimeAmount = .seconds(10)
    /// From a request's head to its complete body.
    public var bodyTimeout: TimeAmount = .seconds(60)
    /// A connection with no traffic at all is closed after this.
    public var idleTimeout: TimeAmount = .seconds(30)
    public init() {}
}

/// Open connections per client address, shared by every connection's guard.
public final class ClientConnections: Sendable {
    private let counts = NIOLockedValueBox<[String: Int]>([:])
    public init() {}

    /// Counts a new connection; false when the client already holds `limit`.
    func open(_ client: String, limit: Int) -> Bool {
        counts.withLockedValue { c in
            let n = c[client, default: 0]
            guard n < limit else { return false }
            c[client] = n + 1
            return true
        }
    }

    func close(_ client: String) {
        counts.withLockedValue { c in
            let n = (c[client] ?? 1) - 1
            c[client] = n > 0 ? n : nil
        }
    }

    public func count(_ client: String) -> Int { counts.withLockedValue { $0[client] ?? 0 } }
}

/// Closes a connection whose client holds too many, whose request head does not arrive in
/// `headerTimeout`, or whose body does not arrive in `bodyTimeout` (slow-loris clients).
final class SlowClientGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limits: ConnectionLimits
    let clients: ClientConnections
    var client: String?
    var deadline: Scheduled<Void>?

    init(limits: ConnectionLimits, clients: ClientConnections) {
        self.limits = limits
        self.clients = clients
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "local"
        guard clients.open(address, limit: limits.perClient) else {
            // Closed once the pipeline is set up (closing while handlers are being added is lost).
            let channel = context.channel
            context.eventLoop.execute { channel.close(promise: nil) }
            return
        }
        client = address
        arm(context, limits.headerTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        if let client { clients.close(client) }
        client = nil
    }

    func arm(_ context: ChannelHandlerContext, _ after: TimeAmount) {
        deadline?.cancel()
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: after) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: arm(context, limits.bodyTimeout)
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { arm(context, limits.headerTimeout) }
        context.write(data, promise: promise)
    }
}
