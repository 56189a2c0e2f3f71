import ArgumentParser
import Foundation
import Logging
import StandbyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct FailbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failback",
        abstract:
            "Return to the rebuilt primary: reverse replication, a planned switch, DNS back, optional services back.",
        discussion: """
            Preconditions: a completed failover to return from, and every primary probe passing \
            health.rise times in a row, one interval apart. The failback is a run in the same journal \
            (direction failback): `status`, `resume`, `confirm`, `retry`, `skip`, `abort` and `report` \
            work on it as on a failover. DNS goes back by compare-and-swap from the secondary values \
            to the primary values recorded at failover.
            Exit 0 done; 1 a step failed; 3 refused (the primary is down, no failover to return from, \
            another run active, not a lead, not confirmed); 4 waiting.
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: ClockOptions

    @OptionGroup var lead: LeadOptions

    @Option(help: "Why now; recorded with your name.")
    var reason = "the primary is rebuilt"

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    func run() async throws {
        let now = try clock.date()
        let topology = try site.loadTopology()
        try FailoverEngine.checkLead(lead.name, in: topology)
        let context = try RunContext(site: site, topology: topology, locking: true, command: "failback")
        let engine = context.engine()
        let preflight = try await engine.failbackPreflight(now: now)
        print(
            "Primary \(topology.primary.name) (\(topology.primary.pool)), probes (\(topology.health.rise) in a row):"
        )
        for line in preflight.probes {
            print("  \(line.probe.padded(to: 24)) \(line.verdict.padded(to: 8)) \(line.detail)")
        }
        if let from = preflight.returnsFrom { print("Returns from failover run \(from).") }
        for set in preflight.reverseSets { print("Reverse replication: \(set) (failback_source)") }
        for set in preflight.skippedSets { print("No reverse replication: \(set) has no failback_source") }
        print("")
        print(PlanText.render(preflight.plan, topology: topology))
        if !preflight.refusals.isEmpty {
            throw CommandExit(.refused, "refused: " + preflight.refusals.joined(separator: "; "))
        }
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                throw CommandExit(
                    .refused,
                    "refused: confirmation needed; run on a terminal, or pass --yes once you have read the above")
            }
            print(
                "\nFail back \(topology.deployment) to \(topology.primary.name)? Type yes to proceed: ",
                terminator: "")
            fflush(nil)
            guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                throw CommandExit(.refused, "refused: not confirmed; nothing was done")
            }
        }
        let runId = FailoverEngine.newRunId(deployment: topology.deployment, now: Date())
        if let held = try context.journal.takeLease(
            FailoverLease(
                deployment: topology.deployment, runId: runId, lead: lead.name, pid: Int(getpid()),
                host: ControllerLock.hostName(), since: Date()))
        {
            throw CommandExit(.refused, context.leaseRefusal(held.lease, held.run))
        }
        do {
            let run = try engine.declareFailback(
                runId: runId, preflight: preflight, reason: reason, lead: lead.name, declaredAt: Date())
            print("\nFailback run \(run.id) declared by \(lead.name): \(reason)")
        } catch {
            try? context.journal.releaseLease(deployment: topology.deployment, runId: runId)
            throw error
        }
        // In cluster mode the leader runs the steps and the DNS updates; this command follows.
        let outcome = try await context.execute(engine, runId: runId, now: now, command: "failback")
        try context.finish(outcome, runId: runId)
    }
}
