import Foundation
import Logging
import StandbyLab
import Testing

@testable import StandbyProbes

/// The client's view of a cutover, on real servers: BIND serves lab.test, unbound caches it for
/// the clients, and two kamailio front ends stand for the primary pool (127.0.1.10) and the
/// secondary pool (127.0.2.10), each with a certificate for its pool's name.
@Suite(.tags(.server), .serialized) struct ClientViewTests {
    static let ttl: UInt32 = 4
    let runner = ProbeRunner(logger: Logger(label: "test.client-view"))

    struct Lab {
        let directory: LabDirectory
        let named: NamedServer
        let unbound: UnboundServer
        let primary: SIPServer
        let secondary: SIPServer
        let caFile: String

        func stop() {
            unbound.stop()
            named.stop()
            primary.stop()
            secondary.stop()
            directory.remove()
        }

        /// The SRV value pointing at `server` (its TLS port for `_sipinternaltls`, else UDP/TCP).
        static func value(_ server: SIPServer, pool: String, tls: Bool) -> String {
            "0 0 \(tls ? server.tlsPort : server.port) \(pool)."
        }

        /// The same swap the failover makes, by hand: nsupdate with the key and a prerequisite.
        func cutover(_ name: String, from: String, to: String) throws {
            let nsupdate = try Programs.locate("nsupdate", package: "bind9-dnsutils")
            let script = """
                server 127.0.0.1 \(named.port)
                zone lab.test
                prereq yxrrset \(name).lab.test. IN SRV \(from)
                update delete \(name).lab.test. IN SRV
                update add \(name).lab.test. \(ClientViewTests.ttl) IN SRV \(to)
                send

                """
            let run = try LabTool.run(nsupdate, ["-k", named.keyPath], input: script)
            #expect(run.status == 0, "nsupdate: \(run.output)")
        }
    }

    static func startLab() throws -> Lab {
        let directory = try LabDirectory(prefix: "standby-client-view")
        let authority = try LabCertificateAuthority.create(in: directory)
        let primary = try SIPServer.start(
            in: directory, authority: authority, host: "127.0.1.10", serverNames: ["pool01.lab.test"])
        let secondary = try SIPServer.start(
            in: directory, authority: authority, host: "127.0.2.10", serverNames: ["pool02-dr.lab.test"])
        let named = try NamedServer.start(
            in: directory, zone: "lab.test",
            records: [
                "_sipinternaltls._tcp \(ttl) IN SRV \(Lab.value(primary, pool: "pool01.lab.test", tls: true))",
                "_sip._tcp \(ttl) IN SRV \(Lab.value(primary, pool: "pool01.lab.test", tls: false))",
                "pool01 60 IN A 127.0.1.10", "pool02-dr 60 IN A 127.0.2.10",
            ])
        let unbound = try UnboundServer.start(in: directory, zone: "lab.test", upstreamPort: named.port)
        return Lab(
            directory: directory, named: named, unbound: unbound, primary: primary, secondary: secondary,
            caFile: authority.certificatePath)
    }

    static let sites: [String: ProbeSite] = ["pool01.lab.test": .primary, "pool02-dr.lab.test": .secondary]

    /// Before the cutover the view finds the primary; after it, the primary still, from the
    /// resolver's cache, until the TTL runs out; then the secondary. The time clients took to see
    /// the change, measured from the moment the authoritative server served it, is the TTL left
    /// in the cache then, within a second, and the cache was filled just before: the TTL.
    @Test(arguments: ["_sipinternaltls._tcp", "_sip._tcp"])
    func clientsSeeTheCutoverWhenTheCachedTTLRunsOut(_ name: String) async throws {
        let lab = try Self.startLab()
        defer { lab.stop() }
        let tls = name.hasPrefix("_sipinternaltls")
        let target = try ClientViewTarget(resolver: lab.unbound.address, srv: "\(name).lab.test", sites: Self.sites)
        #expect(target.transport == (tls ? .tls : .tcp))
        let options = ProbeOptions(caFile: lab.caFile)

        // The first look fills the resolver's cache with the primary's record. unbound counts
        // time in whole seconds and drops an answer once the second after fill + TTL has begun:
        // filled 0.9 s into a second, it lives TTL + 0.1 s, so the TTL is what the test measures.
        while Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 1) < 0.88 {
            try await Task.sleep(for: .milliseconds(5))
        }
        let filledAt = ContinuousClock.now
        let before = try await runner.clientView(target, options: options, timeout: .seconds(10)).get()
        #expect(before.site == .primary, "\(before)")
        #expect(before.target == "pool01.lab.test." && before.address == "127.0.1.10", "\(before)")
        #expect(before.answered, "\(before)")
        #expect(before.detail.contains("200 OK over \(tls ? "TLS" : "TCP")"), "\(before)")
        #expect(before.ttl == Self.ttl, "\(before)")

        // The cutover, at once, so that the cache was filled just before it.
        try lab.cutover(
            name, from: Lab.value(lab.primary, pool: "pool01.lab.test", tls: tls),
            to: Lab.value(lab.secondary, pool: "pool02-dr.lab.test", tls: tls))
        let changedAt = ContinuousClock.now
        let served = try LabTool.dig("127.0.0.1", lab.named.port, "\(name).lab.test.", "SRV")
        #expect(served == [Lab.value(lab.secondary, pool: "pool02-dr.lab.test", tls: tls)], "\(served)")
        let leftInCache = Duration.seconds(Int(Self.ttl)) - filledAt.duration(to: changedAt)

        // The secondary's probe is down while clients reach the primary, up once they reach it.
        let secondaryProbe = Probe(
            name: "view", site: .secondary, target: .clientView(target), timeout: .seconds(5), options: options)
        var primaryViews = 0
        var reached: (view: ClientView, at: ContinuousClock.Instant)?
        while reached == nil && changedAt.duration(to: .now) < .seconds(Int(Self.ttl) + 5) {
            let at = ContinuousClock.now
            let result = await runner.run(secondaryProbe)
            if result.outcome == .up {
                #expect(result.detail.contains("the secondary pool"), "\(result.detail)")
                reached = (try await runner.clientView(target, options: options, timeout: .seconds(10)).get(), at)
            } else {
                #expect(result.detail.contains("clients still reach the primary pool"), "\(result.detail)")
                primaryViews += 1
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let (view, at) = try #require(reached, "the client view never reached the secondary pool")
        #expect(view.target == "pool02-dr.lab.test." && view.address == "127.0.2.10", "\(view)")
        #expect(view.answered, "\(view)")
        let clientVisible = changedAt.duration(to: at)
        let sinceFilled = filledAt.duration(to: at)
        print(
            "client view \(name): authoritative change to client-visible \(clientVisible), TTL \(Self.ttl) s, \(leftInCache) left in the cache at the change, \(sinceFilled) since the cache was filled, \(primaryViews) looks found the primary meanwhile"
        )
        #expect(primaryViews > 0)
        #expect(abs((clientVisible - leftInCache).timeInterval) <= 1.0, "\(clientVisible) vs \(leftInCache)")
        #expect(abs(sinceFilled.timeInterval - Double(Self.ttl)) <= 1.0, "\(sinceFilled)")
        #expect(abs(clientVisible.timeInterval - Double(Self.ttl)) <= 1.0, "\(clientVisible) after the change")

        // A probe of the primary's site now finds clients gone to the secondary.
        let asPrimary = await runner.run(
            Probe(name: "view", site: .primary, target: .clientView(target), timeout: .seconds(3), options: options))
        #expect(asPrimary.outcome == .down, "\(asPrimary.detail)")
        #expect(asPrimary.detail.contains("the secondary pool"), "\(asPrimary.detail)")
    }

    @Test func aResolverThatDoesNotAnswerIsAClearFailure() async throws {
        let port = try Ports.free()
        let target = try ClientViewTarget(resolver: "127.0.0.1:\(port)", srv: "_sip._tcp.lab.test")
        let started = ContinuousClock.now
        let result = await runner.clientView(target, timeout: .seconds(2))
        guard case .failure(let failure) = result else {
            Issue.record("a view through nothing: \(result)")
            return
        }
        #expect(failure.reason.contains("_sip._tcp.lab.test. SRV via 127.0.0.1:\(port)"), "\(failure)")
        #expect(started.duration(to: .now) < .seconds(4))
    }

    @Test func onlySIPServiceNamesAreAClientView() {
        #expect(throws: ProbeError.self) { try ClientViewTarget(resolver: "127.0.0.1:53", srv: "_ldap._tcp.lab.test") }
        #expect((try? ClientViewTarget(resolver: "127.0.0.1", srv: "_sip._tcp.lab.test"))?.resolver.port == 53)
    }
}
