import ArgumentParser
import Foundation
import Logging
import StandbyCore
import StandbyLab

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Cluster mode's two figures, on a real three-member etcd on loopback:
///
/// - takeover: two real `standby run` controllers (the `standby` binary beside this one); each round
///   kill -9 the leader, time until the other holds the leader key, start the killed one again;
/// - journal: the time of one journaled step (committed `running`, then `succeeded`: two writes) in
///   the SQLite journal and in etcd (fenced transactions), the same records one after the other.
struct ClusterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Takeover after kill -9 of the leader; a journaled step in etcd against SQLite.")

    @Option(help: "Measured takeovers.")
    var rounds: Int = 20

    @Option(help: "Journaled steps per journal.")
    var steps: Int = 500

    @Option(help: "The lease TTL of the controllers, in seconds.")
    var ttl: Int = 3

    func run() async throws {
        let lab = try LabDirectory(prefix: "standby-bench-cluster")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let logger = Logger(label: "standby.bench.cluster") { _ in SwiftLogNoOpLogHandler() }
        try journal(lab: lab, etcd: etcd, logger: logger)
        try await takeover(lab: lab, etcd: etcd, logger: logger)
    }

    func journal(lab: LabDirectory, etcd: EtcdCluster, logger: Logger) throws {
        let directory = StateDirectory(explicit: try lab.directory("state"), deployment: "bench")
        let store = try StateStore(directory: directory)
        let member = ClusterMember(
            settings: ClusterSettings(etcd: etcd.endpoints, ttl: TimeSpan(seconds: Int64(ttl))), node: "bench",
            deployment: "bench",
            registration: NodeRegistration(
                node: "bench", host: "localhost", pid: Int(getpid()), listen: nil, since: Date()),
            logger: logger)
        member.round()
        guard let term = member.term else { throw ValidationError("the bench's member did not lead") }
        let sqlite = FailoverJournal(store: store)
        let cluster = FailoverJournal(
            store: store,
            cluster: ClusterJournal(
                client: EtcdClient(endpoints: etcd.endpoints, logger: logger), keys: member.keys, fence: term.fence))
        var results: [(String, [Double])] = []
        for (name, journal) in [("SQLite", sqlite), ("etcd", cluster)] {
            let runId = "bench-\(name)"
            let run = FailoverRun(
                id: runId, deployment: "bench", scenario: "site-loss", direction: "failover", reason: "bench",
                lead: "bench", planned: false, state: .running, declaredAt: Date(), plan: "{}")
            let all: [RunStep] = (1...steps).map { seq in
                var step = RunStep(
                    runId: runId, seq: seq, stage: 1, stageKind: .core, service: "core", stepId: "core/s\(seq)",
                    kind: .exec, summary: "step", idempotent: false, state: .pending)
                step.output = String(repeating: "x", count: 512)
                return step
            }
            try journal.declare(run: run, steps: all, sets: [], decisions: [])
            var times: [Double] = []
            for var step in all {
                let began = ContinuousClock.now
                step.state = .running
                step.attempts = 1
                step.startedAt = Date()
                try journal.update(step)
                step.state = .succeeded
                step.finishedAt = Date()
                try journal.update(step)
                times.append(seconds(began.duration(to: .now)) * 1000)
            }
            results.append((name, times.sorted()))
        }
        print("journaled step (two commits: running, succeeded), \(steps) steps each, milliseconds:")
        for (name, times) in results {
            print(
                String(
                    format: "  %-7@ median %.2f  p90 %.2f  worst %.2f", name as NSString, times[times.count / 2],
                    times[times.count * 9 / 10], times[times.count - 1]))
        }
        if results.count == 2 {
            let added = results[1].1[results[1].1.count / 2] - results[0].1[results[0].1.count / 2]
            print(String(format: "  added per journaled step in etcd (median): %.2f ms", added))
        }
    }

    func takeover(lab: LabDirectory, etcd: EtcdCluster, logger: Logger) async throws {
        let own =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let binary = StandbyBinary(
            path: ((own as NSString).deletingLastPathComponent as NSString).appendingPathComponent("standby"))
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ValidationError("standby is not built beside standby-bench (\(binary.path))")
        }
        var yaml = SiteYAML(deployment: "benchcluster", domain: "example.test")
        yaml.secondary.store = lab.file("store")
        yaml.extra =
            "cluster:\n  etcd: [\(etcd.endpoints.map { "\"\($0)\"" }.joined(separator: ", "))]\n  ttl: \(ttl)s\n"
        try yaml.write(in: lab)
        let site = lab.file("site")
        func start(_ node: String) throws -> RunningCommand {
            try binary.start(
                [
                    "run", site, "--state", lab.file("state-\(node)"), "--node", node, "--listen", "127.0.0.1:0",
                    "--log-level", "error",
                ], removing: ["STANDBY_STATE", "STANDBY_ETCD"], stdout: lab.file("\(node).out"),
                stderr: lab.file("\(node).err"))
        }
        // Both at once, as a cluster's nodes boot: they open the shared catalog at the same instant.
        var nodes = ["a": try start("a"), "b": try start("b")]
        defer { for node in nodes.values { node.kill9() } }
        let client = EtcdClient(endpoints: etcd.endpoints, timeout: .seconds(1), logger: logger)
        let leaderKey = ClusterKeys(deployment: "benchcluster").leader
        func leader() -> String? { (try? client.get(leaderKey))?.text }
        func waitForTwoNodes() async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while (try? client.list(prefix: ClusterKeys(deployment: "benchcluster").nodes).count) != 2 {
                guard ContinuousClock.now < deadline else {
                    let logs = ["a", "b"].map {
                        (try? String(contentsOfFile: lab.file("\($0).err"), encoding: .utf8)) ?? ""
                    }
                    throw ValidationError("two nodes never registered:\n" + logs.joined(separator: "\n"))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        var times: [Double] = []
        for round in 0..<rounds {
            try await waitForTwoNodes()
            var current = leader()
            while current == nil {
                try await Task.sleep(for: .milliseconds(20))
                current = leader()
            }
            guard let killed = current, let process = nodes[killed] else { throw ValidationError("no leader") }
            let other = killed == "a" ? "b" : "a"
            let began = ContinuousClock.now
            kill(process.pid, SIGKILL)
            _ = process.wait()
            while leader() != other {
                guard began.duration(to: .now) < .seconds(60) else { throw ValidationError("no takeover in 60 s") }
                try await Task.sleep(for: .milliseconds(10))
            }
            let took = seconds(began.duration(to: .now))
            times.append(took)
            print(String(format: "  round %2d: killed %@, %@ leads after %.2f s", round + 1, killed, other, took))
            fflush(nil)
            nodes[killed] = try start(killed)
        }
        let sorted = times.sorted()
        print(
            String(
                format:
                    "takeover after kill -9 of the leader (ttl %d s, round %.1f s), %d rounds: median %.2f s, worst %.2f s",
                ttl, Double(ttl) / 3, rounds, sorted[sorted.count / 2], sorted[sorted.count - 1]))
    }
}
