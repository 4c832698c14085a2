import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WaiverCore
import WaiverFormats

/// The shared register behind `waiver serve`, reached with `--server URL` and `$WAIVER_TOKEN`.
struct ServerClient: Sendable {
    let base: String
    let token: String

    struct Reply: Sendable {
        let status: Int
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> Value {
            do { return try JSONReader.parse(body) } catch { throw UsageError("the server sent something that is not JSON") }
        }
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's message (exit 2).
    func call(_ method: HTTPMethod, _ path: String, query: [(String, String?)] = [], body: Data? = nil,
              contentType: String = "application/json", timeout: TimeAmount = .seconds(120)) async throws -> Reply {
        var target = base.hasSuffix("/") ? String(base.dropLast()) : base
        target += path
        let items = query.compactMap { k, v in v.map { "\(k)=\($0.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? $0)" } }
        if !items.isEmpty { target += "?" + items.joined(separator: "&") }
        let token = self.token
        let url = target
        let reply: Reply
        do {
            var request = HTTPClientRequest(url: url)
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            request.headers.add(name: "Accept", value: "application/json")
            if let body {
                request.headers.add(name: "Content-Type", value: contentType)
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            let response: HTTPClientResponse
            do {
                response = try await HTTPClient.shared.execute(request, timeout: timeout)
            } catch {
                throw UsageError("\(url): cannot reach the server (\(error))")
            }
            let buffer = try await response.body.collect(upTo: 1 << 30)
            reply = Reply(status: Int(response.status.code), body: Data(buffer.readableBytesView))
        }
        guard (200..<300).contains(reply.status) else {
            let message = (try? reply.json())?["error"]?["message"]?.stringValue ?? reply.text.prefix(300).description
            throw UsageError("server: \(message) (HTTP \(reply.status))")
        }
        return reply
    }

    func json(_ method: HTTPMethod, _ path: String, query: [(String, String?)] = [], body: Value? = nil) async throws -> Value {
        try await call(method, path, query: query, body: body.map { Data(JSONWriter.write($0, pretty: false).utf8) }).json()
    }
}

extension CharacterSet {
    static let urlQueryValueAllowed: CharacterSet = {
        var set = CharacterSet.urlQueryAllowed
        set.remove(charactersIn: "&=+?#")
        return set
    }()
}

extension RegisterOptions {
    /// The server client when `--server` (or `$WAIVER_SERVER`) is set.
    func client() throws -> ServerClient? {
        guard let url = server ?? ProcessInfo.processInfo.environment["WAIVER_SERVER"], !url.isEmpty else { return nil }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw UsageError("--server: '\(url)' is not an http(s) URL") }
        guard let token = ProcessInfo.processInfo.environment["WAIVER_TOKEN"], !token.isEmpty else {
            throw UsageError("--server needs an API token in $WAIVER_TOKEN (from `waiver admin add-user` on the server host)")
        }
        return ServerClient(base: url, token: token)
    }
}
