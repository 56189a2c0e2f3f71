import Foundation
import StandbyBase
import StandbyProbes

/// The health watcher's announcer in cluster mode: every controller probes, only the leader posts
/// alerts, and the verdict last announced per site lives in etcd (`alerts/SITE`), written fenced by
/// the leader's term. A new leader thus posts what changed since its predecessor's last alert,
/// not that alert again.
public struct ClusterAlerts: AlertAnnouncer {
    let member: ClusterMember
    let client: EtcdClient

    struct Announced: Codable {
        var site: String
        var verdict: String
        var at: Date
        var node: String
    }

    public init(member: ClusterMember, client: EtcdClient) {
        self.member = member
        self.client = client
    }

    public var node: String { member.node }

    public var mayPost: Bool { member.term != nil }

    public func announced() async throws -> [ProbeSite: SiteVerdict] {
        let client = self.client
        let keys = member.keys
        return try await Blocking.run(name: "standby.cluster") { _ in
            var verdicts: [ProbeSite: SiteVerdict] = [:]
            for item in try client.list(prefix: keys.alerts) {
                let record = try ClusterJournal.decode(Announced.self, item)
                if let site = ProbeSite(rawValue: record.site), let verdict = SiteVerdict(rawValue: record.verdict) {
                    verdicts[site] = verdict
                }
            }
            return verdicts
        }
    }

    public func record(_ verdict: SiteVerdict, site: ProbeSite, at: Date) async throws {
        guard let term = member.term else {
            throw FailoverError(
                .deposed, "deposed: node \(member.node) no longer leads; the alert is the leader's to record")
        }
        let journal = ClusterJournal(client: client, keys: member.keys, fence: term.fence)
        let value = try ClusterJournal.encode(
            Announced(site: site.rawValue, verdict: verdict.rawValue, at: at, node: member.node))
        try await Blocking.run(name: "standby.cluster") { _ in
            try journal.write(
                "record the announced \(site.rawValue) verdict", [.put(journal.keys.alert(site.rawValue), value)])
        }
    }
}
