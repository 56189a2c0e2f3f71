import Foundation
import Logging
import StandbyCore
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The engine with the real modules against real servers on loopback: a backup served by nginx
/// and replicated into the store, BIND as the primary master and Knot as a secondary for the
/// DNS cutover, a TCP probe.
@Suite("failover with the real modules", .tags(.server))
struct FailoverLabTests {
    /// Both SIP records of example.test, the primary's and the secondary's pools.
    static let records = [
        #"  - { name: _sipinternaltls._tcp, type: SRV, ttl: 300, primary: "0 0 5061 pool01.example.test.", secondary: "0 0 5061 pool02.example.test." }"#,
        #"  - { name: _sip._tcp, type: SRV, ttl: 300, primary: "0 0 443 sip.example.test.", secondary: "0 0 443 sip-dr.example.test." }"#,
    ]

    /// The engine with the real modules over `lab`'s site.yaml and a state directory in `lab`.
    func wiredEngine(_ lab: LabDirectory) throws -> (Topology, StateDirectory, FailoverJournal, FailoverEngine) {
        let topology = try TopologyLoader.load(lab.file("site/site.yaml"), environment: ["HOME": lab.path])
        let state = StateDirectory(explicit: lab.file("state"), deployment: topology.deployment)
        let journal = FailoverJournal(store: try StateStore(directory: state))
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let engine = FailoverEngine(
            topology: topology, journal: journal,
            modules: .wired(topology: topology, stateDirectory: state, logger: logger), stateDirectory: state,
            logger: logger)
        return (topology, state, journal, engine)
    }

    @Test("planned failover: final pass, restore, exec on the restored file, probe, DNS on two servers")
    func labFailover() async throws {
        let lab = try LabDirectory(prefix: "engine-lab")
        defer { lab.remove() }
        let zone = "example.test"
        let knotPort = try KnotServer.reservePort()
        let named = try NamedServer.start(
            in: lab, zone: zone,
            records: [
                "_sipinternaltls._tcp 300 IN SRV 0 0 5061 pool01.example.test.",
                "_sip._tcp 300 IN SRV 0 0 443 sip.example.test.",
            ], notify: [knotPort])
        defer { named.stop() }
        let knot = try KnotServer.start(in: lab, zone: zone, primaryPort: named.port, port: knotPort)
        defer { knot.stop() }
        let www = try lab.directory("www")
        try FileManager.default.createDirectory(atPath: www + "/backups", withIntermediateDirectories: true)
        let backup = www + "/backups/rtc.bak"
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        try Data(bytes).write(to: URL(fileURLWithPath: backup))
        // Taken three hours ago at the primary: the data-loss window.
        let captured = Date(timeIntervalSinceNow: -3 * 3600).timeIntervalSince1970.rounded()
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSince1970: captured)], ofItemAtPath: backup)
        let nginx = try NginxServer.start(in: lab, serving: www)
        defer { nginx.stop() }

        var site = SiteYAML(deployment: "labtest", domain: "example.test")
        site.primary = .init(name: "east", pool: "pool01.example.test")
        site.secondary = .init(
            name: "west", pool: "pool02.example.test", offPeak: ["00:00-23:59"],
            standbyServers: ["{ host: 127.0.0.1, roles: [front-end] }"])
        site.backupSets = [
            "{ name: rtc-db, kind: database, source: \"\(nginx.url("backups/rtc.bak").absoluteString)\", schedule: { every: 4h }, rpo: 24h }"
        ]
        site.services = [
            SiteYAML.service(
                "core",
                steps: [
                    #"{ restore: rtc-db, to: "{{state}}/restore/rtc" }"#,
                    "{ name: load, exec: [cmp, \"{{restored.rtc-db}}\", \"\(backup)\"] }",
                    "{ name: validate, probe: web-secondary, timeout: 10s }",
                ], extra: ["backup_sets: [rtc-db]"])
        ]
        site.dns =
            [
                "zone: \(zone)", "servers: [\"\(named.address)\", \"\(knot.address)\"]", "key: \(named.keyPath)",
                "verify_timeout: 20s", "records:",
            ] + Self.records
        site.health = [
            "probes:", "  - { name: web-primary, tcp: \"127.0.0.1:\(nginx.port)\", site: primary }",
            "  - { name: web-secondary, tcp: \"127.0.0.1:\(nginx.port)\", site: secondary }",
        ]
        try site.write(in: lab)
        let (topology, state, journal, engine) = try wiredEngine(lab)

        let now = Date()
        let unreplicated = try await engine.preflight(scenario: "site-loss", now: now, planned: false)
        #expect(unreplicated.refusals.count == 1, "nothing replicated yet: \(unreplicated.refusals)")
        let preflight = try await engine.preflight(scenario: "site-loss", now: now, planned: true)
        #expect(preflight.refusals.isEmpty, "\(preflight.refusals)")
        #expect(
            preflight.evidence.contains { $0.probe == "web-primary" && $0.verdict == "up" }, "\(preflight.evidence)")
        let window = try #require(preflight.sets.first?.lossWindowSeconds)
        #expect(abs(window - (now.timeIntervalSince1970 - captured)) < 2, "window \(window)")

        let runId = FailoverEngine.newRunId(deployment: topology.deployment, now: now)
        let run = try engine.declare(
            runId: runId, preflight: preflight, reason: "planned move", lead: "alice", planned: true, declaredAt: now)
        let outcome = try await engine.execute(runId: run.id, now: now)
        #expect(outcome == .done, "\(outcome)")
        let steps = try journal.steps(runId: run.id)
        #expect(steps.map(\.stepId) == ["core/restore-rtc-db", "core/load", "core/validate", "dns/cutover"])
        for step in steps { #expect(step.state == .succeeded, "\(step.stepId): \(step.error ?? "")") }

        // Clients now find the secondary pool on both authoritative servers.
        for (host, port) in [(named.host, named.port), (knot.host, knot.port)] {
            let deadline = ContinuousClock.now + .seconds(20)
            var answer: [String] = []
            repeat {
                answer = try LabTool.dig(host, port, "_sipinternaltls._tcp.\(zone)", "SRV")
                if answer == ["0 0 5061 pool02.example.test."] { break }
                try await Task.sleep(for: .milliseconds(50))
            } while ContinuousClock.now < deadline
            #expect(answer == ["0 0 5061 pool02.example.test."], "\(host):\(port)")
        }
        let finished = try #require(try journal.run(id: run.id))
        let report = RunReport(
            run: finished, steps: steps, sets: try journal.sets(runId: run.id),
            decisions: try journal.decisions(runId: run.id), now: Date())
        #expect(report.dnsReplaced.map(\.values) == [["0 0 5061 pool01.example.test."], ["0 0 443 sip.example.test."]])
        #expect(report.sets.first?.restoredTo?.hasPrefix(state.path + "/restore/rtc") == true)
        #expect(report.sets.first?.lossWindowSeconds.map { abs($0 - window) < 2 } == true)

        // A controller killed between the DNS update and its commit leaves the step running: the
        // compare-and-swap runs again, finds the records moved, verifies, and keeps the values
        // failback needs (the primary's, not the ones it finds).
        var dnsStep = try #require(steps.last)
        dnsStep.state = .running
        try journal.update(dnsStep)
        var reopened = finished
        reopened.state = .running
        try journal.update(reopened)
        #expect(try await engine.execute(runId: run.id, now: Date()) == .done)
        let rerun = try #require(try journal.steps(runId: run.id).last)
        #expect(rerun.state == .succeeded)
        #expect(rerun.attempts == 2)
        #expect(rerun.output?.contains("already at their targets") == true, "\(rerun.output ?? "")")
        let again = try #require(try journal.run(id: run.id))
        #expect(again.dnsReplaced?.contains("pool01.example.test.") == true, "\(again.dnsReplaced ?? "")")
        #expect(again.dnsReplaced?.contains("pool02") == false)
    }

    @Test("a DNS record someone else changed: the cutover is refused, nothing changes, the run halts")
    func dnsPrerequisiteRefused() async throws {
        let lab = try LabDirectory(prefix: "engine-refused")
        defer { lab.remove() }
        let zone = "example.test"
        let named = try NamedServer.start(
            in: lab, zone: zone,
            records: [
                "_sipinternaltls._tcp 300 IN SRV 0 0 5061 pool01.example.test.",
                "_sip._tcp 300 IN SRV 0 0 443 sip.example.test.",
            ])
        defer { named.stop() }
        var site = SiteYAML(deployment: "refused", domain: "example.test")
        site.primary = .init(name: "east", pool: "pool01.example.test")
        site.secondary = .init(name: "west", pool: "pool02.example.test")
        site.services = []
        site.dns =
            ["zone: \(zone)", "servers: [\"\(named.address)\"]", "key: \(named.keyPath)", "records:"] + Self.records
        try site.write(in: lab)
        // Another administrator points _sip._tcp somewhere else before the failover.
        try lab.write(
            "update.txt",
            "server \(named.host) \(named.port)\nzone \(zone)\nupdate delete _sip._tcp.\(zone). SRV\n"
                + "update add _sip._tcp.\(zone). 300 SRV 0 0 443 elsewhere.example.test.\nsend\n")
        let changed = try LabTool.run(
            try Programs.locate("nsupdate", package: "bind9-dnsutils"), ["-k", named.keyPath, lab.file("update.txt")])
        #expect(changed.status == 0, "\(changed.output)")

        let (topology, _, journal, engine) = try wiredEngine(lab)
        let now = Date()
        let preflight = try await engine.preflight(scenario: "site-loss", now: now, planned: false)
        let run = try engine.declare(
            runId: FailoverEngine.newRunId(deployment: topology.deployment, now: now), preflight: preflight,
            reason: "site lost", lead: "alice", planned: false, declaredAt: now)
        let outcome = try await engine.execute(runId: run.id, now: now)
        guard case .refused(let stepId, let message) = outcome else {
            Issue.record("expected a refusal, got \(outcome)")
            return
        }
        #expect(stepId == "dns/cutover")
        #expect(message.contains("elsewhere.example.test."), "the error shows what the server serves now: \(message)")
        let step = try #require(try journal.steps(runId: run.id).last)
        #expect(step.attempts == 1, "a refused prerequisite is not retried")
        #expect(try journal.run(id: run.id)?.state == .halted)
        // Nothing changed: neither record moved.
        #expect(
            try LabTool.dig(named.host, named.port, "_sipinternaltls._tcp.\(zone)", "SRV") == [
                "0 0 5061 pool01.example.test."
            ])
        #expect(
            try LabTool.dig(named.host, named.port, "_sip._tcp.\(zone)", "SRV") == ["0 0 443 elsewhere.example.test."])
    }
}
