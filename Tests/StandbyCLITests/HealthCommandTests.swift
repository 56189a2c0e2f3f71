import Foundation
import StandbyLab
import Testing

/// `standby health` through the built binary against kamailio on loopback.
@Suite("standby health", .tags(.server), .serialized)
struct HealthCommandTests {
    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    /// A site whose primary is kamailio (SIP OPTIONS over UDP and TCP, a TCP connect) and whose
    /// secondary is a port nobody listens on.
    static func site(_ lab: LabDirectory, sip: SIPServer, webhook: String? = nil) throws -> String {
        var site = SiteYAML(deployment: "healthtest")
        site.health = ["interval: 200ms", "fall: 2", "rise: 1", "timeout: 1s"]
        if let webhook { site.health.append("webhooks: [\"\(webhook)\"]") }
        site.health += [
            "probes:",
            "  - { name: fe-sip, sip_options: \"\(sip.uri("udp"))\", site: primary }",
            "  - { name: fe-sip-tcp, sip_options: \"\(sip.uri("tcp"))\", site: primary }",
            "  - { name: fe-tcp, tcp: \"127.0.0.1:\(sip.port)\", site: primary }",
            "  - { name: dr-sip, sip_options: \"sip:127.0.0.1:9;transport=tcp\", site: secondary }",
        ]
        return try site.write(in: lab)
    }

    @Test("one round: a table, exit 0 while the primary is up, exit 1 with the reason once it is down")
    func once() async throws {
        let lab = try LabDirectory(prefix: "standby-cli-health")
        defer { lab.remove() }
        let sip = try SIPServer.start(in: lab)
        let site = try Self.site(lab, sip: sip)

        let up = try await standby.run(["health", site], in: lab)
        #expect(up.status == 0, "\(up)")
        #expect(up.stdout.contains("PROBE") && up.stdout.contains("fe-sip-tcp"), "\(up)")
        #expect(up.stdout.contains("200 OK over UDP"), "\(up)")
        #expect(up.stdout.contains("primary: up   secondary: unreachable"), "\(up)")

        let json = try await standby.run(["health", site, "--json"], in: lab)
        #expect(json.status == 0, "\(json)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["primary"] as? String == "up")
        #expect((object?["results"] as? [[String: Any]])?.count == 4)

        sip.stop()
        let down = try await standby.run(["health", site], in: lab)
        #expect(down.status == 1, "\(down)")
        #expect(down.stdout.contains("primary: unreachable"), "\(down)")
        #expect(down.stdout.contains("refused"), "\(down)")
    }

    @Test("--watch records results and transitions in the state directory")
    func watch() async throws {
        let lab = try LabDirectory(prefix: "standby-cli-health")
        defer { lab.remove() }
        let sip = try SIPServer.start(in: lab)
        defer { sip.stop() }
        let site = try Self.site(lab, sip: sip)
        let state = try lab.directory("state")
        let watched = try await standby.run(["health", site, "--watch", "--rounds", "3", "--state", state], in: lab)
        #expect(watched.status == 0, "\(watched)")
        #expect(watched.stdout.contains("site primary: unknown -> up"), "\(watched)")
        #expect(watched.stdout.contains("site secondary: unknown -> unreachable"), "\(watched)")
        #expect(FileManager.default.fileExists(atPath: state + "/health.sqlite"))
    }
}
