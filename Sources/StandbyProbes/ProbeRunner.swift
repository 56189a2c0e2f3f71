import Foundation
import Logging
import StandbyBase

#if canImport(Glibc)
    import Glibc
#endif

/// Runs probes. Every attempt returns a result by its timeout, whatever the peer does: the
/// socket work waits only in `poll` bounded by the deadline, and the work runs off the
/// cooperative pool (`Blocking.run` with a deadline), which answers at the deadline even if a name lookup hangs.
public struct ProbeRunner: Sendable {
    let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
        Self.ignoreBrokenPipes
    }

    // A peer that resets a TLS connection mid-write must not kill the process: OpenSSL writes
    // with write(2), which raises SIGPIPE. libcurl does the same for its own sockets.
    private static let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// One attempt of `probe`.
    public func run(_ probe: Probe) async -> ProbeResult {
        let at = Date()
        let started = ContinuousClock.now
        let deadline = started + probe.timeout
        let timeout = probe.timeout
        let attempt: Attempt
        switch probe.target {
        case .http(let target):
            attempt = await httpAttempt(target, options: probe.options, deadline: deadline)
        case .dns(let target):
            attempt = await dnsAttempt(target, deadline: deadline)
        case .clientView(let target):
            attempt = await clientViewAttempt(probe, target, deadline: deadline)
        default:
            // A little grace so the work's own, more precise timeout message wins the race.
            attempt = await Blocking.run(
                name: "standby.probe",
                deadline: deadline + .milliseconds(100),
                onTimeout: { Attempt(.down, "no answer within \(timeout)") },
                { Self.blockingAttempt(probe, deadline: deadline) })
        }
        let result = ProbeResult(
            probe: probe.name, site: probe.site, kind: probe.target.kind, target: probe.target.description,
            outcome: attempt.outcome, latency: started.duration(to: .now), detail: attempt.detail,
            certificate: attempt.certificate, at: at)
        logger.debug(
            "Probe attempt",
            metadata: [
                "probe": "\(probe.name)", "outcome": "\(result.outcome.rawValue)", "detail": "\(result.detail)",
                "latency_ms": "\(result.latency.milliseconds)",
            ])
        return result
    }

    struct Attempt: Sendable {
        var outcome: ProbeOutcome
        var detail: String
        var certificate: CertificateInfo?

        init(_ outcome: ProbeOutcome, _ detail: String, certificate: CertificateInfo? = nil) {
            self.outcome = outcome
            self.detail = detail
            self.certificate = certificate
        }
    }

    static func blockingAttempt(_ probe: Probe, deadline: ContinuousClock.Instant) -> Attempt {
        do {
            switch probe.target {
            case .tcp(let address):
                let socket = try ProbeSocket.connectTCP(address, deadline: deadline)
                return Attempt(.up, "connected to \(socket.peer)")
            case .tls(let target):
                return try tlsAttempt(target, options: probe.options, deadline: deadline)
            case .sipOptions(let target):
                return try sipAttempt(target, options: probe.options, deadline: deadline)
            case .http, .dns, .clientView:
                return Attempt(.down, "internal: http, dns and client_view probes do not run on the blocking queue")
            }
        } catch let failure as ProbeFailure {
            return Attempt(.down, failure.reason)
        } catch {
            return Attempt(.down, "\(error)")
        }
    }

    static func tlsAttempt(_ target: TLSTarget, options: ProbeOptions, deadline: ContinuousClock.Instant) throws
        -> Attempt
    {
        let socket = try ProbeSocket.connectTCP(target.address, deadline: deadline)
        let session = try TLSSession(
            socket: socket, serverName: target.expectedName, caFile: options.caFile, deadline: deadline)
        let certificate = session.certificate()
        let problems = session.problems(expectedName: target.expectedName, verifyChain: options.verifyChain)
        if !problems.isEmpty {
            return Attempt(.down, problems.joined(separator: "; "), certificate: certificate)
        }
        guard let certificate else { return Attempt(.down, "the server sent no certificate") }
        let left = certificate.notAfter.timeIntervalSinceNow
        let days = Int(left / 86_400)
        let summary = "\(certificate.subject), issued by \(certificate.issuer)"
        if left < options.expiryWarning.timeInterval {
            return Attempt(
                .warning,
                "certificate expires in \(days) days (\(certificate.notAfter.formatted(.iso8601))): \(summary)",
                certificate: certificate)
        }
        return Attempt(
            .up, "\(summary), expires \(certificate.notAfter.formatted(.iso8601)) (\(days) days)",
            certificate: certificate)
    }
}
