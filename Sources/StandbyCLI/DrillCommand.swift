import ArgumentParser
import Foundation
import Logging
import StandbyCore

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse the site-loss failover without touching production.",
        discussion: """
            Restores every backup set from the store into a drill directory under the state \
            directory (every chunk and file hash checked), runs the steps marked drill: true (or a \
            service's drill_steps) with {{drill}} = true and restore targets in the drill directory, \
            checks DNS with a no-op update (the key, the values and the right to change them; nothing changes) and, with dns.drill_zone, \
            cuts that zone over and back. The drill is recorded (`standby report SITE --drill last`) \
            and counts for `standby check`. A drill killed half-way is cleaned up by the next one.
            Exit 0 the rehearsal passed; 1 a stage failed (named); 3 refused (not a lead, the \
            controller is busy).
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions

    @OptionGroup var lead: LeadOptions

    func run() async throws {
        let topology = try site.loadTopology()
        try FailoverEngine.checkLead(lead.name, in: topology)
        let context = try RunContext(site: site, topology: topology, locking: true)
        let logger = Logger(label: "standby.drill")
        let json = output.json
        let runner = DrillRunner(
            topology: topology, log: DrillLog(store: context.journal.store),
            stateDirectory: context.stateDirectory,
            modules: RunContext.modules(for: topology, stateDirectory: context.stateDirectory, logger: logger),
            logger: logger, killPoints: KillPoints(environment: ProcessInfo.processInfo.environment),
            progress: { line in
                guard !json else { return }
                print("  \(RunReport.time(Date()))  \(line)")
                fflush(nil)
            })
        let report = try await runner.run(lead: lead.name)
        if json {
            try JSON.print(report)
        } else {
            print("")
            print(report.text)
        }
        if report.drill.succeeded != true {
            throw CommandExit(
                .failed,
                "standby: the drill failed: "
                    + (report.drill.failed ?? "").replacingOccurrences(of: "\n", with: "; "))
        }
    }

    /// `standby report SITE --drill ID|last`.
    static func report(_ context: RunContext, id: String, json: Bool) throws {
        let log = DrillLog(store: context.journal.store)
        let drillId: Int64?
        if id == "last" {
            drillId = try log.drills(deployment: context.topology.deployment).first?.id
        } else {
            drillId = Int64(id)
        }
        guard let drillId, let report = try log.report(id: drillId) else {
            throw CommandExit(
                .badInput, "standby: no drill \(id) of \(context.topology.deployment) in \(context.journal.store.path)")
        }
        if json { try JSON.print(report) } else { print(report.text) }
    }
}
