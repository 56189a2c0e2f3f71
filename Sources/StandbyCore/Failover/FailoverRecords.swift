import Foundation
import GRDB

/// A failover (or failback) run: declared by a lead, persisted with every step before anything
/// executes, and carried to its end by `failover`, `resume`, `confirm`, `retry` and `skip`.
public struct FailoverRun: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "failover_run"

    public enum State: String, Sendable, Codable {
        /// Steps are executing, or the controller died while they were.
        case running
        /// Waiting for a confirmation or an off-peak window (exit 4).
        case waiting
        /// A step failed or was interrupted: `retry` or `skip` it (exit 1).
        case halted
        /// Ended by `abort`.
        case aborted
        /// Every step succeeded or was skipped.
        case done

        public var isActive: Bool { self != .aborted && self != .done }
    }

    public var id: String
    public var deployment: String
    public var scenario: String
    public var direction: String
    public var reason: String
    public var lead: String
    public var planned: Bool
    public var state: State
    public var declaredAt: Date
    public var finishedAt: Date?
    /// The plan as declared (JSON of `FailoverPlan`).
    public var plan: String
    /// The record sets the DNS cutover replaced (JSON of `[ReplacedRecord]`), for failback.
    public var dnsReplaced: String?
    /// Why the run stopped, in a line: the failed step, what it waits for.
    public var note: String?
    /// A failback: the failover run it returns from (migration v3).
    public var returnsFrom: String? = nil

    public func decodedPlan() -> FailoverPlan? {
        try? JSONDecoder.journal.decode(FailoverPlan.self, from: Data(plan.utf8))
    }
}

/// One step of a run, in plan order (`seq`).
public struct RunStep: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "failover_step"

    public enum State: String, Sendable, Codable {
        case pending, running, succeeded, failed, skipped
        /// Found `running` after the controller died, and not idempotent: `retry` or `skip` it.
        case interrupted
        /// A manual step waiting for `standby confirm`.
        case waitingConfirm = "waiting-confirm"
        /// An optional service's step waiting for the secondary's off-peak window.
        case waitingOffPeak = "waiting-off-peak"

        public var isFinished: Bool { self == .succeeded || self == .skipped }
    }

    public var runId: String
    public var seq: Int
    public var stage: Int
    public var stageKind: FailoverPlan.Stage.Kind
    public var service: String
    /// `service/step`, or `dns/cutover` for stage 2.
    public var stepId: String
    public var kind: StepKind
    public var summary: String
    public var idempotent: Bool
    public var retries: Int
    public var state: State
    public var attempts: Int
    /// When the first attempt started.
    public var startedAt: Date?
    public var finishedAt: Date?
    /// What the step waits for, in words (an instruction, a window opening).
    public var waitingFor: String?
    /// The last 64 KiB of the step's output (stdout and stderr, interleaved).
    public var output: String?
    public var error: String?
    /// What the step produced: a restored path, a reply status, the replaced DNS values (JSON).
    public var result: String?
    /// The process of an exec step's latest attempt, so an operator (and the next controller) can
    /// find it after a crash.
    public var pid: Int?
    /// That process's start time, clock ticks since boot (`/proc/PID/stat` field 22): with the pid,
    /// it tells the process from a later one that got the same pid (migration v4).
    public var processStartTicks: Int? = nil
    /// That process's group: the program and everything it started (migration v4).
    public var processGroup: Int? = nil
    /// When the latest attempt started; `startedAt` is the first's. A live earlier attempt is
    /// waited for until this plus the step's timeout (migration v4).
    public var attemptStartedAt: Date? = nil

    /// The latest attempt's process as recorded, when it had one.
    public var process: StepProcess? {
        get {
            guard let pid, let processStartTicks else { return nil }
            return StepProcess(pid: pid, startTicks: processStartTicks, group: processGroup ?? pid)
        }
        set {
            pid = newValue?.pid
            processStartTicks = newValue?.startTicks
            processGroup = newValue?.group
        }
    }

    /// The last attempt's start to the step's end: what the step took when it went through, without
    /// a crash or failed attempts before it.
    public var duration: TimeInterval? {
        guard let start = attemptStartedAt ?? startedAt, let finishedAt else { return nil }
        return finishedAt.timeIntervalSince(start)
    }

    /// The first attempt's start to the last attempt's start, when there were earlier attempts:
    /// the time lost to a crash of the controller, to failed attempts and the delays between them.
    public var lostToEarlierAttempts: TimeInterval? {
        guard attempts > 1, let startedAt, let attemptStartedAt, attemptStartedAt > startedAt else { return nil }
        return attemptStartedAt.timeIntervalSince(startedAt)
    }
}

/// Who decided what, when and why: declare, confirm, skip, retry, abort, override.
public struct RunDecision: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "failover_decision"

    public var id: Int64?
    public var runId: String
    public var at: Date
    public var kind: String
    public var lead: String
    public var reason: String
    /// The step or service the decision is about, when there is one.
    public var target: String?

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A backup set as the lead saw it at declaration: the version the run restores and its
/// data-loss window (declaration − capture time).
public struct RunSet: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "failover_set"

    public var runId: String
    public var name: String
    public var core: Bool
    public var version: String?
    public var capturedAt: Date?
    public var lossWindowSeconds: Double?
    public var problem: String?
}

/// The deployment's lease: one active run at a time. Taken at preflight (before a run exists),
/// kept while the run is active, dropped when it is done or aborted.
public struct FailoverLease: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "failover_lease"

    public var deployment: String
    public var runId: String
    public var lead: String
    public var pid: Int
    public var host: String
    public var since: Date

    public init(deployment: String, runId: String, lead: String, pid: Int, host: String, since: Date) {
        self.deployment = deployment
        self.runId = runId
        self.lead = lead
        self.pid = pid
        self.host = host
        self.since = since
    }
}

/// A declaration that never became a run: who tried, when, and why it stopped.
public struct AbandonedDeclaration: Sendable, Codable, Equatable {
    public var deployment: String
    public var runId: String
    public var lead: String
    public var at: Date
    public var why: String

    public init(deployment: String, runId: String, lead: String, at: Date, why: String) {
        self.deployment = deployment
        self.runId = runId
        self.lead = lead
        self.at = at
        self.why = why
    }

    static func key(_ deployment: String) -> String { "abandoned declaration:\(deployment)" }

    // Milliseconds, not the journal's whole-second ISO 8601: `at` is compared with the declaration
    // time of a run that may have begun and ended within the same second.
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }
}

extension JSONDecoder {
    static var journal: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

extension JSONEncoder {
    static var journal: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
