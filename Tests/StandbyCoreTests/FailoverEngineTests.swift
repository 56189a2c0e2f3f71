import Foundation
import Logging
import StandbyCore
import StandbyLab
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stand-ins for the modules that land later, recording what the engine asked of them.
final class FakeModules: BackupCatalog, Restorer, HTTPCaller, ProbeWaiter, DNSCutting, HealthEvidence, Sendable {
    let versions: [String: SetVersionInfo]
    let calls = Mutex<[String]>([])
    let httpStatus: Int
    /// What `replicate` throws, when it should fail (a failback_source that cannot be read).
    let replicationFailure: String?

    init(versions: [String: SetVersionInfo], httpStatus: Int = 200, replicationFailure: String? = nil) {
        self.versions = versions
        self.httpStatus = httpStatus
        self.replicationFailure = replicationFailure
    }

    var log: [String] { calls.withLock { $0 } }
    func note(_ text: String) { calls.withLock { $0.append(text) } }

    func newestVerified(set: String) async throws -> SetVersionInfo? { versions[set] }
    func finalPass(sets: [String]) async throws { note("final-pass \(sets.joined(separator: ","))") }
    func replicate(set: String, sources: [String]) async throws -> SetVersionInfo? {
        note("replicate \(set) \(sources.joined(separator: ","))")
        if let replicationFailure { throw FailoverError(.stepFailed, replicationFailure) }
        return versions[set]
    }
    func restore(set: String, version: String, to directory: String) async throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/\(set).bak"
        try Data("backup \(set) \(version)".utf8).write(to: URL(fileURLWithPath: path))
        note("restore \(set) \(version) \(directory)")
        return path
    }
    func call(method: String, url: String, headers: [String: String], body: String?, timeout: Duration) async throws
        -> HTTPReply
    {
        note("http \(method) \(url) \(body ?? "")")
        return HTTPReply(status: httpStatus, body: "ok")
    }
    func waitUntilPassing(_ probe: ProbeSpec, timeout: Duration) async throws -> String {
        note("probe \(probe.name)")
        return "probe \(probe.name) passed"
    }
    func cutover(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String) async throws
        -> DNSCutoverResult
    {
        note("dns \(changes.map(\.name).joined(separator: ","))")
        return DNSCutoverResult(
            replaced: changes.map { ReplacedRecord(name: $0.name, type: $0.type, ttl: $0.ttl, values: $0.from) },
            verifiedOn: settings.servers, log: "swapped \(changes.count) record sets")
    }
    /// What the DNS preflight throws, if anything (a missing key, an unreachable server).
    let dnsPreflightError = Mutex<FailoverError?>(nil)
    func preflight(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String) async throws
        -> String
    {
        note("dns-preflight \(changes.map(\.name).joined(separator: ","))")
        if let error = dnsPreflightError.withLock({ $0 }) { throw error }
        return "dry run: the key is accepted"
    }
    func primaryEvidence(_ topology: Topology) async -> [HealthLine] {
        [HealthLine(probe: "fe-sip", verdict: "down", detail: "no answer for 3 intervals")]
    }

    var modules: FailoverModules {
        FailoverModules(catalog: self, restorer: self, http: self, probes: self, dns: self, health: self)
    }
}

struct EngineFixture {
    let lab: LabDirectory
    let topology: Topology
    let state: StateDirectory
    let journal: FailoverJournal

    init(_ lab: LabDirectory, services: String, backupSets: String = "", dns: Bool = false) throws {
        self.lab = lab
        var site = SiteYAML(deployment: "enginetest", domain: "example.test")
        site.secondary.timezone = "Europe/Dublin"
        site.secondary.pool = "pool02.example.test"
        site.backupSets = backupSets.split(separator: "\n").map {
            String($0.drop { $0 == " " }.dropFirst(2))
        }
        site.services = SiteYAML.services(yaml: services.replacingOccurrences(of: "LAB", with: lab.path))
        if dns {
            site.dns = [
                "zone: example.test", #"servers: ["127.0.0.1:5300", "127.0.0.1:5301"]"#,
                "key: /nonexistent/failover.key",
                "records:",
                #"  - { name: _sipinternaltls._tcp, type: SRV, ttl: 300, primary: "0 0 5061 pool01.example.test.", secondary: "0 0 5061 pool02.example.test." }"#,
            ]
        }
        site.health = ["probes:", #"  - { name: fe-secondary, tcp: "127.0.0.1:5061", site: secondary }"#]
        site.incidentLeads = ["alice", "bob"]
        try site.write(in: lab)
        topology = try TopologyLoader.load(lab.file("site/site.yaml"), environment: ["HOME": lab.path])
        state = StateDirectory(explicit: lab.file("state"), deployment: topology.deployment)
        journal = FailoverJournal(store: try StateStore(directory: state))
    }

    func engine(_ modules: FailoverModules, progress: @escaping @Sendable (String) -> Void = { _ in }) -> FailoverEngine
    {
        FailoverEngine(
            topology: topology, journal: journal, modules: modules, stateDirectory: state,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, progress: progress)
    }

    /// Preflight, declaration and execution, as `standby failover --yes` does.
    func failover(_ engine: FailoverEngine, now: Date) async throws -> (FailoverRun, FailoverEngine.Outcome) {
        let runId = FailoverEngine.newRunId(deployment: topology.deployment, now: now)
        let held = try journal.takeLease(
            FailoverLease(
                deployment: topology.deployment, runId: runId, lead: "alice", pid: 1, host: "test", since: now))
        #expect(held == nil)
        let preflight = try await engine.preflight(scenario: "site-loss", now: now, planned: false)
        let run = try engine.declare(
            runId: runId, preflight: preflight, reason: "lost", lead: "alice", planned: false, declaredAt: now)
        return (run, try await engine.execute(runId: runId, now: now))
    }
}

func date(_ text: String) throws -> Date {
    try #require(ISO8601DateFormatter().date(from: text))
}

@Suite("failover engine")
struct FailoverEngineTests {
    @Test("restore, exec with variables, http, probe, DNS: results recorded, data-loss windows reported")
    func everyStepKind() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    backup_sets: [rtc-db]
                    steps:
                      - { restore: rtc-db, to: LAB/restore/rtc }
                      - { name: load, exec: [sh, -c, "echo \\"$1 $2 $3 $4 $SECRET_TOKEN\\" > LAB/loaded", sh, "{{restored.rtc-db}}", "{{deployment}}", "{{secondary_pool}}", "{{run}}"], shell: false, env: { SECRET_TOKEN: "s3cr3t-value" } }
                      - { name: echo-secret, exec: [sh, -c, "echo token=$SECRET_TOKEN"], env: { SECRET_TOKEN: "s3cr3t-value" } }
                      - { name: notify, http: "https://hooks.example.test/{{deployment}}/failover", body: "run {{run}} on {{primary_pool}}" }
                      - { name: validate, probe: fe-secondary }
                """,
            backupSets: """
                  - { name: rtc-db, kind: database, source: "https://red.example.test/rtc.bak", schedule: { every: 4h }, rpo: 24h }
                """,
            dns: true)
        let now = try date("2026-11-25T23:00:00Z")
        let captured = try date("2026-11-25T19:00:00Z")
        let fake = FakeModules(versions: [
            "rtc-db": SetVersionInfo(set: "rtc-db", version: "v42", capturedAt: captured, verifiedAt: captured)
        ])
        let engine = fixture.engine(fake.modules)
        let preflight = try await engine.preflight(scenario: "site-loss", now: now, planned: false)
        #expect(preflight.refusals.isEmpty)
        #expect(preflight.evidence.first?.verdict == "down")
        #expect(abs((preflight.sets.first?.lossWindowSeconds ?? 0) - 4 * 3600) < 0.001)

        let (run, outcome) = try await fixture.failover(engine, now: now)
        #expect(outcome == .done)
        let loaded = try String(contentsOfFile: lab.file("loaded"), encoding: .utf8)
        #expect(
            loaded == "\(lab.path)/restore/rtc/rtc-db.bak enginetest pool02.example.test \(run.id) s3cr3t-value\n")
        #expect(
            fake.log.contains(
                "http POST https://hooks.example.test/enginetest/failover run \(run.id) on pool01.example.test"))
        #expect(fake.log.contains("probe fe-secondary"))
        #expect(fake.log.contains("dns _sipinternaltls._tcp.example.test."))

        let steps = try fixture.journal.steps(runId: run.id)
        #expect(
            steps.map(\.stepId) == [
                "core/restore-rtc-db", "core/load", "core/echo-secret", "core/notify", "core/validate", "dns/cutover",
            ])
        #expect(steps.allSatisfy { $0.state == .succeeded })
        // Secrets go to programs through the environment, never into the journal.
        let echoed = try #require(steps.first { $0.stepId == "core/echo-secret" })
        #expect(echoed.output == "token=***\n")
        let finished = try #require(try fixture.journal.run(id: run.id))
        #expect(finished.dnsReplaced?.contains("0 0 5061 pool01.example.test.") == true)

        let report = RunReport(
            run: finished, steps: steps, sets: try fixture.journal.sets(runId: run.id),
            decisions: try fixture.journal.decisions(runId: run.id), now: now)
        #expect(report.sets.first?.version == "v42")
        #expect(report.sets.first?.restoredTo == "\(lab.path)/restore/rtc/rtc-db.bak")
        #expect(report.dnsReplaced.first?.values == ["0 0 5061 pool01.example.test."])
        #expect(report.recoverySeconds != nil)
        #expect(report.decisions.map(\.kind) == ["declare"])
    }

    @Test("preflight refuses when a core set has no verified version; unwired modules say so")
    func refusesWithoutVerifiedCopy() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    backup_sets: [rtc-db]
                    steps:
                      - { restore: rtc-db, to: LAB/restore }
                """,
            backupSets: """
                  - { name: rtc-db, kind: database, source: "https://red.example.test/rtc.bak", schedule: { every: 4h }, rpo: 24h }
                """)
        let now = Date()
        let none = try await fixture.engine(FakeModules(versions: [:]).modules)
            .preflight(scenario: "site-loss", now: now, planned: false)
        #expect(none.refusals == ["core backup set rtc-db: no verified version in the store"])
    }

    @Test("an exec step past its timeout is killed with its whole process group")
    func timeoutKillsProcessGroup() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: hang, exec: [sh, -c, "sleep 60 & echo $! > LAB/child.pid; echo waiting; wait"], timeout: 10s }
                """)
        let started = ContinuousClock.now
        let (run, outcome) = try await fixture.failover(fixture.engine(FakeModules(versions: [:]).modules), now: Date())
        // Cut at its timeout, not left to run its 60 s sleep (a behaviour bound, not a speed goal).
        #expect(ContinuousClock.now - started < .seconds(55))
        guard case .halted(let stepId, let message, let output) = outcome else {
            Issue.record("expected a halt, got \(outcome)")
            return
        }
        #expect(stepId == "core/hang")
        #expect(message.contains("timed out"))
        #expect(output.contains("waiting"))
        let child = try #require(
            pid_t(
                try String(contentsOfFile: lab.file("child.pid"), encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines)))
        // The background sleep was in the step's process group: it is gone (or a zombie being reaped).
        let deadline = ContinuousClock.now + .seconds(5)
        while kill(child, 0) == 0, ContinuousClock.now < deadline {
            if let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8), stat.contains(") Z ") {
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let stat = (try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)) ?? ""
        #expect(kill(child, 0) != 0 || stat.contains(") Z "), "the step's child \(child) still runs")
        #expect(try fixture.journal.run(id: run.id)?.state == .halted)
    }

    @Test("retries back off, doubling the delay, and the output of the last attempt is kept bounded")
    func retriesAndBoundedOutput() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: noisy, exec: [sh, -c, "date +%s.%N >> LAB/attempts; head -c 200000 /dev/zero | tr '\\\\0' x; echo; echo the-end; exit 2"], retries: 2, retry_delay: 200ms }
                """)
        let (run, outcome) = try await fixture.failover(fixture.engine(FakeModules(versions: [:]).modules), now: Date())
        guard case .halted = outcome else {
            Issue.record("expected a halt, got \(outcome)")
            return
        }
        let times = try String(contentsOfFile: lab.file("attempts"), encoding: .utf8)
            .split(separator: "\n").compactMap { Double($0) }
        try #require(times.count == 3)
        #expect(times[1] - times[0] >= 0.19)
        #expect(times[2] - times[1] >= 0.39, "the second delay doubles")
        let step = try #require(try fixture.journal.steps(runId: run.id).first)
        #expect(step.attempts == 3)
        #expect(step.state == .failed)
        #expect(step.error?.contains("exit 2") == true)
        let output = try #require(step.output)
        #expect(output.utf8.count <= 64 * 1024 + 100)
        #expect(output.hasSuffix("the-end\n"))
    }

    @Test("a program named by a relative path runs from beside site.yaml, in its working directory")
    func relativeProgram() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        try lab.write(
            "site/scripts/hello",
            "#!/bin/sh\necho \"hello $1 from $(pwd)\" > LAB/hello.txt\n".replacingOccurrences(
                of: "LAB", with: lab.path), mode: 0o755)
        _ = try lab.directory("work")
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: hello, exec: [scripts/hello, "{{deployment}}"], cwd: LAB/work }
                """)
        let (_, outcome) = try await fixture.failover(fixture.engine(FakeModules(versions: [:]).modules), now: Date())
        #expect(outcome == .done)
        #expect(
            try String(contentsOfFile: lab.file("hello.txt"), encoding: .utf8)
                == "hello enginetest from \(lab.path)/work\n")
    }

    @Test("an unknown variable fails the step, naming it")
    func unknownVariable() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: use, exec: [echo, "{{restored.rtc-db}}"] }
                """)
        let (_, outcome) = try await fixture.failover(fixture.engine(FakeModules(versions: [:]).modules), now: Date())
        guard case .halted(_, let message, _) = outcome else {
            Issue.record("expected a halt, got \(outcome)")
            return
        }
        #expect(message.contains("{{restored.rtc-db}}"))
        #expect(message.contains("no earlier step of this run restored rtc-db"))
    }

    @Test("off-peak waits use the secondary's time zone; a decision runs a service now")
    func offPeakInSecondaryTimeZone() async throws {
        let lab = try LabDirectory(prefix: "engine-core")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo a >> LAB/effects"] }
                  - name: conf
                    tier: optional
                    priority: 5
                    roles: [front-end]
                    steps:
                      - { name: start, exec: [sh, -c, "echo conf >> LAB/effects"] }
                  - name: archiving
                    tier: optional
                    priority: 6
                    depends_on: [conf]
                    roles: [front-end]
                    steps:
                      - { name: start, exec: [sh, -c, "echo archiving >> LAB/effects"] }
                """)
        let engine = fixture.engine(FakeModules(versions: [:]).modules)
        // Europe/Dublin in summer is UTC+1: 20:30 UTC is 21:30 local, before the window; 21:30 UTC is inside.
        let summerEvening = try date("2026-07-01T20:30:00Z")
        let (run, outcome) = try await fixture.failover(engine, now: summerEvening)
        guard case .waiting(let text) = outcome else {
            Issue.record("expected waiting, got \(outcome)")
            return
        }
        #expect(
            text.contains("wait for the off-peak window 22:00-05:00 at dub; next opens Wed 2026-07-01 22:00"), "\(text)"
        )
        let steps = try fixture.journal.steps(runId: run.id)
        #expect(steps.first { $0.stepId == "archiving/start" }?.waitingFor == "waits for conf (depends_on)")
        _ = try engine.runNow(service: "conf", lead: "bob", reason: "needed now")
        #expect(try await engine.execute(runId: run.id, now: summerEvening) != .done, "archiving still waits")
        #expect(try await engine.execute(runId: run.id, now: try date("2026-07-01T21:30:00Z")) == .done)
        #expect(try String(contentsOfFile: lab.file("effects"), encoding: .utf8) == "a\nconf\narchiving\n")
        let decisions = try fixture.journal.decisions(runId: run.id)
        #expect(decisions.map(\.kind) == ["declare", "override"])
        #expect(decisions.last?.lead == "bob")
        #expect(throws: FailoverError.self) { try engine.abort(lead: "mallory", reason: "no") }
    }
}
