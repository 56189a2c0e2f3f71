import Foundation
import Hummingbird
import Logging
import StandbyCore

/// The read-only HTTP endpoint of `standby run`: `/metrics` (Prometheus text), `/healthz`,
/// `/status.json`, and `/`, the status page. GET and HEAD only (HEAD wherever GET answers, with
/// GET's status and headers and no body); with a token, every path but `/healthz` needs
/// `Authorization: Bearer TOKEN` (the scheme in any case).
public enum ServiceEndpoint {
    public typealias Snapshot = @Sendable () async -> ServiceSnapshot

    /// Parses `host:port` (`[v6]:port` too).
    public static func address(_ listen: String) throws -> (host: String, port: Int) {
        var host: Substring
        var port: Substring
        if listen.hasPrefix("["), let close = listen.firstIndex(of: "]") {
            host = listen[listen.index(after: listen.startIndex)..<close]
            port = listen[listen.index(after: close)...].drop { $0 == ":" }
        } else if let colon = listen.lastIndex(of: ":") {
            host = listen[..<colon]
            port = listen[listen.index(after: colon)...]
        } else {
            throw ServiceError(.listen, "service.listen: '\(listen)' has no port; expected like 127.0.0.1:9470")
        }
        guard let number = Int(port), (0...65535).contains(number), !host.isEmpty else {
            throw ServiceError(.listen, "service.listen: '\(listen)' is not host:port")
        }
        return (String(host), number)
    }

    public static func router(token: BearerToken?, snapshot: @escaping Snapshot) -> Router<BasicRequestContext> {
        // HEAD is GET without the body: Hummingbird answers it from each GET route, keeping GET's
        // Content-Length. Without the option HEAD found no route and was 404 everywhere.
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.add(middleware: ReadOnlyMiddleware(token: token))
        router.get("/healthz") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("/metrics") { _, _ in
            let text = MetricsText.render(await snapshot())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/status.json") { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            let data = try encoder.encode(await snapshot())
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/") { _, _ in
            let html = StatusPage.render(await snapshot())
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: html)))
        }
        return router
    }

    /// The Hummingbird application; `onRunning` gets the bound port (useful with port 0).
    public static func application(
        listen: String, token: BearerToken?, snapshot: @escaping Snapshot, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let (host, port) = try address(listen)
        return Application(
            router: router(token: token, snapshot: snapshot),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "standby"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}

/// Refuses anything but GET and HEAD, and requests without the bearer token when one is set.
struct ReadOnlyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: BearerToken?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard request.method == .get || request.method == .head else {
            return Response(status: .methodNotAllowed, headers: [.allow: "GET, HEAD"])
        }
        if let token, request.uri.path != "/healthz" {
            guard let presented = Self.bearerToken(request.headers[.authorization]), token.matches(presented) else {
                let refusal = Response(
                    status: .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"standby\""],
                    body: .init(byteBuffer: ByteBuffer(string: "a bearer token is required\n")))
                return request.method == .head ? refusal.createHeadResponse() : refusal
            }
        }
        return try await next(request, context)
    }

    /// The token of an `Authorization: Bearer TOKEN` header. The scheme name is case-insensitive
    /// (RFC 9110 section 11.1), so `bearer` and `BEARER` count too; nil for any other scheme.
    static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
