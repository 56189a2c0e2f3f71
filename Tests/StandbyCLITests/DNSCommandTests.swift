import Foundation
import StandbyLab
import Testing

/// `standby dns show|switch|prepare` through the built binary, against named (primary) and knotd
/// (secondary) on loopback, cross-checked with dig.
@Suite("standby dns", .tags(.server), .serialized)
struct DNSCommandTests {
    static let zone = "contoso.test"
    static let names = ["_sipinternaltls._tcp", "_sip._tcp"]
    static let primary = ["0 0 5061 pool01.contoso.test.", "0 0 443 sip.contoso.test."]
    static let secondary = ["0 0 5061 pool02-dr.contoso.test.", "0 0 443 sip-dr.contoso.test."]

    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    /// named + knotd serving the primary values, and a site whose dns section points at them.
    struct DNSSite {
        let lab: LabDirectory
        let named: NamedServer
        let knot: KnotServer
        let site: String

        init(primaryValues: [String] = DNSCommandTests.primary, keyMode: Int = 0o600) throws {
            lab = try LabDirectory(prefix: "standby-cli-dns")
            let knotPort = try KnotServer.reservePort()
            named = try NamedServer.start(
                in: lab, zone: DNSCommandTests.zone,
                records: zip(DNSCommandTests.names, DNSCommandTests.primary).map { "\($0) 300 IN SRV \($1)" },
                notify: [knotPort])
            knot = try KnotServer.start(in: lab, zone: DNSCommandTests.zone, primaryPort: named.port, port: knotPort)
            let keyText = try String(contentsOfFile: named.keyPath, encoding: .utf8)
            try lab.write("keys/failover.key", keyText, mode: keyMode)
            var yaml = SiteYAML(deployment: "dnstest")
            yaml.dns =
                [
                    "zone: contoso.test", "servers: [\"\(named.address)\", \"\(knot.address)\"]",
                    "key: \(lab.file("keys/failover.key"))", "verify_timeout: 20s", "records:",
                ]
                + (0..<2).map { index in
                    "  - { name: \(DNSCommandTests.names[index]), type: SRV, ttl: 300, primary: \"\(primaryValues[index])\", secondary: \"\(DNSCommandTests.secondary[index])\" }"
                }
            yaml.incidentLeads = ["alice", "bob"]
            site = try yaml.write(in: lab)
        }

        func stop() {
            knot.stop()
            named.stop()
            lab.remove()
        }

        /// Both records on both servers, as dig sees them.
        func dig() throws -> [[String]] {
            try [(named.host, named.port), (knot.host, knot.port)].flatMap { host, port in
                try DNSCommandTests.names.map { try LabTool.dig(host, port, "\($0).\(DNSCommandTests.zone).", "SRV") }
            }
        }

        static func expected(_ values: [String]) -> [[String]] { (values + values).map { [$0] } }
    }

    @Test("show, dry run, switch to the secondary, a second switch (no-op), switch back")
    func switchAndBack() async throws {
        let site = try DNSSite()
        defer { site.stop() }

        let shown = try await standby.run(["dns", "show", site.site], in: site.lab)
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.components(separatedBy: " primary ").count - 1 == 4, "\(shown)")
        #expect(shown.stdout.contains(site.named.address) && shown.stdout.contains(site.knot.address))

        let dry = try await standby.run(["dns", "switch", site.site, "--to", "secondary", "--dry-run"], in: site.lab)
        #expect(dry.status == 0, "\(dry)")
        #expect(dry.stdout.contains("dry run"))
        #expect(try site.dig() == DNSSite.expected(Self.primary))

        let forward = try await standby.run(["dns", "switch", site.site, "--to", "secondary"], in: site.lab)
        #expect(forward.status == 0, "\(forward)")
        #expect(forward.stdout.contains("verified on 2 server"))
        #expect(try site.dig() == DNSSite.expected(Self.secondary))
        let after = try await standby.run(["dns", "show", site.site, "--json"], in: site.lab)
        #expect(after.status == 0)
        #expect(after.stdout.components(separatedBy: "\"points\" : \"secondary\"").count - 1 == 4, "\(after)")

        let again = try await standby.run(["dns", "switch", site.site, "--to", "secondary"], in: site.lab)
        #expect(again.status == 0, "\(again)")
        #expect(again.stdout.contains("nothing to do"))

        let back = try await standby.run(["dns", "switch", site.site, "--to", "primary", "--json"], in: site.lab)
        #expect(back.status == 0, "\(back)")
        #expect(back.stdout.contains("\"outcome\" : \"applied\""))
        #expect(try site.dig() == DNSSite.expected(Self.primary))
    }

    @Test("a record that no longer holds the expected value: exit 3, nothing changed, what each server serves")
    func stale() async throws {
        let site = try DNSSite(primaryValues: ["0 0 5061 pool-old.contoso.test.", Self.primary[1]])
        defer { site.stop() }
        let result = try await standby.run(["dns", "switch", site.site, "--to", "secondary"], in: site.lab)
        #expect(result.status == 3, "\(result)")
        #expect(result.stderr.contains("NXRRSET"))
        #expect(result.stderr.contains(site.named.address) && result.stderr.contains(site.knot.address))
        #expect(try site.dig() == DNSSite.expected(Self.primary))
    }

    @Test("prepare --ttl 60 lowers the TTLs on both servers; --restore puts 300 back")
    func prepare() async throws {
        let site = try DNSSite()
        defer { site.stop() }
        let lowered = try await standby.run(["dns", "prepare", site.site, "--ttl", "60"], in: site.lab)
        #expect(lowered.status == 0, "\(lowered)")
        // What the lower TTL saves clients: the 300 s the servers gave, less the new 60 s.
        #expect(
            lowered.stdout.contains(
                "_sip._tcp.\(Self.zone). SRV: TTL 300 s → 60 s: clients see a switch up to 240 s sooner"),
            "\(lowered)")
        #expect(try LabTool.digTTL(site.knot.host, site.knot.port, "_sip._tcp.\(Self.zone).", "SRV") == 60)
        let restored = try await standby.run(["dns", "prepare", site.site, "--restore"], in: site.lab)
        #expect(restored.status == 0, "\(restored)")
        #expect(restored.stdout.contains("TTL 60 s → 300 s: clients would see a switch no sooner"), "\(restored)")
        #expect(try LabTool.digTTL(site.knot.host, site.knot.port, "_sip._tcp.\(Self.zone).", "SRV") == 300)
        #expect(try site.dig() == DNSSite.expected(Self.primary))
        let usage = try await standby.run(["dns", "prepare", site.site], in: site.lab)
        #expect(usage.status == 2)
    }

    @Test("a key file readable by others is refused (exit 1), naming the file and its mode")
    func openKey() async throws {
        let site = try DNSSite(keyMode: 0o644)
        defer { site.stop() }
        let result = try await standby.run(["dns", "switch", site.site, "--to", "secondary"], in: site.lab)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("0644"))
        #expect(result.stderr.contains(site.lab.file("keys/failover.key")))
        #expect(try site.dig() == DNSSite.expected(Self.primary))
    }
}
