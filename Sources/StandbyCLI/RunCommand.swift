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
        let jobs = try LiveServiceJobs(
            topology: topology, stateDirectory: stateDirectory, executable: Self.executablePath(), logger: logger)
        var service = StandbyService(
            topology: topology, stateDirectory: stateDirectory, jobs: jobs, logger: logger)
        service.listen = listen
        service.node = site.nodeName
        service.tick = .milliseconds(max(10, tickMilliseconds))
        service.onListening = { port in
            // One line on stdout that scripts and tests wait for.
            print(
                "standby run: \(topology.deployment) serving http://\(listen ?? topology.service.listen) (port \(port))"
            )
            fflush(nil)
        }
        try await service.run()
    }

    /// This very binary, for `standby resume` children.
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments[0]
    }
}
