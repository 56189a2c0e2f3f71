import Foundation
import Testing

@testable import StandbyCore

/// `client_view` probes and `dns.client_view` as the loader reads them, the plan's stage 2 with
/// its validation, and the runbook's sheets for the same topology.
@Suite("client view and runbook in the topology")
struct ClientViewTopologyTests {
    static let clients =
        "    - { name: clients, site: secondary, client_view: { resolver: \"10.1.0.53\", srv: _sipinternaltls._tcp.fabrikam.com } }"
    static let probes = "    - { name: fe-secondary, tcp: \"mtl-fe01.fabrikam.com:5061\", site: secondary }"
    static let key = "  key: /nonexistent/fabrikam.key"

    static func site(clientView: String = "clients", probe: String = clients) throws -> String {
        try Fixture.minimal([
            (probes, probes + "\n" + probe), (key, key + "\n  client_view: \(clientView)"),
        ])
    }

    @Test func theProbeKnowsEachTargetsSiteAndStageTwoEndsWithIt() throws {
        let t = try topology(try Self.site())
        let probe = try #require(t.probe(named: "clients"))
        guard case .clientView(let resolver, let srv, let sites) = probe.check else {
            Issue.record("not a client_view probe: \(probe.check)")
            return
        }
        #expect(resolver == "10.1.0.53" && srv == "_sipinternaltls._tcp.fabrikam.com")
        #expect(sites == ["pool01.fabrikam.com.": .primary, "pool02-dr.fabrikam.com.": .secondary])
        #expect(probe.kind == "client_view")

        let plan = try Planner(topology: t).plan()
        let dns = try #require(plan.stages.first { $0.kind == .dns })
        #expect(dns.services.flatMap(\.steps).map(\.id) == ["dns/client-view"])
        #expect(dns.clientViewSRV == "_sipinternaltls._tcp.fabrikam.com" && dns.clientViewTTL == 300)
        // verify_timeout 60 s + the longest TTL 300 s + a minute.
        #expect(t.dns?.clientViewStep?.timeout == TimeSpan(seconds: 420))
        // A failback moves no client view: clients go back to the primary.
        let back = try Planner(topology: t).plan(direction: .failback)
        #expect(back.stages.first { $0.kind == .dns }?.services.isEmpty == true)
    }

    @Test func dnsClientViewMustNameASecondaryClientViewProbe() throws {
        let missing = diagnostics(try Self.site(clientView: "nope"))
        #expect(missing.contains { $0.message.contains("dns.client_view: 'nope' is not a probe") }, "\(missing)")
        let other = diagnostics(try Self.site(clientView: "fe-secondary"))
        #expect(other.contains { $0.message.contains("is a tcp probe; it must be a client_view probe") }, "\(other)")
        let primary = diagnostics(
            try Self.site(probe: Self.clients.replacingOccurrences(of: "site: secondary", with: "site: primary")))
        #expect(primary.contains { $0.message.contains("give it site: secondary") }, "\(primary)")
        let notSIP = diagnostics(
            try Self.site(probe: Self.clients.replacingOccurrences(of: "_sipinternaltls._tcp", with: "_ldap._tcp")))
        #expect(notSIP.contains { $0.message.contains("is not a SIP SRV name") }, "\(notSIP)")
    }

    @Test func theRunbookHasEveryStepAndTheDNSFallbackWithTheKeyPathOnly() throws {
        let t = try topology(try Self.site())
        let state = StateDirectory(explicit: "/srv/standby/state", deployment: t.deployment)
        let runbook = try Runbook.build(
            topology: t, site: "sites/fabrikam", stateDirectory: state, sets: [], drills: [], now: Date())
        let failover = try #require(runbook.procedures.first { $0.direction == .failover })
        let ids = failover.stages.flatMap(\.steps).map(\.id)
        let planned = try Planner(topology: t).plan().allSteps.map(\.step.id) + ["dns/cutover"]
        #expect(Set(ids) == Set(planned), "\(ids) vs \(planned)")
        let cutover = try #require(failover.stages.flatMap(\.steps).first { $0.id == "dns/cutover" })
        let script = try #require(cutover.byHand.first { $0.language == "nsupdate" }?.code)
        #expect(
            script.split(separator: "\n").map(String.init) == [
                "server 127.0.0.1 5353", "zone fabrikam.com",
                "prereq yxrrset _sipinternaltls._tcp.fabrikam.com. IN SRV 0 0 5061 pool01.fabrikam.com.",
                "prereq yxrrset _sip._tcp.fabrikam.com. IN SRV 0 0 443 sip.fabrikam.com.",
                "update delete _sipinternaltls._tcp.fabrikam.com. IN SRV",
                "update add _sipinternaltls._tcp.fabrikam.com. 300 IN SRV 0 0 5061 pool02-dr.fabrikam.com.",
                "update delete _sip._tcp.fabrikam.com. IN SRV",
                "update add _sip._tcp.fabrikam.com. 300 IN SRV 0 0 443 sip-dr.fabrikam.com.", "send",
            ])
        #expect(cutover.byHand.contains { $0.code == "nsupdate -k /nonexistent/fabrikam.key" })
        let html = runbook.html()
        #expect(html.contains("Stage 2: DNS cutover of fabrikam.com"))
        #expect(html.contains("dig @10.1.0.53 -p 53 _sipinternaltls._tcp.fabrikam.com SRV"))
    }
}
