import Foundation
import Logging
import StandbyCore
import StandbyLab
import Testing

@Suite("drill runner and failback run")
struct DrillAndFailbackTests {
    static let services = """
              - name: core
                tier: core
                priority: 1
                roles: [front-end]
                backup_sets: [rtc-db]
                steps:
                  - { restore: rtc-db, to: LAB/production/rtc, drill: true }
                  - { name: rehearse, exec: [sh, -c, "echo \\"$1 $2\\" >> LAB/effects", sh, "{{drill}}", "{{restored.rtc-db}}"], drill: true }
                  - { name: start, exec: [sh, -c, "echo production >> LAB/production-started"] }
                  - { name: rehome, manual: Re-home the users, drill: true }
                failback_steps:
                  - { name: quiesce, exec: [sh, -c, "echo quiesce {{drill}} >> LAB/failback"] }
                  - { name: start-primary, exec: [sh, -c, "echo start-primary >> LAB/failback"] }
        """

    static let sets = """
              - { name: rtc-db, kind: database, source: "file:///srv/rtc.bak", rpo: 24h, failback_source: "file:///srv/secondary/rtc.bak" }
        """

    @Test("a drill runs only drill steps, with {{drill}} = true, restores into the drill directory, and cleans up")
    func drillRunsDrillSteps() async throws {
        let lab = try LabDirectory(prefix: "drill-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.services, backupSets: Self.sets)
        let fake = FakeModules(versions: [
            "rtc-db": SetVersionInfo(set: "rtc-db", version: "7", capturedAt: Date(), verifiedAt: Date())
        ])
        let runner = DrillRunner(
            topology: fixture.topology, log: DrillLog(store: fixture.journal.store), stateDirectory: fixture.state,
            modules: fake.modules, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let report = try await runner.run(lead: "alice")
        #expect(report.drill.succeeded == true, "\(report.text)")
        #expect(report.stages.map(\.name) == ["restore", "steps", "dns-check", "cleanup"])
        #expect(report.stages.map(\.state) == [.succeeded, .succeeded, .skipped, .succeeded])

        let drillDirectory = fixture.state.file("drills/\(report.drill.id ?? 0)")
        let effects = try String(contentsOfFile: lab.file("effects"), encoding: .utf8)
        #expect(effects == "true \(drillDirectory)/restore/rtc-db/rtc-db.bak\n")
        #expect(!FileManager.default.fileExists(atPath: lab.file("production-started")))
        #expect(!FileManager.default.fileExists(atPath: lab.file("production")))
        #expect(fake.log.allSatisfy { !$0.hasPrefix("restore") || $0.contains(drillDirectory) }, "\(fake.log)")
        #expect(!FileManager.default.fileExists(atPath: drillDirectory))
        #expect(try fixture.journal.store.lastSuccessfulDrill() != nil, "check counts it")
    }

    @Test("an unfinished drill is marked abandoned and its directory removed")
    func abandonedDrill() async throws {
        let lab = try LabDirectory(prefix: "drill-abandoned")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.services, backupSets: Self.sets)
        let log = DrillLog(store: fixture.journal.store)
        let leftover = try lab.directory("state/drills/1")
        try lab.write("state/drills/1/partial", "half a restore")
        _ = try log.start(
            DrillRecord(
                id: nil, startedAt: Date(), finishedAt: nil, lead: "bob", succeeded: nil, summary: nil,
                deployment: "enginetest", directory: leftover, pid: 12345, host: "dub", failed: nil))
        let runner = DrillRunner(
            topology: fixture.topology, log: log, stateDirectory: fixture.state,
            modules: FakeModules(versions: [:]).modules,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let marked = try runner.cleanUpAbandoned()
        #expect(marked.count == 1)
        #expect(!FileManager.default.fileExists(atPath: leftover))
        let record = try #require(try log.report(id: 1))
        #expect(record.drill.succeeded == false)
        #expect(record.drill.failed?.contains("abandoned") == true)
        #expect(try fixture.journal.store.lastSuccessfulDrill() == nil)
    }

    @Test("failback: refused while the primary is down; then a failback run puts DNS back to the recorded values")
    func failbackRun() async throws {
        let lab = try LabDirectory(prefix: "failback-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.services, backupSets: Self.sets, dns: true)
        var topology = fixture.topology
        topology.health.probes[0].site = .primary
        topology.health.rise = 2
        topology.health.interval = TimeSpan(milliseconds: 10)
        let fake = FakeModules(
            versions: ["rtc-db": SetVersionInfo(set: "rtc-db", version: "7", capturedAt: Date(), verifiedAt: Date())],
            replicationFailure: "backup set rtc-db: its failback_source cannot be read")
        let engine = FailoverEngine(
            topology: topology, journal: fixture.journal, modules: fake.modules, stateDirectory: fixture.state,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })

        let none = try await engine.failbackPreflight(now: Date()) {
            HealthLine(probe: $0.name, verdict: "up", detail: "")
        }
        #expect(none.refusals.contains { $0.contains("no completed failover") }, "\(none.refusals)")

        // The manual step of the failover is confirmed by skipping it: the run completes.
        let now = try date("2026-11-25T23:00:00Z")
        let (run, outcome) = try await fixture.failover(engine, now: now)
        #expect(outcome != .done)
        _ = try engine.skip(target: "core/rehome", lead: "alice", reason: "done by hand")
        #expect(try await engine.execute(runId: run.id, now: now) == .done)

        let down = try await engine.failbackPreflight(now: now) {
            HealthLine(probe: $0.name, verdict: "down", detail: "")
        }
        #expect(down.refusals.contains { $0.contains("probe fe-secondary did not pass 2 times") }, "\(down.refusals)")
        #expect(down.probes.first?.detail.hasPrefix("0 of 2") == true)

        let preflight = try await engine.failbackPreflight(now: now) {
            HealthLine(probe: $0.name, verdict: "up", detail: "ok")
        }
        #expect(preflight.refusals.isEmpty, "\(preflight.refusals)")
        #expect(preflight.returnsFrom == run.id)
        #expect(preflight.reverseSets == ["rtc-db"])
        let dns = try #require(preflight.plan.stages.first { $0.kind == .dns }?.dnsChanges.first)
        #expect(dns.from == ["0 0 5061 pool02.example.test."])
        #expect(dns.to == ["0 0 5061 pool01.example.test."])

        let backId = FailoverEngine.newRunId(deployment: topology.deployment, now: now)
        let back = try engine.declareFailback(
            runId: backId, preflight: preflight, reason: "rebuilt", lead: "bob", declaredAt: now)
        #expect(back.direction == "failback")
        #expect(
            try fixture.journal.steps(runId: backId).map(\.stepId) == [
                "reverse/rtc-db", "core/quiesce", "core/start-primary", "final/rtc-db", "dns/cutover",
            ])
        // The reverse replication fails: the run halts there, naming the set and why.
        let halted = try await engine.execute(runId: backId, now: now)
        guard case .halted(let stepId, let message, _) = halted else {
            Issue.record("expected a halt, got \(halted)")
            return
        }
        #expect(stepId == "reverse/rtc-db")
        #expect(message.contains("backup set rtc-db: its failback_source cannot be read"), "\(message)")
        _ = try engine.skip(target: "reverse/rtc-db", lead: "bob", reason: "copied by hand")
        _ = try engine.skip(target: "final/rtc-db", lead: "bob", reason: "copied by hand")
        #expect(try await engine.execute(runId: backId, now: now) == .done)
        let lines = try String(contentsOfFile: lab.file("failback"), encoding: .utf8)
        #expect(lines == "quiesce false\nstart-primary\n")
        #expect(fake.log.last == "dns _sipinternaltls._tcp.example.test.")

        let again = try await engine.failbackPreflight(now: now) {
            HealthLine(probe: $0.name, verdict: "up", detail: "")
        }
        #expect(again.refusals.contains { $0.contains("already returned from failover") }, "\(again.refusals)")
    }
}

@Suite("drill DNS stages on a real BIND", .tags(.server), .serialized)
struct DrillDNSTests {
    @Test("the DNS check changes nothing; the drill zone is cut over and back")
    func dnsStages() async throws {
        let lab = try LabDirectory(prefix: "drill-dns")
        defer { lab.remove() }
        let named = try NamedServer.start(
            in: lab, zone: "drill.test",
            records: [
                "_sipinternaltls._tcp 60 IN SRV 0 0 5061 pool01.drill.test.", "pool01 IN A 127.0.1.10",
                "pool02-dr IN A 127.0.2.10",
            ])
        defer { named.process.stop() }
        var site = SiteYAML(deployment: "drilldns", domain: "drill.test")
        site.secondary.offPeak = []
        site.services = []
        site.dns = [
            "zone: drill.test", "drill_zone: drill.test", "servers: [\"\(named.address)\"]", "key: \(named.keyPath)",
            "verify_timeout: 10s", "records:",
            #"  - { name: _sipinternaltls._tcp, type: SRV, ttl: 60, primary: "0 0 5061 pool01.drill.test.", secondary: "0 0 5061 pool02-dr.drill.test." }"#,
        ]
        try site.write(in: lab)
        let topology = try TopologyLoader.load(lab.file("site/site.yaml"), environment: ["HOME": lab.path])
        let state = StateDirectory(explicit: lab.file("state"), deployment: topology.deployment)
        let runner = DrillRunner(
            topology: topology, log: DrillLog(store: try StateStore(directory: state)), stateDirectory: state,
            modules: FakeModules(versions: [:]).modules, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        )
        let report = try await runner.run(lead: "alice")
        #expect(report.drill.succeeded == true, "\(report.text)")
        let stages = Dictionary(uniqueKeysWithValues: report.stages.map { ($0.name, $0) })
        #expect(stages["dns-check"]?.state == .succeeded, "\(report.text)")
        #expect(stages["dns-check"]?.detail?.contains("nothing changed") == true)
        #expect(stages["dns-drill-zone"]?.state == .succeeded, "\(report.text)")
        #expect(stages["dns-drill-zone"]?.detail?.contains("over: ") == true)

        // Back where it started: a second drill's check passes again.
        let again = try await runner.run(lead: "alice")
        #expect(again.stages.first { $0.name == "dns-check" }?.state == .succeeded, "\(again.text)")
    }
}
