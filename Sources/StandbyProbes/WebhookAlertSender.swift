import Foundation
import Logging
import StandbyTransport

/// Posts alerts as JSON through StandbyTransport (libcurl). Retries are the watcher's (one policy
/// for every sender), so each post here is a single request with its own timeout; a status
/// other than 2xx counts as not delivered.
public struct WebhookAlertSender: AlertSender {
    public let transport: Transport
    public let timeout: Duration

    public init(transport: Transport, timeout: Duration = .seconds(10)) {
        self.transport = transport
        self.timeout = timeout
    }

    /// A sender with a plain transport: system CAs, 10 s connect timeout.
    public init(logger: Logger, timeout: Duration = .seconds(10)) {
        self.init(
            transport: Transport(
                options: TransportOptions(connectTimeout: timeout, totalTimeout: timeout, useNetrc: false),
                logger: logger),
            timeout: timeout)
    }

    public func post(_ body: [UInt8], to url: String) async throws {
        guard let target = URL(string: url) else {
            throw ProbeError(.alert, "bad webhook URL \(Redaction.redacted(url))")
        }
        let response = try await transport.request(
            HTTPRequest(
                method: "POST", url: target, headers: [("Content-Type", "application/json")], body: Data(body),
                timeout: timeout, maxResponseBytes: 64 << 10))
        guard (200..<300).contains(response.status) else {
            throw ProbeError(
                .alert, "webhook \(Redaction.redacted(url)) answered HTTP \(response.status)")
        }
    }
}
