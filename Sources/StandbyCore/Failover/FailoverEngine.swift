import Foundation
import Logging
import StandbyBase

/// Declares and executes staged failovers against the journal. The caller holds the controller
/// lock (`ControllerLock`) around `execute` and every decision, so one process at a time moves a
/// run forward; readers (`status`, `report`) need no lock.
public struct FailoverEngine: Sendable {
    public var topology: Topology
    public var journal: FailoverJournal
    public var modules: FailoverModules
    public var stateDirectory: StateDirectory
    public var logger: Logger
    public var killPoints: KillPoints
    /// One line per step start and end, for the command's output.
    public var progress: @Sendable (String) -> Void
    /// Extra `{{name}}` variables for every step (a drill sets `drill` to `true`).
    public var variables: [String: String] = [:]
    /// The controller's environment: exec steps inherit it without its secrets (`StepEnvironment`).
    public var environment: [String: String] = ProcessInfo.processInfo.environment
    /// What to do with a step's earlier attempt still running when the step is about to run again.
    public var earlierAttempts: EarlierAttempts = .wait
    /// How long an ended earlier attempt gets between SIGTERM and SIGKILL.
    public var endGrace: Duration = .seconds(5)

    public init(
        topology: Topology, journal: FailoverJournal, modules: FailoverModules, stateDirectory: StateDirectory,
        logger: Logger, killPoints: KillPoints = KillPoints(), progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.topology = topology
        self.journal = journal
        self.modules = modules
        self.stateDirectory = stateDirectory
        self.logger = logger
        self.killPoints = killPoints
        self.progress = progress
    }

    /// How far `execute` got.
    public enum Outcome: Sendable, Equatable {
        /// Every step succeeded or was skipped.
        case done
        /// Waiting for a confirmation or an off-peak window; the text says which and until when.
        case waiting(String)
        /// A step failed or was interrupted: `retry` or `skip` it.
        case halted(stepId: String, message: String, output: String)
        /// A step was refused for safety and changed nothing (a DNS prerequisite failed: the
        /// records no longer hold what the plan expects). The lead looks before retrying.
        case refused(stepId: String, message: String)
        case aborted
    }

    // MARK: Leads

    /// Refuses a name that is not in `policy.incident_leads`.
    public func checkLead(_ lead: String) throws { try Self.checkLead(lead, in: topology) }

    public static func checkLead(_ lead: String, in topology: Topology) throws {
        guard topology.policy.incidentLeads.contains(lead) else {
            throw FailoverError(
                .refused,
                "refused: '\(lead)' is not an incident lead of \(topology.deployment) (policy.incident_leads: \(topology.policy.incidentLeads.joined(separator: ", ")))"
            )
        }
    }

    // MARK: Preflight and declaration

    public struct PreflightSet: Sendable, Codable {
        public var name: String
        /// A set a core service needs: without a verified version, the failover is refused.
        public var core: Bool
        public var version: String?
        public var capturedAt: Date?
        /// now − capture time: the data the failover will lose.
        public var lossWindowSeconds: Double?
        public var problem: String?
    }

    public struct Preflight: Sendable, Codable {
        public var plan: FailoverPlan
        public var evidence: [HealthLine]
        public var sets: [PreflightSet]
        /// Why the failover must not start; empty when it may.
        public var refusals: [String]
        /// What the DNS check proved before stage 1 (the key, the values, every server).
        public var dnsProven: String?
        /// Why stage 2 cannot run now, when the lead goes on anyway with `--dns-later`.
        public var dnsDeferred: String?
    }

    /// Everything the failover needs before its first step: the plan, the primary's evidence,
    /// the newest verified copy of every set, and proof that stage 2 can run (see `dnsCheck`).
    /// With `dnsLater`, a DNS problem does not refuse the failover: it is reported, and the
    /// cutover waits for `standby retry`.
    public func preflight(scenario: String, now: Date, planned: Bool, dnsLater: Bool = false) async throws
        -> Preflight
    {
        let plan = try Planner(topology: topology, now: now).plan(scenario: scenario)
        let evidence = await modules.health.primaryEvidence(topology)
        var coreSets = Set<String>()
        var allSets: [String] = []
        for stage in plan.stages {
            for service in stage.services {
                var names = service.backupSets
                for step in topology.service(named: service.name)?.steps ?? [] {
                    if case .restore(let set, _) = step.action { names.append(set) }
                }
                for name in names {
                    if !allSets.contains(name) { allSets.append(name) }
                    if stage.kind == .core { coreSets.insert(name) }
                }
            }
        }
        if planned, !allSets.isEmpty {
            try await modules.catalog.finalPass(sets: allSets)
        }
        var sets: [PreflightSet] = []
        var refusals: [String] = []
        for name in allSets {
            var status = PreflightSet(
                name: name, core: coreSets.contains(name), version: nil, capturedAt: nil, lossWindowSeconds: nil,
                problem: nil)
            do {
                if let version = try await modules.catalog.newestVerified(set: name) {
                    status.version = version.version
                    status.capturedAt = version.capturedAt
                    status.lossWindowSeconds = now.timeIntervalSince(version.capturedAt)
                } else {
                    status.problem = "no verified version in the store"
                }
            } catch {
                status.problem = "\(error)"
            }
            if status.core, let problem = status.problem {
                refusals.append("core backup set \(name): \(problem)")
            }
            sets.append(status)
        }
        var preflight = Preflight(plan: plan, evidence: evidence, sets: sets, refusals: refusals)
        do {
            preflight.dnsProven = try await dnsCheck(plan)
        } catch {
            if dnsLater {
                preflight.dnsDeferred = "\(error)"
            } else if (error as? FailoverError)?.code == .badInput {
                throw error
            } else {
                preflight.refusals.append(
                    "stage 2 (DNS) cannot run: \(error); nothing was changed (fix it, or go on with --dns-later REASON)"
                )
            }
        }
        return preflight
    }

    /// Proves the plan's DNS cutover can run, changing nothing: the key file loads (its mode
    /// checked) or the GSS-TSIG account gets its credential, the server that takes updates
    /// accepts a signed no-op update (the values and the right to change them), and every
    /// authoritative server answers. Nil when the plan has no DNS stage. A key-file problem is
    /// bad input naming the topology's `dns.key` (or `dns.gss_tsig`) line.
    func dnsCheck(_ plan: FailoverPlan) async throws -> String? {
        guard let dns = topology.dns, let stage = plan.stages.first(where: { $0.kind == .dns }),
            !stage.dnsChanges.isEmpty
        else { return nil }
        do {
            return try await modules.dns.preflight(dns, changes: stage.dnsChanges, baseDirectory: topology.directory)
        } catch let error as FailoverError where error.code == .badInput {
            throw FailoverError(
                .badInput,
                "\(topology.file):\(dns.keyLocation.line):\(dns.keyLocation.column): \(dns.credentialKey): \(error.message)"
            )
        }
    }

    public static func newRunId(deployment: String, now: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        return "\(formatter.string(from: now))-\(suffix)"
    }

    /// Persists the run with every step of every stage, in plan order, before anything executes.
    ///
    /// `dnsLater` is the lead's reason for going on while stage 2 cannot run: it is recorded as a
    /// decision, and the cutover then halts the run until `standby retry … dns/cutover`.
    public func declare(
        runId: String, preflight: Preflight, reason: String, lead: String, planned: Bool, declaredAt: Date,
        dnsLater: String? = nil
    ) throws -> FailoverRun {
        let planText = String(decoding: try JSONEncoder.journal.encode(preflight.plan), as: UTF8.self)
        let run = FailoverRun(
            id: runId, deployment: topology.deployment, scenario: preflight.plan.scenario, direction: "failover",
            reason: reason, lead: lead, planned: planned, state: .running, declaredAt: declaredAt, finishedAt: nil,
            plan: planText, dnsReplaced: nil, note: nil)
        var steps: [RunStep] = []
        for stage in preflight.plan.stages {
            func add(service: String, stepId: String, kind: StepKind, summary: String, idempotent: Bool, retries: Int) {
                steps.append(
                    RunStep(
                        runId: runId, seq: steps.count + 1, stage: stage.number, stageKind: stage.kind,
                        service: service, stepId: stepId, kind: kind, summary: summary, idempotent: idempotent,
                        retries: retries, state: .pending, attempts: 0, startedAt: nil, finishedAt: nil,
                        waitingFor: nil, output: nil, error: nil, result: nil, pid: nil))
            }
            if stage.kind == .dns {
                let summary = stage.dnsChanges.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
                add(
                    service: "dns", stepId: Self.dnsStepId, kind: .dns, summary: "cut over \(summary)",
                    // A compare-and-swap: after a crash it runs again and finds the records moved.
                    idempotent: true, retries: 0)
            }
            for service in stage.services {
                for step in service.steps {
                    add(
                        service: service.name, stepId: step.id, kind: step.kind, summary: step.summary,
                        idempotent: step.idempotent, retries: step.retries)
                }
            }
        }
        let sets = preflight.sets.map {
            RunSet(
                runId: runId, name: $0.name, core: $0.core, version: $0.version, capturedAt: $0.capturedAt,
                lossWindowSeconds: $0.lossWindowSeconds, problem: $0.problem)
        }
        var decisions = [
            RunDecision(id: nil, runId: runId, at: declaredAt, kind: "declare", lead: lead, reason: reason, target: nil)
        ]
        if let dnsLater, steps.contains(where: { $0.stepId == Self.dnsStepId }) {
            let problem = preflight.dnsDeferred.map { " (preflight: \($0))" } ?? ""
            decisions.append(
                RunDecision(
                    id: nil, runId: runId, at: declaredAt, kind: Self.dnsLaterDecision, lead: lead,
                    reason: dnsLater + problem, target: Self.dnsStepId))
        }
        // A controller killed here holds the lease of a run that does not exist.
        killPoints.check("declare", "before")
        try journal.declare(run: run, steps: steps, sets: sets, decisions: decisions)
        logger.info("Failover declared", metadata: ["run": "\(runId)", "lead": "\(lead)", "steps": "\(steps.count)"])
        return run
    }

    // MARK: Execution

    /// Moves the run as far as it can go now: `now` decides the off-peak windows.
    public func execute(runId: String, now: Date) async throws -> Outcome {
        guard var run = try journal.run(id: runId) else {
            throw FailoverError(.badInput, "no run \(runId) in \(journal.store.path)")
        }
        if run.state == .aborted { return .aborted }
        if run.state == .done { return .done }
        var steps = try journal.steps(runId: runId)

        // A step found running was cut short by a controller that died: run it again only if it
        // says it may; otherwise its side effect may or may not have happened and a person decides.
        for index in steps.indices where steps[index].state == .running {
            if steps[index].idempotent {
                steps[index].state = .pending
                steps[index].error = "interrupted (the controller stopped); idempotent, so it runs again"
                progress("\(steps[index].stepId): interrupted by a stopped controller; idempotent, running it again")
            } else {
                steps[index].state = .interrupted
                steps[index].finishedAt = Date()
                var pid = steps[index].pid.map { " (its process was pid \($0))" } ?? ""
                // It will not run again here, so nothing to wait for; `retry` waits for it. Asked to,
                // the orphan is ended now, so that the lead checks a side effect that stays put.
                if let process = steps[index].process, process.isAlive {
                    if earlierAttempts == .end {
                        await end(process)
                        pid = " (its process, pid \(process.pid), was still running: ended its process group)"
                        progress(
                            "\(steps[index].stepId): ended the earlier attempt's process group \(process.group) (pid \(process.pid)); --kill-orphans"
                        )
                    } else {
                        pid = " (its process, pid \(process.pid), is still running)"
                    }
                }
                steps[index].error =
                    "the controller stopped while this step was running\(pid); it is not idempotent, so whether its side effect happened is unknown: check, then `standby retry` or `standby skip`"
            }
            try journal.update(steps[index])
        }
        if let stuck = steps.first(where: { $0.state == .failed || $0.state == .interrupted }) {
            return try halt(&run, stuck)
        }
        if run.state != .running {
            run.state = .running
            run.note = nil
            try journal.update(run)
        }

        let overrides = Set(try journal.decisions(runId: runId).filter { $0.kind == "override" }.compactMap(\.target))
        // Optional services come back during the off-peak window of the site they move to.
        let site = run.direction == Planner.Direction.failback.rawValue ? topology.primary : topology.secondary
        let windowOpen = site.offPeak.contains(now, in: site.timezone)
        var blocked = Set<String>()
        var restored = Self.restoredPaths(steps)

        for index in steps.indices {
            if steps[index].state.isFinished { continue }
            let service = steps[index].service
            if steps[index].stageKind == .optional {
                if blocked.contains(service) { continue }
                let unfinishedDependency = (topology.service(named: service)?.dependsOn ?? []).first { dependency in
                    blocked.contains(dependency)
                        || steps.contains { $0.service == dependency && !$0.state.isFinished }
                }
                if let dependency = unfinishedDependency {
                    blocked.insert(service)
                    try markWaiting(&steps[index], "waits for \(dependency) (depends_on)")
                    continue
                }
                if !windowOpen && !overrides.contains(service) {
                    blocked.insert(service)
                    try markWaiting(&steps[index], "waits for " + offPeakText(after: now, site: site))
                    continue
                }
            }
            if steps[index].kind == .manual {
                if steps[index].state != .waitingConfirm {
                    steps[index].state = .waitingConfirm
                    steps[index].startedAt = steps[index].startedAt ?? Date()
                    steps[index].waitingFor = manualInstruction(steps[index])
                    try journal.update(steps[index])
                }
                progress("\(steps[index].stepId): waiting for `standby confirm`: \(steps[index].waitingFor ?? "")")
                run.state = .waiting
                run.note = "waiting for `standby confirm \(steps[index].stepId)`: \(steps[index].waitingFor ?? "")"
                try journal.update(run)
                return .waiting(run.note ?? "")
            }
            if steps[index].kind == .dns, steps[index].state == .pending, let deferral = try dnsDeferral(runId) {
                steps[index].state = .failed
                steps[index].finishedAt = Date()
                steps[index].error =
                    "deferred by \(deferral.lead) with --dns-later: \(deferral.reason); once DNS is ready, `standby retry SITE \(Self.dnsStepId) --lead NAME` runs the cutover"
                try journal.update(steps[index])
                return try halt(&run, steps[index])
            }
            switch try await perform(&steps[index], run: &run, restored: &restored) {
            case .succeeded: break
            case .failed: return try halt(&run, steps[index])
            case .refused:
                _ = try halt(&run, steps[index])
                return .refused(stepId: steps[index].stepId, message: steps[index].error ?? "refused")
            }
        }
        if !blocked.isEmpty {
            run.state = .waiting
            run.note =
                "\(blocked.count) optional service\(blocked.count == 1 ? "" : "s") (\(blocked.sorted().joined(separator: ", "))) "
                + (blocked.count == 1 ? "waits" : "wait") + " for " + offPeakText(after: now, site: site)
            try journal.update(run)
            return .waiting(run.note ?? "")
        }
        run.state = .done
        run.finishedAt = Date()
        run.note = nil
        try journal.update(run)
        try journal.releaseLease(deployment: run.deployment, runId: run.id)
        logger.info("Run done", metadata: ["run": "\(run.id)", "direction": "\(run.direction)"])
        return .done
    }

    static let dnsStepId = "dns/cutover"
    static let dnsLaterDecision = "dns-later"

    /// The lead's `--dns-later` decision, unless a `retry` of the cutover came after it.
    func dnsDeferral(_ runId: String) throws -> RunDecision? {
        let decisions = try journal.decisions(runId: runId).filter { $0.target == Self.dnsStepId }
        guard let last = decisions.last(where: { $0.kind == Self.dnsLaterDecision || $0.kind == "retry" }),
            last.kind == Self.dnsLaterDecision
        else { return nil }
        return last
    }

    private func halt(_ run: inout FailoverRun, _ step: RunStep) throws -> Outcome {
        run.state = .halted
        run.note = "\(step.stepId) \(step.state.rawValue): \(step.error ?? "")"
        try journal.update(run)
        return .halted(stepId: step.stepId, message: step.error ?? step.state.rawValue, output: step.output ?? "")
    }

    private func markWaiting(_ step: inout RunStep, _ text: String) throws {
        if step.state != .waitingOffPeak || step.waitingFor != text {
            step.state = .waitingOffPeak
            step.waitingFor = text
            try journal.update(step)
        }
    }

    /// "the off-peak window 22:00-05:00 at dub; next opens Wed 2026-11-25 22:00 GMT": what an
    /// optional service waits for.
    public func offPeakText(after now: Date, site: Site? = nil) -> String {
        let site = site ?? topology.secondary
        guard let opening = site.offPeak.nextOpening(after: now, in: site.timezone) else {
            return
                "a decision: no off-peak window is configured at \(site.name); run it with `standby resume --now SERVICE`"
        }
        let windows = site.offPeak.map(\.description).joined(separator: ", ")
        return
            "the off-peak window \(windows) at \(site.name); next opens \(Planner.localTime(opening, in: site.timezone))"
    }

    private func manualInstruction(_ step: RunStep) -> String {
        if let definition = definition(of: step), case .manual(let instruction, let owner) = definition.action {
            return instruction + (owner.map { " (owner: \($0))" } ?? "")
        }
        return step.summary
    }

    /// The step as the topology defines it: a failback run's steps are the services' `failback_steps`.
    func definition(of step: RunStep) -> Step? {
        let name = step.stepId.split(separator: "/", maxSplits: 1).last.map(String.init) ?? step.stepId
        if step.service == "dns", let validation = topology.dns?.clientViewStep, validation.name == name {
            return validation
        }
        guard let service = topology.service(named: step.service) else { return nil }
        let steps =
            (try? journal.run(id: step.runId))?.direction == Planner.Direction.failback.rawValue
            ? service.failbackSteps : service.steps
        return steps.first { $0.name == name }
    }

    static func restoredPaths(_ steps: [RunStep]) -> [String: String] {
        var paths: [String: String] = [:]
        for step in steps where step.kind == .restore && step.state == .succeeded {
            if let text = step.result,
                let result = try? JSONDecoder.journal.decode(RestoreResult.self, from: Data(text.utf8))
            {
                paths[result.set] = result.path
            }
        }
        return paths
    }

    /// What a restore step records: the version restored and where, for `{{restored.SET}}` and the report.
    public struct RestoreResult: Sendable, Codable {
        public var set: String
        public var version: String
        public var capturedAt: Date?
        public var path: String
    }

    struct StepFailure: Error {
        var message: String
        var output: String
        /// Refused for safety: not retried, and the run ends with exit 3, not 1.
        var refused = false
        /// The module's error the step failed with (a DNSError, a ReplicationError, ...).
        var underlying: (any Error)? = nil
    }

    enum StepEnd { case succeeded, failed, refused }

    struct StepSuccess {
        var output: String
        var result: String?
        /// For the DNS cutover: the record sets it replaced (JSON), journaled with the run
        /// before the step's end, for failback.
        var replacedRecords: String? = nil
    }

    /// Runs one step with its retries; each attempt is committed `running` before its side effect
    /// and its end after. Returns whether it succeeded.
    private func perform(_ step: inout RunStep, run: inout FailoverRun, restored: inout [String: String]) async throws
        -> StepEnd
    {
        let definition = self.definition(of: step)
        let delay = definition?.retryDelay ?? TimeSpan(seconds: 5)
        var attempt = 0
        while true {
            // Before any attempt: an earlier one may still run, left by a controller that died.
            try await settleEarlierAttempt(of: step, timeout: definition?.timeout)
            if attempt > 0 {
                let wait = TimeSpan(milliseconds: delay.milliseconds << min(attempt - 1, 16))
                progress("\(step.stepId): attempt \(attempt) failed; retrying in \(wait)")
                try await Task.sleep(for: wait.duration)
            }
            attempt += 1
            step.state = .running
            step.attempts += 1
            let attemptStart = Date()
            step.startedAt = step.startedAt ?? attemptStart
            step.attemptStartedAt = attemptStart
            step.finishedAt = nil
            step.process = nil
            step.waitingFor = nil
            try journal.update(step)
            progress("\(step.stepId): started (\(step.summary))")
            killPoints.check(step.stepId, "before")
            let outcome: Result<StepSuccess, StepFailure>
            let spawned = SpawnedProcess()
            do {
                outcome = .success(
                    try await sideEffect(step, definition: definition, run: run, restored: restored, spawned: spawned))
            } catch let failure as StepFailure {
                outcome = .failure(failure)
            } catch let error as any StandbyFailure {
                outcome = .failure(
                    StepFailure(
                        message: error.description, output: "", refused: error.outcome == .refused, underlying: error))
            } catch {
                outcome = .failure(StepFailure(message: "\(error)", output: "", underlying: error))
            }
            // The process stays in the journal after it ended: the report names it, and its start
            // time tells the next controller it is gone.
            if let process = spawned.get() { step.process = process }
            killPoints.check(step.stepId, "after")
            switch outcome {
            case .success(let success):
                if let replaced = success.replacedRecords {
                    run.dnsReplaced = replaced
                    try journal.update(run)
                }
                step.state = .succeeded
                step.finishedAt = Date()
                step.output = success.output
                step.result = success.result
                step.error = nil
                try journal.update(step)
                if step.kind == .restore, let text = success.result,
                    let result = try? JSONDecoder.journal.decode(RestoreResult.self, from: Data(text.utf8))
                {
                    restored[result.set] = result.path
                }
                progress("\(step.stepId): succeeded in \(Self.seconds(step.duration))")
                killPoints.check(step.stepId, "committed")
                return .succeeded
            case .failure(let failure):
                step.output = failure.output
                step.error = "attempt \(attempt) of \(step.retries + 1): \(failure.message)"
                if attempt > step.retries || failure.refused {
                    step.state = .failed
                    step.finishedAt = Date()
                    try journal.update(step)
                    progress("\(step.stepId): failed: \(failure.message)")
                    killPoints.check(step.stepId, "committed")
                    return failure.refused ? .refused : .failed
                }
                step.state = .pending
                try journal.update(step)
            }
        }
    }

    static func seconds(_ interval: TimeInterval?) -> String {
        guard let interval else { return "-" }
        return String(format: "%.2fs", interval)
    }

    /// The attempt's side effect, by the executor of the step's kind.
    private func sideEffect(
        _ step: RunStep, definition: Step?, run: FailoverRun, restored: [String: String],
        spawned: SpawnedProcess
    ) async throws -> StepSuccess {
        var variables = StepVariables(
            topology: topology, runId: run.id, stateDirectory: stateDirectory.path, restored: restored)
        variables.values.merge(self.variables) { _, extra in extra }
        let context = StepContext(
            step: step, definition: definition, run: run, variables: variables, spawned: spawned,
            topologyFile: topology.file)
        return try await executor(for: step.kind).execute(context)
    }

    static func redact(_ text: String, secrets: [String]) -> String {
        var text = text
        for secret in secrets where secret.count >= 4 {
            text = text.replacingOccurrences(of: secret, with: "***")
        }
        return text
    }
}
