import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A core service whose failback has a long non-idempotent step between two short ones.
let clusterFailbackSteps = """
      - name: core
        tier: core
        priority: 1
        roles: [front-end]
        steps:
          - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
        failback_steps:
          - { name: fb-a, exec: [sh, -c, "echo fb-a >> EFFECTS"] }
          - { name: fb-long, exec: [sh, -c, "echo fb-long-start >> EFFECTS; sleep 5; echo fb-long-end >> EFFECTS"] }
          - { name: fb-b, exec: [sh, -c, "echo fb-b >> EFFECTS"], idempotent: true }
    """

/// A primary probe that passes: a TCP connect to an etcd member (failback needs the primary up).
let clusterPrimaryUp = [
    "interval: 1s", "fall: 1", "rise: 1", "probes:", #"  - { name: primary-up, tcp: "ETCD", site: primary }"#,
]

extension ClusterCLITests {
    @Test(
        "failback typed on the follower is executed by the leader; kill -9 of the leader inside it: the other resumes, no non-idempotent step twice"
    )
    func failbackThroughLeader() async throws {
        let cluster = try ClusterLab(
            prefix: "cluster-failback", services: clusterFailbackSteps, health: clusterPrimaryUp)
        defer { cluster.lab.remove() }
        try await cluster.startLeaderAndFollower()
        let failover = try await cluster.command(
            "failover", on: "b", ["--declare", "Redmond lost power", "--lead", "alice", "--yes", "--now", offPeakNow])
        #expect(failover.status == 0, "\(failover)")

        // Typed on b, the follower: a, the leader, runs the failback's steps.
        let failback = try cluster.startCommand(
            "failback", on: "b", ["--lead", "bob", "--yes", "--reason", "Redmond rebuilt", "--now", offPeakNow])
        try await cluster.waitForEffect("fb-long-start")
        let during = try await cluster.steps(from: "b")
        let ids = during.keys.sorted()
        let fbA = try #require(ids.first { $0.hasSuffix("/fb-a") }, "\(ids)")
        let fbLong = try #require(ids.first { $0.hasSuffix("/fb-long") }, "\(ids)")
        let fbB = try #require(ids.first { $0.hasSuffix("/fb-b") }, "\(ids)")
        #expect(during[fbA]?["node"] as? String == "a", "the leader ran it: \(during)")
        #expect(during[fbA]?["state"] as? String == "succeeded", "\(during)")
        #expect(during[fbLong]?["node"] as? String == "a", "\(during)")
        #expect(during[fbLong]?["state"] as? String == "running", "\(during)")
        #expect(
            !cluster.log("b").contains("Leader carries the run on"),
            "b, the follower, ran nothing:\n\(cluster.log("b").suffix(2000))")

        kill(cluster.pid("a"), SIGKILL)
        _ = try await cluster.waitForLeader("b", from: "b")
        let halted = await failback.wait()
        #expect(halted.status == 1, "\(halted)")
        #expect(halted.stdout.contains("halted at \(fbLong)"), "\(halted)")
        #expect(halted.stdout.contains("leader: node b"), "\(halted)")
        try await cluster.waitForEffect("fb-long-end")
        let skipped = try await cluster.command(
            "skip", on: "b", [fbLong, "--reason", "it ran: fb-long-end is there", "--lead", "bob", "--at", offPeakNow])
        #expect(skipped.status == 0, "\(skipped)")

        #expect(cluster.count("fb-a") == 1, "\(cluster.lines)")
        #expect(cluster.count("fb-long-start") == 1, "the non-idempotent step ran once: \(cluster.lines)")
        #expect(cluster.count("fb-b") == 1, "\(cluster.lines)")
        let after = try await cluster.steps(from: "a")
        #expect(after[fbLong]?["state"] as? String == "skipped", "\(after)")
        #expect(after[fbLong]?["node"] as? String == "a", "a skip keeps the node that ran it: \(after)")
        #expect(after[fbB]?["state"] as? String == "succeeded", "\(after)")
        #expect(after[fbB]?["node"] as? String == "b", "the new leader ran the rest: \(after)")
        let report = try await cluster.command("report", on: "a", ["--json"])
        let object = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
        let run = object?["run"] as? [String: Any]
        #expect(run?["direction"] as? String == "failback", "\(report)")
        #expect(run?["state"] as? String == "done", "\(report)")
        let text = try await cluster.command("report", on: "b")
        let fbALine = text.stdout.split(separator: "\n").first { $0.contains(fbA) }
        #expect(fbALine?.hasSuffix("attempts 1 on node a") == true, "\(text)")
        let fbBLine = text.stdout.split(separator: "\n").first { $0.contains(fbB) }
        #expect(fbBLine?.hasSuffix("on node b") == true, "\(text)")
    }
}
