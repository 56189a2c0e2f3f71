import Foundation

/// The service's job times in etcd (`jobs/KEY`), for cluster mode: the leader that takes over
/// continues the schedule where the last one left it. Every write is fenced by the current term;
/// a node that does not lead writes nothing.
public struct ClusterJobTimes: Sendable {
    public let client: EtcdClient
    public let keys: ClusterKeys
    /// The fence of the term this node leads now, nil when it does not.
    public let fence: @Sendable () -> ClusterFence?

    public init(client: EtcdClient, keys: ClusterKeys, fence: @escaping @Sendable () -> ClusterFence?) {
        self.client = client
        self.keys = keys
        self.fence = fence
    }

    public func records() throws -> [String: JobRecord] {
        var records: [String: JobRecord] = [:]
        for item in try client.list(prefix: keys.jobs) {
            let record = try ClusterJournal.decode(JobRecord.self, item)
            records[record.key] = record
        }
        return records
    }

    /// Reads the job's record, changes it, and writes it back in one fenced transaction.
    public func change(_ key: String, _ body: (inout JobRecord) -> Void) throws {
        guard let fence = fence() else {
            throw FailoverError(.deposed, "deposed: this node does not lead the cluster; job \(key) not recorded")
        }
        let item = try client.get(keys.job(key))
        var record =
            try item.map { try ClusterJournal.decode(JobRecord.self, $0) }
            ?? JobRecord(
                key: key, lastStarted: nil, lastFinished: nil, lastSucceeded: nil, failures: 0, detail: "")
        body(&record)
        try ClusterJournal(client: client, keys: keys, fence: fence).write(
            "record job \(key)", [.put(keys.job(key), try ClusterJournal.encode(record))])
    }
}
