import Foundation
import Logging
import StandbyCore
import Synchronization

/// A command in cluster mode, on any controller: it reads and writes the cluster's journal in
/// etcd. A command that changes the run takes the cluster's controller lock on a lease of its own
/// (kept alive while it works, revoked when it ends; a killed command's lock lapses with the
/// lease), applies its decision, then asks the leader to carry the run on and follows the run
/// until the leader answered: only the leader runs steps.
final class ClusterSession: Sendable {
    let settings: ClusterSettings
    let keys: ClusterKeys
    let node: String
    let client: EtcdClient
    let fence: ClusterFence
    let logger: Logger
    private let held = LockedLease()

    init(settings: ClusterSettings, deployment: String, node: String) {
        self.settings = settings
        self.node = node
        keys = ClusterKeys(deployment: deployment)
        logger = Logger(label: "standby.cluster")
        client = EtcdClient(endpoints: settings.etcd, timeout: .seconds(2), logger: logger)
        fence = ClusterFence(node: node)
    }

    deinit { unlock() }

    var journal: ClusterJournal { ClusterJournal(client: client, keys: keys, fence: fence) }

    /// Takes the cluster's controller lock, or exit 3 naming who holds it.
    func lock(what: String) throws {
        let lease = try client.grantLease(ttl: settings.ttlSeconds)
        let holder = ClusterLock.Holder(
            node: node, host: ControllerLock.hostName(), pid: Int(getpid()), what: what)
        let busy: ClusterLock.Holder?
        do {
            busy = try ClusterLock.acquire(client: client, keys: keys, lease: lease, fence: fence, holder: holder)
        } catch {
            try? client.revoke(lease)
            throw error
        }
        if let busy {
            try? client.revoke(lease)
            throw CommandExit(
                .refused, "refused: another standby controller is executing for \(keys.prefix): \(busy.description)")
        }
        let renewal = EtcdClient(endpoints: settings.etcd, timeout: .seconds(2), logger: logger)
        let round = Duration.milliseconds(max(200, settings.ttl.milliseconds / 3))
        let task = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: round)
                _ = try? renewal.keepAlive(lease)
            }
        }
        held.set(lease: lease, renewal: task)
    }

    /// Drops the lock and its lease.
    func unlock() {
        guard let (lease, renewal) = held.take() else { return }
        renewal.cancel()
        ClusterLock.release(client: client, keys: keys, fence: fence)
        try? client.revoke(lease)
    }

    /// Asks the leader to carry the run on (fenced by our lock), then lets go of the lock.
    func requestResume(command: String, at: Date, earlierAttempts: FailoverEngine.EarlierAttempts) throws {
        let request = ResumeRequest(
            node: node, command: command, at: at, earlierAttempts: earlierAttempts == .end ? "end" : "wait")
        try journal.write("ask the leader to carry the run on", [.put(keys.resume, try ClusterJournal.encode(request))])
        unlock()
    }

    /// Waits until the leader has answered the request and the run is not running, printing each
    /// step's changes as they land in the journal; the outcome as the engine would have said it.
    func follow(runId: String) async throws -> FailoverEngine.Outcome {
        var seen: [String: String] = [:]
        var leaderless: ContinuousClock.Instant?
        var lastLeader: String?
        while true {
            let pending = try client.get(keys.resume) != nil
            guard let run = try journal.run(id: runId) else {
                throw FailoverError(.badInput, "no run \(runId) in etcd under \(keys.prefix)")
            }
            for step in try journal.steps(runId: runId) where seen[step.stepId] != step.state.rawValue {
                if seen[step.stepId] != nil || step.state != .pending {
                    print("  \(RunReport.time(Date()))  \(step.stepId): \(step.state.rawValue)")
                    fflush(nil)
                }
                seen[step.stepId] = step.state.rawValue
            }
            // The leader is read before the run's end is: a new leader that finishes the run
            // between two polls is still named.
            let leader = try client.get(keys.leader)?.text
            if leader != lastLeader, let leader {
                print("  \(RunReport.time(Date()))  leader: node \(leader)")
                fflush(nil)
            }
            lastLeader = leader
            if !pending && run.state != .running {
                return try outcome(run)
            }
            if leader == nil {
                let since = leaderless ?? .now
                leaderless = since
                if since.duration(to: .now) > .milliseconds(settings.ttl.milliseconds * 3) {
                    throw CommandExit(
                        .failed,
                        "standby: no controller leads \(keys.prefix) (is `standby run` up on a node?); run \(runId) is \(run.state.rawValue) and waits for a leader, which carries it on when it starts"
                    )
                }
            } else {
                leaderless = nil
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func outcome(_ run: FailoverRun) throws -> FailoverEngine.Outcome {
        switch run.state {
        case .done: return .done
        case .aborted: return .aborted
        case .waiting: return .waiting(run.note ?? "")
        case .running, .halted:
            let steps = try journal.steps(runId: run.id)
            guard let stuck = steps.first(where: { $0.state == .failed || $0.state == .interrupted }) else {
                return .halted(stepId: "?", message: run.note ?? "halted", output: "")
            }
            return .halted(
                stepId: stuck.stepId, message: stuck.error ?? stuck.state.rawValue, output: stuck.output ?? "")
        }
    }

    /// Who leads, and each node's registration with its lease's remaining time.
    func members() throws -> (leader: EtcdKeyValue?, nodes: [(NodeRegistration, Int64)]) {
        let leader = try client.get(keys.leader)
        var nodes: [(NodeRegistration, Int64)] = []
        for item in try client.list(prefix: keys.nodes) {
            guard let registration = try? ClusterJournal.decode(NodeRegistration.self, item) else {
                continue
            }
            nodes.append((registration, (try? client.timeToLive(item.lease)) ?? -1))
        }
        return (leader, nodes)
    }
}

/// The lock's lease and its renewal task, under a lock of their own.
final class LockedLease: Sendable {
    private let state = Mutex<(Int64, Task<Void, Never>)?>(nil)

    func set(lease: Int64, renewal: Task<Void, Never>) { state.withLock { $0 = (lease, renewal) } }

    func take() -> (Int64, Task<Void, Never>)? {
        state.withLock { current in
            defer { current = nil }
            return current
        }
    }
}
