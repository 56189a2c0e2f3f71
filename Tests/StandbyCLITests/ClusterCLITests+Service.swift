import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension ClusterCLITests {
    @Test(
        "a follower's status page, /status.json and /metrics show the cluster's run from etcd while the leader runs it, and name the leader"
    )
    func followerPageShowsTheClusterRun() async throws {
        let cluster = try ClusterLab(prefix: "cluster-page", services: clusterSteps)
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()
        let failover = try declare(cluster, on: "b")
        try await cluster.waitForEffect("long-start")

        // b never ran a step: its own SQLite journal has no run; what its page shows is etcd's.
        let json = try await cluster.get("/status.json", from: "b")
        let status = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        let run = try #require(status["failover"] as? [String: Any], "\(json)")
        #expect(run["state"] as? String == "running", "\(json)")
        #expect(run["currentStep"] as? String == "core/long", "\(json)")
        let runId = try #require(run["runId"] as? String)
        let cli = try await cluster.command("status", on: "b", ["--json"])
        #expect(cli.stdout.contains(runId), "the page and `standby status` read the same run: \(cli)")
        let line = status["cluster"] as? [String: Any]
        #expect(line?["node"] as? String == "b", "\(json)")
        #expect(line?["leader"] as? String == "a", "\(json)")
        #expect(line?["nodes"] as? [String] == ["a", "b"], "\(json)")
        let steps = ((run["stages"] as? [[String: Any]]) ?? []).flatMap { ($0["steps"] as? [[String: Any]]) ?? [] }
        #expect(steps.first { $0["id"] as? String == "core/a" }?["node"] as? String == "a", "\(json)")

        let metrics = try await cluster.get("/metrics", from: "b")
        let lines = metrics.split(separator: "\n").map(String.init)
        #expect(
            lines.contains { $0.hasPrefix("standby_failover_active{") && $0.contains(runId) && $0.hasSuffix(" 1.0") },
            "\(metrics)")
        #expect(
            lines.contains { $0.hasPrefix("standby_failover_step_info{") && $0.contains("step=\"core/long\"") },
            "\(metrics)")
        #expect(
            lines.contains {
                $0.hasPrefix("standby_cluster_leader_info{") && $0.contains("leader=\"a\"") && $0.contains("node=\"b\"")
            }, "\(metrics)")
        #expect(
            lines.contains { $0.hasPrefix("standby_cluster_leader{node=\"b\"}") && $0.hasSuffix(" 0.0") }, "\(metrics)")
        let leaderMetrics = try await cluster.get("/metrics", from: "a")
        #expect(leaderMetrics.contains("standby_cluster_leader{node=\"a\"} 1.0"), "\(leaderMetrics)")

        let page = try await cluster.get("/", from: "b")
        #expect(page.contains("cluster: node b, a follower"), "\(page)")
        #expect(page.contains("leader: node a"), "\(page)")
        #expect(page.contains(runId) && page.contains("core/long"), "\(page)")

        let done = await failover.wait()
        #expect(done.status == 0, "\(done)")
        let after = try await cluster.get("/status.json", from: "b")
        let finished = (try JSONSerialization.jsonObject(with: Data(after.utf8)) as? [String: Any])?["failover"]
        #expect((finished as? [String: Any])?["state"] as? String == "done", "\(after)")
    }

    @Test(
        "a failing probe seen by both nodes: only the leader posts the alert; after kill -9 of it the new leader posts the next one, not that one again"
    )
    func alertsFromTheLeaderOnly() async throws {
        let hook = try WebhookSink()
        let probed = try Ports.free()
        let cluster = try ClusterLab(
            prefix: "cluster-alerts", services: clusterSteps,
            health: [
                "interval: 1s", "fall: 1", "rise: 1", "webhooks: [\"\(hook.url)\"]", "probes:",
                "  - { name: primary-sip, tcp: \"127.0.0.1:\(probed)\", site: primary }",
            ])
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()
        struct Alert: Decodable {
            var site: String
            var to: String
            var node: String?
        }
        func alerts() -> [Alert] {
            hook.posts.compactMap { try? JSONDecoder().decode(Alert.self, from: Data($0.utf8)) }
        }
        func waitForAlerts(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while alerts().count < count {
                try #require(
                    ContinuousClock.now < deadline,
                    "\(count) alerts never came: \(hook.posts)\n--- a\n\(cluster.log("a").suffix(2000))\n--- b\n\(cluster.log("b").suffix(2000))"
                )
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await waitForAlerts(1)
        // Both nodes probe every second; give b a few rounds to post, which it must not.
        try await Task.sleep(for: .seconds(4))
        #expect(alerts().map(\.node) == ["a"], "one alert, from the leader: \(hook.posts)")
        #expect(alerts().first?.to == "unreachable", "\(hook.posts)")
        let page = try await cluster.get("/status.json", from: "b")
        let probes = (try JSONSerialization.jsonObject(with: Data(page.utf8)) as? [String: Any])?["probes"]
        let probe = (probes as? [[String: Any]])?.first
        #expect(probe?["state"] as? String == "down", "the follower still probes: \(page)")

        kill(cluster.pid("a"), SIGKILL)
        _ = try await cluster.waitForLeader("b", from: "b")
        try await Task.sleep(for: .seconds(3))
        #expect(alerts().count == 1, "the new leader does not post a's alert again: \(hook.posts)")

        // The primary answers again: b, now the leader, announces it.
        let listener = try WebhookSink(port: probed)
        defer { listener.stop() }
        try await waitForAlerts(2)
        let second = alerts()[1]
        #expect(second.node == "b" && second.to == "up" && second.site == "primary", "\(hook.posts)")
        try await Task.sleep(for: .seconds(2))
        #expect(alerts().count == 2, "\(hook.posts)")
    }
}
