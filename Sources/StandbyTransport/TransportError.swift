import StandbyBase

/// What went wrong with a transfer. The message names the host and the URL, with any password
/// in the URL replaced by `***`: errors end up in logs, journals and terminals.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        /// The host name did not resolve, or no route to it.
        case unreachableHost
        /// The host answered but refused the connection (nothing listening on the port).
        case connectionRefused
        /// The server refused the credentials (HTTP 401/403, SSH/FTP authentication failure).
        case loginDenied
        /// The file or resource does not exist (HTTP 404/410, no such remote file).
        case notFound
        /// The connect timeout, the low-speed limit or the overall timeout fired.
        case timeout
        /// The transfer ended before all the announced bytes arrived.
        case truncated
        /// A TLS handshake or certificate verification failure.
        case tls
        /// The server answered with an HTTP status that is an error (other than 401/403/404).
        case httpStatus
        /// The server cannot serve the byte range asked for.
        case rangeNotSatisfiable
        /// The URL is malformed or its scheme is not supported by this libcurl.
        case badURL
        /// The caller cancelled the transfer (task cancellation).
        case cancelled
        /// The body exceeded the size the caller allowed.
        case tooLarge
        /// Any other libcurl failure; `curlCode` tells which.
        case failed
    }

    public var code: Code
    /// The URL with its password redacted.
    public var url: String
    public var host: String
    public var message: String
    /// The libcurl error code (`CURLcode`), when libcurl reported the failure.
    public var curlCode: Int?
    /// The HTTP status, when the server answered one.
    public var httpStatus: Int?

    public init(
        _ code: Code, url: String, host: String, message: String, curlCode: Int? = nil, httpStatus: Int? = nil
    ) {
        self.code = code
        self.url = url
        self.host = host
        self.message = message
        self.curlCode = curlCode
        self.httpStatus = httpStatus
    }

    public var description: String { "\(host): \(message) (\(url))" }
}

extension TransportError: StandbyFailure {
    public var outcome: FailureOutcome { .failed }
    public var place: String? { host }
}
