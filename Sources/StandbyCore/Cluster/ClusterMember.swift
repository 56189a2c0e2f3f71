import Foundation
import Logging
import StandbyBase
import Synchronization

/// One controller of a cluster: it holds a lease in etcd (renewed every `ttl / 3`), registers
/// itself under `nodes/NODE` on that lease, and campaigns for the leader key with a transaction on
/// the key's create revision (create it if it does not exist, on our lease). Whoever created the
/// key leads until its lease lapses; then the key is gone and the next round of another node
/// creates it.
///
/// A leader that cannot renew its lease for two thirds of the TTL (etcd unreachable, no quorum, the
/// process stopped) considers itself deposed before etcd expires the lease: its term's fence
/// refuses every further write, and the work of that term stops.
public final class ClusterMember: Sendable {
    public let settings: ClusterSettings
    public let node: String
    public let keys: ClusterKeys
    public let registration: NodeRegistration
    let client: EtcdClient
    let logger: Logger

    public struct Term: Sendable {
        /// The leader key's create revision: the term's name.
        public var revision: Int64
        public var since: Date
        public var fence: ClusterFence
    }

    struct State {
        var lease: Int64 = 0
        var renewedAt: ContinuousClock.Instant?
        var term: Term?
        /// Why the last round could not reach etcd, for status and the log.
        var problem: String?
        var leader: String?
    }
    private let state = Mutex(State())

    public init(
        settings: ClusterSettings, node: String, deployment: String, registration: NodeRegistration, logger: Logger
    ) {
        self.settings = settings
        self.node = node
        self.keys = ClusterKeys(deployment: deployment)
        self.registration = registration
        // Each call well inside a round, so a dead member costs a round at most.
        let round = Double(settings.ttl.milliseconds) / 3000
        client = EtcdClient(
            endpoints: settings.etcd, timeout: .milliseconds(Int64(max(500, min(2000, round * 1000 / 2)))),
            logger: logger)
        self.logger = logger
    }

    /// The member a `standby run` process is: registered with its host, pid and endpoint.
    public static func forService(
        settings: ClusterSettings, node: String, deployment: String, listen: String?, logger: Logger
    ) -> ClusterMember {
        ClusterMember(
            settings: settings, node: node, deployment: deployment,
            registration: NodeRegistration(
                node: node, host: ControllerLock.hostName(), pid: Int(getpid()), listen: listen, since: Date()),
            logger: logger)
    }

    /// How often the lease is renewed and the leader key looked at.
    public var roundLength: Duration { .milliseconds(max(200, settings.ttl.milliseconds / 3)) }

    /// The term this node leads now, if it does (and has not found itself deposed).
    public var term: Term? {
        state.withLock { state in
            guard let term = state.term, term.fence.deposed == nil else { return nil }
            return term
        }
    }

    public var problem: String? { state.withLock { $0.problem } }
    public var leader: String? { state.withLock { $0.leader } }
    public var lease: Int64 { state.withLock { $0.lease } }

    /// Renews and campaigns every round until cancelled; then resigns (revokes its lease, so
    /// another takes over at once rather than after the TTL).
    public func run() async {
        logger.info("Cluster member started", metadata: ["node": "\(node)", "etcd": "\(settings.etcd)"])
        while !Task.isCancelled {
            let began = ContinuousClock.now
            await Blocking.run(name: "standby.cluster") { _ in self.round() }
            let elapsed = began.duration(to: .now)
            if elapsed < roundLength { try? await Task.sleep(for: roundLength - elapsed) }
        }
        await Blocking.run(name: "standby.cluster") { _ in self.resign() }
    }

    /// One round: keep the lease, register, campaign, and find out whether this node leads.
    public func round() {
        let now = ContinuousClock.now
        var current = state.withLock { $0 }
        do {
            if current.lease != 0 {
                let ttl = try client.keepAlive(current.lease)
                if ttl <= 0 {
                    lose(&current, "its lease \(current.lease) expired in etcd")
                    current.lease = 0
                } else {
                    current.renewedAt = now
                }
            }
            if current.lease == 0 {
                current.lease = try client.grantLease(ttl: settings.ttlSeconds)
                current.renewedAt = now
                logger.info("Cluster lease granted", metadata: ["node": "\(node)", "lease": "\(current.lease)"])
            }
            var info = registration
            info.node = node
            info.lease = current.lease
            try client.put(keys.node(node), try ClusterJournal.encode(info), lease: current.lease)
            try campaign(&current)
            if current.problem != nil {
                logger.notice("etcd reachable again", metadata: ["node": "\(node)"])
            }
            current.problem = nil
        } catch {
            if current.problem == nil {
                logger.error("Cannot reach etcd", metadata: ["node": "\(node)", "error": "\(error)"])
            }
            current.problem = "\(error)"
            // Stop before etcd would expire the lease: the renewal etcd saw came before ours.
            if let renewed = current.renewedAt,
                renewed.duration(to: now) > .milliseconds(settings.ttl.milliseconds * 2 / 3)
            {
                lose(&current, "could not renew its lease for \(renewed.duration(to: now)) (\(error))")
                // The old lease is written off; a new one is granted once etcd answers again.
                if current.lease != 0 { try? client.revoke(current.lease) }
                current.lease = 0
                current.renewedAt = nil
            }
        }
        let updated = current
        state.withLock { $0 = updated }
    }

    func campaign(_ current: inout State) throws {
        let result = try client.txn(
            [.createRevision(keys.leader, 0)],
            success: [.put(keys.leader, Data(node.utf8), lease: current.lease)],
            failure: [.range(keys.leader)], what: "campaign for the leader key")
        if result.succeeded {
            let fence = ClusterFence(node: node)
            fence.hold(keys.leader, createRevision: result.revision, what: "the leader key")
            current.term = Term(revision: result.revision, since: Date(), fence: fence)
            current.leader = node
            logger.notice("Became the leader", metadata: ["node": "\(node)", "term": "\(result.revision)"])
            return
        }
        guard let holder = result.ranges.first?.first else { return }
        current.leader = holder.text
        if let term = current.term, term.revision == holder.createRevision, holder.lease == current.lease {
            return
        }
        if current.term != nil {
            lose(&current, "found another leader (\(holder.text), term \(holder.createRevision))")
        } else if holder.text == node, holder.lease != current.lease {
            // A leader key of this node's earlier life (killed and restarted): that process is gone
            // (one controller per node holds the service lock), so its lease goes now, not in a TTL.
            try? client.revoke(holder.lease)
        }
    }

    private func lose(_ current: inout State, _ reason: String) {
        guard let term = current.term else { return }
        term.fence.depose(reason)
        current.term = nil
        logger.error(
            "Deposed: no longer the leader; stopping before any further side effect",
            metadata: ["node": "\(node)", "term": "\(term.revision)", "reason": "\(reason)"])
    }

    /// Revokes the lease: the leader key and the registration go with it.
    public func resign() {
        let lease = state.withLock { state -> Int64 in
            if let term = state.term { term.fence.depose("resigned (shutting down)") }
            state.term = nil
            defer { state.lease = 0 }
            return state.lease
        }
        if lease != 0 { try? client.revoke(lease) }
    }
}

/// What a node says of itself under `nodes/NODE` (on its lease, so it goes when the node does).
public struct NodeRegistration: Sendable, Codable {
    public var node: String
    public var host: String
    public var pid: Int
    public var listen: String?
    public var since: Date
    public var lease: Int64

    public init(node: String, host: String, pid: Int, listen: String?, since: Date, lease: Int64 = 0) {
        self.node = node
        self.host = host
        self.pid = pid
        self.listen = listen
        self.since = since
        self.lease = lease
    }
}
