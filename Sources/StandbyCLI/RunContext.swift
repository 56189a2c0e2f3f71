import ArgumentParser
import Foundation
import Logging
import StandbyCore

/// What every run command shares: the topology, the journal, the lock, the modules, and how an
/// outcome becomes output and an exit code.
struct RunContext {
    let topology: Topology
    let stateDirectory: StateDirectory
    let journal: FailoverJournal
    /// Held by the commands that move a run, for as long as the context lives.
    let lock: ControllerLock?
    /// Cluster mode: the journal is in etcd, the lock is the cluster's, and the leader runs the steps.
    let cluster: ClusterSession?

    /// With `locking`, the controller lock is taken before the state database is opened: two
    /// commands starting together on a fresh state directory then never run its migrations at once.
    /// In cluster mode the lock is the cluster's (`ClusterSession`), whichever node the command runs on.
    init(site: SiteOptions, topology: Topology? = nil, locking: Bool = false, command: String = "a command") throws {
        let topology = try topology ?? site.loadTopology()
        self.topology = topology
        stateDirectory = site.stateDirectory(for: topology)
        if let settings = topology.cluster {
            let session = ClusterSession(settings: settings, deployment: topology.deployment, node: site.nodeName)
            if locking { try session.lock(what: "`standby \(command)`") }
            cluster = session
            lock = nil
            journal = FailoverJournal(store: try StateStore(directory: stateDirectory), cluster: session.journal)
            return
        }
        cluster = nil
        lock = locking ? try Self.lock(stateDirectory, topology: topology) : nil
        journal = FailoverJournal(store: try StateStore(directory: stateDirectory))
    }

    /// Carries the run as far as it goes now: here, or in cluster mode by the leader (this command
    /// asks it and follows the run until it answered).
    func execute(
        _ engine: FailoverEngine, runId: String, now: Date, command: String,
        earlierAttempts: FailoverEngine.EarlierAttempts = .wait
    ) async throws -> FailoverEngine.Outcome {
        guard let cluster else { return try await engine.execute(runId: runId, now: now) }
        try cluster.requestResume(command: command, at: now, earlierAttempts: earlierAttempts)
        return try await cluster.follow(runId: runId)
    }

    /// The modules the engine calls. Wired here, once, as they land in main.
    static func modules(for topology: Topology, stateDirectory: StateDirectory, logger: Logger) -> FailoverModules {
        .wired(topology: topology, stateDirectory: stateDirectory, logger: logger)
    }

    func engine(earlierAttempts: FailoverEngine.EarlierAttempts = .wait) -> FailoverEngine {
        let logger = Logger(label: "standby.failover")
        var engine = FailoverEngine(
            topology: topology, journal: journal,
            modules: Self.modules(for: topology, stateDirectory: stateDirectory, logger: logger),
            stateDirectory: stateDirectory,
            logger: logger, killPoints: KillPoints(environment: ProcessInfo.processInfo.environment),
            progress: { line in
                print("  \(RunReport.time(Date()))  \(line)")
                fflush(nil)
            })
        engine.earlierAttempts = earlierAttempts
        return engine
    }

    /// The controller lock, or exit 3 naming who holds it.
    static func lock(_ stateDirectory: StateDirectory, topology: Topology) throws -> ControllerLock {
        switch try ControllerLock.acquire(directory: stateDirectory) {
        case .success(let lock):
            return lock
        case .failure(let busy):
            var message = "refused: another standby controller is executing on \(stateDirectory.path)"
            if let holder = busy.holder {
                message += " (pid \(holder.pid) on \(holder.host) since \(holder.since))"
            }
            if let lease = FailoverJournal.peekLease(directory: stateDirectory, deployment: topology.deployment) {
                message += "; " + leaseText(lease.lease, lease.run)
            }
            throw CommandExit(.refused, message)
        }
    }

    static func leaseText(_ lease: FailoverLease, _ run: FailoverRun?) -> String {
        if let run {
            return
                "run \(run.id) (\(run.state.rawValue)) declared by \(run.lead) at \(RunReport.time(run.declaredAt)): \(run.reason); controller pid \(lease.pid) on \(lease.host), lease held since \(RunReport.time(lease.since))"
        }
        return
            "run \(lease.runId) is in preflight, lead \(lease.lead), pid \(lease.pid) on \(lease.host) since \(RunReport.time(lease.since))"
    }

    func leaseRefusal(_ lease: FailoverLease, _ run: FailoverRun?) -> String {
        "refused: \(topology.deployment) already has an active run: \(Self.leaseText(lease, run)). "
            + "See `standby status`; continue it with `standby resume` or end it with `standby abort`."
    }

    /// Records that this process drives the run now (in cluster mode, the leader does).
    func drive(_ run: FailoverRun) {
        guard cluster == nil else { return }
        try? journal.touchLease(
            deployment: run.deployment, runId: run.id, pid: Int(getpid()), host: ControllerLock.hostName())
    }

    /// Prints where the run stands and ends with the contract's exit code.
    func finish(_ outcome: FailoverEngine.Outcome, runId: String) throws {
        switch outcome {
        case .done:
            let report = try report(runId)
            print("\nRun \(runId) done in \(RunReport.span(report.run.elapsedSeconds)).")
            if let recovery = report.recoverySeconds {
                print("Recovery (declaration to core and DNS done): \(RunReport.span(recovery))")
            }
            for item in report.notRestored {
                print("Not restored at the secondary: \(item.service): \(item.reason)")
            }
        case .waiting(let text):
            print("\nRun \(runId) waits: \(text)")
            throw CommandExit(.waiting)
        case .halted(let stepId, let message, let output):
            var text = "\nRun \(runId) halted at \(stepId): \(message)"
            if !output.isEmpty {
                text += "\n--- output of \(stepId) (tail) ---\n" + RunReportText.tail(output, lines: 30)
            }
            text +=
                "\nThen: `standby retry SITE \(stepId) --lead NAME` or `standby skip SITE \(stepId) --reason R --lead NAME`"
            print(text)
            throw CommandExit(.failed)
        case .refused(let stepId, let message):
            print(
                "\nRun \(runId) refused at \(stepId), nothing changed: \(message)\n"
                    + "Look at what the servers serve (`standby dns show SITE`), then `standby retry SITE \(stepId) --lead NAME` or `standby skip SITE \(stepId) --reason R --lead NAME`"
            )
            throw CommandExit(.refused)
        case .aborted:
            print("Run \(runId) was aborted.")
        }
    }

    func report(_ runId: String) throws -> RunReport {
        guard let run = try journal.run(id: runId) else {
            throw FailoverError(.badInput, "no run \(runId) in \(journal.store.path)")
        }
        return RunReport(
            run: run, steps: try journal.steps(runId: runId), sets: try journal.sets(runId: runId),
            decisions: try journal.decisions(runId: runId), now: Date(), nodes: try journal.stepNodes(runId: runId))
    }
}

/// `--at TIME` for the commands that continue a run (`--now` is taken there by `resume --now SERVICE`):
/// evaluate off-peak windows as of this moment.
struct RunClockOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp("Decide off-peak windows as of this moment (ISO 8601).", visibility: .hidden))
    var at: String?

    func validate() throws { _ = try date() }

    func date() throws -> Date {
        guard let at else { return Date() }
        guard let date = ISO8601DateFormatter().date(from: at) else {
            throw ValidationError("--at: '\(at)' is not an ISO 8601 time like 2026-11-25T21:30:00Z")
        }
        return date
    }
}

enum RunReportText {
    static func tail(_ text: String, lines: Int) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let trimmed = all.last == "" ? all.dropLast() : all[...]
        return trimmed.suffix(lines).joined(separator: "\n")
    }
}

extension RunContext {
    /// Exit 3 when there is no run to resume because the newest declaration never became one: the
    /// controller stopped in preflight (a lease naming no run, stale since we hold the controller
    /// lock), or it was refused or not confirmed after `last` was declared, or there is no run at
    /// all. A resume after a finished run is not refused: that run is done.
    func undeclared(after last: FailoverRun?) throws -> CommandExit? {
        let advice = "no run: the declaration did not complete; declare again with `standby failover`"
        if let held = try journal.lease(deployment: topology.deployment), held.run == nil {
            return CommandExit(
                .refused,
                "standby: \(advice) (run \(held.lease.runId), declared by \(held.lease.lead) at \(RunReport.time(held.lease.since)), stopped in preflight: its controller, pid \(held.lease.pid) on \(held.lease.host), is gone)"
            )
        }
        if let attempt = try journal.abandonedDeclaration(deployment: topology.deployment),
            last.map({ attempt.at > $0.declaredAt }) ?? true
        {
            var text = "standby: \(advice) (\(attempt.lead) at \(RunReport.time(attempt.at)): \(attempt.why))"
            if let last { text += "; the run before it, \(last.id), is \(last.state.rawValue)" }
            return CommandExit(.refused, text)
        }
        if last == nil {
            return CommandExit(.refused, "standby: \(advice) (\(topology.deployment) has no failover run)")
        }
        return nil
    }

    /// Takes the lock, applies `decide` (a decision on the active run, or nothing), then carries the
    /// run as far as it goes now.
    func continueRun(
        now: Date, earlierAttempts: FailoverEngine.EarlierAttempts = .wait, command: String = "resume",
        decide: (FailoverEngine) throws -> FailoverRun?
    ) async throws {
        let engine = engine(earlierAttempts: earlierAttempts)
        let decided = try decide(engine)
        guard let run = try decided ?? journal.activeRun(deployment: topology.deployment) else {
            let last = try journal.currentRun(deployment: topology.deployment)
            if let refusal = try undeclared(after: last) { throw refusal }
            if let last {
                print("Nothing to resume: the last run, \(last.id), is \(last.state.rawValue).")
            }
            return
        }
        drive(run)
        let outcome = try await execute(
            engine, runId: run.id, now: now, command: command, earlierAttempts: earlierAttempts)
        try finish(outcome, runId: run.id)
    }
}
