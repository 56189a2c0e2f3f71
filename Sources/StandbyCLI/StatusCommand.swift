import ArgumentParser
import Foundation
import StandbyCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Where the deployment stands: the failover run's stage, step, elapsed time and what it waits for.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions

    struct Status: Encodable {
        var deployment: String
        var run: RunStatus?
    }

    func run() async throws {
        try await RunContext.mappingErrors {
            let context = try RunContext(site: site)
            let now = Date()
            var runStatus: RunStatus?
            if let run = try context.journal.currentRun(deployment: context.topology.deployment) {
                runStatus = RunStatus(run: run, steps: try context.journal.steps(runId: run.id), now: now)
            }
            if output.json {
                try JSON.print(Status(deployment: context.topology.deployment, run: runStatus))
                return
            }
            print(Self.runSection(runStatus))
        }
    }

    static func runSection(_ status: RunStatus?) -> String {
        guard let status else { return "Failover: no run." }
        var lines = [
            "Failover run \(status.id): \(status.state)",
            "  declared \(RunReport.time(status.declaredAt)) by \(status.lead): \(status.reason)",
            "  elapsed \(RunReport.span(status.elapsedSeconds)); steps done \(status.stepsDone)/\(status.stepsTotal)",
        ]
        if let stage = status.stage {
            lines.append("  stage \(stage): \(status.stageTitle ?? "")")
        }
        if let step = status.currentStep {
            lines.append("  step \(step): \(status.currentStepState ?? "")")
        }
        if let waiting = status.waitingFor { lines.append("  \(waiting)") }
        if let note = status.note, note != status.waitingFor { lines.append("  \(note)") }
        return lines.joined(separator: "\n")
    }
}
