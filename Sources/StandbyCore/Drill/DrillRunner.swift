import Foundation
import Logging
import StandbyDNS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `standby drill`: rehearses the site-loss failover without touching production.
///
/// 1. restore: every backup set's newest verified version from the store into the drill
///    directory (the store checks every chunk hash and every whole-file hash);
/// 2. steps: the steps marked `drill: true` (or a service's `drill_steps`), run by the failover
///    engine against a journal inside the drill directory, with `{{drill}}` = true, `{{state}}` =
///    the drill directory and every restore target redirected into it;
/// 3. dns-check: a no-op update on the real zone (see `DNSCutover.run(dryRun:)`): the key or
///    the GSS-TSIG account is accepted, may change the records, and they hold the primary values;
///    nothing changes;
/// 4. dns-drill-zone: when `dns.drill_zone` is set, the full cutover on that zone and back;
/// 5. cleanup: the drill directory is removed.
///
/// The caller holds the controller lock: a drill directory found at the start is a leftover of a
/// killed drill, removed, and that drill is recorded as abandoned.
public struct DrillRunner: Sendable {
    public var topology: Topology
    public var log: DrillLog
    public var stateDirectory: StateDirectory
    public var modules: FailoverModules
    public var logger: Logger
    public var killPoints: KillPoints
    public var progress: @Sendable (String) -> Void

    public init(
        topology: Topology, log: DrillLog, stateDirectory: StateDirectory, modules: FailoverModules, logger: Logger,
        killPoints: KillPoints = KillPoints(), progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.topology = topology
        self.log = log
        self.stateDirectory = stateDirectory
        self.modules = modules
        self.logger = logger
        self.killPoints = killPoints
        self.progress = progress
    }

    public var drillsDirectory: String { stateDirectory.file("drills") }

    /// Marks drills that never finished as abandoned and removes every leftover drill directory.
    /// Returns the drills it marked.
    @discardableResult
    public func cleanUpAbandoned() throws -> [DrillRecord] {
        var marked: [DrillRecord] = []
        for var drill in try log.unfinished() {
            drill.finishedAt = Date()
            drill.succeeded = false
            let pid = drill.pid.map { " (pid \($0)\(drill.host.map { " on \($0)" } ?? ""))" } ?? ""
            drill.failed =
                (drill.failed.map { $0 + "\n" } ?? "") + "abandoned: the drill process stopped\(pid) before it finished"
            drill.summary = "Abandoned; its drill directory was removed by the next drill."
            if let directory = drill.directory { try? FileManager.default.removeItem(atPath: directory) }
            try log.update(drill)
            marked.append(drill)
            progress(
                "drill \(drill.id ?? 0) by \(drill.lead) never finished\(pid): marked abandoned, directory removed")
        }
        if let leftovers = try? FileManager.default.contentsOfDirectory(atPath: drillsDirectory) {
            for name in leftovers {
                try? FileManager.default.removeItem(atPath: (drillsDirectory as NSString).appendingPathComponent(name))
            }
        }
        return marked
    }

    public func run(lead: String) async throws -> DrillReport {
        try cleanUpAbandoned()
        let started = Date()
        var drill = try log.start(
            DrillRecord(
                id: nil, startedAt: started, finishedAt: nil, lead: lead, succeeded: nil, summary: nil,
                deployment: topology.deployment, directory: nil, pid: Int(getpid()), host: ControllerLock.hostName(),
                failed: nil))
        let drillId = drill.id ?? 0
        let directory = (drillsDirectory as NSString).appendingPathComponent("\(drillId)")
        drill.directory = directory
        try log.update(drill)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)

        var stages: [DrillStage] = []
        var failures: [String] = []
        func stage(_ name: String, _ body: () async throws -> (DrillStage.State, String)) async throws {
            var record = DrillStage(
                drillId: drillId, seq: stages.count + 1, name: name, state: .running, startedAt: Date(),
                finishedAt: nil, detail: nil)
            try log.save(record)
            progress("\(name): started")
            let result: (DrillStage.State, String)
            do {
                result = try await body()
            } catch {
                result = (.failed, "\(error)")
            }
            let (state, detail) = result
            record.state = state
            record.detail = detail
            record.finishedAt = Date()
            try log.save(record)
            if state == .failed { failures.append("\(name): \(detail.split(separator: "\n").joined(separator: "; "))") }
            progress("\(name): \(state.rawValue) in \(String(format: "%.2fs", record.seconds ?? 0))")
            killPoints.check("drill/\(name)", "committed")
            stages.append(record)
        }

        try await stage("restore") { try await restoreAll(into: directory) }
        try await stage("steps") { try await drillSteps(in: directory, lead: lead) }
        try await stage("dns-check") { try await dnsCheck() }
        if let zone = topology.dns?.drillZone {
            try await stage("dns-drill-zone") { try await drillZoneCutover(zone) }
        }
        try await stage("cleanup") {
            try FileManager.default.removeItem(atPath: directory)
            return (.succeeded, "removed \(directory)")
        }

        drill.finishedAt = Date()
        drill.succeeded = failures.isEmpty
        drill.failed = failures.isEmpty ? nil : failures.joined(separator: "\n")
        drill.summary =
            failures.isEmpty
            ? "The rehearsal passed: every set restored and verified, the drill steps ran, DNS is ready to cut over."
            : "The rehearsal failed at \(failures.count) stage\(failures.count == 1 ? "" : "s")."
        try log.update(drill)
        return DrillReport(drill: drill, stages: stages)
    }

    // MARK: Stages

    func restoreAll(into directory: String) async throws -> (DrillStage.State, String) {
        var lines: [String] = []
        var failed = false
        for set in topology.backupSets {
            do {
                guard let version = try await modules.catalog.newestVerified(set: set.name) else {
                    failed = true
                    lines.append("\(set.name): no verified version in the store")
                    continue
                }
                let target = (directory as NSString).appendingPathComponent("sets/\(set.name)")
                let path = try await modules.restorer.restore(set: set.name, version: version.version, to: target)
                lines.append("\(set.name): version \(version.version) restored and verified to \(path)")
            } catch {
                failed = true
                lines.append("\(set.name): \(error)")
            }
        }
        if topology.backupSets.isEmpty { return (.skipped, "the topology declares no backup set") }
        return (failed ? .failed : .succeeded, lines.joined(separator: "\n"))
    }

    /// The topology the drill's engine sees: only drill steps, restores redirected, no DNS.
    public static func drillTopology(_ topology: Topology, directory: String) -> Topology {
        var drill = topology
        drill.dns = nil
        drill.services = topology.services.map { service in
            var service = service
            let chosen = service.drillSteps ?? service.steps.filter(\.drill)
            service.steps = chosen.compactMap { step in
                var step = step
                switch step.action {
                case .restore(let set, _):
                    step.action = .restore(
                        set: set, to: (directory as NSString).appendingPathComponent("restore/\(set)"))
                case .manual:
                    return nil  // nobody to confirm in a rehearsal
                default: break
                }
                return step
            }
            return service
        }
        return drill
    }

    func drillSteps(in directory: String, lead: String) async throws -> (DrillStage.State, String) {
        let drillTopology = Self.drillTopology(topology, directory: directory)
        let plan = try Planner(topology: drillTopology).plan()
        guard !plan.allSteps.isEmpty else {
            return (.skipped, "no step is marked drill: true and no service has drill_steps")
        }
        let drillState = StateDirectory(explicit: directory, deployment: topology.deployment)
        let journal = FailoverJournal(store: try StateStore(directory: drillState))
        var engine = FailoverEngine(
            topology: drillTopology, journal: journal, modules: modules, stateDirectory: drillState, logger: logger,
            killPoints: killPoints, progress: { self.progress("  " + $0) })
        engine.variables = ["drill": "true"]
        let runId = FailoverEngine.newRunId(deployment: topology.deployment, now: Date())
        let preflight = FailoverEngine.Preflight(plan: plan, evidence: [], sets: [], refusals: [])
        _ = try engine.declare(
            runId: runId, preflight: preflight, reason: "drill", lead: lead, planned: true, declaredAt: Date())
        // A rehearsal does not wait for the off-peak window.
        for service in plan.stages.filter({ $0.waitsForOffPeak }).flatMap(\.services) {
            try journal.record(
                RunDecision(
                    id: nil, runId: runId, at: Date(), kind: "override", lead: lead,
                    reason: "drill: optional services are rehearsed now", target: service.name))
        }
        let outcome = try await engine.execute(runId: runId, now: Date())
        let steps = try journal.steps(runId: runId)
        let lines = steps.map { step in
            "\(step.stepId): \(step.state.rawValue)"
                + (step.duration.map { String(format: " in %.2fs", $0) } ?? "")
                + (step.error.map { " (\($0))" } ?? "")
        }
        switch outcome {
        case .done: return (.succeeded, lines.joined(separator: "\n"))
        case .waiting(let text): return (.failed, (lines + ["waits: \(text)"]).joined(separator: "\n"))
        case .halted(let stepId, let message, let output):
            let tail = output.split(separator: "\n").suffix(10).map { "  | \($0)" }
            return (.failed, (["\(stepId) failed: \(message)"] + tail + lines).joined(separator: "\n"))
        case .refused(let stepId, let message):
            return (.failed, (["\(stepId) refused: \(message)"] + lines).joined(separator: "\n"))
        case .aborted: return (.failed, "the drill run was aborted")
        }
    }

    func dnsKeyAndServers(_ dns: DNSSettings) throws -> (DNSAuthentication, [DNSServer]) {
        let auth = try dns.authentication(baseDirectory: topology.directory)
        let servers = try dns.servers.map { text throws(DNSError) in try DNSServer(parsing: text) }
        return (auth, servers)
    }

    func changes(_ dns: DNSSettings, zone: String, back: Bool) -> [RecordChange] {
        dns.records.map { record in
            RecordChange(
                name: record.fqdn(in: zone), type: record.type, ttl: UInt32(clamping: record.ttl),
                from: back ? record.secondary : record.primary, to: back ? record.primary : record.secondary)
        }
    }

    /// A no-op update: the server checks the key, the right to change the records and that every
    /// record set holds its primary value, and changes nothing.
    func dnsCheck() async throws -> (DrillStage.State, String) {
        guard let dns = topology.dns else { return (.skipped, "the topology has no dns section") }
        let (key, servers) = try dnsKeyAndServers(dns)
        let cutover = try DNSCutover(
            zone: dns.zone, servers: servers, auth: key, changes: changes(dns, zone: dns.zone, back: false),
            verifyTimeout: dns.verifyTimeout.duration, logger: logger)
        let result = try await cutover.run(dryRun: true)
        switch result.outcome {
        case .wouldApply:
            return (
                .succeeded,
                "\(key) accepted by \(cutover.primary); \(dns.records.count) record set(s) hold the primary values; nothing changed"
                    + result.notes.map { " (\($0))" }.joined()
            )
        case .alreadyAtTarget, .applied:
            return (.failed, "\(dns.zone) already points at the secondary: \(result.description)")
        }
    }

    /// The full cutover on the drill zone, then back.
    func drillZoneCutover(_ zone: String) async throws -> (DrillStage.State, String) {
        guard let dns = topology.dns else { return (.skipped, "the topology has no dns section") }
        let (key, servers) = try dnsKeyAndServers(dns)
        var lines: [String] = []
        for back in [false, true] {
            let cutover = try DNSCutover(
                zone: zone, servers: servers, auth: key, changes: changes(dns, zone: zone, back: back),
                verifyTimeout: dns.verifyTimeout.duration, logger: logger)
            let result = try await cutover.run()
            lines.append((back ? "back: " : "over: ") + result.description)
        }
        return (.succeeded, lines.joined(separator: "\n"))
    }
}
