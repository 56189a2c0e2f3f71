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

    @Option(help: "Your name, as listed in policy.incident_leads.")
    var lead: String

    func run() async throws {
        try await RunContext.mappingErrors {
            let topology = try site.loadTopology()
            try FailoverEngine.checkLead(lead, in: topology)
            let context = try RunContext(site: site, topology: topology, locking: true)
            let run = try context.engine().abort(lead: lead, reason: reason)
            print("Run \(run.id) aborted by \(lead): \(reason). The lease is released; steps already done stay done.")
        }
    }
}
