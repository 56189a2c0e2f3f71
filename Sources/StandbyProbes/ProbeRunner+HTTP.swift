import Foundation
import StandbyTransport

extension ProbeRunner {
    /// One GET through StandbyTransport (libcurl), bounded by libcurl's own connect and total
    /// timeouts set to the probe's. Any answer is read as an answer: the status and the body
    /// decide; only no answer at all is an error.
    func httpAttempt(_ target: HTTPTarget, options: ProbeOptions, deadline: ContinuousClock.Instant) async -> Attempt {
        guard let url = URL(string: target.url) else { return Attempt(.down, "bad URL \(target.url)") }
        let remaining = max(ContinuousClock.now.duration(to: deadline), .milliseconds(1))
        let transport = Transport(
            options: TransportOptions(
                connectTimeout: remaining, totalTimeout: remaining, useNetrc: false,
                tls: TLSOptions(caFile: options.caFile, verifyPeer: options.verifyChain, verifyHost: true),
                userAgent: "standby-probe"),
            logger: logger)
        let response: HTTPResponse
        do {
            response = try await transport.request(
                HTTPRequest(method: "GET", url: url, timeout: remaining, maxResponseBytes: 1 << 20))
        } catch let error as TransportError {
            return Attempt(.down, error.message)
        } catch {
            return Attempt(.down, "\(error)")
        }
        let expected =
            target.expectStatus.isEmpty ? "2xx" : target.expectStatus.sorted().map(String.init).joined(separator: ", ")
        guard target.accepts(status: response.status) else {
            return Attempt(.down, "HTTP \(response.status), expected \(expected)")
        }
        if let match = target.bodyMatch, !response.bodyText.contains(match) {
            return Attempt(.down, "HTTP \(response.status) but the body does not contain \"\(match)\"")
        }
        let matched = target.bodyMatch.map { ", body contains \"\($0)\"" } ?? ""
        return Attempt(.up, "HTTP \(response.status)\(matched)")
    }
}
