import ArgumentParser
import Foundation
import StandbyCore

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the topology and its readiness for a site loss.",
        discussion: "Exit 0 when clean, 1 with warnings only, 2 with errors (an invalid file or error findings).")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var clock: ClockOptions

    struct Report: Encodable {
        var file: String
        var deployment: String?
        var diagnostics: [Diagnostic]
        var findings: [Finding]
        var errors: Int
        var warnings: Int
        var info: Int
    }

    func run() async throws {
        let now = try clock.date()
        let topology: Topology
        do {
            topology = try site.loadTopology()
        } catch let error as TopologyError {
            if output.json {
                try JSON.print(
                    Report(
                        file: error.file, deployment: nil, diagnostics: error.diagnostics, findings: [],
                        errors: error.diagnostics.count, warnings: 0, info: 0))
                throw CommandExit(.badInput)
            }
            throw error
        }
        let lastDrill = try? StateStore(directory: site.stateDirectory(for: topology)).lastSuccessfulDrill()
        let findings = ReadinessCheck(topology: topology, now: now, lastDrill: lastDrill ?? nil).run()
        let errors = findings.filter { $0.severity == .error }.count
        let warnings = findings.filter { $0.severity == .warning }.count
        let info = findings.count - errors - warnings
        if output.json {
            try JSON.print(
                Report(
                    file: topology.file, deployment: topology.deployment, diagnostics: [], findings: findings,
                    errors: errors, warnings: warnings, info: info))
        } else {
            for finding in findings {
                let place = finding.line.map { "\(topology.file):\($0)" } ?? topology.file
                print("\(place): \(finding.severity.rawValue): \(finding.message) [\(finding.id)]")
                print("    fix: \(finding.fix)")
            }
            print(
                "\(topology.deployment): \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s"), \(info) note\(info == 1 ? "" : "s")"
            )
        }
        if errors > 0 { throw CommandExit(.badInput) }
        if warnings > 0 { throw CommandExit(.failed) }
    }
}
