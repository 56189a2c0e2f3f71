import Foundation
import Logging
import ServiceLifecycle
import StandbyCore

/// `standby run`: the runner and the HTTP endpoint in one service group. SIGTERM and SIGINT start
/// a graceful shutdown: the runner stops first (no new jobs, running ones reach a safe point), then
/// the endpoint. One instance per state directory (`ServiceLock`).
public struct StandbyService: Sendable {
    public var topology: Topology
    public var stateDirectory: StateDirectory
    public var jobs: any ServiceJobs
    public var logger: Logger
    /// Overrides `service.listen` (tests pass port 0 and read the port from `onListening`).
    public var listen: String?
    public var tick: Duration = .seconds(1)
    public var onListening: @Sendable (Int) async -> Void = { _ in }
    /// Cluster mode (`topology.cluster`): this controller's node id.
    public var node: String = ControllerLock.hostName()
    /// Cluster mode: this controller's membership, when the caller built it (to share it with the
    /// jobs: the status page names the leader, the health watcher posts only while leading).
    public var member: ClusterMember?

    public init(topology: Topology, stateDirectory: StateDirectory, jobs: any ServiceJobs, logger: Logger) {
        self.topology = topology
        self.stateDirectory = stateDirectory
        self.jobs = jobs
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT (graceful) and returns once everything stopped.
    public func run() async throws {
        let lock = try ServiceLock.acquire(directory: stateDirectory)
        defer { withExtendedLifetime(lock) {} }
        let token = try topology.service.tokenFile.map { try BearerToken.load(path: topology.resolve(path: $0)) }
        let store = try StateStore(directory: stateDirectory)
        let listen = self.listen ?? topology.service.listen
        var journal = ServiceJournal(store: store)
        var driver: ClusterDriver? = nil
        if let settings = topology.cluster {
            let member =
                self.member
                ?? ClusterMember.forService(
                    settings: settings, node: node, deployment: topology.deployment, listen: listen, logger: logger)
            driver = ClusterDriver(
                member: member, topology: topology, stateDirectory: stateDirectory, store: store, logger: logger)
            journal = ServiceJournal(
                store: store,
                cluster: ClusterJobTimes(
                    client: EtcdClient(endpoints: settings.etcd, logger: logger), keys: member.keys,
                    fence: { member.term?.fence }))
        }
        let runner = ServiceRunner(
            topology: topology, journal: journal, jobs: jobs, logger: logger, tick: tick, cluster: driver)
        let logger = self.logger
        let onListening = self.onListening
        let app = try ServiceEndpoint.application(
            listen: listen, token: token, snapshot: { await runner.snapshot() }, logger: logger,
            onRunning: { port in
                logger.info("Endpoint listening", metadata: ["listen": "\(listen)", "port": "\(port)"])
                await onListening(port)
            })
        // The runner is last, so a graceful shutdown stops it first and the endpoint keeps answering
        // (status page, metrics) until the jobs reached their safe points.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: app),
                    .init(service: RunnerService(runner: runner), successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

struct RunnerService: ServiceLifecycle.Service, CustomStringConvertible {
    let runner: ServiceRunner
    var description: String { "runner" }

    func run() async throws {
        await cancelWhenGracefulShutdown { await runner.run() }
    }
}
