import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import NIOSSL
import WaiverCore

/// An SMTP failure: the step and what the server said (or why the connection failed).
public struct SMTPError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// One reply: its code and its lines' text.
struct SMTPReply: Sendable {
    let code: Int
    let text: String
}

/// Collects reply lines (a multi-line reply ends at the line whose fourth character is a space) and
/// hands each whole reply to the next one awaiting it. Runs on the channel's event loop only.
final class SMTPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var lines: [String] = []
    private var ready: [SMTPReply] = []
    private var waiting: [EventLoopPromise<SMTPReply>] = []
    private var failure: SMTPError?

    func next(on loop: any EventLoop) -> EventLoopFuture<SMTPReply> {
        if !ready.isEmpty { return loop.makeSucceededFuture(ready.removeFirst()) }
        if let failure { return loop.makeFailedFuture(failure) }
        let p = loop.makePromise(of: SMTPReply.self)
        waiting.append(p)
        return p.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let line = (buffer.readString(length: buffer.readableBytes) ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
        guard lines.count < 1000, line.utf8.count <= 4096 else { return fail(SMTPError(message: "the server's reply is too long"), context) }
        lines.append(line)
        let scalars = Array(line.unicodeScalars)
        guard scalars.count < 4 || scalars[3] != "-" else { return }
        let code = Int(String(line.prefix(3))) ?? 0
        let reply = SMTPReply(code: code, text: lines.map { String($0.dropFirst(4)) }.joined(separator: " "))
        lines = []
        if waiting.isEmpty { ready.append(reply) } else { waiting.removeFirst().succeed(reply) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(SMTPError(message: "the connection failed: \(error)"), context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SMTPError(message: "the server closed the connection"), context)
    }

    private func fail(_ e: SMTPError, _ context: ChannelHandlerContext) {
        if failure == nil { failure = e }
        let pending = waiting
        waiting = []
        for p in pending { p.fail(e) }
        context.close(promise: nil)
    }
}

/// A small SMTP client on SwiftNIO (no SMTP library for Swift is in the package mirror): one message
/// per connection, STARTTLS or implicit TLS (swift-nio-ssl, verifying the server's certificate and
/// name), AUTH PLAIN, and a deadline on the whole exchange.
public struct SMTPClient: Sendable {
    public let settings: Configuration.Email
    public let password: String?
    public let timeout: Duration

    public init(settings: Configuration.Email, password: String?, timeout: Duration = .seconds(30)) {
        self.settings = settings
        self.password = password
        self.timeout = timeout
    }

    /// Sends `message` (headers and body, CRLF lines) from `settings.from` to `to`.
    public func send(to: String, message: String) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await exchange(to: to, message: message) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw SMTPError(message: "\(settings.host):\(settings.port) did not finish within \(timeout)")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    func tls() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        if let ca = settings.caFile { config.trustRoots = .file(ca) }
        return try NIOSSLContext(configuration: config)
    }

    /// SNI and name verification need a host name; an address literal is verified without SNI.
    var serverHostname: String? { settings.host.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } ? nil : settings.host }

    func exchange(to: String, message: String) async throws {
        let handler = SMTPReplyHandler()
        let implicit = settings.security == .implicit
        let context = settings.security == .none ? nil : try tls()
        let hostname = serverHostname
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        if implicit, let context { try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: hostname)) }
                        try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                        try ch.pipeline.syncOperations.addHandler(handler)
                    }
                }
                .connect(host: settings.host, port: settings.port).get()
        } catch {
            throw SMTPError(message: "cannot reach \(settings.host):\(settings.port) (\(error))")
        }
        defer { channel.close(promise: nil) }

        func reply() async throws -> SMTPReply {
            do {
                return try await channel.eventLoop.flatSubmit { handler.next(on: channel.eventLoop) }.get()
            } catch let e as SMTPError {
                throw e
            } catch {
                throw SMTPError(message: "\(error)")
            }
        }
        func expect(_ codes: Set<Int>, _ step: String) async throws -> SMTPReply {
            let r = try await reply()
            guard codes.contains(r.code) else { throw SMTPError(message: "\(step): \(r.code) \(r.text.clipped(200))") }
            return r
        }
        func command(_ line: String, _ codes: Set<Int>, _ step: String) async throws -> SMTPReply {
            do {
                try await channel.writeAndFlush(ByteBuffer(string: line + "\r\n"))
            } catch {
                // The connection failed under us (a TLS handshake refused, say): the handler knows why.
                _ = try await reply()
                throw SMTPError(message: "\(step): \(error)")
            }
            return try await expect(codes, step)
        }

        _ = try await expect([220], "greeting")
        var ehlo = try await command("EHLO waiver", [250], "EHLO")
        if settings.security == .starttls {
            guard ehlo.text.uppercased().contains("STARTTLS") else { throw SMTPError(message: "the server does not offer STARTTLS (tls: starttls)") }
            _ = try await command("STARTTLS", [220], "STARTTLS")
            guard let context else { throw SMTPError(message: "no TLS context") }
            try await channel.pipeline.addHandler(try NIOSSLClientHandler(context: context, serverHostname: hostname), position: .first).get()
            ehlo = try await command("EHLO waiver", [250], "EHLO after STARTTLS")
        }
        if let user = settings.username {
            guard let password else { throw SMTPError(message: "notify.email.password_env names no variable that is set") }
            let token = Data("\u{0}\(user)\u{0}\(password)".utf8).base64EncodedString()
            _ = try await command("AUTH PLAIN \(token)", [235], "AUTH")
        }
        _ = try await command("MAIL FROM:<\(Self.address(settings.from))>", [250], "MAIL FROM")
        _ = try await command("RCPT TO:<\(Self.address(to))>", [250, 251], "RCPT TO \(to)")
        _ = try await command("DATA", [354], "DATA")
        try await channel.writeAndFlush(ByteBuffer(string: Self.dotStuffed(message) + ".\r\n"))
        _ = try await expect([250], "message")
        _ = try? await command("QUIT", [221], "QUIT")
    }

    /// The bare address of `Name <addr>` (or the text itself), without what could break the envelope.
    static func address(_ text: String) -> String {
        var t = text
        if let open = t.lastIndex(of: "<"), let close = t.lastIndex(of: ">"), open < close { t = String(t[t.index(after: open)..<close]) }
        return t.filter { !"\r\n<> ".contains($0) }
    }

    /// CRLF lines, a leading dot doubled (RFC 5321 4.5.2), ending with CRLF.
    static func dotStuffed(_ message: String) -> String {
        var out = message.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(".") ? "." + $0 : String($0) }.joined(separator: "\r\n")
        if !out.hasSuffix("\r\n") { out += "\r\n" }
        return out
    }
}
