import Foundation

/// The `cluster:` section: two or more controllers at the secondary site share one etcd. Absent,
/// the controller is alone and keeps its journal in SQLite. The environment can give it too
/// (`STANDBY_ETCD=URL,URL,...`, `STANDBY_CLUSTER_TTL=10s`), and overrides the file.
public struct ClusterSettings: Sendable {
    /// The etcd members' client URLs (`http://10.1.0.21:2379`).
    public var etcd: [String]
    /// How long a leader that stops renewing its lease stays leader: the takeover time is at most
    /// this plus one round (`ttl / 3`).
    public var ttl: TimeSpan = TimeSpan(seconds: 10)
    public var location: SourceLocation = .unknown

    public init(etcd: [String], ttl: TimeSpan = TimeSpan(seconds: 10)) {
        self.etcd = etcd
        self.ttl = ttl
    }

    /// The lease's TTL in whole seconds, as etcd takes it (at least 2).
    public var ttlSeconds: Int { max(2, Int((Double(ttl.milliseconds) / 1000).rounded(.up))) }

    /// The settings with the environment's `STANDBY_ETCD` and `STANDBY_CLUSTER_TTL` applied.
    public static func resolve(_ file: ClusterSettings?, environment: [String: String]) -> ClusterSettings? {
        var settings = file
        if let list = environment["STANDBY_ETCD"], !list.isEmpty {
            let urls = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            settings = ClusterSettings(etcd: urls, ttl: file?.ttl ?? TimeSpan(seconds: 10))
        }
        if var resolved = settings, let text = environment["STANDBY_CLUSTER_TTL"], let ttl = TimeSpan.parse(text),
            ttl.milliseconds > 0
        {
            resolved.ttl = ttl
            settings = resolved
        }
        return settings
    }
}
