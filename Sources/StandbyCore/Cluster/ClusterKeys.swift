import Foundation

/// Where a deployment's cluster state lives in etcd: every key under `/standby/DEPLOYMENT/`.
///
/// - `leader`: the leader's node id, on the leader's lease; its create revision names the term.
/// - `nodes/NODE`: each controller's registration, on its own lease (status shows each).
/// - `lock`: who executes the run now (the leader's engine, or a command applying a decision).
/// - `run/ID`, `step/ID/SEQ`, `decision/ID/TIME`, `set/ID/NAME`: the failover journal.
/// - `lease`: the run lease (one active run); `abandoned`: the last declaration that never became a run.
/// - `resume`: a command's request that the leader carry the run on; `jobs/KEY`: the service's job times.
/// - `alerts/SITE`: the site verdict the leader last announced to the health webhooks.
public struct ClusterKeys: Sendable {
    public let prefix: String

    public init(deployment: String) { prefix = "/standby/\(deployment)/" }

    public var leader: String { prefix + "leader" }
    public var nodes: String { prefix + "nodes/" }
    public func node(_ id: String) -> String { nodes + id }
    public var lock: String { prefix + "lock" }
    public var runs: String { prefix + "run/" }
    public func run(_ id: String) -> String { runs + id }
    public func steps(_ runId: String) -> String { prefix + "step/\(runId)/" }
    public func step(_ runId: String, _ seq: Int) -> String {
        steps(runId) + String(repeating: "0", count: max(0, 6 - String(seq).count)) + String(seq)
    }
    public func decisions(_ runId: String) -> String { prefix + "decision/\(runId)/" }
    public func sets(_ runId: String) -> String { prefix + "set/\(runId)/" }
    public func set(_ runId: String, _ name: String) -> String { sets(runId) + name }
    public var runLease: String { prefix + "lease" }
    public var abandoned: String { prefix + "abandoned" }
    public var resume: String { prefix + "resume" }
    public var jobs: String { prefix + "jobs/" }
    public func job(_ key: String) -> String { jobs + key }
    public var alerts: String { prefix + "alerts/" }
    public func alert(_ site: String) -> String { alerts + site }
}
