import Foundation
import Logging
import StandbyTransport

/// `http` steps through StandbyTransport (libcurl). No retry here: the step's own `retries` apply.
public struct HTTPAdapter: HTTPCaller {
    public var logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func call(method: String, url: String, headers: [String: String], body: String?, timeout: Duration)
        async throws -> HTTPReply
    {
        guard let target = URL(string: url) else {
            throw FailoverError(.stepFailed, "'\(url)' is not a URL")
        }
        let request = HTTPRequest(
            method: method, url: target, headers: headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            body: body.map { Data($0.utf8) }, timeout: timeout, maxResponseBytes: 1 << 20)
        let response = try await Transport(logger: logger).request(request)
        return HTTPReply(status: response.status, body: String(decoding: response.body, as: UTF8.self))
    }
}
