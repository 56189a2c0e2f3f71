import Foundation
import Logging
import StandbyBase
import StandbyCore
import StandbyProbes
import StandbyReplication
import StandbyTransport
import Synchronization

/// The jobs of `standby run` done by the real modules: replication and verification in the store
/// at the secondary (in-process, so a shutdown stops them after the current chunk), health through
/// the probes' watcher, and a waiting failover continued by `standby resume` as a child process
/// (the same controller lock, lease and journal as a resume typed by the lead).
///
/// In cluster mode the failover journal it shows is the cluster's, in etcd (the one `standby
/// status` reads), on every node; and only the leader posts health alerts (`ClusterAlerts`).
public final class LiveServiceJobs: ServiceJobs {
    public let topology: Topology
    public let stateDirectory: StateDirectory
    /// The `standby` executable, for `standby resume`.
    public let executable: String
    let store: ReplicationStore
    let stateStore: StateStore
    let journal: FailoverJournal
    let history: HealthHistory
    let transport: Transport
    let logger: Logger
    let probes: [Probe]
    /// Cluster mode: this controller's membership.
    let cluster: ClusterMember?
    let etcd: EtcdClient?
    /// The newest round and the probes' states after hysteresis, for the status page and metrics.
    private let lastRound = Mutex<(results: [String: ProbeResult], monitor: HealthMonitor)?>(nil)

    public init(
        topology: Topology, stateDirectory: StateDirectory, executable: String, cluster: ClusterMember? = nil,
        logger: Logger
    ) throws {
        self.topology = topology
        self.cluster = cluster
        self.stateDirectory = stateDirectory
        self.executable = executable
        self.logger = logger
        try stateDirectory.create()
        store = try ReplicationStore.open(directory: stateDirectory.store(for: topology), logger: logger)
        stateStore = try StateStore(directory: stateDirectory)
        if let cluster {
            let etcd = EtcdClient(endpoints: cluster.settings.etcd, timeout: .seconds(2), logger: logger)
            self.etcd = etcd
            // For reading only: a fence deposed from the start refuses any write before it is sent.
            let readOnly = ClusterFence(node: cluster.node)
            readOnly.depose("reads the cluster's journal for the status page and never writes it")
            journal = FailoverJournal(
                store: stateStore, cluster: ClusterJournal(client: etcd, keys: cluster.keys, fence: readOnly))
        } else {
            etcd = nil
            journal = FailoverJournal(store: stateStore)
        }
        history = try HealthHistory(directory: stateDirectory.path)
        transport = Transport(logger: logger)
        probes = try topology.health.probes.map { try Self.probe($0, health: topology.health) }
    }

    // MARK: Jobs

    public func run(_ job: ServiceJob, reason: String) async throws -> String {
        switch job {
        case .replicate(let name, let full): return try await replicate(name, full: full)
        case .verifySample: return try await verifySample()
        case .resumeFailover: return try await resume()
        case .remind(let reminder): return try await remind(reminder, message: reason)
        }
    }

    func replicate(_ name: String, full: Bool) async throws -> String {
        guard let set = topology.backupSet(named: name) else {
            throw ServiceError(.job, "backup set \(name) is no longer in \(topology.file)")
        }
        // A full uses the published index too: the replicator falls back to reading the whole file when
        // the index is stale, and a full interrupted by a crash then fetches only what is missing.
        let job: ReplicationJob
        do {
            job = try ReplicationJob(set: set, in: topology, at: Date(), useIndex: true)
        } catch {
            throw ServiceError(.job, error.description)
        }
        let report = try await store.replicate(set: job.spec, options: job.options)
        return
            "\(full ? "full" : "snapshot") version \(report.version.id): \(report.version.size) bytes, \(report.bytesReceived) received in \(report.elapsed)"
    }

    func verifySample() async throws -> String {
        let percent = topology.service.verifySample * 100
        let report = try await store.verify(readData: true, samplePercent: percent)
        if !report.isClean {
            let broken = report.brokenVersions.map(\.description).joined(separator: ", ")
            let message = "verify --sample found \(report.problems.count) problems; broken versions: \(broken)"
            await post(kind: "corruption", message: message)
            throw ServiceError(.job, message)
        }
        return
            "\(report.chunksRead) of \(report.chunksChecked) chunks re-read (\(report.bytesRead) bytes) across \(report.versionsChecked) versions: clean"
    }

    /// `standby resume SITE --state DIR`: 0 done, 4 still waiting (fine), anything else a failure.
    func resume() async throws -> String {
        let log = stateDirectory.file("service-resume.log")
        let arguments = ["resume", topology.file, "--state", stateDirectory.path]
        let status = try await ChildProcess.run(executable, arguments, appendingOutputTo: log)
        switch status {
        case 0: return "the run is done (output in \(log))"
        case 4: return "the run still waits (output in \(log))"
        case 3: throw ServiceError(.job, "standby resume was refused: another controller drives the run (see \(log))")
        default: throw ServiceError(.job, "standby resume exited \(status): the run halted (see \(log))")
        }
    }

    func remind(_ reminder: ServiceJob.Reminder, message: String) async throws -> String {
        let delivered = await post(kind: "\(reminder.rawValue)-reminder", message: message)
        if !topology.health.webhooks.isEmpty && delivered == 0 {
            throw ServiceError(.job, "the \(reminder.rawValue) reminder reached none of health.webhooks")
        }
        logger.warning("Reminder", metadata: ["reminder": "\(reminder.rawValue)", "message": "\(message)"])
        return message
    }

    /// Posts a service alert to every `health.webhooks` URL; returns how many took it.
    @discardableResult
    func post(kind: String, message: String) async -> Int {
        struct Body: Encodable {
            var source: String
            var kind: String
            var message: String
            var at: Date
        }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        guard
            let body = try? encoder.encode(
                Body(source: topology.deployment, kind: kind, message: message, at: Date()))
        else { return 0 }
        var delivered = 0
        for hook in topology.health.webhooks {
            do {
                try await WebhookSender(transport: transport).post(Array(body), to: hook)
                delivered += 1
            } catch {
                logger.warning(
                    "Service alert not delivered",
                    metadata: ["webhook": "\(Redaction.redacted(hook))", "error": "\(error)"])
            }
        }
        return delivered
    }

    public func failoverWaiting() async -> Bool {
        // In cluster mode the leader's ClusterDriver carries a waiting run on, not a `standby
        // resume` child (the runner never schedules one): no etcd read on every tick for it.
        if cluster != nil { return false }
        guard let run = try? journal.activeRun(deployment: topology.deployment), run.state == .waiting,
            let steps = try? journal.steps(runId: run.id)
        else { return false }
        return steps.contains { $0.state == .waitingOffPeak }
    }

    public func lastDrill() async -> Date? {
        (try? stateStore.lastSuccessfulDrill()) ?? nil
    }

    // MARK: Health

    public func watchHealth() async throws {
        guard !probes.isEmpty else { return }
        let health = topology.health
        let configuration = try WatchConfiguration(
            interval: health.interval.duration, hysteresis: try Hysteresis(fall: health.fall, rise: health.rise),
            webhooks: health.webhooks, source: topology.deployment, keepResults: health.keepHistory.duration)
        let watcher = try HealthWatcher(
            probes: probes, configuration: configuration, history: history, check: HealthCheck(logger: logger),
            sender: WebhookSender(transport: transport),
            announcer: cluster.flatMap { member in etcd.map { ClusterAlerts(member: member, client: $0) } },
            logger: logger)
        // A monitor of our own, fed the same rounds, gives each probe's state after hysteresis.
        let initial = HealthMonitor(probes: probes, policy: configuration.hysteresis)
        let observe: @Sendable (WatchRound) async -> Void = { round in
            self.lastRound.withLock { state in
                var current = state ?? (results: [:], monitor: initial)
                _ = current.monitor.record(round.results)
                for result in round.results { current.results[result.probe] = result }
                state = current
            }
        }
        try await watcher.run(observe: observe)
    }

    // MARK: Status

    public func status(_ base: ServiceSnapshot, now: Date) async -> ServiceSnapshot {
        var snapshot = base
        do {
            let statuses = Dictionary(
                try await store.status().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            snapshot.sets = topology.backupSets.map { set in
                let status = statuses[set.name]
                return ServiceSnapshot.SetLine(
                    name: set.name, kind: set.kind.rawValue, rpoTargetSeconds: set.rpo.seconds,
                    capturedAt: status?.captureTime, lastVerifiedAt: status?.newestVerified?.verified,
                    storedBytes: status?.storedBytes ?? 0, versions: status?.versionCount ?? 0)
            }
        } catch {
            snapshot.problems.append("replication store: \(error)")
            snapshot.sets = topology.backupSets.map {
                ServiceSnapshot.SetLine(name: $0.name, kind: $0.kind.rawValue, rpoTargetSeconds: $0.rpo.seconds)
            }
        }
        let round = lastRound.withLock { $0 }
        snapshot.probes = probes.map { probe in
            let result = round?.results[probe.name]
            return ServiceSnapshot.ProbeLine(
                name: probe.name, site: probe.site.rawValue, kind: probe.target.kind,
                target: probe.target.description, state: round?.monitor.state(of: probe.name).rawValue ?? "unknown",
                lastOutcome: result?.outcome.rawValue,
                latencySeconds: result.map { Double($0.latencyMilliseconds) / 1000 }, at: result?.at,
                detail: result?.detail ?? "")
        }
        do {
            for site in ProbeSite.allCases where probes.contains(where: { $0.site == site }) {
                let name = site == .primary ? topology.primary.name : topology.secondary.name
                if let verdict = try history.currentVerdict(for: site) {
                    snapshot.sites.append(
                        .init(
                            site: site.rawValue, verdict: verdict.verdict.rawValue, since: verdict.since,
                            detail: "\(name): \(verdict.detail)"))
                } else {
                    snapshot.sites.append(.init(site: site.rawValue, verdict: "unknown", since: nil, detail: name))
                }
            }
            snapshot.timeline = try history.transitions(limit: 200, includeProbes: true).map {
                ServiceSnapshot.TimelineEvent(
                    at: $0.at, subject: $0.subjectName, site: $0.site.rawValue, isSite: $0.isSiteVerdict, from: $0.from,
                    to: $0.to, detail: $0.detail)
            }
        } catch {
            snapshot.problems.append("health history: \(error)")
        }
        // etcd is read through libcurl: off the cooperative pool.
        let (failover, cluster) = await Blocking.run(name: "standby.status") { _ in
            (Result { try self.failoverLine(now: now) }, self.clusterLine())
        }
        switch failover {
        case .success(let line): snapshot.failover = line
        case .failure(let error): snapshot.problems.append("failover journal: \(error)")
        }
        switch cluster {
        case .success(let line): snapshot.cluster = line
        case .failure(let error): snapshot.problems.append("cluster: \(error)")
        case nil: break
        }
        return snapshot
    }

    /// Who leads and which nodes are registered, from etcd, as `standby status` reads them.
    func clusterLine() -> Result<ServiceSnapshot.ClusterLine, any Error>? {
        guard let cluster, let etcd else { return nil }
        return Result {
            let leader = try etcd.get(cluster.keys.leader)
            let nodes = try etcd.list(prefix: cluster.keys.nodes).map {
                String($0.key.dropFirst(cluster.keys.nodes.count))
            }
            return ServiceSnapshot.ClusterLine(
                node: cluster.node, leader: leader?.text, term: leader?.createRevision, nodes: nodes.sorted())
        }
    }

    func failoverLine(now: Date) throws -> ServiceSnapshot.FailoverLine? {
        guard let run = try journal.currentRun(deployment: topology.deployment) else { return nil }
        // A finished run stays on the page for a day, then the page is quiet again.
        if let finished = run.finishedAt, now.timeIntervalSince(finished) > 86400 { return nil }
        let steps = try journal.steps(runId: run.id)
        let nodes = try journal.stepNodes(runId: run.id)
        let current = steps.first { !$0.state.isFinished }
        let numbers = Array(Set(steps.map(\.stage))).sorted()
        let stages = numbers.map { number in
            let members = steps.filter { $0.stage == number }
            return ServiceSnapshot.StageLine(
                number: number, kind: members.first?.stageKind.rawValue ?? "",
                steps: members.map { step in
                    ServiceSnapshot.StepLine(
                        id: step.stepId, service: step.service, summary: step.summary, state: step.state.rawValue,
                        durationSeconds: step.startedAt.map { (step.finishedAt ?? now).timeIntervalSince($0) },
                        node: nodes[step.stepId])
                })
        }
        return ServiceSnapshot.FailoverLine(
            runId: run.id, scenario: run.scenario, lead: run.lead, state: run.state.rawValue,
            declaredAt: run.declaredAt, finishedAt: run.finishedAt, currentStage: current?.stage,
            currentStep: current?.stepId, waitingFor: current?.waitingFor, stages: stages)
    }

    // MARK: Probes from the topology

    /// The probe the failover's steps run for the same entry (one mapping: ProbeAdapter's).
    static func probe(_ spec: ProbeSpec, health: HealthSettings) throws -> Probe {
        try ProbeAdapter.probe(spec, defaultTimeout: health.timeout)
    }
}

/// Posts JSON to a webhook through libcurl; a status outside 2xx is a failure (so it is retried).
struct WebhookSender: AlertSender {
    let transport: Transport

    func post(_ body: [UInt8], to url: String) async throws {
        guard let target = URL(string: url) else { throw ServiceError(.job, "webhook '\(url)' is not a URL") }
        let response = try await transport.request(
            HTTPRequest(
                method: "POST", url: target, headers: [(name: "Content-Type", value: "application/json")],
                body: Data(body), timeout: .seconds(10), maxResponseBytes: 64 << 10))
        guard (200..<300).contains(response.status) else {
            throw ServiceError(.job, "webhook \(url) answered \(response.status)")
        }
    }
}

/// Runs a program to its end off the cooperative pool, its output appended to a file (never a pipe:
/// a full pipe would block the child).
enum ChildProcess {
    static func run(_ program: String, _ arguments: [String], appendingOutputTo log: String) async throws -> Int32 {
        if !FileManager.default.fileExists(atPath: log) {
            _ = FileManager.default.createFile(atPath: log, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        guard let output = FileHandle(forWritingAtPath: log) else {
            throw ServiceError(.job, "\(log): cannot open for writing")
        }
        defer { try? output.close() }
        _ = try? output.seekToEnd()
        output.write(
            Data(
                "--- \(ISO8601DateFormatter().string(from: Date())) \(program) \(arguments.joined(separator: " "))\n"
                    .utf8))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: ServiceError(.job, "cannot start \(program): \(error)"))
            }
        }
    }
}
