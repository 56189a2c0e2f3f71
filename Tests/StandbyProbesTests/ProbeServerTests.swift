import Foundation
import Logging
import StandbyLab
import Testing

@testable import StandbyProbes

/// Each probe kind against real servers on loopback, up and down, and against peers that
/// misbehave: every result clear, none later than its timeout.
@Suite(.tags(.server), .serialized) struct ProbeServerTests {
    let runner = ProbeRunner(logger: Logger(label: "test.probes"))

    func probe(_ target: ProbeTarget, timeout: Duration = .seconds(3), options: ProbeOptions = ProbeOptions()) -> Probe
    {
        Probe(name: "p", site: .primary, target: target, timeout: timeout, options: options)
    }

    @Test func tcpUpAndDownOverIPv4AndIPv6() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let sip = try SIPServer.start(in: lab)
        for host in ["127.0.0.1", "[::1]", "localhost"] {
            let up = await runner.run(probe(.tcp(try HostPort(parsing: "\(host):\(sip.port)"))))
            #expect(up.outcome == .up, "\(host): \(up.detail)")
        }
        sip.stop()
        let down = await runner.run(probe(.tcp(try HostPort(parsing: "[::1]:\(sip.port)"))))
        #expect(down.outcome == .down)
        #expect(down.detail.contains("refused"), "\(down.detail)")
    }

    @Test func unresolvableHostIsAClearDownResult() async throws {
        let started = ContinuousClock.now
        let result = await runner.run(
            probe(.tcp(HostPort(host: "no-such-host.invalid", port: 5060)), timeout: .seconds(2)))
        #expect(result.outcome == .down)
        #expect(result.detail.contains("no-such-host.invalid"), "\(result.detail)")
        // Resolution is bounded by the probe's timeout; the margin is for a loaded CI machine.
        #expect(started.duration(to: .now) < .seconds(5))
        let sip = await runner.run(
            probe(.sipOptions(try SIPTarget(parsing: "sip:no-such-host.invalid")), timeout: .seconds(2)))
        #expect(sip.outcome == .down && sip.detail.contains("cannot resolve"), "\(sip.detail)")
    }

    @Test(arguments: ["udp", "tcp", "tls"])
    func sipOptionsOverEachTransport(_ transport: String) async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try SIPServer.start(in: lab)
        let options = ProbeOptions(caFile: server.caFile)
        for ipv6 in [false, true] {
            let result = await runner.run(
                probe(.sipOptions(try SIPTarget(parsing: server.uri(transport, ipv6: ipv6))), options: options))
            #expect(result.outcome == .up, "\(transport) ipv6=\(ipv6): \(result.detail)")
            #expect(result.detail.hasPrefix("200 OK over \(transport.uppercased())"), "\(result.detail)")
        }
        server.stop()
        let down = await runner.run(
            probe(.sipOptions(try SIPTarget(parsing: server.uri(transport))), timeout: .seconds(2), options: options))
        #expect(down.outcome == .down, "\(down.detail)")
    }

    @Test func otherFinalResponsesAreDownUnlessConfigured() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try SIPServer.start(in: lab, status: 503, reason: "Service Unavailable")
        let target = ProbeTarget.sipOptions(try SIPTarget(parsing: server.uri("tcp")))
        let strict = await runner.run(probe(target))
        #expect(strict.outcome == .down)
        #expect(strict.detail.hasPrefix("SIP 503 Service Unavailable over TCP"), "\(strict.detail)")
        let lenient = await runner.run(probe(target, options: ProbeOptions(sipUpStatuses: [503])))
        #expect(lenient.outcome == .up, "\(lenient.detail)")
    }

    @Test func sipOverUDPRetransmitsUntilTheTimeout() async throws {
        let silent = try TestPeer(.silent, udp: true)
        defer { silent.stop() }
        let started = ContinuousClock.now
        let result = await runner.run(
            probe(.sipOptions(try SIPTarget(parsing: "sip:\(silent.address)")), timeout: .seconds(2)))
        let elapsed = started.duration(to: .now)
        #expect(result.outcome == .down)
        // T1 = 500 ms, doubling: sent at 0, 0.5 and 1.5 s within 2 s.
        #expect(result.detail.contains("no final response within the timeout (3 transmissions)"), "\(result.detail)")
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(20), "\(elapsed)")
    }

    @Test(arguments: [false, true])
    func malformedSIPResponseIsAClearDownResult(_ udp: Bool) async throws {
        let garbage = try TestPeer(
            .reply(Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8)), udp: udp)
        defer { garbage.stop() }
        let uri = "sip:\(garbage.address)" + (udp ? "" : ";transport=tcp")
        let result = await runner.run(probe(.sipOptions(try SIPTarget(parsing: uri))))
        #expect(result.outcome == .down)
        #expect(result.detail.hasPrefix("malformed SIP response"), "\(result.detail)")
        #expect(result.detail.contains("HTTP/1.1 400"), "\(result.detail)")
    }

    @Test func serverThatAcceptsAndNeverAnswersRespectsTheTimeout() async throws {
        let silent = try TestPeer(.silent)
        defer { silent.stop() }
        let targets: [ProbeTarget] = [
            .sipOptions(try SIPTarget(parsing: "sip:\(silent.address);transport=tcp")),
            .sipOptions(try SIPTarget(parsing: "sip:\(silent.address);transport=tls")),
            .tls(try TLSTarget(parsing: silent.address)),
        ]
        for target in targets {
            let started = ContinuousClock.now
            let result = await runner.run(probe(target, timeout: .milliseconds(800)))
            let elapsed = started.duration(to: .now)
            #expect(result.outcome == .down)
            #expect(result.detail.contains("within the timeout"), "\(target): \(result.detail)")
            #expect(elapsed >= .milliseconds(800) && elapsed < .seconds(10), "\(target): \(elapsed)")
        }
    }

    @Test func tlsValidCertificateIsUpWithItsDetails() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try TLSServer.start(in: lab)
        let result = await runner.run(
            probe(
                .tls(try TLSTarget(parsing: server.address, serverName: "localhost")),
                options: ProbeOptions(caFile: server.caFile)))
        #expect(result.outcome == .up, "\(result.detail)")
        #expect(result.certificate?.subject == "CN=localhost")
        #expect(result.certificate?.issuer == "CN=Standby Lab CA")
        let days = (result.certificate?.notAfter.timeIntervalSinceNow ?? 0) / 86_400
        #expect(days > 360 && days < 366)
        #expect(result.detail.contains("expires"), "\(result.detail)")
        // By address: the certificate carries IP:127.0.0.1 too.
        let byAddress = await runner.run(
            probe(.tls(try TLSTarget(parsing: server.address)), options: ProbeOptions(caFile: server.caFile)))
        #expect(byAddress.outcome == .up, "\(byAddress.detail)")
        // Without the lab CA the chain is not trusted.
        let untrusted = await runner.run(probe(.tls(try TLSTarget(parsing: server.address))))
        #expect(untrusted.outcome == .down && untrusted.detail.contains("not trusted"), "\(untrusted.detail)")
        server.stop()
        let down = await runner.run(probe(.tls(try TLSTarget(parsing: server.address))))
        #expect(down.outcome == .down && down.detail.contains("refused"), "\(down.detail)")
    }

    @Test func tlsExpiredCertificateIsDownWithTheReason() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try TLSServer.start(in: lab, certificate: .expired)
        let result = await runner.run(
            probe(.tls(try TLSTarget(parsing: server.address)), options: ProbeOptions(caFile: server.caFile)))
        #expect(result.outcome == .down)
        #expect(result.detail == "certificate expired on 2020-02-01T00:00:00Z", "\(result.detail)")
        #expect(result.certificate?.subject == "CN=localhost")
    }

    @Test func tlsMismatchedNameIsDownWithTheReason() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try TLSServer.start(in: lab, certificate: .wrongName)
        let result = await runner.run(
            probe(
                .tls(try TLSTarget(parsing: server.address, serverName: "pool01.contoso.com")),
                options: ProbeOptions(caFile: server.caFile)))
        #expect(result.outcome == .down)
        #expect(
            result.detail.hasPrefix("certificate name mismatch: pool01.contoso.com not in CN=wrong.example"),
            "\(result.detail)")
    }

    @Test func tlsCertificateExpiringSoonIsAWarning() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try TLSServer.start(in: lab, certificate: .expiringIn(days: 10))
        let result = await runner.run(
            probe(.tls(try TLSTarget(parsing: server.address)), options: ProbeOptions(caFile: server.caFile)))
        #expect(result.outcome == .warning, "\(result.detail)")
        #expect(result.outcome.isSuccess)
        #expect(
            result.detail.hasPrefix("certificate expires in 9 days")
                || result.detail.hasPrefix("certificate expires in 10 days"), "\(result.detail)")
    }

    @Test func oneShotCheckRunsEveryProbeInParallel() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let server = try SIPServer.start(in: lab)
        let silent = try TestPeer(.silent, udp: true)
        defer { silent.stop() }
        let uri = try SIPTarget(parsing: server.uri())
        var probes = (0..<20).map { index in
            Probe(
                name: "sip-\(index)", site: .primary, target: .sipOptions(uri),
                timeout: .seconds(1))
        }
        for index in 0..<5 {
            probes.append(
                Probe(
                    name: "silent-\(index)", site: .primary,
                    target: .sipOptions(try SIPTarget(parsing: "sip:\(silent.address)")), timeout: .seconds(2)))
        }
        probes.append(
            Probe(
                name: "dr", site: .secondary, target: .tcp(try HostPort(parsing: "127.0.0.1:\(server.port)")),
                timeout: .seconds(1)))
        let started = ContinuousClock.now
        let report = await HealthCheck(logger: Logger(label: "test")).run(probes)
        // Five silent probes of two seconds each: in sequence it would take ten.
        #expect(started.duration(to: .now) < .seconds(6), "ran in sequence?")
        #expect(report.results.map(\.probe) == probes.map(\.name))
        #expect(report.primaryVerdict == .degraded)
        #expect(report.verdict(for: .secondary) == .up)
        server.stop()
        let down = await HealthCheck(logger: Logger(label: "test")).run(probes)
        #expect(down.primaryVerdict == .unreachable)
    }

    @Test func httpStatusAndBodyMatchAgainstNginx() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        try lab.write("www/health", "pool01 ready\n")
        let nginx = try NginxServer.start(in: lab)
        let url = nginx.url("health").absoluteString
        let up = await runner.run(probe(.http(try HTTPTarget(url: url, bodyMatch: "ready"))))
        #expect(up.outcome == .up && up.detail == "HTTP 200, body contains \"ready\"", "\(up.detail)")
        let wrongBody = await runner.run(probe(.http(try HTTPTarget(url: url, bodyMatch: "draining"))))
        #expect(
            wrongBody.outcome == .down && wrongBody.detail.contains("does not contain \"draining\""),
            "\(wrongBody.detail)")
        let missing = nginx.url("missing").absoluteString
        let notFound = await runner.run(probe(.http(try HTTPTarget(url: missing))))
        #expect(notFound.outcome == .down && notFound.detail == "HTTP 404, expected 2xx", "\(notFound.detail)")
        let expected404 = await runner.run(probe(.http(try HTTPTarget(url: missing, expectStatus: [404]))))
        #expect(expected404.outcome == .up, "\(expected404.detail)")
        nginx.stop()
        let down = await runner.run(probe(.http(try HTTPTarget(url: url))))
        #expect(down.outcome == .down && down.detail.lowercased().contains("refused"), "\(down.detail)")
    }

    @Test func httpServerThatNeverAnswersRespectsTheTimeout() async throws {
        let silent = try TestPeer(.silent)
        defer { silent.stop() }
        let started = ContinuousClock.now
        let result = await runner.run(
            probe(.http(try HTTPTarget(url: "http://\(silent.address)/health")), timeout: .milliseconds(800)))
        let elapsed = started.duration(to: .now)
        #expect(result.outcome == .down, "\(result.detail)")
        #expect(elapsed >= .milliseconds(700) && elapsed < .seconds(10), "\(elapsed)")
    }

    /// Blocking work must not starve the process: 150 attempts stuck in poll at once still each
    /// answer at their timeout (it once took 12 s when the work ran on a Dispatch queue).
    @Test func manySilentPeersAllAnswerAtTheirTimeout() async throws {
        let silentUDP = try TestPeer(.silent, udp: true)
        let silentTCP = try TestPeer(.silent)
        defer {
            silentUDP.stop()
            silentTCP.stop()
        }
        let uris = [
            "sip:\(silentUDP.address)", "sip:\(silentTCP.address);transport=tcp",
            "sip:\(silentTCP.address);transport=tls",
        ]
        let probes = try (0..<150).map { index in
            Probe(
                name: "p\(index)", site: .primary, target: .sipOptions(try SIPTarget(parsing: uris[index % 3])),
                timeout: .seconds(1))
        }
        let started = ContinuousClock.now
        let results = await HealthCheck(logger: Logger(label: "test"), maximumInFlight: 150).results(of: probes)
        // Bounds that catch starvation (12 s), not speed: a loaded 2-core CI machine may run the
        // answers a few hundred milliseconds late.
        #expect(started.duration(to: .now) < .seconds(5))
        #expect(results.allSatisfy { $0.outcome == .down && $0.latency < .seconds(3) })
    }
}
