import ArgumentParser
import Foundation
import StandbyCore

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue the active run: whatever is due now (after a crash, a confirmation, an off-peak window).",
        discussion: """
            A step found running after a crash runs again only if it is idempotent; otherwise the run \
            halts (exit 1) until `standby retry` or `standby skip`, because its side effect may have \
            happened. A step never runs twice at once: when the earlier attempt's process outlived the \
            controller, resume waits for it (at most until the step's timeout, then ends its process \
            group), or ends its group at once with --kill-orphans, and says which. Exit 0 done (or the \
            last run is finished); 1 halted; 3 another controller is executing, or there is no run: the \
            declaration did not complete (declare again); 4 still waiting.
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: RunClockOptions

    @Option(name: .customLong("now"), help: "Run this optional service at once, outside the off-peak window.")
    var service: String?

    @Option(help: "Your name (needed with --now: running a service now is a decision).")
    var lead: String?

    @Option(help: "Why (with --now).")
    var reason: String?

    @Flag(
        help:
            "End the process group of a step's earlier attempt still running (left by a controller that died) at once, instead of waiting for it until the step's timeout."
    )
    var killOrphans = false

    func validate() throws {
        if service != nil && lead == nil {
            throw ValidationError("--now SERVICE is a decision: say who decides with --lead NAME")
        }
    }

    func run() async throws {
        let context = try RunContext(site: site, locking: true, command: "resume")
        try await context.continueRun(
            now: try clock.date(), earlierAttempts: killOrphans ? .end : .wait, command: "resume"
        ) {
            engine in
            guard let service, let lead else { return nil }
            return try engine.runNow(service: service, lead: lead, reason: reason)
        }
    }
}
