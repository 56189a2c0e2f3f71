import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Two real `standby run` controllers (nodes a and b, each with a state directory of its own, one
/// shared store) on a real three-member etcd on loopback; commands from either node. A missing
/// etcd fails these tests; it never skips them.
final class ClusterLab: @unchecked Sendable {
    let lab: LabDirectory
    let standby: StandbyRunner
    let etcd: EtcdCluster
    /// The deployment directory (its site.yaml says `cluster:`).
    let site: String
    let effects: String
    var environment: [String: String]
    private(set) var nodes: [String: StandbyRunner.Running] = [:]
    /// The lease TTL of the lab's controllers, and their round (ttl / 3).
    static let ttl: Duration = .seconds(3)
    static let round: Duration = .seconds(1)

    /// A deployment of `services` (EFFECTS and LAB replaced) on a fresh etcd; `health` lines
    /// (ETCD replaced by the first member's host:port, a TCP port that answers) when given.
    init(prefix: String, services: String, health: [String]? = nil) throws {
        lab = try LabDirectory(prefix: prefix)
        standby = try StandbyRunner.locate()
        etcd = try EtcdCluster.start(in: lab)
        effects = lab.file("effects")
        var yaml = SiteYAML(deployment: "clustertest", domain: "example.test")
        yaml.secondary.pool = "pool02.example.test"
        yaml.secondary.offPeak = ["22:00-05:00"]
        yaml.secondary.store = lab.file("store")
        yaml.services = SiteYAML.services(
            yaml: services.replacingOccurrences(of: "EFFECTS", with: effects).replacingOccurrences(
                of: "LAB", with: lab.path))
        yaml.incidentLeads = ["alice", "bob"]
        if let health {
            let member = etcd.endpoints[0].replacingOccurrences(of: "http://", with: "")
            yaml.health = health.map { $0.replacingOccurrences(of: "ETCD", with: member) }
        }
        yaml.extra = Self.clusterYAML(etcd)
        try yaml.write(in: lab)
        site = lab.file("site")
        environment = [:]
    }

    /// An existing deployment directory (the loopback lab's, say) made a cluster through the environment.
    init(lab: LabDirectory, site: String, environment: [String: String]) throws {
        self.lab = lab
        standby = try StandbyRunner.locate()
        etcd = try EtcdCluster.start(in: lab)
        effects = lab.file("effects")
        self.site = site
        self.environment = environment.merging(
            ["STANDBY_ETCD": etcd.endpoints.joined(separator: ","), "STANDBY_CLUSTER_TTL": "3s"]
        ) { _, new in new }
    }

    static func clusterYAML(_ etcd: EtcdCluster) -> String {
        "cluster:\n  etcd: [\(etcd.endpoints.map { "\"\($0)\"" }.joined(separator: ", "))]\n  ttl: 3s\n"
    }

    deinit { stopAll() }

    func state(_ node: String) -> String { lab.file("state-\(node)") }

    /// Starts `standby run` as `node`.
    @discardableResult
    func start(_ node: String, environment extra: [String: String] = [:]) throws -> StandbyRunner.Running {
        let running = try standby.start(
            [
                "run", site, "--state", state(node), "--node", node, "--listen", "127.0.0.1:0", "--log-level", "info",
                "--tick-milliseconds", "200",
            ], environment: environment.merging(extra) { _, new in new }, in: lab)
        nodes[node] = running
        return running
    }

    /// Starts a, waits until it leads, then b, and waits until both are registered: the
    /// scaffolding of every two-node test (`leader` is a's environment: a kill point, say).
    func startLeaderAndFollower(leader extra: [String: String] = [:]) async throws {
        try start("a", environment: extra)
        _ = try await waitForLeader("a", from: "b")
        try start("b")
        try await waitForNodes(2, from: "b")
    }

    func pid(_ node: String) -> pid_t { nodes[node]?.pid ?? 0 }

    /// The port `node`'s endpoint listens on, from the line `standby run` prints when it does.
    func port(_ node: String) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let out = nodes[node].flatMap { try? String(contentsOfFile: $0.stdoutPath, encoding: .utf8) } ?? ""
            if let range = out.range(of: "(port "), let end = out[range.upperBound...].firstIndex(of: ")"),
                let port = Int(out[range.upperBound..<end])
            {
                return port
            }
            try #require(
                ContinuousClock.now < deadline, "\(node) never said its port: \(out)\n\(log(node).suffix(2000))")
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// `GET path` on `node`'s endpoint, through curl.
    func get(_ path: String, from node: String) async throws -> String {
        let url = "http://127.0.0.1:\(try await port(node))\(path)"
        let result = try await StandbyRunner(path: "/usr/bin/curl").run(["-sS", "--max-time", "10", url], in: lab)
        try #require(result.status == 0, "GET \(url): \(result)")
        return result.stdout
    }

    func log(_ node: String) -> String {
        guard let running = nodes[node] else { return "" }
        return (try? String(contentsOfFile: running.stderrPath, encoding: .utf8)) ?? ""
    }

    func stopAll() {
        for running in nodes.values { running.command.kill9() }
    }

    /// `standby VERB SITE --state STATE-OF-NODE --node NODE ARGS...`: a command typed on that node.
    func command(_ verb: String, on node: String, _ arguments: [String] = []) async throws -> StandbyRunner.Result {
        try await standby.run(
            [verb, site, "--state", state(node), "--node", node] + arguments, environment: environment, in: lab)
    }

    func startCommand(_ verb: String, on node: String, _ arguments: [String] = []) throws -> StandbyRunner.Running {
        try standby.start(
            [verb, site, "--state", state(node), "--node", node] + arguments, environment: environment, in: lab)
    }

    /// `status --json`'s cluster section, as seen from `node`.
    func cluster(from node: String) async throws -> [String: Any]? {
        let status = try await command("status", on: node, ["--json"])
        let object = try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        return object?["cluster"] as? [String: Any]
    }

    /// Polls `status` on `from` until `node` leads; the time it took.
    func waitForLeader(_ node: String, from: String, within limit: Duration = .seconds(30)) async throws -> Duration {
        let began = ContinuousClock.now
        while true {
            let cluster = try await cluster(from: from)
            if cluster?["leader"] as? String == node { return began.duration(to: .now) }
            try #require(
                began.duration(to: .now) < limit,
                "node \(node) did not lead within \(limit): \(String(describing: cluster))\n--- a\n\(log("a").suffix(3000))\n--- b\n\(log("b").suffix(3000))"
            )
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Polls until some node leads; which one.
    func waitForAnyLeader(from: String, within limit: Duration) async throws -> String {
        let deadline = ContinuousClock.now + limit
        while true {
            if let leader = try await cluster(from: from)?["leader"] as? String { return leader }
            try #require(ContinuousClock.now < deadline, "no node led within \(limit)")
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitForNodes(_ count: Int, from: String) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let nodes = (try await cluster(from: from)?["nodes"] as? [[String: Any]]) ?? []
            if nodes.count == count { return }
            try #require(ContinuousClock.now < deadline, "\(count) nodes never registered: \(nodes)")
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitForEffect(_ line: String, within limit: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + limit
        while !lines.contains(line) {
            try #require(ContinuousClock.now < deadline, "'\(line)' never happened: \(lines)")
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    var lines: [String] {
        ((try? String(contentsOfFile: effects, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func count(_ line: String) -> Int { lines.filter { $0 == line }.count }

    /// The step states of the cluster's run, as `report --json` on `node` reads them from etcd.
    func steps(from node: String) async throws -> [String: [String: Any]] {
        let report = try await command("report", on: node, ["--json"])
        let object = try? JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
        var steps: [String: [String: Any]] = [:]
        for stage in (object?["stages"] as? [[String: Any]]) ?? [] {
            for step in (stage["steps"] as? [[String: Any]]) ?? [] {
                if let id = step["id"] as? String { steps[id] = step }
            }
        }
        return steps
    }
}

/// Core steps around a long non-idempotent one that outlives a kill of its controller.
let clusterSteps = """
      - name: core
        tier: core
        priority: 1
        roles: [front-end]
        steps:
          - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
          - { name: long, exec: [sh, -c, "echo long-start >> EFFECTS; sleep 5; echo long-end >> EFFECTS"] }
          - { name: b, exec: [sh, -c, "echo core-b >> EFFECTS"], idempotent: true }
    """

@Suite("Cluster mode: two real controllers on a real etcd", .tags(.server, .failover), .serialized)
struct ClusterCLITests {
    func declare(_ cluster: ClusterLab, on node: String) throws -> StandbyRunner.Running {
        try cluster.startCommand(
            "failover", on: node, ["--declare", "Redmond lost power", "--lead", "alice", "--yes", "--now", offPeakNow])
    }

    @Test(
        "kill -9 of the leader inside stage 1: the other takes over within ttl plus a round; the step caught running is not run again"
    )
    func killLeaderInStageOne() async throws {
        let cluster = try ClusterLab(prefix: "cluster-kill", services: clusterSteps)
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()

        // Declared on the follower: the leader runs the steps.
        let failover = try declare(cluster, on: "b")
        try await cluster.waitForEffect("long-start")
        kill(cluster.pid("a"), SIGKILL)
        let takeover = try await cluster.waitForLeader("b", from: "b")
        print("takeover after kill -9: \(takeover)")
        #expect(takeover < ClusterLab.ttl + ClusterLab.round + .seconds(2), "took \(takeover)")

        // b finds core/long running in the journal, not idempotent: halted, for the lead to decide.
        let halted = await failover.wait()
        #expect(halted.status == 1, "\(halted)")
        #expect(halted.stdout.contains("halted at core/long"), "\(halted)")
        #expect(halted.stdout.contains("leader: node b"), "\(halted)")
        try await cluster.waitForEffect("long-end")
        // From the dead node's machine: any node's command acts on the cluster's run.
        let skipped = try await cluster.command(
            "skip", on: "a",
            ["core/long", "--reason", "it ran: long-end is there", "--lead", "bob", "--at", offPeakNow])
        #expect(skipped.status == 0, "\(skipped)")
        #expect(cluster.count("core-a") == 1)
        #expect(cluster.count("long-start") == 1, "the non-idempotent step ran once: \(cluster.lines)")
        #expect(cluster.count("core-b") == 1)
        let steps = try await cluster.steps(from: "a")
        #expect(steps["core/long"]?["state"] as? String == "skipped", "\(steps)")
        #expect(steps["core/b"]?["state"] as? String == "succeeded", "\(steps)")
        let status = try await cluster.cluster(from: "a")
        #expect(status?["leader"] as? String == "b", "\(String(describing: status))")
    }

    @Test("kill -9 of the leader at an idempotent step's end: the new leader runs it again and goes on to the end")
    func killLeaderAtIdempotentStep() async throws {
        let cluster = try ClusterLab(
            prefix: "cluster-idem", services: clusterSteps.replacingOccurrences(of: "sleep 5", with: "true"))
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower(leader: ["STANDBY_KILL_AT": "core/b:after"])
        let failover = try declare(cluster, on: "b")
        let done = await failover.wait()
        #expect(done.status == 0, "\(done)")
        #expect(done.stdout.contains("leader: node b"), "\(done)")
        let killed = await cluster.nodes["a"]?.wait()
        #expect(killed?.signal == SIGKILL, "a killed itself at core/b:after: \(String(describing: killed))")
        #expect(cluster.count("core-a") == 1)
        #expect(cluster.count("long-start") == 1)
        #expect(cluster.count("core-b") == 2, "idempotent: ran again after the kill: \(cluster.lines)")
    }

    @Test(
        "SIGSTOP of the leader for longer than the ttl: b takes over; after SIGCONT a finds itself deposed and does nothing"
    )
    func stoppedLeaderIsDeposed() async throws {
        let cluster = try ClusterLab(prefix: "cluster-stop", services: clusterSteps)
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()
        let failover = try declare(cluster, on: "b")
        try await cluster.waitForEffect("long-start")
        kill(cluster.pid("a"), SIGSTOP)
        _ = try await cluster.waitForLeader("b", from: "b")
        let halted = await failover.wait()
        #expect(halted.status == 1 && halted.stdout.contains("halted at core/long"), "\(halted)")
        // The step's process (its own group) finishes while a is stopped; then a wakes up.
        try await cluster.waitForEffect("long-end")
        kill(cluster.pid("a"), SIGCONT)
        let deadline = ContinuousClock.now + .seconds(15)
        while !cluster.log("a").contains("Deposed") {
            try #require(ContinuousClock.now < deadline, "a never said it was deposed:\n\(cluster.log("a"))")
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: ClusterLab.ttl)
        let steps = try await cluster.steps(from: "b")
        #expect(steps["core/long"]?["state"] as? String == "interrupted", "a's late success was refused: \(steps)")
        #expect(cluster.count("core-b") == 0, "a did nothing after it woke: \(cluster.lines)")
        #expect(cluster.count("long-start") == 1)
        let status = try await cluster.cluster(from: "a")
        #expect(status?["leader"] as? String == "b", "\(String(describing: status))")
        let nodes = (status?["nodes"] as? [[String: Any]]) ?? []
        #expect(nodes.count == 2, "a is back as a follower: \(nodes)")
    }

    @Test(
        "one of three etcd members stopped: nothing changes; two: the controllers stop and say why; quorum back: they go on"
    )
    func quorumLoss() async throws {
        let cluster = try ClusterLab(
            prefix: "cluster-quorum", services: clusterSteps.replacingOccurrences(of: "sleep 5", with: "true"))
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()
        cluster.etcd.stop(member: 2)
        let first = try await cluster.command(
            "failover", on: "b", ["--declare", "lost", "--lead", "alice", "--yes", "--now", offPeakNow])
        #expect(first.status == 0, "\(first)")
        #expect(cluster.count("core-b") == 1)
        let leader = try await cluster.cluster(from: "b")
        #expect(leader?["leader"] as? String == "a", "one member down changed nothing: \(String(describing: leader))")

        cluster.etcd.stop(member: 1)
        let deadline = ContinuousClock.now + ClusterLab.ttl * 3
        while !(cluster.log("a").contains("Cannot reach etcd") && cluster.log("a").contains("Deposed")) {
            try #require(ContinuousClock.now < deadline, "a never stopped acting:\n\(cluster.log("a").suffix(3000))")
            try await Task.sleep(for: .milliseconds(100))
        }
        let refused = try await cluster.command(
            "failover", on: "b", ["--declare", "lost again", "--lead", "alice", "--yes", "--now", offPeakNow])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("etcd: cannot") && refused.stderr.contains("no member answered"), "\(refused)")
        #expect(cluster.count("core-a") == 1, "nothing ran without quorum")

        try cluster.etcd.start(member: 1)
        try cluster.etcd.start(member: 2)
        try cluster.etcd.waitHealthy()
        let leader2 = try await cluster.waitForAnyLeader(from: "b", within: .seconds(30))
        #expect(["a", "b"].contains(leader2))
        let second = try await cluster.command(
            "failover", on: "a", ["--declare", "lost once more", "--lead", "alice", "--yes", "--now", offPeakNow])
        #expect(second.status == 0, "\(second)")
        #expect(cluster.count("core-a") == 2)
    }

    @Test(
        "kill -9 of the leader inside the DNS cutover (effect done, not journaled): the new leader runs the compare-and-swap again and the run ends"
    )
    func killLeaderInDNSCutover() async throws {
        try await LabRun.with(prefix: "cluster-dns") { run in
            // The loopback lab's deployment, its store on storage both controllers mount.
            let siteDirectory = run.lab.file("site-lab")
            try FileManager.default.copyItem(atPath: run.site, toPath: siteDirectory)
            let yamlPath = siteDirectory + "/site.yaml"
            let original = try String(contentsOfFile: yamlPath, encoding: .utf8)
            let secondaryWindow = "    off_peak: [\"22:00-05:00\"]\n"
            try #require(original.components(separatedBy: secondaryWindow).count == 2)
            try original.replacingOccurrences(
                of: secondaryWindow, with: secondaryWindow + "    store: \(run.lab.file("store"))\n"
            ).write(toFile: yamlPath, atomically: true, encoding: .utf8)
            let cluster = try ClusterLab(lab: run.lab, site: siteDirectory, environment: run.environment)
            defer { cluster.stopAll() }
            let replicated = try await cluster.command("replicate", on: "a")
            #expect(replicated.status == 0, "\(replicated)")
            _ = try await run.labCommand(["lose-primary"])

            try await cluster.startLeaderAndFollower(leader: ["STANDBY_KILL_AT": "dns/cutover:after"])
            let failover = try await cluster.command(
                "failover", on: "b",
                ["--declare", "lab-east flooded", "--lead", "alice", "--yes", "--now", bothOffPeak])
            #expect(failover.status == 0, "\(failover)")
            #expect(failover.stdout.contains("leader: node b"), "\(failover)")
            let killed = await cluster.nodes["a"]?.wait()
            #expect(killed?.signal == SIGKILL, "a killed itself inside the cutover: \(String(describing: killed))")
            let moved = try await run.waitForDNS(containing: "pool02-dr.lab.test.", count: 2)
            #expect(moved.filter { $0.contains("pool02-dr.lab.test.") }.count == 2, "\(moved)")
            let steps = try await cluster.steps(from: "a")
            #expect(steps["dns/cutover"]?["attempts"] as? Int == 2, "\(steps)")
            #expect(steps["dns/cutover"]?["state"] as? String == "succeeded", "\(steps)")
            for (id, step) in steps where id != "dns/cutover" {
                #expect(step["attempts"] as? Int ?? 0 <= 1, "\(id) ran once at most: \(step)")
            }
            #expect(steps["core/start-front-end"]?["attempts"] as? Int == 1, "\(steps)")
        }
    }
}
