import Foundation
import Logging
import Synchronization

/// The loop of `standby run`: every tick it asks the `Scheduler` what is due and starts it, one job
/// at a time per lane, while the health watcher probes beside it.
///
/// Shutdown is cancellation of `run()` (the service layer turns SIGTERM/SIGINT into it): no new job
/// starts; a replication or a verification stops after its current chunk; a failover resume is
/// shielded from the cancellation and finishes the step it is on, because an `exec` step cut in half
/// would need a person to decide whether its side effect happened. A job stopped this way stays
/// recorded as started-not-finished, so the next start continues it first. A SIGKILL loses nothing
/// either: replication and the engine are crash-safe, and the job times are in the state store.
public final class ServiceRunner: Sendable {
    public let topology: Topology
    public let journal: ServiceJournal
    public let jobs: any ServiceJobs
    public let scheduler: Scheduler
    public let tick: Duration
    public let startedAt: Date
    let clock: @Sendable () -> Date
    let logger: Logger
    /// Cluster mode: this node's membership and the leader's driver of the run. Only the leader
    /// starts jobs; the driver, not a `standby resume` child, carries a waiting run on.
    public let cluster: ClusterDriver?
    private let running = Mutex<[ServiceJob.Lane: ServiceJob]>([:])

    public init(
        topology: Topology, journal: ServiceJournal, jobs: any ServiceJobs, logger: Logger,
        tick: Duration = .seconds(1), clock: @escaping @Sendable () -> Date = { Date() },
        cluster: ClusterDriver? = nil
    ) {
        self.cluster = cluster
        self.topology = topology
        self.journal = journal
        self.jobs = jobs
        self.scheduler = Scheduler(topology: topology)
        self.tick = tick
        self.clock = clock
        self.logger = logger
        self.startedAt = clock()
    }

    /// Runs until cancelled; returns once every job it started has stopped.
    public func run() async {
        logger.info("Service started", metadata: ["deployment": "\(topology.deployment)"])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.watchHealth() }
            if let cluster {
                group.addTask { await cluster.member.run() }
                group.addTask { await cluster.run() }
            }
            while !Task.isCancelled {
                for due in await dueNow() {
                    let claimed = running.withLock { lanes -> Bool in
                        guard lanes[due.job.lane] == nil else { return false }
                        lanes[due.job.lane] = due.job
                        return true
                    }
                    guard claimed else { continue }
                    group.addTask { await self.runLane(due) }
                }
                try? await Task.sleep(for: tick)
            }
            logger.info("Service stopping: no new jobs; waiting for the running ones to reach a safe point")
        }
        logger.info("Service stopped", metadata: ["deployment": "\(topology.deployment)"])
    }

    /// The jobs due now that are not already running.
    func dueNow() async -> [Scheduler.Due] {
        if let cluster, cluster.member.term == nil { return [] }
        let records: [String: JobRecord]
        do {
            records = try journal.records()
        } catch {
            logger.error("Cannot read the job times", metadata: ["error": "\(error)"])
            return []
        }
        let inputs = Scheduler.Inputs(
            now: clock(), jobs: records, failoverWaiting: await jobs.failoverWaiting(),
            lastDrill: await jobs.lastDrill())
        let busy = running.withLock { Set($0.values) }
        return scheduler.due(inputs).filter { due in
            if cluster != nil, due.job == .resumeFailover { return false }
            return !busy.contains(due.job)
        }
    }

    /// Runs `first`, then whatever else is due in its lane, without waiting for the next tick:
    /// fifty sets due at once run back to back.
    func runLane(_ first: Scheduler.Due) async {
        let lane = first.job.lane
        var next: Scheduler.Due? = first
        while let due = next {
            running.withLock { $0[lane] = due.job }
            await execute(due)
            // Never the same job twice in a row here: if its record could not be written it would
            // still look due, and the tick (not a tight loop) should be what tries it again.
            next = Task.isCancelled ? nil : await dueNow().first { $0.job.lane == lane && $0.job != due.job }
        }
        _ = running.withLock { $0.removeValue(forKey: lane) }
    }

    func execute(_ due: Scheduler.Due) async {
        let job = due.job
        let metadata: Logger.Metadata = ["job": "\(job.key)", "reason": "\(due.reason)"]
        do {
            try journal.started(job.key, at: clock())
        } catch {
            logger.error(
                "Cannot record a job's start; not running it", metadata: ["job": "\(job.key)", "error": "\(error)"])
            return
        }
        logger.info("Job started", metadata: metadata)
        let began = ContinuousClock.now
        do {
            let summary: String
            if job.lane == .failover {
                // Shielded: cancellation does not reach the engine; it finishes the step it is on.
                let jobs = self.jobs
                summary = try await Task { try await jobs.run(job, reason: due.reason) }.value
            } else {
                summary = try await jobs.run(job, reason: due.reason)
            }
            try journal.finished(job.key, at: clock(), succeeded: true, detail: summary)
            logger.info(
                "Job done",
                metadata: ["job": "\(job.key)", "summary": "\(summary)", "seconds": "\(began.duration(to: .now))"])
        } catch {
            if Task.isCancelled {
                try? journal.stopped(job.key, detail: "stopped by a shutdown; continues at the next start")
                logger.notice(
                    "Job stopped by the shutdown; it continues at the next start", metadata: ["job": "\(job.key)"])
                return
            }
            try? journal.finished(job.key, at: clock(), succeeded: false, detail: "\(error)")
            logger.error("Job failed", metadata: ["job": "\(job.key)", "error": "\(error)"])
        }
    }

    func watchHealth() async {
        while !Task.isCancelled {
            do {
                try await jobs.watchHealth()
                return
            } catch {
                if Task.isCancelled { return }
                logger.error("Health watcher stopped; restarting it in 30 s", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(30))
            }
        }
    }

    /// Everything the endpoint shows, as of now.
    public func snapshot() async -> ServiceSnapshot {
        let now = clock()
        var base = ServiceSnapshot(
            deployment: topology.deployment, primarySite: topology.primary.name,
            secondarySite: topology.secondary.name, generatedAt: now, startedAt: startedAt)
        let busy = running.withLock { Set($0.values.map(\.key)) }
        do {
            base.jobs = try journal.records().values.sorted { $0.key < $1.key }.map {
                ServiceSnapshot.JobLine(record: $0, running: busy.contains($0.key))
            }
        } catch {
            base.problems.append("job times: \(error)")
        }
        var snapshot = await jobs.status(base, now: now)
        let replicating = running.withLock { lanes -> Set<String> in
            guard case .replicate(let set, _)? = lanes[.store] else { return [] }
            return [set]
        }
        for index in snapshot.sets.indices where replicating.contains(snapshot.sets[index].name) {
            snapshot.sets[index].replicating = true
        }
        return snapshot
    }

    /// The jobs running now, for tests and the log.
    public var runningJobs: [ServiceJob] { running.withLock { Array($0.values) } }
}
