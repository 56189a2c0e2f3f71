import Foundation

/// The cluster's controller lock: the `lock` key, created by a transaction on its create revision
/// and put on the holder's lease, so it goes when the holder dies. The leader holds it while its
/// engine moves the run; a command holds it while it applies a decision. What `ControllerLock`'s
/// flock is for one machine.
public enum ClusterLock {
    public struct Holder: Sendable, Codable {
        public var node: String
        public var host: String
        public var pid: Int
        public var what: String
        public var since: Date

        public init(node: String, host: String, pid: Int, what: String, since: Date = Date()) {
            self.node = node
            self.host = host
            self.pid = pid
            self.what = what
            self.since = since
        }

        public var description: String {
            "\(what) (node \(node), pid \(pid) on \(host) since \(RunReport.time(since)))"
        }
    }

    /// Takes the lock on `lease` (compared with `fence` too); on success the fence holds it. Returns
    /// the holder that keeps it otherwise.
    public static func acquire(
        client: EtcdClient, keys: ClusterKeys, lease: Int64, fence: ClusterFence, holder: Holder
    ) throws -> Holder? {
        let value = try ClusterJournal.encode(holder)
        let result = try client.txn(
            try fence.compares() + [.createRevision(keys.lock, 0)],
            success: [.put(keys.lock, value, lease: lease)], failure: [.range(keys.lock)],
            what: "take the controller lock")
        if result.succeeded {
            fence.hold(keys.lock, createRevision: result.revision, what: "the controller lock")
            return nil
        }
        guard let held = result.ranges.first?.first else {
            // The fence failed, not the lock: this process is deposed.
            throw ClusterJournal(client: client, keys: keys, fence: fence).deposed("take the controller lock")
        }
        return (try? ClusterJournal.decode(Holder.self, held))
            ?? Holder(node: "?", host: "?", pid: 0, what: "unknown")
    }

    /// Drops the lock if this fence still holds it.
    public static func release(client: EtcdClient, keys: ClusterKeys, fence: ClusterFence) {
        guard let held = fence.holdings.first(where: { $0.key == keys.lock }) else { return }
        _ = try? client.txn(
            [.createRevision(keys.lock, held.createRevision)], success: [.delete(keys.lock)],
            what: "release the controller lock")
        fence.release(keys.lock)
    }

    public static func holder(client: EtcdClient, keys: ClusterKeys) throws -> Holder? {
        guard let item = try client.get(keys.lock) else { return nil }
        return try? ClusterJournal.decode(Holder.self, item)
    }
}

/// A command's request that the leader carry the run on (`resume` key): who asked, and the time
/// the off-peak windows are judged at (`--at`, else now).
public struct ResumeRequest: Sendable, Codable {
    public var node: String
    public var command: String
    public var at: Date
    public var earlierAttempts: String

    public init(node: String, command: String, at: Date, earlierAttempts: String = "wait") {
        self.node = node
        self.command = command
        self.at = at
        self.earlierAttempts = earlierAttempts
    }
}
