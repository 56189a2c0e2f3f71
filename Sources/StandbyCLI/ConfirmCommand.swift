import ArgumentParser
import Foundation
import StandbyCore

struct ConfirmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confirm",
        abstract: "Confirm that a manual step is done; the run continues.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: RunClockOptions

    @Argument(help: "The manual step, SERVICE/STEP as `standby status` shows it.")
    var step: String

    @OptionGroup var lead: LeadOptions

    @Option(help: "What was done, for the record.")
    var note: String?

    func run() async throws {
        let context = try RunContext(site: site, locking: true, command: "confirm")
        try await context.continueRun(now: try clock.date(), command: "confirm") { engine in
            try engine.confirm(stepId: step, lead: lead.name, note: note)
        }
    }
}
