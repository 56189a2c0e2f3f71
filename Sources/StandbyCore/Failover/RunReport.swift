import Foundation

/// A run as `standby report` renders it: the timeline per stage and step (the measured RTO), the
/// data-loss window per set (the measured RPO), every decision with who and why, output tails.
public struct RunReport: Sendable, Codable {
    public var run: RunSummary
    public var stages: [StageTimeline]
    public var sets: [SetWindow]
    public var decisions: [Decision]
    public var notRestored: [FailoverPlan.NotRestored]
    public var dnsReplaced: [ReplacedRecord]
    /// Declaration to the end of the last core or DNS step: clients can work again.
    public var recoverySeconds: Double?
    /// With `dns.client_view`: when clients, through their resolver, first reached the secondary.
    public var clientVisible: ClientVisibleRecovery? = nil

    /// The recovery as clients see it, beside the time the authoritative servers changed: the
    /// difference is the resolvers' caches, bounded by the record's TTL.
    public struct ClientVisibleRecovery: Sendable, Codable {
        public var srv: String
        /// Declaration to the moment every authoritative server served the new records.
        public var authoritativeSeconds: Double?
        /// Declaration to the moment the client view first reached the secondary pool.
        public var clientVisibleSeconds: Double?
        /// The record's TTL: how long a resolver may keep the old answer.
        public var ttl: Int?
        /// Client-visible minus authoritative.
        public var cacheDelaySeconds: Double?

        public var explanation: String {
            guard let client = clientVisibleSeconds else { return "clients have not reached the secondary pool yet" }
            var text = "clients reached the secondary pool \(RunReport.span(client)) after the declaration"
            if let authoritative = authoritativeSeconds {
                text += "; the authoritative servers changed at \(RunReport.span(authoritative))"
            }
            if let delay = cacheDelaySeconds, let ttl {
                text +=
                    ", \(RunReport.span(max(delay, 0))) before clients saw it: their resolver kept the old answer for what was left of its TTL (\(ttl) s)"
            }
            return text
        }
    }

    public struct RunSummary: Sendable, Codable {
        public var id: String
        public var deployment: String
        public var scenario: String
        public var reason: String
        public var lead: String
        public var planned: Bool
        public var state: String
        public var declaredAt: Date
        public var finishedAt: Date?
        public var elapsedSeconds: Double
        public var note: String?
        /// `failover` or `failback`.
        public var direction: String = "failover"
        /// A failback: the failover run it returns from.
        public var returnsFrom: String? = nil
    }

    public struct StageTimeline: Sendable, Codable {
        public var number: Int
        public var kind: String
        public var title: String
        public var startedAt: Date?
        public var finishedAt: Date?
        public var durationSeconds: Double?
        public var steps: [StepTimeline]
    }

    public struct StepTimeline: Sendable, Codable {
        public var id: String
        public var service: String
        public var kind: StepKind
        public var summary: String
        public var state: String
        public var attempts: Int
        /// The first attempt's start.
        public var startedAt: Date?
        public var finishedAt: Date?
        /// The last attempt's (the successful one's) start to the end.
        public var durationSeconds: Double?
        /// The start of the attempt `durationSeconds` times, when earlier attempts came before it.
        public var attemptStartedAt: Date?
        /// The first attempt's start to the last attempt's start: lost to a crash or failed attempts.
        public var lostSeconds: Double?
        public var waitingFor: String?
        public var error: String?
        public var outputTail: String?
        /// The process of the step's latest attempt (exec steps), and its group.
        public var pid: Int? = nil
        public var processGroup: Int? = nil
        /// Cluster mode: the controller (node id) that executed the step.
        public var node: String? = nil
    }

    public struct SetWindow: Sendable, Codable {
        public var name: String
        public var core: Bool
        public var version: String?
        public var capturedAt: Date?
        /// Declaration − capture time of the version restored (or to be restored).
        public var lossWindowSeconds: Double?
        public var restoredTo: String?
        public var problem: String?
    }

    public struct Decision: Sendable, Codable {
        public var at: Date
        public var kind: String
        public var lead: String
        public var reason: String
        public var target: String?
    }

    /// Lines of output kept per step in the report.
    public static let tailLines = 20

    public init(
        run: FailoverRun, steps: [RunStep], sets: [RunSet], decisions: [RunDecision], now: Date,
        nodes: [String: String] = [:]
    ) {
        let plan = run.decodedPlan()
        let end = run.finishedAt ?? now
        self.run = RunSummary(
            id: run.id, deployment: run.deployment, scenario: run.scenario, reason: run.reason, lead: run.lead,
            planned: run.planned, state: run.state.rawValue, declaredAt: run.declaredAt, finishedAt: run.finishedAt,
            elapsedSeconds: end.timeIntervalSince(run.declaredAt), note: run.note, direction: run.direction,
            returnsFrom: run.returnsFrom)
        var stages: [StageTimeline] = []
        for number in Set(steps.map(\.stage)).sorted() {
            let inStage = steps.filter { $0.stage == number }
            let planned = plan?.stages.first { $0.number == number }
            let starts = inStage.compactMap(\.startedAt)
            let ends = inStage.compactMap(\.finishedAt)
            let finished = inStage.allSatisfy { $0.state.isFinished }
            let start = starts.min()
            let finish = finished ? ends.max() : nil
            stages.append(
                StageTimeline(
                    number: number, kind: inStage.first?.stageKind.rawValue ?? "",
                    title: planned?.title ?? "Stage \(number)",
                    startedAt: start, finishedAt: finish,
                    durationSeconds: start.flatMap { s in finish.map { $0.timeIntervalSince(s) } },
                    steps: inStage.map { step in
                        StepTimeline(
                            id: step.stepId, service: step.service, kind: step.kind, summary: step.summary,
                            state: step.state.rawValue, attempts: step.attempts, startedAt: step.startedAt,
                            finishedAt: step.finishedAt, durationSeconds: step.duration,
                            attemptStartedAt: step.lostToEarlierAttempts.flatMap { _ in step.attemptStartedAt },
                            lostSeconds: step.lostToEarlierAttempts, waitingFor: step.waitingFor,
                            error: step.error, outputTail: step.output.map { Self.tail($0, lines: Self.tailLines) },
                            pid: step.pid, processGroup: step.processGroup, node: nodes[step.stepId])
                    }))
        }
        self.stages = stages
        let restored = steps.filter { $0.kind == .restore && $0.state == .succeeded }.compactMap { step in
            step.result.flatMap {
                try? JSONDecoder.journal.decode(FailoverEngine.RestoreResult.self, from: Data($0.utf8))
            }
        }
        // A failback's sets come back by replication: the final pass (after the secondary was
        // quiesced) when it ran, else the reverse pass. Nothing is restored, so there is no window.
        let replicated = steps.filter { $0.kind == .replicate && $0.state == .succeeded }
            .sorted { ($0.stepId.hasPrefix("final/") ? 1 : 0) > ($1.stepId.hasPrefix("final/") ? 1 : 0) }
            .compactMap { step in
                step.result.flatMap { try? JSONDecoder.journal.decode(SetVersionInfo.self, from: Data($0.utf8)) }
            }
        if run.direction == Planner.Direction.failback.rawValue {
            self.sets = sets.map { set in
                let copy = replicated.first { $0.set == set.name }
                return SetWindow(
                    name: set.name, core: set.core, version: copy?.version, capturedAt: copy?.capturedAt,
                    lossWindowSeconds: nil, restoredTo: nil, problem: set.problem)
            }
        } else {
            self.sets = Self.windows(sets, restored: restored, declaredAt: run.declaredAt)
        }
        self.decisions = decisions.map {
            Decision(at: $0.at, kind: $0.kind, lead: $0.lead, reason: $0.reason, target: $0.target)
        }
        self.notRestored = plan?.notRestored ?? []
        self.dnsReplaced =
            run.dnsReplaced.flatMap { try? JSONDecoder.journal.decode([ReplacedRecord].self, from: Data($0.utf8)) }
            ?? []
        let recovery = steps.filter { $0.stageKind != .optional }
        if recovery.allSatisfy({ $0.state.isFinished }), let last = recovery.compactMap(\.finishedAt).max() {
            recoverySeconds = last.timeIntervalSince(run.declaredAt)
        } else {
            recoverySeconds = nil
        }
        if let stage = plan?.stages.first(where: { $0.kind == .dns }), let srv = stage.clientViewSRV {
            let cutover = steps.first { $0.stepId == FailoverEngine.dnsStepId && $0.state == .succeeded }
            let view = steps.first { $0.stepId == "dns/client-view" && $0.state == .succeeded }
            let authoritative = cutover?.finishedAt.map { $0.timeIntervalSince(run.declaredAt) }
            let client = view?.finishedAt.map { $0.timeIntervalSince(run.declaredAt) }
            let delay: Double? = client.flatMap { c in authoritative.map { c - $0 } }
            clientVisible = ClientVisibleRecovery(
                srv: srv, authoritativeSeconds: authoritative, clientVisibleSeconds: client, ttl: stage.clientViewTTL,
                cacheDelaySeconds: delay)
        }
    }

    /// A failover's sets: the version restored (or to be restored) and its data-loss window.
    static func windows(
        _ sets: [RunSet], restored: [FailoverEngine.RestoreResult], declaredAt: Date
    ) -> [SetWindow] {
        sets.map { set in
            let copy = restored.first { $0.set == set.name }
            let capturedAt = copy?.capturedAt ?? set.capturedAt
            return SetWindow(
                name: set.name, core: set.core, version: copy?.version ?? set.version, capturedAt: capturedAt,
                lossWindowSeconds: capturedAt.map { declaredAt.timeIntervalSince($0) } ?? set.lossWindowSeconds,
                restoredTo: copy?.path, problem: set.problem)
        }
    }

    static func tail(_ text: String, lines: Int) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        let trimmed = all.last == "" ? all.dropLast() : all[...]
        return trimmed.suffix(lines).joined(separator: "\n")
    }
}

/// Where a run stands, for `standby status`.
public struct RunStatus: Sendable, Codable {
    public var id: String
    public var state: String
    public var lead: String
    public var reason: String
    public var declaredAt: Date
    public var elapsedSeconds: Double
    /// The stage the run is in (the first with an unfinished step), or nil when done.
    public var stage: Int?
    public var stageTitle: String?
    /// The step executing, waiting or halted.
    public var currentStep: String?
    public var currentStepState: String?
    public var waitingFor: String?
    public var note: String?
    public var stepsDone: Int
    public var stepsTotal: Int

    public init(run: FailoverRun, steps: [RunStep], now: Date) {
        id = run.id
        state = run.state.rawValue
        lead = run.lead
        reason = run.reason
        declaredAt = run.declaredAt
        elapsedSeconds = (run.finishedAt ?? now).timeIntervalSince(run.declaredAt)
        let current =
            steps.first { [.running, .failed, .interrupted, .waitingConfirm].contains($0.state) }
            ?? steps.first { !$0.state.isFinished }
        stage = current?.stage
        stageTitle = current.flatMap { step in run.decodedPlan()?.stages.first { $0.number == step.stage }?.title }
        currentStep = current?.stepId
        currentStepState = current?.state.rawValue
        waitingFor = current?.waitingFor ?? current?.error
        note = run.note
        stepsDone = steps.filter { $0.state.isFinished }.count
        stepsTotal = steps.count
    }
}
