import Foundation
import Logging
import StandbyLab
import Testing

@testable import StandbyCore

/// The etcd client, the election and the fenced journal against a real three-member etcd on
/// loopback (`EtcdCluster`). A missing etcd fails these tests; it never skips them.
@Suite("Cluster: etcd client, election and fenced journal", .tags(.server), .serialized)
struct ClusterEtcdTests {
    let logger = Logger(label: "test.cluster", factory: { _ in SwiftLogNoOpLogHandler() })

    func run(_ deployment: String = "clustertest") -> FailoverRun {
        FailoverRun(
            id: "run-1", deployment: deployment, scenario: "site-loss", direction: "failover", reason: "lost",
            lead: "alice", planned: false, state: .running, declaredAt: Date(), finishedAt: nil, plan: "{}",
            dnsReplaced: nil, note: nil)
    }

    func step(_ seq: Int, state: RunStep.State = .pending) -> RunStep {
        RunStep(
            runId: "run-1", seq: seq, stage: 1, stageKind: .core, service: "core", stepId: "core/s\(seq)", kind: .exec,
            summary: "step \(seq)", idempotent: false, retries: 0, state: state, attempts: 0, startedAt: nil,
            finishedAt: nil, waitingFor: nil, output: nil, error: nil, result: nil, pid: nil)
    }

    func member(_ node: String, _ etcd: EtcdCluster, ttl: Int64 = 3) -> ClusterMember {
        ClusterMember(
            settings: ClusterSettings(etcd: etcd.endpoints, ttl: TimeSpan(seconds: ttl)), node: node,
            deployment: "clustertest",
            registration: NodeRegistration(node: node, host: "localhost", pid: 1, listen: nil, since: Date()),
            logger: logger)
    }

    @Test("put, list, a transaction on the create revision, and a key on a lease that lapses")
    func clientBasics() async throws {
        let lab = try LabDirectory(prefix: "cluster-etcd")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let client = EtcdClient(endpoints: etcd.endpoints, logger: logger)
        try client.put("/t/a", Data("1".utf8))
        try client.put("/t/b", Data("2".utf8))
        try client.put("/u/c", Data("3".utf8))
        #expect(try client.list(prefix: "/t/").map(\.text) == ["1", "2"])
        #expect(try client.get("/t/a")?.text == "1")
        #expect(try client.get("/t/missing") == nil)

        let first = try client.txn(
            [.createRevision("/t/leader", 0)], success: [.put("/t/leader", Data("x".utf8))],
            failure: [.range("/t/leader")], what: "create")
        #expect(first.succeeded)
        let second = try client.txn(
            [.createRevision("/t/leader", 0)], success: [.put("/t/leader", Data("y".utf8))],
            failure: [.range("/t/leader")], what: "create again")
        #expect(!second.succeeded)
        #expect(second.ranges.first?.first?.text == "x")
        #expect(second.ranges.first?.first?.createRevision == first.revision)

        let lease = try client.grantLease(ttl: 2)
        try client.put("/t/leased", Data("z".utf8), lease: lease)
        #expect(try client.keepAlive(lease) > 0)
        let deadline = ContinuousClock.now + .seconds(10)
        while try client.get("/t/leased") != nil {
            try #require(ContinuousClock.now < deadline, "the leased key outlived its lease")
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try client.keepAlive(lease) == 0)
    }

    @Test("one of three members stopped changes nothing; two stopped: calls fail naming every member; back: it works")
    func quorum() async throws {
        let lab = try LabDirectory(prefix: "cluster-quorum")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let client = EtcdClient(endpoints: etcd.endpoints, timeout: .seconds(1), logger: logger)
        etcd.stop(member: 0)
        try client.put("/q/one-down", Data("ok".utf8))
        #expect(try client.get("/q/one-down")?.text == "ok")
        etcd.stop(member: 1)
        let error = #expect(throws: FailoverError.self) { try client.put("/q/two-down", Data("no".utf8)) }
        #expect(error?.code == .cluster)
        for endpoint in etcd.endpoints {
            #expect(error?.message.contains(endpoint) == true, "\(String(describing: error))")
        }
        try etcd.start(member: 0)
        try etcd.start(member: 1)
        try etcd.waitHealthy()
        try client.put("/q/back", Data("ok".utf8))
        #expect(try client.get("/q/back")?.text == "ok")
    }

    @Test("two members: one leads; it resigns and the other leads the next round")
    func election() async throws {
        let lab = try LabDirectory(prefix: "cluster-elect")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let a = member("a", etcd)
        let b = member("b", etcd)
        a.round()
        b.round()
        #expect(a.term != nil)
        #expect(b.term == nil)
        #expect(b.leader == "a")
        let client = EtcdClient(endpoints: etcd.endpoints, logger: logger)
        #expect(try client.get(a.keys.leader)?.text == "a")
        #expect(try client.list(prefix: a.keys.nodes).count == 2)
        a.resign()
        b.round()
        #expect(b.term != nil)
        #expect(try client.get(a.keys.leader)?.text == "b")
    }

    @Test("a leader whose lease lapsed is deposed: its journal write fails and changes nothing; the new leader's lands")
    func fencing() async throws {
        let lab = try LabDirectory(prefix: "cluster-fence")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let state = try lab.directory("state")
        let store = try StateStore(directory: StateDirectory(explicit: state, deployment: "clustertest"))
        let client = EtcdClient(endpoints: etcd.endpoints, logger: logger)
        let a = member("a", etcd)
        a.round()
        let termA = try #require(a.term)
        let journalA = FailoverJournal(
            store: store, cluster: ClusterJournal(client: client, keys: a.keys, fence: termA.fence))
        try journalA.declare(run: run(), steps: [step(1), step(2)], sets: [], decisions: [])
        var first = step(1, state: .running)
        try journalA.update(first)
        #expect(try journalA.steps(runId: "run-1").first?.state == .running)

        // The lease goes as if a's process had stopped for longer than the TTL.
        try client.revoke(a.lease)
        let b = member("b", etcd)
        b.round()
        let termB = try #require(b.term)
        #expect(termB.revision != termA.revision)

        first.state = .succeeded
        let refused = #expect(throws: FailoverError.self) { try journalA.update(first) }
        #expect(refused?.code == .deposed, "\(String(describing: refused))")
        #expect(termA.fence.deposed != nil)
        #expect(try journalA.steps(runId: "run-1").first?.state == .running, "the deposed write changed nothing")

        let journalB = FailoverJournal(
            store: store, cluster: ClusterJournal(client: client, keys: b.keys, fence: termB.fence))
        var interrupted = step(1, state: .interrupted)
        interrupted.error = "the controller stopped"
        try journalB.update(interrupted)
        #expect(try journalB.steps(runId: "run-1").first?.state == .interrupted)
        // a's next round finds another leader and stays deposed, even once its own lease is new.
        a.round()
        #expect(a.term == nil)
        #expect(a.leader == "b")
        #expect(throws: FailoverError.self) { try journalA.update(first) }
    }

    @Test("the journal in etcd reads back what was written: runs newest first, steps in order, decisions in order")
    func journalRoundTrip() async throws {
        let lab = try LabDirectory(prefix: "cluster-journal")
        defer { lab.remove() }
        let etcd = try EtcdCluster.start(in: lab)
        let state = try lab.directory("state")
        let store = try StateStore(directory: StateDirectory(explicit: state, deployment: "clustertest"))
        let a = member("a", etcd)
        a.round()
        let term = try #require(a.term)
        let journal = FailoverJournal(
            store: store,
            cluster: ClusterJournal(
                client: EtcdClient(endpoints: etcd.endpoints, logger: logger), keys: a.keys, fence: term.fence))
        let lease = FailoverLease(
            deployment: "clustertest", runId: "run-1", lead: "alice", pid: 1, host: "h", since: Date())
        #expect(try journal.takeLease(lease) == nil)
        // 150 steps: more than one transaction of etcd's default 128 operations.
        let steps = (1...150).map { step($0) }
        let declared = run()
        try journal.declare(
            run: declared, steps: steps, sets: [],
            decisions: [
                RunDecision(
                    id: nil, runId: "run-1", at: Date(), kind: "declare", lead: "alice", reason: "lost", target: nil)
            ])
        let blocked = try journal.takeLease(
            FailoverLease(deployment: "clustertest", runId: "run-2", lead: "bob", pid: 2, host: "h", since: Date()))
        #expect(blocked?.run?.id == "run-1")
        #expect(try journal.steps(runId: "run-1").map(\.seq) == Array(1...150))
        try journal.record(
            RunDecision(id: nil, runId: "run-1", at: Date(), kind: "skip", lead: "bob", reason: "r", target: "core/s1"))
        #expect(try journal.decisions(runId: "run-1").map(\.kind) == ["declare", "skip"])
        #expect(try journal.activeRun(deployment: "clustertest")?.id == "run-1")
        var done = declared
        done.state = .done
        try journal.update(done)
        try journal.releaseLease(deployment: "clustertest", runId: "run-1")
        #expect(try journal.lease(deployment: "clustertest") == nil)
        #expect(try journal.activeRun(deployment: "clustertest") == nil)
        #expect(try journal.currentRun(deployment: "clustertest")?.state == .done)
    }
}
