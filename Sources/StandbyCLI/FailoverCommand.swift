import ArgumentParser
import Foundation
import Logging
import StandbyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Declare the primary site lost and fail over in stages: core, DNS, optional services off-peak.",
        discussion: """
            Preflight takes the deployment's lease (one active run), shows the primary's health evidence, \
            every backup set's data-loss window and the plan, and asks for confirmation on a terminal \
            unless --yes. The run and all its steps are journaled before anything executes.
            Exit 0 done; 1 a step failed (retry or skip it); 3 refused (another run, not a lead, no \
            verified copy of a core set, not confirmed); 4 waiting (confirm a manual step, off-peak window).
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: ClockOptions

    @Option(help: "Why the site is declared lost; recorded with your name.")
    var declare: String

    @Option(help: "Your name, as listed in policy.incident_leads.")
    var lead: String

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @Flag(help: "A planned migration while the primary is still up: a final replication pass first.")
    var planned = false

    @Option(help: "The loss to recover from (see `standby plan --scenario list`).")
    var scenario = "site-loss"

    @Option(
        name: .customLong("dns-later"),
        help: ArgumentHelp(
            "Go on although the DNS check failed (no key, a server down); recorded with your name.",
            discussion: "Stage 2 then halts the run until `standby retry SITE dns/cutover`.",
            valueName: "reason"))
    var dnsLater: String?

    func run() async throws {
        if let dnsLater, dnsLater.trimmingCharacters(in: .whitespaces).isEmpty {
            throw CommandExit(
                .badInput, "standby: --dns-later needs a reason, like --dns-later \"DC01 down; DNS by hand\"")
        }
        if declare.trimmingCharacters(in: .whitespaces).isEmpty {
            throw CommandExit(
                .badInput, "standby: --declare needs a reason, like --declare \"Redmond data centre lost power\"")
        }
        try await RunContext.mappingErrors {
            let now = try clock.date()
            let topology = try site.loadTopology()
            try FailoverEngine.checkLead(lead, in: topology)
            let context = try RunContext(site: site, topology: topology, locking: true)
            let engine = context.engine()
            let runId = FailoverEngine.newRunId(deployment: context.topology.deployment, now: Date())
            if let held = try context.journal.takeLease(
                FailoverLease(
                    deployment: context.topology.deployment, runId: runId, lead: lead, pid: Int(getpid()),
                    host: ControllerLock.hostName(), since: Date()))
            {
                throw CommandExit(.refused, context.leaseRefusal(held.lease, held.run))
            }
            do {
                let preflight = try await engine.preflight(
                    scenario: scenario, now: now, planned: planned, dnsLater: dnsLater != nil)
                print(Self.render(preflight, topology: context.topology, now: now))
                if !preflight.refusals.isEmpty {
                    throw CommandExit(
                        .refused, "refused: " + preflight.refusals.joined(separator: "; "))
                }
                if !yes { try confirmOnTerminal(context.topology) }
                let run = try engine.declare(
                    runId: runId, preflight: preflight, reason: declare, lead: lead, planned: planned,
                    declaredAt: Date(), dnsLater: dnsLater)
                print("\nRun \(run.id) declared by \(lead): \(declare)")
            } catch {
                // No run exists: drop the lease and remember the attempt, so that `resume` says the
                // declaration did not complete rather than "nothing to resume".
                let why = (error as? CommandExit)?.message ?? (error as? FailoverError)?.message ?? "\(error)"
                let attempt = AbandonedDeclaration(
                    deployment: context.topology.deployment, runId: runId, lead: lead, at: Date(), why: why)
                if (try? context.journal.abandonDeclaration(attempt)) == nil {
                    try? context.journal.releaseLease(deployment: context.topology.deployment, runId: runId)
                }
                throw error
            }
            let outcome = try await engine.execute(runId: runId, now: now)
            try context.finish(outcome, runId: runId)
        }
    }

    func confirmOnTerminal(_ topology: Topology) throws {
        guard isatty(STDIN_FILENO) == 1 else {
            throw CommandExit(
                .refused, "refused: confirmation needed; run on a terminal, or pass --yes once you have read the above")
        }
        print("\nFail over \(topology.deployment) to \(topology.secondary.name)? Type yes to proceed: ", terminator: "")
        fflush(nil)
        guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
            throw CommandExit(.refused, "refused: not confirmed; nothing was done")
        }
    }

    static func render(_ preflight: FailoverEngine.Preflight, topology: Topology, now: Date) -> String {
        var lines: [String] = []
        lines.append("Primary \(topology.primary.name) (\(topology.primary.pool)), health evidence:")
        for line in preflight.evidence {
            lines.append("  \(line.probe.padded(to: 24)) \(line.verdict.padded(to: 8)) \(line.detail)")
        }
        lines.append("")
        if preflight.sets.isEmpty {
            lines.append("Backup sets: the plan restores none.")
        } else {
            lines.append("Backup sets (data-loss window = now − capture time of the version restored):")
            for set in preflight.sets {
                let window = set.lossWindowSeconds.map { RunReport.span($0) } ?? "unknown"
                let detail =
                    set.problem
                    ?? "version \(set.version ?? "?") captured \(set.capturedAt.map { RunReport.time($0) } ?? "?")"
                lines.append(
                    "  \(set.name.padded(to: 24)) \(set.core ? "core    " : "optional") \(window.padded(to: 8)) \(detail)"
                )
            }
        }
        if let proven = preflight.dnsProven {
            lines.append("")
            lines.append("DNS (stage 2), checked before stage 1, nothing changed:")
            lines += proven.split(separator: "\n").map { "  " + $0 }
        } else if let deferred = preflight.dnsDeferred {
            lines.append("")
            lines.append(
                "DNS (stage 2) cannot run now; going on with --dns-later, the cutover waits for `standby retry`:")
            lines.append("  " + deferred)
        }
        lines.append("")
        lines.append(PlanText.render(preflight.plan, topology: topology))
        return lines.joined(separator: "\n")
    }
}

/// What every run command shares: the topology, the journal, the lock, the modules, and how an
/// outcome becomes output and an exit code.
struct RunContext {
    let topology: Topology
    let stateDirectory: StateDirectory
    let journal: FailoverJournal
    /// Held by the commands that move a run, for as long as the context lives.
    let lock: ControllerLock?

    /// With `locking`, the controller lock is taken before the state database is opened: two
    /// commands starting together on a fresh state directory then never run its migrations at once.
    init(site: SiteOptions, topology: Topology? = nil, locking: Bool = false) throws {
        let topology = try topology ?? site.loadTopology()
        self.topology = topology
        stateDirectory = site.stateDirectory(for: topology)
        lock = locking ? try Self.lock(stateDirectory, topology: topology) : nil
        journal = FailoverJournal(store: try StateStore(directory: stateDirectory))
    }

    /// The modules the engine calls. Wired here, once, as they land in main.
    static func modules(for topology: Topology, stateDirectory: StateDirectory, logger: Logger) -> FailoverModules {
        .wired(topology: topology, stateDirectory: stateDirectory, logger: logger)
    }

    func engine(earlierAttempts: FailoverEngine.EarlierAttempts = .wait) -> FailoverEngine {
        var logger = Logger(label: "standby.failover")
        logger.logLevel = .warning
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

    /// Records that this process drives the run now.
    func drive(_ run: FailoverRun) {
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
            decisions: try journal.decisions(runId: runId), now: Date())
    }

    /// Runs `body`, turning the engine's errors into the contract's exit codes.
    static func mappingErrors(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as FailoverError {
            let status: ExitStatus =
                switch error.code {
                case .refused: .refused
                case .badInput: .badInput
                case .notWired, .stepFailed, .journal: .failed
                }
            throw CommandExit(status, "standby: \(error.message)")
        }
    }
}

/// `--at TIME` for the commands that continue a run (`--now` is taken there by `resume --now SERVICE`):
/// evaluate off-peak windows as of this moment.
struct RunClockOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp("Decide off-peak windows as of this moment (ISO 8601).", visibility: .hidden))
    var at: String?

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
        now: Date, earlierAttempts: FailoverEngine.EarlierAttempts = .wait,
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
        let outcome = try await engine.execute(runId: run.id, now: now)
        try finish(outcome, runId: run.id)
    }
}
