import ArgumentParser
import Foundation
import StandbyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Declare the primary site lost and fail over in stages: core, DNS, optional services off-peak.",
        discussion: """
            Preflight takes the deployment's lease (one active run), shows the primary's health evidence, \
            every backup set's data-loss window and the plan, and asks for confirmation on a terminal \
            unless --yes. The run and all its steps are journaled before anything executes.
            Exit 0 done; 1 a step failed (retry or skip it); 3 refused (another run, not a lead, no \
            verified copy of a core set, not confirmed); 4 waiting (confirm a manual step, off-peak window).
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var clock: ClockOptions

    @Option(help: "Why the site is declared lost; recorded with your name.")
    var declare: String

    @OptionGroup var lead: LeadOptions

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @Flag(help: "A planned migration while the primary is still up: a final replication pass first.")
    var planned = false

    @Option(help: "The loss to recover from (see `standby plan --scenario list`).")
    var scenario = "site-loss"

    @Option(
        name: .customLong("dns-later"),
        help: ArgumentHelp(
            "Go on although the DNS check failed (no key, a server down); recorded with your name.",
            discussion: "Stage 2 then halts the run until `standby retry SITE dns/cutover`.",
            valueName: "reason"))
    var dnsLater: String?

    func run() async throws {
        if let dnsLater, dnsLater.trimmingCharacters(in: .whitespaces).isEmpty {
            throw CommandExit(
                .badInput, "standby: --dns-later needs a reason, like --dns-later \"DC01 down; DNS by hand\"")
        }
        if declare.trimmingCharacters(in: .whitespaces).isEmpty {
            throw CommandExit(
                .badInput, "standby: --declare needs a reason, like --declare \"Redmond data centre lost power\"")
        }
        let now = try clock.date()
        let topology = try site.loadTopology()
        try FailoverEngine.checkLead(lead.name, in: topology)
        let context = try RunContext(site: site, topology: topology, locking: true, command: "failover")
        let engine = context.engine()
        let runId = FailoverEngine.newRunId(deployment: context.topology.deployment, now: Date())
        if let held = try context.journal.takeLease(
            FailoverLease(
                deployment: context.topology.deployment, runId: runId, lead: lead.name, pid: Int(getpid()),
                host: ControllerLock.hostName(), since: Date()))
        {
            throw CommandExit(.refused, context.leaseRefusal(held.lease, held.run))
        }
        do {
            let preflight = try await engine.preflight(
                scenario: scenario, now: now, planned: planned, dnsLater: dnsLater != nil)
            print(Self.render(preflight, topology: context.topology, now: now))
            if !preflight.refusals.isEmpty {
                throw CommandExit(
                    .refused, "refused: " + preflight.refusals.joined(separator: "; "))
            }
            if !yes { try confirmOnTerminal(context.topology) }
            let run = try engine.declare(
                runId: runId, preflight: preflight, reason: declare, lead: lead.name, planned: planned,
                declaredAt: Date(), dnsLater: dnsLater)
            print("\nRun \(run.id) declared by \(lead.name): \(declare)")
        } catch {
            // No run exists: drop the lease and remember the attempt, so that `resume` says the
            // declaration did not complete rather than "nothing to resume".
            let why = (error as? CommandExit)?.message ?? (error as? FailoverError)?.message ?? "\(error)"
            let attempt = AbandonedDeclaration(
                deployment: context.topology.deployment, runId: runId, lead: lead.name, at: Date(), why: why)
            if (try? context.journal.abandonDeclaration(attempt)) == nil {
                try? context.journal.releaseLease(deployment: context.topology.deployment, runId: runId)
            }
            throw error
        }
        let outcome = try await context.execute(engine, runId: runId, now: now, command: "failover")
        try context.finish(outcome, runId: runId)
    }

    func confirmOnTerminal(_ topology: Topology) throws {
        guard isatty(STDIN_FILENO) == 1 else {
            throw CommandExit(
                .refused, "refused: confirmation needed; run on a terminal, or pass --yes once you have read the above")
        }
        print("\nFail over \(topology.deployment) to \(topology.secondary.name)? Type yes to proceed: ", terminator: "")
        fflush(nil)
        guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
            throw CommandExit(.refused, "refused: not confirmed; nothing was done")
        }
    }

    static func render(_ preflight: FailoverEngine.Preflight, topology: Topology, now: Date) -> String {
        var lines: [String] = []
        lines.append("Primary \(topology.primary.name) (\(topology.primary.pool)), health evidence:")
        for line in preflight.evidence {
            lines.append("  \(line.probe.padded(to: 24)) \(line.verdict.padded(to: 8)) \(line.detail)")
        }
        lines.append("")
        if preflight.sets.isEmpty {
            lines.append("Backup sets: the plan restores none.")
        } else {
            lines.append("Backup sets (data-loss window = now − capture time of the version restored):")
            for set in preflight.sets {
                let window = set.lossWindowSeconds.map { RunReport.span($0) } ?? "unknown"
                let detail =
                    set.problem
                    ?? "version \(set.version ?? "?") captured \(set.capturedAt.map { RunReport.time($0) } ?? "?")"
                lines.append(
                    "  \(set.name.padded(to: 24)) \(set.core ? "core    " : "optional") \(window.padded(to: 8)) \(detail)"
                )
            }
        }
        if let proven = preflight.dnsProven {
            lines.append("")
            lines.append("DNS (stage 2), checked before stage 1, nothing changed:")
            lines += proven.split(separator: "\n").map { "  " + $0 }
        } else if let deferred = preflight.dnsDeferred {
            lines.append("")
            lines.append(
                "DNS (stage 2) cannot run now; going on with --dns-later, the cutover waits for `standby retry`:")
            lines.append("  " + deferred)
        }
        lines.append("")
        lines.append(PlanText.render(preflight.plan, topology: topology))
        return lines.joined(separator: "\n")
    }
}
