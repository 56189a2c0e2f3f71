import Foundation
import Logging
import StandbyBase

/// The async face of the transport: each call runs a `TransferSession` on a thread of its own
/// (libcurl blocks), and task cancellation aborts the transfer at its next progress callback.
/// For many transfers against one host (the byte ranges of a delta), open one session with
/// `session()` inside `Blocking.run` instead, so the connection is reused.
public struct Transport: Sendable {
    public var options: TransportOptions
    public var logger: Logger

    public init(options: TransportOptions = TransportOptions(), logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// A blocking session with these options, for use on a thread that may block.
    public func session() throws -> TransferSession {
        try TransferSession(options: options, logger: logger)
    }

    public func stat(_ url: URL) async throws -> RemoteFileInfo {
        let (options, logger) = (options, logger)
        return try await Blocking.run { flag in
            let session = try TransferSession(options: options, logger: logger)
            session.cancellation = flag
            return try session.stat(url)
        }
    }

    /// Streams `url` (or `range` of it) to `sink`, called on the transfer's thread as bytes
    /// arrive. Returns the bytes delivered.
    @discardableResult
    public func get(
        _ url: URL, range: ByteRange? = nil, progress: (@Sendable (TransferProgress) -> Void)? = nil,
        sink: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void
    ) async throws -> Int64 {
        let (options, logger) = (options, logger)
        return try await Blocking.run { flag in
            let session = try TransferSession(options: options, logger: logger)
            session.cancellation = flag
            session.progress = progress
            return try session.get(url, range: range, sink: sink)
        }
    }

    /// Reads a small body into memory (more than `maxBytes` is `tooLarge`).
    public func fetch(_ url: URL, range: ByteRange? = nil, maxBytes: Int = 16 << 20) async throws -> Data {
        let (options, logger) = (options, logger)
        return try await Blocking.run { flag in
            let session = try TransferSession(options: options, logger: logger)
            session.cancellation = flag
            return try session.fetch(url, range: range, maxBytes: maxBytes)
        }
    }

    /// An HTTP request (webhooks, http steps), retried per `retry` when the host cannot be
    /// reached, the request times out, or the server answers 5xx or 429. The last answer or
    /// error is returned.
    public func request(_ request: HTTPRequest, retry: RetryPolicy = .none) async throws -> HTTPResponse {
        let (options, logger) = (options, logger)
        var attempt = 1
        while true {
            let pause = retry.delay(beforeAttempt: attempt)
            if pause > .zero { try await Task.sleep(for: pause) }
            let isLast = attempt >= retry.attempts
            do {
                let response = try await Blocking.run { flag in
                    let session = try TransferSession(options: options, logger: logger)
                    session.cancellation = flag
                    return try session.request(request)
                }
                if isLast || !(response.status >= 500 || response.status == 429) { return response }
                logger.debug(
                    "Request answered with a retryable status",
                    metadata: [
                        "url": "\(Redaction.redacted(request.url))", "status": "\(response.status)",
                        "attempt": "\(attempt)",
                    ])
            } catch let error as TransportError
                where !isLast && [.unreachableHost, .connectionRefused, .timeout, .truncated].contains(error.code)
            {
                logger.debug(
                    "Request failed, retrying",
                    metadata: ["error": "\(error)", "attempt": "\(attempt)"])
            }
            attempt += 1
        }
    }
}
