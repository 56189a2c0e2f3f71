import ArgumentParser
import Foundation
import StandbyCore

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run a failed or interrupted step again; the run continues.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: RunClockOptions

    @Argument(help: "The step, SERVICE/STEP.")
    var step: String

    @Option(help: "Your name, as listed in policy.incident_leads.")
    var lead: String

    @Option(help: "Why it should work now, for the record.")
    var reason: String?

    func run() async throws {
        try await RunContext.mappingErrors {
            let context = try RunContext(site: site, locking: true)
            try await context.continueRun(now: try clock.date()) { engine in
                try engine.retry(stepId: step, lead: lead, reason: reason)
            }
        }
    }
}
