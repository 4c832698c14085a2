import Foundation

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`, as
/// `--database` takes it. The password comes from the URL, else `$PGPASSWORD`, else a file
/// (`--database-password-file`); the caller passes the latter two in, so nothing here reads the
/// environment.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var tls: TLSMode

    public init(user: String, password: String?, host: String, port: Int, database: String, tls: TLSMode) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
    }

    /// Whether `text` names a PostgreSQL database at all (`postgres://` or `postgresql://`).
    public static func names(_ text: String) -> Bool { text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") }

    /// Parses the URL; a one-line error naming what is wrong otherwise. `environmentPassword` and
    /// `passwordFile` are used, in that order, when the URL carries no password.
    public init(_ text: String, environmentPassword: String? = nil, passwordFile: String? = nil) throws(PostgresURLError) {
        guard Self.names(text), let c = URLComponents(string: text) else {
            throw PostgresURLError("'\(text.prefix(80))' is not postgres://USER@HOST[:PORT]/DATABASE")
        }
        guard let user = c.user.flatMap({ $0.removingPercentEncoding ?? $0 }), !user.isEmpty else {
            throw PostgresURLError("the URL names no user (postgres://USER@HOST/DATABASE)")
        }
        guard let host = c.host, !host.isEmpty else { throw PostgresURLError("the URL names no host") }
        let database = String(c.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw PostgresURLError("the URL names no database (postgres://USER@HOST/DATABASE)") }
        let port = c.port ?? 5432
        guard (1...65_535).contains(port) else { throw PostgresURLError("port \(port) is out of range") }
        var tls = TLSMode.prefer
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                case let other: throw PostgresURLError("sslmode=\(other.prefix(20)) is not disable, prefer or require")
                }
            default: throw PostgresURLError("unknown URL parameter '\(item.name.prefix(40))' (only sslmode is understood)")
            }
        }
        var password = c.password.flatMap { $0.removingPercentEncoding ?? $0 }
        if password == nil, let env = environmentPassword, !env.isEmpty { password = env }
        if password == nil, let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile) else {
                throw PostgresURLError("\(passwordFile): cannot read the password file")
            }
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        self.init(user: user, password: password, host: host, port: port, database: database, tls: tls)
    }

    /// The URL without its password, for messages and logs.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }
}

public struct PostgresURLError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = "--database: " + description }
}
