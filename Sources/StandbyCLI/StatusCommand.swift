import ArgumentParser
import Foundation
import StandbyCore
import StandbyProbes
import StandbyReplication

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            "Where the deployment stands: each backup set's data-loss window against its RPO, the sites' health, and the failover run.",
        discussion: "With --check, exit 1 when a backup set breaches its RPO (or has no verified version).")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var clock: ClockOptions

    @Flag(help: "Exit 1 when any backup set breaches its RPO.")
    var check = false

    struct SetRow: Encodable {
        var name: String
        var kind: String
        var rpoSeconds: Double
        var newestVersion: Int64?
        var capturedAt: Date?
        var ageSeconds: Double?
        var breached: Bool
        var versions: Int
        var sizeBytes: Int64
        var storedBytes: Int64
        var dedupRatio: Double
    }

    struct HealthSection: Encodable {
        var site: String
        var verdict: String
        var since: Date?
        var detail: String?
        var transitions: [Transition]
    }

    struct Transition: Encodable {
        var at: Date
        var subject: String
        var from: String
        var to: String
        var detail: String
    }

    struct Status: Encodable {
        var deployment: String
        var sets: [SetRow]
        var health: [HealthSection]
        var run: RunStatus?
        /// Cluster mode: who leads, and each node's lease.
        var cluster: ClusterStatus?
    }

    struct ClusterStatus: Encodable {
        struct Node: Encodable {
            var node: String
            var host: String
            var pid: Int
            var listen: String?
            var since: Date
            var lease: String
            /// Seconds left on the node's lease; -1 when it has lapsed.
            var leaseTTLSeconds: Int64
            var leader: Bool
        }
        var etcd: [String]
        var leader: String?
        /// The leader key's create revision: the leader's term.
        var term: Int64?
        var nodes: [Node]
        /// Why etcd could not be read, when it could not.
        var problem: String?
    }

    static func clusterStatus(_ session: ClusterSession) -> ClusterStatus {
        var status = ClusterStatus(etcd: session.settings.etcd, leader: nil, term: nil, nodes: [], problem: nil)
        do {
            let (leader, nodes) = try session.members()
            status.leader = leader?.text
            status.term = leader?.createRevision
            status.nodes = nodes.map { registration, ttl in
                ClusterStatus.Node(
                    node: registration.node, host: registration.host, pid: registration.pid,
                    listen: registration.listen, since: registration.since,
                    lease: String(registration.lease, radix: 16),
                    leaseTTLSeconds: ttl,
                    leader: leader?.text == registration.node && leader?.lease == registration.lease)
            }
        } catch {
            status.problem = "\(error)"
        }
        return status
    }

    static func clusterText(_ status: ClusterStatus) -> String {
        var lines = ["Cluster (etcd \(status.etcd.joined(separator: ", "))):"]
        if let problem = status.problem {
            lines.append("  etcd cannot be read: \(problem)")
            return lines.joined(separator: "\n")
        }
        lines.append(
            "  leader: "
                + (status.leader.map { "node \($0) (term \(status.term ?? 0))" } ?? "none (no controller leads)"))
        for node in status.nodes {
            let ttl = node.leaseTTLSeconds >= 0 ? "\(node.leaseTTLSeconds)s left" : "lapsed"
            lines.append(
                "  node \(node.node.padded(to: 12)) \(node.leader ? "leader  " : "follower") pid \(node.pid) on \(node.host), lease \(node.lease) (\(ttl)), up since \(RunReport.time(node.since))"
            )
        }
        return lines.joined(separator: "\n")
    }

    func run() async throws {
        let now = try clock.date()
        let context = try RunContext(site: site)
        let topology = context.topology
        var runStatus: RunStatus?
        if let run = try context.journal.currentRun(deployment: topology.deployment) {
            runStatus = RunStatus(run: run, steps: try context.journal.steps(runId: run.id), now: now)
        }
        let sets = try await Self.setRows(topology, state: context.stateDirectory, now: now)
        let health = Self.healthSections(state: context.stateDirectory)
        let cluster = context.cluster.map { Self.clusterStatus($0) }
        if output.json {
            try JSON.print(
                Status(deployment: topology.deployment, sets: sets, health: health, run: runStatus, cluster: cluster))
        } else {
            if let cluster {
                print(Self.clusterText(cluster))
                print("")
            }
            print(Self.setSection(sets))
            print("")
            print(Self.healthText(health))
            print("")
            print(Self.runSection(runStatus))
        }
        if check, sets.contains(where: \.breached) {
            throw CommandExit(
                .failed,
                output.json
                    ? nil
                    : "standby: RPO breached: \(sets.filter(\.breached).map(\.name).joined(separator: ", "))")
        }
    }

    /// One row per backup set of the topology, from the replication catalog; a set never
    /// replicated breaches its RPO.
    static func setRows(_ topology: Topology, state: StateDirectory, now: Date) async throws -> [SetRow] {
        let storePath = state.store(for: topology)
        var byName: [String: SetStatus] = [:]
        if FileManager.default.fileExists(atPath: storePath) {
            let store = try ReplicationCLI.openStore(topology, state: state)
            for status in try await store.status() { byName[status.name] = status }
        }
        return topology.backupSets.map { set in
            let status = byName[set.name]
            // The catalog's own RPO arithmetic; a set never replicated breaches its RPO.
            return SetRow(
                name: set.name, kind: set.kind.rawValue, rpoSeconds: set.rpo.seconds,
                newestVersion: status?.newestVerified?.id, capturedAt: status?.captureTime,
                ageSeconds: status?.captureTime.map { now.timeIntervalSince($0) },
                breached: status?.breaches(rpo: set.rpo.duration, now: now) ?? true,
                versions: status?.versionCount ?? 0, sizeBytes: status?.size ?? 0,
                storedBytes: status?.storedBytes ?? 0, dedupRatio: status?.dedupRatio ?? 0)
        }
    }

    static func setSection(_ rows: [SetRow]) -> String {
        var lines = ["Backup sets (data-loss window = now − capture time of the newest verified version):"]
        lines.append(
            "  "
                + [
                    "set".padded(to: 24), "version".padded(to: 8), "captured (UTC)".padded(to: 21), "age".padded(to: 9),
                    "rpo".padded(to: 6), "state".padded(to: 8), "size".padded(to: 11), "stored".padded(to: 11), "dedup",
                ]
                .joined(separator: " "))
        for row in rows {
            let captured = row.capturedAt.map { Self.utc.string(from: $0) } ?? "never"
            let age = row.ageSeconds.map { TimeSpan(seconds: Int64($0)).roughDescription } ?? "—"
            let state = row.breached ? "BREACH" : "ok"
            lines.append(
                "  "
                    + [
                        row.name.padded(to: 24), (row.newestVersion.map { "v\($0)" } ?? "—").padded(to: 8),
                        captured.padded(to: 21), age.padded(to: 9),
                        TimeSpan(seconds: Int64(row.rpoSeconds)).description.padded(to: 6), state.padded(to: 8),
                        ByteCount.text(row.sizeBytes).padded(to: 11),
                        ByteCount.text(row.storedBytes).padded(to: 11),
                        row.dedupRatio > 0 ? String(format: "%.1f×", row.dedupRatio) : "—",
                    ].joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }

    static let utc: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter
    }()

    /// The verdict of each site as the health watcher last recorded it, and the last transitions.
    static func healthSections(state: StateDirectory) -> [HealthSection] {
        let path = state.file(HealthHistory.fileName)
        guard FileManager.default.fileExists(atPath: path), let history = try? HealthHistory(directory: state.path)
        else { return [] }
        return [ProbeSite.primary, .secondary].map { site in
            let current = try? history.currentVerdict(for: site)
            let transitions = ((try? history.transitions(limit: 5, site: site)) ?? []).map {
                Transition(at: $0.at, subject: "\($0.subject)", from: $0.from, to: $0.to, detail: $0.detail)
            }
            return HealthSection(
                site: site.rawValue, verdict: current?.verdict.rawValue ?? "unknown", since: current?.since,
                detail: current?.detail, transitions: transitions)
        }
    }

    static func healthText(_ sections: [HealthSection]) -> String {
        guard !sections.isEmpty else {
            return "Health: nothing recorded yet (run `standby health SITE --watch` or `standby run SITE`)."
        }
        var lines = ["Health (as the watcher last recorded it):"]
        for section in sections {
            let since = section.since.map { " since \(RunReport.time($0))" } ?? ""
            let detail = section.detail.map { $0.isEmpty ? "" : " — \($0)" } ?? ""
            lines.append("  \(section.site): \(section.verdict)\(since)\(detail)")
            for t in section.transitions {
                lines.append("      \(RunReport.time(t.at))  \(t.from) → \(t.to)  \(t.detail)")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func runSection(_ status: RunStatus?) -> String {
        guard let status else { return "Failover: no run." }
        var lines = [
            "Failover run \(status.id): \(status.state)",
            "  declared \(RunReport.time(status.declaredAt)) by \(status.lead): \(status.reason)",
            "  elapsed \(RunReport.span(status.elapsedSeconds)); steps done \(status.stepsDone)/\(status.stepsTotal)",
        ]
        if let stage = status.stage {
            lines.append("  stage \(stage): \(status.stageTitle ?? "")")
        }
        if let step = status.currentStep {
            lines.append("  step \(step): \(status.currentStepState ?? "")")
        }
        if let waiting = status.waitingFor { lines.append("  \(waiting)") }
        if let note = status.note, note != status.waitingFor { lines.append("  \(note)") }
        return lines.joined(separator: "\n")
    }
}
