import Foundation
import Logging
import StandbyLab
import Testing

@testable import StandbyProbes

@Suite(.tags(.server), .serialized) struct DNSProbeTests {
    let runner = ProbeRunner(logger: Logger(label: "test.dns"))

    func probe(_ server: String, _ name: String, _ type: String, timeout: Duration = .seconds(2)) throws -> Probe {
        Probe(
            name: "dns", site: .primary, target: .dns(try DNSTarget(server: server, name: name, type: type)),
            timeout: timeout)
    }

    @Test func authoritativeAnswerFromNamed() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let named = try NamedServer.start(
            in: lab, zone: "contoso.test", records: ["_sipinternaltls._tcp 300 IN SRV 0 0 5061 pool01.contoso.test."])
        let up = await runner.run(try probe(named.address, "_sipinternaltls._tcp.contoso.test", "SRV"))
        #expect(up.outcome == .up, "\(up.detail)")
        #expect(up.detail.hasPrefix("SRV 0 0 5061 pool01.contoso.test., authoritative"), "\(up.detail)")

        let missing = await runner.run(try probe(named.address, "_sip._tcp.contoso.test", "SRV"))
        #expect(missing.outcome == .down && missing.detail.contains("NXDOMAIN"), "\(missing.detail)")
        let noRecord = await runner.run(try probe(named.address, "_sipinternaltls._tcp.contoso.test", "A"))
        #expect(noRecord.outcome == .down && noRecord.detail.hasPrefix("no A record"), "\(noRecord.detail)")
        let otherZone = await runner.run(try probe(named.address, "pool01.fabrikam.test", "A"))
        #expect(otherZone.outcome == .down, "\(otherZone.detail)")

        named.stop()
        let started = ContinuousClock.now
        let down = await runner.run(
            try probe(named.address, "_sipinternaltls._tcp.contoso.test", "SRV", timeout: .seconds(1)))
        #expect(down.outcome == .down, "\(down.detail)")
        // A stopped server does not hold the probe past its timeout; the bound is 'no hang',
        // not speed (a loaded CI machine took 3.4 s once against a 1.3 s bound).
        let elapsed = started.duration(to: .now)
        #expect(elapsed < .seconds(10), "\(elapsed)")
    }

    @Test func silentServerRespectsTheTimeout() async throws {
        let silent = try TestPeer(.silent, udp: true)
        defer { silent.stop() }
        let started = ContinuousClock.now
        let result = await runner.run(try probe(silent.address, "contoso.test", "SOA", timeout: .milliseconds(800)))
        let elapsed = started.duration(to: .now)
        #expect(result.outcome == .down, "\(result.detail)")
        #expect(elapsed >= .milliseconds(700) && elapsed < .seconds(10), "\(elapsed)")
    }
}
