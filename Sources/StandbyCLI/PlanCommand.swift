import ArgumentParser
import Foundation
import StandbyCore

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show the failover as it would run, stage by stage.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var clock: ClockOptions

    @Option(help: "The loss to plan for: site-loss (default) or a partial loss; `--scenario list` lists them.")
    var scenario = "site-loss"

    @Option(
        help: ArgumentHelp(
            "Write the runbook to FILE (HTML made to print): the failover and the failback as a person follows them without Standby.",
            valueName: "FILE"))
    var runbook: String?

    func run() async throws {
        let topology = try site.loadTopology()
        if scenario == "list" {
            for s in topology.scenarios {
                print("\(s.name.padded(to: 30)) \(s.summary)")
            }
            return
        }
        let now = try clock.date()
        let plan = try Planner(topology: topology, now: now).plan(scenario: scenario)
        if let runbook {
            let written = try await RunbookWriter.write(
                topology: topology, site: site.site, stateDirectory: site.stateDirectory(for: topology), to: runbook,
                now: now)
            if output.json {
                try JSON.print(written)
            } else {
                let steps = written.procedures.flatMap(\.stages).flatMap(\.steps).count
                print("Runbook of \(topology.deployment): \(runbook) (failover and failback, \(steps) steps)")
                print("To print or archive as PDF: chromium --headless --print-to-pdf=runbook.pdf file://\(runbook)")
            }
            return
        }
        if output.json {
            try JSON.print(plan)
        } else {
            print(PlanText.render(plan, topology: topology))
        }
    }
}

enum PlanText {
    static func render(_ plan: FailoverPlan, topology: Topology) -> String {
        var lines: [String] = []
        let failback = plan.direction == .failback
        let (from, to) = failback ? (topology.secondary, topology.primary) : (topology.primary, topology.secondary)
        lines.append(
            failback
                ? "Failback plan for \(plan.deployment): back to the rebuilt primary"
                : "Failover plan for \(plan.deployment): \(plan.scenario) (\(plan.scenarioSummary))")
        lines.append("From \(from.name) (\(from.pool)) to \(to.name) (\(to.pool))")
        // One column for every step id, as wide as the longest, so that the actions line up.
        let idWidth = plan.stages.flatMap(\.services).flatMap(\.steps).map(\.id.count).max() ?? 0
        for stage in plan.stages {
            lines.append("")
            var header = "Stage \(stage.number): \(stage.title)"
            let nothingToRun = stage.kind != .dns && stage.services.allSatisfy(\.steps.isEmpty)
            if nothingToRun && !stage.services.isEmpty {
                header += " — nothing to run"
            } else if stage.waitsForOffPeak {
                let windows = to.offPeak.map(\.description).joined(separator: ", ")
                if let closes = stage.closesAtLocal {
                    header += " — runs at once: the off-peak window \(windows) is open now, until \(closes)"
                } else if let local = stage.opensAtLocal {
                    header += " — waits for the off-peak window \(windows); next opens \(local)"
                } else {
                    header += " — no off-peak window is configured: run with `standby resume --now SERVICE`"
                }
            } else {
                header += " — runs at once"
            }
            lines.append(header)
            if stage.kind == .dns {
                for change in stage.dnsChanges {
                    lines.append("  \(change.name) \(change.type) (ttl \(change.ttl))")
                    lines.append("      \(change.from.joined(separator: ", ")) → \(change.to.joined(separator: ", "))")
                }
                lines.append("  verified on: \(topology.dns?.servers.joined(separator: ", ") ?? "")")
                for step in stage.services.flatMap(\.steps) {
                    let timeout = step.timeout.map { "  (timeout \($0))" } ?? ""
                    lines.append("  then \(step.id): \(step.summary)\(timeout)")
                }
                continue
            }
            if stage.services.isEmpty { lines.append("  (nothing)") }
            for (index, service) in stage.services.enumerated() {
                let sets = service.backupSets.isEmpty ? "" : "; sets: \(service.backupSets.joined(separator: ", "))"
                lines.append("  \(index + 1). \(service.name) [\(service.order)\(sets)]")
                if service.steps.isEmpty {
                    lines.append(failback ? "       (no failback_steps: nothing to move back)" : "       (no steps)")
                }
                for step in service.steps {
                    var extras: [String] = []
                    if let timeout = step.timeout { extras.append("timeout \(timeout)") }
                    if step.retries > 0 { extras.append("\(step.retries) retries") }
                    if step.idempotent { extras.append("idempotent") }
                    let suffix = extras.isEmpty ? "" : "  (\(extras.joined(separator: ", ")))"
                    lines.append("       \(step.id.padded(to: idWidth))  \(step.summary)\(suffix)")
                }
            }
        }
        if !plan.notRestored.isEmpty {
            lines.append("")
            lines.append(
                failback ? "Not restored at the secondary, so not moved back:" : "Not restored at the secondary:")
            for item in plan.notRestored {
                lines.append("  \(item.service): \(item.reason)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// Pads to `width` for aligned columns; a longer text keeps its length (it is never cut).
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
