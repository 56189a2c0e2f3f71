import Foundation

/// Something `standby run` does on a schedule. Health watching is not a job: the health watcher
/// runs beside the jobs on its own interval grid, so a replication that takes an hour never delays
/// a probe round.
public enum ServiceJob: Sendable, Hashable, CustomStringConvertible {
    /// Replicate one backup set: a snapshot on its `every` schedule, or the daily full.
    case replicate(set: String, full: Bool)
    /// Resume a failover run whose optional stage waits for the secondary's off-peak window.
    case resumeFailover
    /// Re-read and re-hash a sample of the store (the nightly `verify --sample`).
    case verifySample
    /// Raise an alert that a drill or a review of the plan is overdue.
    case remind(Reminder)

    public enum Reminder: String, Sendable, Hashable, Codable, CaseIterable {
        case drill, review
    }

    /// Jobs in different lanes run at the same time; jobs in one lane run one after another.
    /// Replication and verification share the store; the failover engine and reminders do not.
    public enum Lane: String, Sendable, Hashable, CaseIterable {
        case store, failover, alerts
    }

    public var lane: Lane {
        switch self {
        case .replicate, .verifySample: .store
        case .resumeFailover: .failover
        case .remind: .alerts
        }
    }

    /// The key its times are persisted under in the state store.
    public var key: String {
        switch self {
        case .replicate(let set, false): "replicate:\(set)"
        case .replicate(let set, true): "full:\(set)"
        case .resumeFailover: "resume"
        case .verifySample: "verify-sample"
        case .remind(let reminder): "remind:\(reminder.rawValue)"
        }
    }

    public var description: String { key }
}

/// What the state store remembers of a job: when it last started and finished, and how it went.
/// A start newer than the last finish means the service died while the job ran.
public struct JobRecord: Sendable, Hashable, Codable {
    public var key: String
    public var lastStarted: Date?
    public var lastFinished: Date?
    public var lastSucceeded: Date?
    /// Failures since the last success.
    public var failures: Int
    public var detail: String

    public init(
        key: String, lastStarted: Date? = nil, lastFinished: Date? = nil, lastSucceeded: Date? = nil,
        failures: Int = 0, detail: String = ""
    ) {
        self.key = key
        self.lastStarted = lastStarted
        self.lastFinished = lastFinished
        self.lastSucceeded = lastSucceeded
        self.failures = failures
        self.detail = detail
    }

    /// Started and never finished: the process died (or was stopped) in the middle.
    public var interrupted: Bool {
        guard let lastStarted else { return false }
        return lastFinished.map { $0 < lastStarted } ?? true
    }
}
