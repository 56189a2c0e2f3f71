import Foundation

/// The lead's decisions on a run. Each checks the lead against the policy, changes the steps and
/// records who, why and when in the same transaction.
extension FailoverEngine {
    func activeRun(_ runId: String?) throws -> FailoverRun {
        let run: FailoverRun?
        if let runId {
            run = try journal.run(id: runId)
        } else {
            run = try journal.activeRun(deployment: topology.deployment)
        }
        guard let run else {
            throw FailoverError(
                .badInput,
                "no active run of \(topology.deployment) in \(journal.store.path); `standby failover` declares one")
        }
        guard run.state.isActive else {
            throw FailoverError(.badInput, "run \(run.id) is \(run.state.rawValue); nothing to decide")
        }
        return run
    }

    func step(_ stepId: String, of run: FailoverRun) throws -> RunStep {
        let steps = try journal.steps(runId: run.id)
        guard let step = steps.first(where: { $0.stepId == stepId }) else {
            throw FailoverError(
                .badInput,
                "run \(run.id) has no step \(stepId); steps are named SERVICE/STEP, like \(steps.first?.stepId ?? "core/1")"
            )
        }
        return step
    }

    /// `standby confirm`: a person did what the manual step asked.
    public func confirm(stepId: String, lead: String, note: String?, runId: String? = nil) throws -> FailoverRun {
        try checkLead(lead)
        let run = try activeRun(runId)
        var step = try step(stepId, of: run)
        guard step.kind == .manual else {
            throw FailoverError(.badInput, "\(stepId) is a \(step.kind) step; only manual steps are confirmed")
        }
        guard step.state == .waitingConfirm else {
            throw FailoverError(
                .badInput,
                "\(stepId) is \(step.state.rawValue), not waiting for a confirmation; confirm it when the run reaches it"
            )
        }
        step.state = .succeeded
        step.finishedAt = Date()
        step.output = "confirmed by \(lead)" + (note.map { ": \($0)" } ?? "")
        step.waitingFor = nil
        try journal.decide(
            RunDecision(
                id: nil, runId: run.id, at: Date(), kind: "confirm", lead: lead, reason: note ?? "done", target: stepId),
            steps: [step])
        return run
    }

    /// `standby retry`: run a failed or interrupted step again.
    public func retry(stepId: String, lead: String, reason: String?, runId: String? = nil) throws -> FailoverRun {
        try checkLead(lead)
        let run = try activeRun(runId)
        var step = try step(stepId, of: run)
        guard step.state == .failed || step.state == .interrupted else {
            throw FailoverError(
                .badInput, "\(stepId) is \(step.state.rawValue); only a failed or interrupted step is retried")
        }
        step.state = .pending
        step.finishedAt = nil
        try journal.decide(
            RunDecision(
                id: nil, runId: run.id, at: Date(), kind: "retry", lead: lead, reason: reason ?? "retry", target: stepId
            ),
            steps: [step])
        return run
    }

    /// `standby skip`: a step, or every unfinished step of a service, will not run.
    public func skip(target: String, lead: String, reason: String, runId: String? = nil) throws -> FailoverRun {
        try checkLead(lead)
        let run = try activeRun(runId)
        let steps = try journal.steps(runId: run.id)
        let chosen: [RunStep]
        if target.contains("/") {
            chosen = [try step(target, of: run)]
        } else {
            chosen = steps.filter { $0.service == target }
            guard !chosen.isEmpty else {
                throw FailoverError(
                    .badInput,
                    "run \(run.id) has no service \(target); services: \(Set(steps.map(\.service)).sorted().joined(separator: ", "))"
                )
            }
        }
        let open = chosen.filter { !$0.state.isFinished }
        guard !open.isEmpty else {
            throw FailoverError(.badInput, "\(target): nothing left to skip (already succeeded or skipped)")
        }
        let changed = open.map { step -> RunStep in
            var step = step
            step.state = .skipped
            step.finishedAt = step.finishedAt ?? Date()
            step.waitingFor = nil
            step.error = (step.error.map { $0 + "; " } ?? "") + "skipped by \(lead): \(reason)"
            return step
        }
        try journal.decide(
            RunDecision(id: nil, runId: run.id, at: Date(), kind: "skip", lead: lead, reason: reason, target: target),
            steps: changed)
        return run
    }

    /// `standby resume --now SERVICE`: an optional service runs at once, outside the off-peak window.
    public func runNow(service: String, lead: String, reason: String?, runId: String? = nil) throws -> FailoverRun {
        try checkLead(lead)
        let run = try activeRun(runId)
        let steps = try journal.steps(runId: run.id).filter { $0.service == service }
        guard let first = steps.first else {
            throw FailoverError(.badInput, "run \(run.id) has no service \(service)")
        }
        guard first.stageKind == .optional else {
            throw FailoverError(.badInput, "\(service) is a \(first.stageKind) service; it does not wait for off-peak")
        }
        try journal.record(
            RunDecision(
                id: nil, runId: run.id, at: Date(), kind: "override", lead: lead,
                reason: reason ?? "run now, outside the off-peak window", target: service))
        return run
    }

    /// `standby abort`: the run ends here; the lease is released so a new run may be declared.
    public func abort(lead: String, reason: String, runId: String? = nil) throws -> FailoverRun {
        try checkLead(lead)
        var run = try activeRun(runId)
        run.state = .aborted
        run.finishedAt = Date()
        run.note = "aborted by \(lead): \(reason)"
        try journal.decide(
            RunDecision(id: nil, runId: run.id, at: Date(), kind: "abort", lead: lead, reason: reason, target: nil),
            steps: [], run: run)
        try journal.releaseLease(deployment: run.deployment, runId: run.id)
        return run
    }
}
