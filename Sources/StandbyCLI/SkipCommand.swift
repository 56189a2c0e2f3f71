import ArgumentParser
import Foundation
import StandbyCore

struct SkipCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skip",
        abstract: "Skip a step, or every unfinished step of a service, with a reason; the run continues.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: RunClockOptions

    @Argument(help: "SERVICE/STEP, or SERVICE for all its unfinished steps.")
    var target: String

    @Option(help: "Why it is skipped; recorded.")
    var reason: String

    @OptionGroup var lead: LeadOptions

    func run() async throws {
        let context = try RunContext(site: site, locking: true, command: "skip")
        try await context.continueRun(now: try clock.date(), command: "skip") { engine in
            try engine.skip(target: target, lead: lead.name, reason: reason)
        }
    }
}
