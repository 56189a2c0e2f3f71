import Foundation
import Logging
import StandbyProbes

// Failback: the way home once the primary is rebuilt. It is a run in the same journal with
// direction `failback`, so `resume`, `confirm`, `retry`, `skip`, `abort`, `status` and `report`
// work on it as on a failover. The steps come from the planner's `.failback` direction (the
// services' `failback_steps`), framed by replication steps (kind `replicate`): the reverse
// replication of every set's `failback_source` first, a final pass after the quiesce steps.

extension FailoverEngine {
    /// Why a failback may or may not start: the failover it returns from and the primary's probes.
    public struct FailbackPreflight: Sendable, Codable {
        public var plan: FailoverPlan
        /// The completed failover run it returns from, when there is one.
        public var returnsFrom: String?
        /// Every probe of the primary with what it saw on each of its `rise` attempts.
        public var probes: [HealthLine]
        /// Sets with a `failback_source` (reverse-replicated) and those without (skipped).
        public var reverseSets: [String]
        public var skippedSets: [String]
        public var refusals: [String]
    }

    /// Checks the preconditions: a completed failover to return from (with the DNS values it
    /// replaced), and each primary probe passing `rise` times in a row, one interval apart.
    public func failbackPreflight(
        now: Date, probe: (@Sendable (ProbeSpec) async -> HealthLine)? = nil
    ) async throws -> FailbackPreflight {
        let topology = self.topology
        let logger = self.logger
        let probe =
            probe ?? { spec in
                do {
                    let check = try ProbeAdapter.probe(spec, defaultTimeout: topology.health.timeout)
                    let result = await ProbeRunner(logger: logger).run(check)
                    return HealthLine(
                        probe: spec.name, verdict: result.outcome.isSuccess ? "up" : result.outcome.rawValue,
                        detail: result.detail)
                } catch {
                    return HealthLine(probe: spec.name, verdict: "error", detail: "\(error)")
                }
            }
        var plan = try Planner(topology: topology, now: now).plan(direction: .failback)
        var refusals: [String] = []
        let runs = try journal.runs(deployment: topology.deployment)
        if let active = runs.first(where: { $0.state.isActive }) {
            refusals.append(
                "run \(active.id) (\(active.direction), \(active.state.rawValue)) is still active; finish or abort it first"
            )
        }
        // The newest completed failover, unless a completed failback already returned from it.
        let done = runs.filter { $0.state == .done }
        let failover = done.first { $0.direction == Planner.Direction.failover.rawValue }
        let returned = failover.flatMap { run in done.first { $0.returnsFrom == run.id } }
        var returnsFrom: String?
        if let last = failover, returned == nil {
            returnsFrom = last.id
            // DNS goes back to the values the failover found, from the values it set.
            if let text = last.dnsReplaced,
                let replaced = try? JSONDecoder.journal.decode([ReplacedRecord].self, from: Data(text.utf8)),
                let index = plan.stages.firstIndex(where: { $0.kind == .dns })
            {
                let forward = last.decodedPlan()?.stages.first { $0.kind == .dns }?.dnsChanges ?? []
                plan.stages[index].dnsChanges = plan.stages[index].dnsChanges.map { change in
                    var change = change
                    if let back = replaced.first(where: { $0.name == change.name && $0.type == change.type }) {
                        change.to = back.values
                        change.ttl = back.ttl
                    }
                    if let set = forward.first(where: { $0.name == change.name && $0.type == change.type }) {
                        change.from = set.to
                    }
                    return change
                }
            }
        } else {
            refusals.append(
                returned.map {
                    "failback run \($0.id) already returned from failover \($0.returnsFrom ?? "?"): there is no failover to return from"
                } ?? "no completed failover of \(topology.deployment) to return from")
        }
        var lines: [HealthLine] = []
        let primaryProbes = topology.health.probes.filter { $0.site == .primary }
        if primaryProbes.isEmpty { refusals.append("the topology has no probe of the primary to prove it rebuilt") }
        var down: [String] = []
        for spec in primaryProbes {
            var last = HealthLine(probe: spec.name, verdict: "unknown", detail: "")
            var passes = 0
            for attempt in 0..<max(1, topology.health.rise) {
                if attempt > 0 { try await Task.sleep(for: topology.health.interval.duration) }
                last = await probe(spec)
                guard last.verdict == "up" else { break }
                passes += 1
            }
            last.detail = "\(passes) of \(topology.health.rise) in a row: \(last.detail)"
            if passes < max(1, topology.health.rise) { down.append(spec.name) }
            lines.append(last)
        }
        if !down.isEmpty {
            refusals.append(
                "the primary is not up: probe\(down.count == 1 ? "" : "s") \(down.joined(separator: ", ")) did not pass \(topology.health.rise) times in a row"
            )
        }
        // Stage 2 of the way home is proven before its first step, as the failover's is.
        if returnsFrom != nil {
            do {
                _ = try await dnsCheck(plan)
            } catch {
                refusals.append("DNS back to the primary cannot run: \(error); nothing was changed")
            }
        }
        let restored = Set(plan.stages.flatMap(\.services).flatMap(\.backupSets))
        let sets = topology.backupSets.filter { restored.contains($0.name) || !$0.failbackSource.isEmpty }
        return FailbackPreflight(
            plan: plan, returnsFrom: returnsFrom, probes: lines,
            reverseSets: sets.filter { !$0.failbackSource.isEmpty }.map(\.name),
            skippedSets: sets.filter { $0.failbackSource.isEmpty }.map(\.name), refusals: refusals)
    }

    /// Persists the failback run: reverse replication, the core services' failback steps, a final
    /// replication pass, DNS back, optional services back.
    public func declareFailback(
        runId: String, preflight: FailbackPreflight, reason: String, lead: String, declaredAt: Date
    ) throws -> FailoverRun {
        let planText = String(decoding: try JSONEncoder.journal.encode(preflight.plan), as: UTF8.self)
        var run = FailoverRun(
            id: runId, deployment: topology.deployment, scenario: preflight.plan.scenario,
            direction: Planner.Direction.failback.rawValue, reason: reason, lead: lead, planned: true,
            state: .running, declaredAt: declaredAt, finishedAt: nil, plan: planText, dnsReplaced: nil, note: nil)
        run.returnsFrom = preflight.returnsFrom
        var steps: [RunStep] = []
        func add(
            _ stage: FailoverPlan.Stage, service: String, stepId: String, kind: StepKind, summary: String,
            idempotent: Bool, retries: Int
        ) {
            steps.append(
                RunStep(
                    runId: runId, seq: steps.count + 1, stage: stage.number, stageKind: stage.kind,
                    service: service, stepId: stepId, kind: kind, summary: summary, idempotent: idempotent,
                    retries: retries, state: .pending, attempts: 0, startedAt: nil, finishedAt: nil,
                    waitingFor: nil, output: nil, error: nil, result: nil, pid: nil))
        }
        for stage in preflight.plan.stages {
            if stage.kind == .core {
                for set in preflight.reverseSets {
                    add(
                        stage, service: "replication", stepId: "reverse/\(set)", kind: .replicate,
                        summary: "reverse-replicate \(set) from its failback_source into the store, verified",
                        idempotent: true, retries: 1)
                }
            }
            if stage.kind == .dns {
                let summary = stage.dnsChanges.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
                add(
                    stage, service: "dns", stepId: "dns/cutover", kind: .dns, summary: "switch back \(summary)",
                    idempotent: true, retries: 0)
            }
            for service in stage.services {
                for step in service.steps {
                    add(
                        stage, service: service.name, stepId: step.id, kind: step.kind, summary: step.summary,
                        idempotent: step.idempotent, retries: step.retries)
                }
            }
            if stage.kind == .core {
                // After the quiesce steps: nothing written at the secondary since is lost.
                for set in preflight.reverseSets {
                    add(
                        stage, service: "replication", stepId: "final/\(set)", kind: .replicate,
                        summary: "final replication pass of \(set) from its failback_source, verified",
                        idempotent: true, retries: 1)
                }
            }
        }
        let decision = RunDecision(
            id: nil, runId: runId, at: declaredAt, kind: "declare", lead: lead,
            reason: reason + (preflight.returnsFrom.map { " (failback from run \($0))" } ?? ""), target: nil)
        // What comes back and what does not, for the report: the sets the failover restored or
        // that have a failback_source.
        let coreSets = Set(
            preflight.plan.stages.filter { $0.kind == .core }.flatMap(\.services).flatMap(\.backupSets))
        let sets =
            preflight.reverseSets.map {
                RunSet(
                    runId: runId, name: $0, core: coreSets.contains($0), version: nil, capturedAt: nil,
                    lossWindowSeconds: nil, problem: nil)
            }
            + preflight.skippedSets.map {
                RunSet(
                    runId: runId, name: $0, core: coreSets.contains($0), version: nil, capturedAt: nil,
                    lossWindowSeconds: nil,
                    problem:
                        "no failback_source: what the secondary changed in it since the failover is not moved back")
            }
        try journal.declare(run: run, steps: steps, sets: sets, decision: decision)
        logger.info("Failback declared", metadata: ["run": "\(runId)", "lead": "\(lead)", "steps": "\(steps.count)"])
        return run
    }

    /// A `replicate` step: the set's `failback_source` (with `{{state}}` and friends substituted)
    /// into the store as a new verified version.
}
