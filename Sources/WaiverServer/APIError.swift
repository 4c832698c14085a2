import Foundation
import Hummingbird
import Logging
import NIOHTTP1
import HTTPTypes
import NIOCore
import WaiverCore
import WaiverFormats

/// An error as the API returns it: `{"error": {"code": ..., "message": ...}}` with a fitting status.
public struct APIError: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    /// The id a 500 was logged under; sent as `X-Request-Id`.
    public let requestId: String?

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, requestId: String? = nil) {
        self.status = status
        self.code = code
        self.message = message.clipped(String.maxMessage)
        self.requestId = requestId
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var r = jsonResponse(["error": ["code": .string(code), "message": .string(message)]], status: status)
        if let requestId { r.headers[.requestId] = requestId }
        return r
    }

    static let unauthorized = APIError(.unauthorized, "unauthorized", "a valid API token is required (Authorization: Bearer ...)")
    static let tooManyFailures = APIError(.tooManyRequests, "rate_limited", "too many failed sign-ins or token checks from this address: wait a minute")

    /// Maps domain and input errors to HTTP; bad HTTP framing is a 400; anything else is a 500,
    /// logged with its cause under the request's id (Hummingbird's `hb.request.id`), which the
    /// response carries in its message and its `X-Request-Id` header.
    static func from(_ error: any Error, context: some RequestContext) -> APIError {
        if let known = mapped(error) { return known }
        let id = context.id
        context.logger.error("request \(id) failed: \(String(describing: error).clipped(2000))")
        return APIError(.internalServerError, "internal", "internal error, logged as request \(id)", requestId: id)
    }

    /// The status of an error the client caused, chosen by its type, never by its text; nil for a
    /// server fault.
    static func mapped(_ error: any Error) -> APIError? {
        switch error {
        case let e as APIError: return e
        case let e as RegisterError:
            switch e {
            case .notFound(let m): return APIError(.notFound, "not_found", m)
            case .invalid(let m): return APIError(.unprocessableContent, "invalid", m)
            case .refused(let m): return APIError(.forbidden, "forbidden", m)
            case .conflict(let m): return APIError(.conflict, "conflict", m)
            }
        case let e as InputError: return APIError(.unprocessableContent, "invalid_input", e.description)
        case let e as InputErrors: return APIError(.unprocessableContent, "invalid_input", e.description)
        case is NIOTooManyBytesError: return APIError(.contentTooLarge, "too_large", "the request body is over the server's limit")
        case let e as HTTPParserError: return APIError(.badRequest, "bad_request", "the request is not valid HTTP (\(e))")
        default:
            if let e = error as? any HTTPResponseError, e.status.code < 500 {
                return APIError(e.status, "bad_request", "the request was refused (\(e.status.code) \(e.status.reasonPhrase))")
            }
            return nil
        }
    }
}

extension HTTPField.Name {
    static let requestId = HTTPField.Name("X-Request-Id")!
}

/// A JSON response from a value.
func jsonResponse(_ value: Value, status: HTTPResponse.Status = .ok) -> Response {
    text(JSONWriter.write(value), status: status, contentType: "application/json; charset=utf-8")
}

func text(_ body: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
    var headers = HTTPFields()
    headers[.contentType] = contentType
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
}
