import ArgumentParser
import Foundation
import StandbyCore

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run a failed or interrupted step again; the run continues.",
        discussion: """
            When the step's earlier attempt is still running (its controller died), retry waits for it \
            first, at most until the step's timeout, or ends its process group at once with \
            --kill-orphans, and says which.
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: RunClockOptions

    @Argument(help: "The step, SERVICE/STEP.")
    var step: String

    @OptionGroup var lead: LeadOptions

    @Option(help: "Why it should work now, for the record.")
    var reason: String?

    @Flag(
        help:
            "End the process group of a step's earlier attempt still running (left by a controller that died) at once, instead of waiting for it until the step's timeout."
    )
    var killOrphans = false

    func run() async throws {
        let context = try RunContext(site: site, locking: true, command: "retry")
        try await context.continueRun(
            now: try clock.date(), earlierAttempts: killOrphans ? .end : .wait, command: "retry"
        ) {
            engine in
            try engine.retry(stepId: step, lead: lead.name, reason: reason)
        }
    }
}
