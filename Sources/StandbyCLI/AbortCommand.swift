import ArgumentParser
import Foundation
import StandbyCore

struct AbortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "End the active run where it stands and release the lease. Nothing is undone.")

    @OptionGroup var site: SiteOptions

    @Option(help: "Why; recorded.")
    var reason: String

    @OptionGroup var lead: LeadOptions

    func run() async throws {
        let topology = try site.loadTopology()
        try FailoverEngine.checkLead(lead.name, in: topology)
        let context = try RunContext(site: site, topology: topology, locking: true, command: "abort")
        let run = try context.engine().abort(lead: lead.name, reason: reason)
        print(
            "Run \(run.id) aborted by \(lead.name): \(reason). The lease is released; steps already done stay done."
        )
    }
}
