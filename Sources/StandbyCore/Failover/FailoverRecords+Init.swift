import Foundation

// Public initialisers of the journal's records, for the modules that make them outside the engine
// (the cluster benchmark's journals). The memberwise ones are internal.

extension FailoverRun {
    public init(
        id: String, deployment: String, scenario: String, direction: String, reason: String, lead: String,
        planned: Bool, state: State, declaredAt: Date, plan: String
    ) {
        self.init(
            id: id, deployment: deployment, scenario: scenario, direction: direction, reason: reason, lead: lead,
            planned: planned, state: state, declaredAt: declaredAt, finishedAt: nil, plan: plan, dnsReplaced: nil,
            note: nil)
    }
}

extension RunStep {
    public init(
        runId: String, seq: Int, stage: Int, stageKind: FailoverPlan.Stage.Kind, service: String, stepId: String,
        kind: StepKind, summary: String, idempotent: Bool, state: State
    ) {
        self.init(
            runId: runId, seq: seq, stage: stage, stageKind: stageKind, service: service, stepId: stepId, kind: kind,
            summary: summary, idempotent: idempotent, retries: 0, state: state, attempts: 0, startedAt: nil,
            finishedAt: nil, waitingFor: nil, output: nil, error: nil, result: nil, pid: nil)
    }
}
