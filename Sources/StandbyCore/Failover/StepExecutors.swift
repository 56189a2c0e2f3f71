import Foundation

/// What a step of a run does. The journal stores the raw value (`failover_step.kind`), and the
/// report's JSON shows it.
public enum StepKind: String, Sendable, Codable, CaseIterable {
    /// A backup set materialised from the store (`restore:`).
    case restore
    /// A program, with a timeout and its own process group (`exec:`).
    case exec
    /// A webhook or runbook call (`http:`).
    case http
    /// Waits until a health probe passes (`probe:`).
    case probe
    /// A person does something; the run waits for `standby confirm`.
    case manual
    /// Failback's reverse replication and last pass (`reverse/SET`, `final/SET`).
    case replicate
    /// Stage 2's cutover of the SIP records (`dns/cutover`).
    case dns
}

/// One attempt of one step, as an executor sees it.
struct StepContext {
    var step: RunStep
    /// The step as the topology defines it; nil for the built-in steps (dns, reverse, final) or
    /// a step no longer in the file.
    var definition: Step?
    var run: FailoverRun
    var variables: StepVariables
    /// Where an exec step's process is recorded as soon as it exists.
    var spawned: SpawnedProcess
    /// The file the definition came from, for errors.
    var topologyFile: String

    var timeout: Duration? { definition?.timeout?.duration }
    var what: String { "step \(step.stepId)" }

    /// The definition, or the error a lead can act on.
    func requireDefinition() throws -> Step {
        guard let definition else {
            throw FailoverEngine.StepFailure(
                message: "step \(step.stepId) is no longer in \(topologyFile); fix the file or `standby skip` it",
                output: "")
        }
        return definition
    }
}

/// Runs one kind of step. The engine schedules and journals every step the same way and hands
/// the side effect to the executor of its kind (`FailoverEngine.executor(for:)`); a failure is a
/// `StepFailure` (retried) or a refusal (`FailoverError` `.refused`: not retried, exit 3).
protocol StepExecutor: Sendable {
    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess
}

struct ExecStepExecutor: StepExecutor {
    var topology: Topology
    var journal: FailoverJournal
    var stateDirectory: StateDirectory
    /// The controller's environment; `ExecStep` strips its secrets.
    var environment: [String: String]

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        guard
            case .exec(let arguments, let shell, let environment, let workingDirectory) =
                try context.requireDefinition().action
        else { throw FailoverEngine.StepFailure(message: "\(context.what) is not an exec step", output: "") }
        let (variables, what) = (context.variables, context.what)
        var args = try arguments.map { try variables.substitute($0, in: what) }
        // A program named by a relative path (`scripts/start-fe`) lives beside site.yaml.
        if !shell, let program = args.first, program.contains("/"), !program.hasPrefix("/") {
            args[0] = topology.resolve(path: program)
        }
        var env: [String: String] = [:]
        for (key, value) in environment { env[key] = try variables.substitute(value, in: what) }
        let cwd = try workingDirectory.map { topology.resolve(path: try variables.substitute($0, in: what)) }
        let logDirectory = stateDirectory.file("runs/\(context.run.id)")
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        let log = (logDirectory as NSString).appendingPathComponent(
            context.step.stepId.replacingOccurrences(of: "/", with: ".") + ".log")
        let exec = ExecStep(
            arguments: args, shell: shell, environment: env, inherited: self.environment, workingDirectory: cwd,
            timeout: context.timeout, logFile: log)
        let (journal, step, spawned) = (journal, context.step, context.spawned)
        let outcome = try await exec.run { pid in
            // Committed as soon as the process exists: the next controller needs it to tell
            // whether this attempt still runs. A process already reaped leaves only its pid.
            var running = step
            if let process = StepProcess.current(pid: pid) {
                running.process = process
                spawned.set(process)
            } else {
                running.pid = pid
            }
            try? journal.update(running)
        }
        // Secrets reach programs through the environment; they never reach the journal.
        let tail = FailoverEngine.redact(outcome.tail, secrets: Array(env.values))
        guard outcome.succeeded else { throw FailoverEngine.StepFailure(message: outcome.status, output: tail) }
        return FailoverEngine.StepSuccess(output: tail, result: outcome.status)
    }
}

struct RestoreStepExecutor: StepExecutor {
    var topology: Topology
    var journal: FailoverJournal
    var catalog: any BackupCatalog
    var restorer: any Restorer

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        guard case .restore(let set, let to) = try context.requireDefinition().action else {
            throw FailoverEngine.StepFailure(message: "\(context.what) is not a restore step", output: "")
        }
        let directory = topology.resolve(path: try context.variables.substitute(to, in: context.what))
        // The version the declaration recorded; the newest verified one for a step added later.
        let recorded = try journal.sets(runId: context.run.id).first { $0.name == set }
        var version = recorded?.version
        var capturedAt = recorded?.capturedAt
        if version == nil, let newest = try await catalog.newestVerified(set: set) {
            version = newest.version
            capturedAt = newest.capturedAt
        }
        guard let version else {
            throw FailoverEngine.StepFailure(
                message: "backup set \(set) has no verified version in the store", output: "")
        }
        let path = try await restorer.restore(set: set, version: version, to: directory)
        let result = FailoverEngine.RestoreResult(set: set, version: version, capturedAt: capturedAt, path: path)
        return FailoverEngine.StepSuccess(
            output: "restored \(set) version \(version) to \(path)",
            result: String(decoding: try JSONEncoder.journal.encode(result), as: UTF8.self))
    }
}

struct HTTPStepExecutor: StepExecutor {
    var http: any HTTPCaller

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        guard
            case .http(let url, let method, let body, let headers, let expect) = try context.requireDefinition().action
        else { throw FailoverEngine.StepFailure(message: "\(context.what) is not an http step", output: "") }
        let (variables, what) = (context.variables, context.what)
        let target = try variables.substitute(url, in: what)
        var sent: [String: String] = [:]
        for (key, value) in headers { sent[key] = try variables.substitute(value, in: what) }
        let reply = try await http.call(
            method: method, url: target, headers: sent, body: try body.map { try variables.substitute($0, in: what) },
            timeout: context.timeout ?? .seconds(60))
        let text = FailoverEngine.redact(
            "\(method) \(target) → \(reply.status)\n" + String(reply.body.suffix(ExecStep.tailLimit)),
            secrets: Array(sent.values))
        guard expect.contains(reply.status) else {
            throw FailoverEngine.StepFailure(
                message:
                    "\(method) \(target) answered \(reply.status), expected \(expect.map(String.init).joined(separator: "/"))",
                output: text)
        }
        return FailoverEngine.StepSuccess(output: text, result: "\(reply.status)")
    }
}

struct ProbeStepExecutor: StepExecutor {
    var topology: Topology
    var probes: any ProbeWaiter

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        guard case .probe(let name) = try context.requireDefinition().action else {
            throw FailoverEngine.StepFailure(message: "\(context.what) is not a probe step", output: "")
        }
        guard let probe = topology.probe(named: name) else {
            throw FailoverEngine.StepFailure(message: "no probe \(name) in health.probes", output: "")
        }
        let evidence = try await probes.waitUntilPassing(probe, timeout: context.timeout ?? .seconds(300))
        return FailoverEngine.StepSuccess(output: evidence, result: nil)
    }
}

/// A manual step has no side effect of its own: the engine parks it as waiting-confirm, and
/// `standby confirm` records that the person did it.
struct ManualStepExecutor: StepExecutor {
    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        throw FailoverEngine.StepFailure(message: "a manual step runs only through `standby confirm`", output: "")
    }
}

/// Failback's reverse replication (`reverse/SET`) and last pass (`final/SET`): the set's
/// `failback_source` into the store as a new verified version.
struct ReplicateStepExecutor: StepExecutor {
    var topology: Topology
    var catalog: any BackupCatalog

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        let stepId = context.step.stepId
        let name = stepId.split(separator: "/", maxSplits: 1).last.map(String.init) ?? stepId
        guard let set = topology.backupSet(named: name) else {
            throw FailoverEngine.StepFailure(message: "backup set \(name) is no longer in \(topology.file)", output: "")
        }
        let sources = try set.failbackSource.map {
            try context.variables.substitute($0, in: "backup set \(name) failback_source")
        }
        guard !sources.isEmpty else {
            throw FailoverEngine.StepFailure(message: "backup set \(name) has no failback_source", output: "")
        }
        guard let version = try await catalog.replicate(set: name, sources: sources) else {
            throw FailoverEngine.StepFailure(
                message: "backup set \(name): no verified version after replicating", output: "")
        }
        return FailoverEngine.StepSuccess(
            output: "replicated \(name) from \(sources.joined(separator: ", ")): version \(version.version), verified",
            result: String(decoding: try JSONEncoder.journal.encode(version), as: UTF8.self))
    }
}

/// Stage 2: the compare-and-swap of the SIP records to the plan's targets, verified on every
/// authoritative server. The values it replaced go back with the success, and the engine
/// journals them with the run before the step's end, for failback.
struct DNSStepExecutor: StepExecutor {
    var topology: Topology
    var dns: any DNSCutting

    func execute(_ context: StepContext) async throws -> FailoverEngine.StepSuccess {
        guard let settings = topology.dns else {
            throw FailoverEngine.StepFailure(message: "the topology has no dns section any more", output: "")
        }
        let changes = context.run.decodedPlan()?.stages.first { $0.kind == .dns }?.dnsChanges ?? []
        let result = try await dns.cutover(settings, changes: changes, baseDirectory: topology.directory)
        var success = FailoverEngine.StepSuccess(
            output: result.log + "\nverified on: \(result.verifiedOn.joined(separator: ", "))",
            result: String(decoding: try JSONEncoder.journal.encode(result), as: UTF8.self))
        success.replacedRecords = String(decoding: try JSONEncoder.journal.encode(result.replaced), as: UTF8.self)
        return success
    }
}

extension FailoverEngine {
    /// The executor of each kind of step: the one place that knows what a kind does.
    func executor(for kind: StepKind) -> any StepExecutor {
        switch kind {
        case .exec:
            ExecStepExecutor(
                topology: topology, journal: journal, stateDirectory: stateDirectory, environment: environment)
        case .restore:
            RestoreStepExecutor(
                topology: topology, journal: journal, catalog: modules.catalog, restorer: modules.restorer)
        case .http: HTTPStepExecutor(http: modules.http)
        case .probe: ProbeStepExecutor(topology: topology, probes: modules.probes)
        case .manual: ManualStepExecutor()
        case .replicate: ReplicateStepExecutor(topology: topology, catalog: modules.catalog)
        case .dns: DNSStepExecutor(topology: topology, dns: modules.dns)
        }
    }
}
