import Foundation
import Testing

/// A TCP connection from a chosen loopback source address, with blocking reads bounded by a timeout.
struct RawConnection {
    let fd: Int32

    init?(from source: String, port: Int, timeout: Int = 5) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } } == 0
            && withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) } } == 0
        guard ok else { close(fd); return nil }
        self.fd = fd
    }

    func send(_ text: String) { _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }

    /// What the server sent until it closed or the timeout passed.
    func read() -> String {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
            if String(decoding: out, as: UTF8.self).contains("\r\n\r\n") && out.count > 200 { break }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Everything the server sent until it closed the connection (or the timeout passed).
    func readAll() -> String {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the server closed the connection (a read returns end-of-file at once).
    var closedByServer: Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    func shut() { close(fd) }
}

@Suite("Slow clients cannot take the server down", .serialized)
struct SlowClientTests {
    @Test func oneClientHoldingManySlowConnectionsLeavesOthersServed() async throws {
        let w = try Workspace()
        let server = LiveServer(w)
        try server.start()
        defer { _ = server.stop() }
        // One client (127.0.0.2) opens 200 connections and sends half a request head on each. (Fewer
        // than the listen backlog, 256: past it, connect() waits for SYN retries whenever the server
        // accepts slowly, as on a loaded CI machine, and the 10 s head timeout would pass first.)
        var slow: [RawConnection] = []
        let opened = ContinuousClock.now
        for _ in 0..<200 {
            guard let c = RawConnection(from: "127.0.0.2", port: server.port) else { continue }
            c.send("GET /health HTTP/1.1\r\nHost: waiver\r\n")
            slow.append(c)
        }
        defer { slow.forEach { $0.shut() } }
        #expect(slow.count == 200)
        try await Task.sleep(for: .seconds(1))
        // The server keeps at most 64 of them (its limit per client) and closes the rest at once.
        let open = slow.filter { !$0.closedByServer }.count
        let elapsed = ContinuousClock.now - opened
        #expect(open <= 64, "\(open) slow connections still open")
        // Exactly 64 when they are counted well within the 10 s head timeout. With the whole suite
        // running on 2 cores, opening them or the 1 s sleep can take far longer (the sleep resumes on a
        // cooperative pool other tests hold with blocking waits), and the first connections are then
        // already closed for their unfinished heads: the count says nothing exact then.
        if elapsed < .seconds(8) {
            #expect(open == 64, "\(open) slow connections still open \(elapsed) after the first was opened")
        } else {
            print("note: the connections were counted \(elapsed) after the first was opened; the exact per-client count is not checked this run")
        }
        // Another client is served meanwhile.
        let other = try #require(RawConnection(from: "127.0.0.1", port: server.port))
        other.send("GET /health HTTP/1.1\r\nHost: waiver\r\nConnection: close\r\n\r\n")
        #expect(other.read().hasPrefix("HTTP/1.1 200"))
        other.shut()
        // A request head that does not arrive in 10 seconds loses its connection.
        try await Task.sleep(for: .seconds(11))
        let stillOpen = slow.filter { !$0.closedByServer }.count
        #expect(stillOpen == 0)
    }
}

@Suite("Bad framing is a 400; every 500 is logged under the id the response carries", .serialized)
struct ServerErrorTests {
    /// A request with a chunked body, sent raw, and the server's answer.
    func post(_ path: String, body: String, token: String, port: Int) throws -> String {
        let c = try #require(RawConnection(from: "127.0.0.1", port: port))
        defer { c.shut() }
        c.send("POST \(path) HTTP/1.1\r\nHost: waiver\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\n"
               + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        return c.read()
    }

    /// A live server with one user (sam, security) and one pending exception, EX-1.
    func servedWithOneException() throws -> (Workspace, LiveServer, String) {
        let w = try Workspace()
        let sam = try w.addUser("sam", ["security"])
        let server = LiveServer(w)
        try server.start()
        let requested = try server.run(["request", "--policy", "NET-001", "--resource", "aws_security_group.admin", "--workspace", "shop", "--reason", "migration"], token: sam)
        guard requested.code == 0 else { throw UsageErrorForTests("request: \(requested.err)") }
        return (w, server, sam)
    }

    @Test func malformedChunkedBodiesAreBadRequestsOnEveryJSONPostRoute() async throws {
        let (w, server, token) = try servedWithOneException()
        defer { _ = server.stop() }
        let routes = ["/api/v1/evaluations", "/api/v1/exceptions", "/api/v1/exceptions/EX-1/approve", "/api/v1/exceptions/EX-1/reject",
                      "/api/v1/exceptions/EX-1/revoke", "/api/v1/exceptions/EX-1/renew", "/api/v1/exceptions/EX-1/evidence?name=a.txt"]
        for route in routes {
            for body in ["zz\r\n{}\r\n0\r\n\r\n", "2\r\n{}XX0\r\n\r\n"] {
                let answer = try post(route, body: body, token: token, port: server.port)
                #expect(answer.hasPrefix("HTTP/1.1 400"), "\(route): \(answer.prefix(200))")
                #expect(answer.contains("not valid HTTP"), "\(route)")
            }
        }
        #expect(!(w.dir.read("server.log") ?? "").contains("error"))
    }

    @Test func aServerFaultIsA500WhoseRequestIdIsInTheResponseAndTheLog() async throws {
        let (w, server, sam) = try servedWithOneException()
        defer { _ = server.stop() }
        // The evidence folder cannot be created: a plain file holds its name.
        _ = w.dir.write(".waiver/evidence", "not a folder")
        let c = try #require(RawConnection(from: "127.0.0.1", port: server.port))
        defer { c.shut() }
        c.send("POST /api/v1/exceptions/EX-1/evidence?name=scan.txt HTTP/1.1\r\nHost: waiver\r\nAuthorization: Bearer \(sam)\r\n"
               + "Content-Length: 5\r\nConnection: close\r\n\r\nhello")
        let answer = c.read()
        #expect(answer.hasPrefix("HTTP/1.1 500"), "\(answer.prefix(300))")
        let header = answer.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-request-id: ") }
        let id = try #require(header.map { String($0.dropFirst("x-request-id: ".count)) }, "no X-Request-Id in \(answer.prefix(300))")
        #expect(id.count >= 16)
        #expect(answer.contains("logged as request \(id)"))
        // The log line names the same request and the cause.
        let log = w.dir.read("server.log") ?? ""
        let line = log.split(separator: "\n").first { $0.contains(" error ") && $0.contains(id) }
        #expect(line != nil, "no error line with \(id) in: \(log.suffix(800))")
        #expect(line?.contains("evidence") == true)
    }
}
