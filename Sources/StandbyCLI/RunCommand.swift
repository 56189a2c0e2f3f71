import ArgumentParser
import Foundation
import Logging
import StandbyCore
import StandbyService

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract:
            "Run the scheduled service: replication, health watching, off-peak resumes, nightly verify, reminders.",
        discussion: """
            One long-running process per state directory, for systemd (contrib/standby@.service). It \
            serves a read-only endpoint on service.listen (default 127.0.0.1:9470): /metrics \
            (Prometheus), /healthz, /status.json and / (the status page). SIGTERM or SIGINT: no new \
            jobs, a replication stops after its current chunk, a failover step finishes; exit 0. \
            Exit 2 bad input (topology, token file, address); 3 another `standby run` holds the state \
            directory.
            """)

    @OptionGroup var site: SiteOptions

    @Option(help: "Listen on this host:port instead of service.listen (port 0 picks a free one).")
    var listen: String?

    @Option(help: ArgumentHelp("Scheduler tick in milliseconds.", visibility: .hidden))
    var tickMilliseconds: Int = 1000

    func run() async throws {
        let topology = try site.loadTopology()
        let stateDirectory = site.stateDirectory(for: topology)
        var logger = Logger(label: "standby.run")
        logger[metadataKey: "deployment"] = "\(topology.deployment)"
        // One membership for the runner and the jobs: the status page and the alerts follow it.
        let member = topology.cluster.map {
            ClusterMember.forService(
                settings: $0, node: self.site.nodeName, deployment: topology.deployment,
                listen: listen ?? topology.service.listen, logger: logger)
        }
        let jobs = try LiveServiceJobs(
            topology: topology, stateDirectory: stateDirectory, executable: Self.executablePath(), cluster: member,
            logger: logger)
        var service = StandbyService(
            topology: topology, stateDirectory: stateDirectory, jobs: jobs, logger: logger)
        service.listen = listen
        service.node = site.nodeName
        service.member = member
        service.tick = .milliseconds(max(10, tickMilliseconds))
        service.onListening = { port in
            // One line on stdout that scripts and tests wait for.
            print(
                "standby run: \(topology.deployment) serving http://\(listen ?? topology.service.listen) (port \(port))"
            )
            fflush(nil)
        }
        let site = self.site.site
        // The runbook beside the journal follows the topology file and the drills: checked every
        // few seconds, rewritten when either changed.
        let runbook = Task { await Self.keepRunbook(site: site, stateDirectory: stateDirectory, logger: logger) }
        defer { runbook.cancel() }
        try await service.run()
    }

    /// `STATE/runbook.html`, rewritten at the start and whenever the topology file or the
    /// newest drill changes, until cancelled. A failure is logged; the service goes on.
    static func keepRunbook(site: String, stateDirectory: StateDirectory, logger: Logger) async {
        var written: String?
        while !Task.isCancelled {
            do {
                let topology = try TopologyLoader.load(site)
                let modified =
                    (try? FileManager.default.attributesOfItem(atPath: topology.file)[.modificationDate] as? Date)
                    ?? Date.distantPast
                var newestDrill = "none"
                if FileManager.default.fileExists(atPath: stateDirectory.file("state.sqlite")) {
                    let drill = try DrillLog(store: try StateStore(directory: stateDirectory))
                        .drills(deployment: topology.deployment).first
                    newestDrill = drill.map { "\($0.id ?? 0) \($0.finishedAt?.timeIntervalSince1970 ?? 0)" } ?? "none"
                }
                let version = "\(modified.timeIntervalSince1970) \(newestDrill)"
                if version != written {
                    let path = stateDirectory.file("runbook.html")
                    _ = try await RunbookWriter.write(
                        topology: topology, site: site, stateDirectory: stateDirectory, to: path, now: Date())
                    logger.info("Runbook written", metadata: ["path": "\(path)", "drill": "\(newestDrill)"])
                    written = version
                }
            } catch {
                logger.warning("Runbook not written", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }

    /// This very binary, for `standby resume` children.
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments[0]
    }
}
