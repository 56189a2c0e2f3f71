import ArgumentParser
import Foundation
import StandbyCore

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "A run's timeline (the measured RTO), data-loss windows (the measured RPO), decisions and output.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "The run id; default the active run, else the newest.")
    var run: String?

    @Option(help: "Also write a self-contained HTML page with the timeline chart to this file.")
    var html: String?

    @Option(help: "Report a drill instead of a run: its id, or last.")
    var drill: String?

    func run() async throws {
        let context = try RunContext(site: site)
        if let drill {
            try DrillCommand.report(context, id: drill, json: output.json)
            return
        }
        guard let runId = try run ?? context.journal.currentRun(deployment: context.topology.deployment)?.id
        else {
            throw CommandExit(.badInput, "standby: \(context.topology.deployment) has no failover run to report")
        }
        let report = try context.report(runId)
        if let html {
            do {
                try report.html(generatedAt: Date()).write(toFile: html, atomically: true, encoding: .utf8)
            } catch {
                throw CommandExit(
                    .failed, "standby: \(html): cannot write the report: \(error.localizedDescription)")
            }
        }
        if output.json {
            try JSON.print(report)
        } else {
            print(Self.text(report))
            if let html { print("\nHTML report: \(html)") }
        }
    }

    static func text(_ report: RunReport) -> String {
        var lines: [String] = []
        let run = report.run
        lines.append(
            "\(run.direction == "failback" ? "Failback run" : "Run") \(run.id) of \(run.deployment): \(run.state)\(run.planned ? " (planned)" : "")"
                + (run.returnsFrom.map { ", returning from run \($0)" } ?? ""))
        lines.append("Declared \(RunReport.time(run.declaredAt)) by \(run.lead): \(run.reason)")
        lines.append(
            "Elapsed \(RunReport.span(run.elapsedSeconds)); recovery (core and DNS done): \(report.recoverySeconds.map(RunReport.span) ?? "not yet")"
        )
        if let client = report.clientVisible {
            lines.append("Client-visible recovery (\(client.srv) through the resolver): \(client.explanation)")
        }
        if let note = run.note { lines.append(note) }
        let idWidth = report.stages.flatMap(\.steps).map(\.id.count).max() ?? 0
        for stage in report.stages {
            lines.append("")
            lines.append(
                "Stage \(stage.number): \(stage.title) — \(stage.durationSeconds.map(RunReport.span) ?? "not finished")"
            )
            for step in stage.steps {
                let start = step.startedAt.map { RunReport.time($0) } ?? "-"
                let duration = step.durationSeconds.map(RunReport.span) ?? "-"
                lines.append(
                    "  \(step.id.padded(to: idWidth))  \(step.state.padded(to: 16)) start \(start)  \(duration.padded(to: 7)) attempts \(step.attempts)"
                        + (step.node.map { " on node \($0)" } ?? "")
                )
                if let lost = step.lostSeconds, let last = step.attemptStartedAt {
                    // The duration above is the last attempt's; what came before it is shown apart.
                    lines.append(
                        "      lost \(RunReport.span(lost)) to earlier attempts (a crash, failures): the last attempt started \(RunReport.time(last))"
                    )
                }
                if let waiting = step.waitingFor, step.state != "succeeded" { lines.append("      \(waiting)") }
                if let error = step.error { lines.append("      \(error)") }
                if let tail = step.outputTail, !tail.isEmpty {
                    lines.append(
                        contentsOf: tail.split(separator: "\n", omittingEmptySubsequences: false).map {
                            "      | \($0)"
                        })
                }
            }
        }
        lines.append("")
        if run.direction == "failback" {
            lines.append("Backup sets moved back (the final pass runs after the secondary is quiesced):")
            if report.sets.isEmpty { lines.append("  (none)") }
            for set in report.sets {
                let what =
                    set.version.map { "version \($0) captured \(set.capturedAt.map(RunReport.time) ?? "?")" }
                    ?? "not moved back\(set.problem == nil ? " yet" : "")"
                lines.append("  \(set.name.padded(to: 24)) \(what)\(set.problem.map { " (\($0))" } ?? "")")
            }
        } else {
            lines.append("Data-loss window per backup set (declaration − capture time):")
            if report.sets.isEmpty { lines.append("  (the run restores no backup set)") }
            for set in report.sets {
                let window = set.lossWindowSeconds.map(RunReport.span) ?? "unknown"
                lines.append(
                    "  \(set.name.padded(to: 24)) \(window.padded(to: 8)) version \(set.version ?? "-")\(set.restoredTo.map { " restored to \($0)" } ?? "")\(set.problem.map { " (\($0))" } ?? "")"
                )
            }
        }
        lines.append("")
        lines.append("Decisions:")
        for decision in report.decisions {
            lines.append(
                "  \(RunReport.time(decision.at)) \(decision.kind.padded(to: 8)) \(decision.lead.padded(to: 10)) \(decision.target.map { "\($0): " } ?? "")\(decision.reason)"
            )
        }
        if !report.dnsReplaced.isEmpty {
            lines.append("")
            lines.append("DNS values replaced (kept for failback):")
            for record in report.dnsReplaced {
                lines.append("  \(record.name) \(record.type) \(record.ttl): \(record.values.joined(separator: ", "))")
            }
        }
        if !report.notRestored.isEmpty {
            lines.append("")
            lines.append("Not restored at the secondary:")
            for item in report.notRestored { lines.append("  \(item.service): \(item.reason)") }
        }
        return lines.joined(separator: "\n")
    }
}
