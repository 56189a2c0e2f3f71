import Foundation
import Logging

/// What the leader does with the cluster's run, every round: when the run is `running` (declared,
/// or left running by a leader that died), when a command asked for it (`resume` key), or when an
/// optional service waits for an off-peak window that is open, it takes the controller lock and
/// lets the engine carry the run as far as it goes, every write fenced by its term. A follower does
/// nothing; a deposed leader's engine stops at its next write, before the next side effect.
public final class ClusterDriver: Sendable {
    public let member: ClusterMember
    public let topology: Topology
    public let stateDirectory: StateDirectory
    let store: StateStore
    let client: EtcdClient
    let logger: Logger
    let environment: [String: String]

    public init(
        member: ClusterMember, topology: Topology, stateDirectory: StateDirectory, store: StateStore, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.member = member
        self.topology = topology
        self.stateDirectory = stateDirectory
        self.store = store
        self.logger = logger
        self.environment = environment
        client = EtcdClient(endpoints: member.settings.etcd, timeout: .seconds(2), logger: logger)
    }

    public func run() async {
        while !Task.isCancelled {
            if let term = member.term {
                await drive(term)
            }
            try? await Task.sleep(for: member.roundLength)
        }
    }

    /// The journal as this term writes it.
    public func journal(_ term: ClusterMember.Term) -> FailoverJournal {
        FailoverJournal(store: store, cluster: ClusterJournal(client: client, keys: member.keys, fence: term.fence))
    }

    func drive(_ term: ClusterMember.Term) async {
        let journal = journal(term)
        let keys = member.keys
        do {
            guard let run = try journal.activeRun(deployment: topology.deployment) else { return }
            let request = try client.get(keys.resume)
            let asked = request.flatMap { try? ClusterJournal.decode(ResumeRequest.self, $0) }
            let now = asked?.at ?? Date()
            guard try due(run, asked: asked != nil, now: now, journal: journal) else { return }
            let holder = ClusterLock.Holder(
                node: member.node, host: ControllerLock.hostName(), pid: Int(getpid()),
                what: "the leader executing run \(run.id)")
            if let busy = try ClusterLock.acquire(
                client: client, keys: keys, lease: member.lease, fence: term.fence, holder: holder)
            {
                logger.debug("Controller lock busy; next round", metadata: ["holder": "\(busy.description)"])
                return
            }
            defer { ClusterLock.release(client: client, keys: keys, fence: term.fence) }
            try journal.touchLease(
                deployment: topology.deployment, runId: run.id, pid: Int(getpid()), host: ControllerLock.hostName())
            var engine = FailoverEngine(
                topology: topology, journal: journal,
                modules: .wired(topology: topology, stateDirectory: stateDirectory, logger: logger),
                stateDirectory: stateDirectory, logger: logger, killPoints: KillPoints(environment: environment),
                progress: { [logger] line in logger.info("Step", metadata: ["progress": "\(line)"]) })
            engine.earlierAttempts = asked?.earlierAttempts == "end" ? .end : .wait
            logger.notice(
                "Leader carries the run on",
                metadata: ["run": "\(run.id)", "state": "\(run.state.rawValue)", "term": "\(term.revision)"])
            let outcome = try await engine.execute(runId: run.id, now: now)
            // The request is answered: dropped unless a newer one came meanwhile.
            if let request {
                _ = try client.txn(
                    try term.fence.compares() + [.modRevision(keys.resume, request.modRevision)],
                    success: [.delete(keys.resume)], what: "answer the resume request")
            }
            logger.notice("Run moved", metadata: ["run": "\(run.id)", "outcome": "\(outcome)"])
        } catch let error as FailoverError where error.code == .deposed {
            logger.error("Deposed: stopped the run here", metadata: ["error": "\(error)"])
        } catch {
            logger.error("Cannot carry the run on", metadata: ["error": "\(error)"])
        }
    }

    /// Whether the engine has something to do now.
    func due(_ run: FailoverRun, asked: Bool, now: Date, journal: FailoverJournal) throws -> Bool {
        if asked || run.state == .running { return true }
        guard run.state == .waiting else { return false }
        let site = run.direction == Planner.Direction.failback.rawValue ? topology.primary : topology.secondary
        guard site.offPeak.contains(now, in: site.timezone) else { return false }
        return try journal.steps(runId: run.id).contains { $0.state == .waitingOffPeak }
    }
}
