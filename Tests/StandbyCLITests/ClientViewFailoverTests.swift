import Foundation
import StandbyLab
import Testing

/// Stage 2 validated as clients see it: a failover of a deployment whose `dns.client_view` looks
/// at the SIP pool through unbound (forwarding lab.test to the BIND the cutover updates), with
/// kamailio front ends on the two pools' addresses. The report's client-visible recovery is the
/// cutover plus what was left of the record's TTL in the resolver's cache.
@Suite("client-visible recovery", .tags(.server, .failover), .serialized)
struct ClientViewFailoverTests {
    static let ttl = 4
    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    /// The servers of a small lab.test deployment and its site.yaml.
    struct ClientLab {
        let lab: LabDirectory
        let named: NamedServer
        let unbound: UnboundServer
        let primary: SIPServer
        let secondary: SIPServer
        let site: String
        let state: String

        func stop() {
            unbound.stop()
            named.stop()
            primary.stop()
            secondary.stop()
            lab.remove()
        }

        static func start(prefix: String) throws -> ClientLab {
            let lab = try LabDirectory(prefix: prefix)
            let authority = try LabCertificateAuthority.create(in: lab)
            let primary = try SIPServer.start(
                in: lab, authority: authority, host: "127.0.1.10", serverNames: ["pool01.lab.test"])
            let secondary = try SIPServer.start(
                in: lab, authority: authority, host: "127.0.2.10", serverNames: ["pool02-dr.lab.test"])
            let values = [
                "tls": ("0 0 \(primary.tlsPort) pool01.lab.test.", "0 0 \(secondary.tlsPort) pool02-dr.lab.test."),
                "tcp": ("0 0 \(primary.port) pool01.lab.test.", "0 0 \(secondary.port) pool02-dr.lab.test."),
            ]
            let tls = values["tls"] ?? ("", "")
            let tcp = values["tcp"] ?? ("", "")
            let named = try NamedServer.start(
                in: lab, zone: "lab.test",
                records: [
                    "_sipinternaltls._tcp \(ClientViewFailoverTests.ttl) IN SRV \(tls.0)",
                    "_sip._tcp \(ClientViewFailoverTests.ttl) IN SRV \(tcp.0)",
                    "pool01 60 IN A 127.0.1.10", "pool02-dr 60 IN A 127.0.2.10",
                ])
            let unbound = try UnboundServer.start(in: lab, zone: "lab.test", upstreamPort: named.port)
            var yaml = SiteYAML(deployment: "clientview", domain: "lab.test")
            yaml.incidentLeads = ["alice", "bob"]
            yaml.dns = [
                "zone: lab.test", "servers: [\"\(named.address)\"]", "key: \(named.keyPath)", "verify_timeout: 10s",
                "client_view: clients", "records:",
                "  - { name: _sipinternaltls._tcp, type: SRV, ttl: \(ClientViewFailoverTests.ttl), primary: \"\(tls.0)\", secondary: \"\(tls.1)\" }",
                "  - { name: _sip._tcp, type: SRV, ttl: \(ClientViewFailoverTests.ttl), primary: \"\(tcp.0)\", secondary: \"\(tcp.1)\" }",
            ]
            yaml.health = [
                "timeout: 5s", "probes:",
                "  - { name: clients, site: secondary, client_view: { resolver: \"\(unbound.address)\", srv: _sipinternaltls._tcp.lab.test }, ca_file: \(authority.certificatePath) }",
            ]
            let site = try yaml.write(in: lab)
            return ClientLab(
                lab: lab, named: named, unbound: unbound, primary: primary, secondary: secondary, site: site,
                state: lab.file("state"))
        }
    }

    @Test("the report gives the client-visible recovery beside the authoritative change, explained by the TTL")
    func clientVisibleRecovery() async throws {
        let lab = try ClientLab.start(prefix: "client-view-failover")
        defer { lab.stop() }
        let state = ["--state", lab.state]

        let plan = try await standby.run(["plan", lab.site] + state, in: lab.lab)
        #expect(plan.status == 0, "\(plan)")
        #expect(plan.stdout.contains("dns/client-view"), "stage 2 ends with the clients' view: \(plan)")

        // Clients look first: the resolver caches the primary's record. The cache was filled
        // between `lookedAt` and the end of this command.
        let lookedAt = Date()
        let health = try await standby.run(["health", lab.site, "--json"] + state, in: lab.lab)
        let filledBy = Date()
        #expect(health.stdout.contains("clients still reach the primary pool"), "\(health)")

        let failoverStarted = Date()
        let failover = try await standby.run(
            ["failover", lab.site, "--declare", "red flooded", "--lead", "alice", "--yes"] + state, in: lab.lab)
        let failoverEnded = Date()
        #expect(failover.status == 0, "\(failover)")
        let served = try LabTool.dig("127.0.0.1", lab.named.port, "_sipinternaltls._tcp.lab.test.", "SRV")
        #expect(served == ["0 0 \(lab.secondary.tlsPort) pool02-dr.lab.test."], "\(served)")

        let report = try await standby.run(["report", lab.site, "--json"] + state, in: lab.lab)
        #expect(report.status == 0, "\(report)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        let client = try #require(object["clientVisible"] as? [String: Any], "\(report.stdout)")
        let authoritative = try #require(client["authoritativeSeconds"] as? Double)
        let visible = try #require(client["clientVisibleSeconds"] as? Double)
        let delay = try #require(client["cacheDelaySeconds"] as? Double)
        #expect(client["ttl"] as? Int == Self.ttl, "\(client)")
        #expect(client["srv"] as? String == "_sipinternaltls._tcp.lab.test", "\(client)")
        #expect(abs(visible - authoritative - delay) < 0.001)
        // The cached answer expires TTL seconds after the cache was filled (unbound counts whole
        // seconds: up to one more). The run waited for it: it cannot end before, and the wait
        // after the change is at most the TTL and at least what was left of it when the run ended.
        let expiresNoSoonerThan = lookedAt.addingTimeInterval(Double(Self.ttl))
        #expect(failoverEnded >= expiresNoSoonerThan.addingTimeInterval(-0.1), "the run waited for the cache")
        #expect(delay <= Double(Self.ttl) + 1.2, "delay \(delay) s")
        #expect(delay >= expiresNoSoonerThan.timeIntervalSince(failoverEnded) - 0.1, "delay \(delay) s")
        // The change came in the failover command, which ended once clients saw it.
        let leftInCache = expiresNoSoonerThan.timeIntervalSince(failoverStarted)
        #expect(delay >= leftInCache - Double(failoverEnded.timeIntervalSince(failoverStarted)) - 0.1)
        print(
            "client-visible recovery: authoritative \(authoritative) s, client-visible \(visible) s, delay \(delay) s, TTL \(Self.ttl) s; the cache was filled \(failoverStarted.timeIntervalSince(filledBy)) s before the failover started"
        )

        let text = try await standby.run(["report", lab.site] + state, in: lab.lab)
        #expect(text.stdout.contains("Client-visible recovery (_sipinternaltls._tcp.lab.test through the resolver)"))
        #expect(text.stdout.contains("its TTL (\(Self.ttl) s)"), "\(text.stdout)")
    }
}
