import ArgumentParser
import Foundation
import Logging
import StandbyCore
import StandbyProbes

/// `standby health SITE`: every probe once, in parallel, as a table (or `--json`); exit 0 when the
/// primary is up, 1 when it is degraded, unreachable or unknown. `--watch` keeps probing at the
/// topology's interval with hysteresis, records every result and transition in the state
/// directory (`health.sqlite`) and posts an alert to the webhooks once per verdict change.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Probe both sites once (exit 0 when the primary is up, 1 otherwise), or keep watching.")

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions

    @Flag(
        help:
            "Keep probing at the topology's interval: record results and verdict changes in the state directory and alert the webhooks once per change."
    )
    var watch = false

    @Option(help: ArgumentHelp("Stop watching after this many rounds (tests).", visibility: .hidden))
    var rounds: Int?

    struct Line: Encodable {
        var probe: String
        var site: String
        var kind: String
        var target: String
        var result: String
        var latencyMs: Double
        var detail: String
        var at: Date
        var certificate: CertificateInfo?

        init(_ result: ProbeResult) {
            probe = result.probe
            site = result.site.rawValue
            kind = result.kind
            target = result.target
            self.result = result.outcome.rawValue
            latencyMs = (result.latencyMilliseconds * 10).rounded() / 10
            detail = result.detail
            at = result.at
            certificate = result.certificate
        }
    }

    struct Report: Encodable {
        var deployment: String
        var primary: String
        var secondary: String
        var results: [Line]
    }

    struct RoundLine: Encodable {
        var round: Int
        var at: Date
        var primary: String
        var secondary: String
        var down: [String]
        var transitions: [Change]
    }

    struct Change: Encodable {
        var subject: String
        var from: String
        var to: String
        var detail: String
    }

    func run() async throws {
        let topology = try site.loadTopology()
        let probes = try topology.health.probes.map {
            try ProbeAdapter.probe($0, defaultTimeout: topology.health.timeout)
        }
        guard !probes.isEmpty else {
            throw CommandExit(.badInput, "standby: \(topology.deployment) declares no health probes")
        }
        let logger = Logger(label: "standby.health")
        if watch {
            try await keepWatching(probes, topology: topology, logger: logger)
        } else {
            try await once(probes, topology: topology, logger: logger)
        }
    }

    private func once(_ probes: [Probe], topology: Topology, logger: Logger) async throws {
        let report = await HealthCheck(logger: logger).run(probes)
        if output.json {
            try JSON.print(
                Report(
                    deployment: topology.deployment, primary: report.primaryVerdict.rawValue,
                    secondary: report.verdict(for: .secondary).rawValue, results: report.results.map(Line.init)))
        } else {
            print(Self.table(report.results))
            print("")
            print("primary: \(report.primaryVerdict.rawValue)   secondary: \(report.verdict(for: .secondary).rawValue)")
        }
        if report.primaryVerdict != .up {
            throw CommandExit(.failed)
        }
    }

    private func keepWatching(_ probes: [Probe], topology: Topology, logger: Logger) async throws {
        let stateDirectory = site.stateDirectory(for: topology)
        let history = try HealthHistory(directory: stateDirectory.path)
        let configuration = try WatchConfiguration(
            interval: topology.health.interval.duration,
            hysteresis: try Hysteresis(fall: topology.health.fall, rise: topology.health.rise),
            webhooks: topology.health.webhooks, source: topology.deployment,
            keepResults: topology.health.keepHistory.duration)
        let watcher = try HealthWatcher(
            probes: probes, configuration: configuration, history: history, check: HealthCheck(logger: logger),
            sender: WebhookAlertSender(logger: logger), logger: logger)
        if !output.json {
            print(
                "Watching \(probes.count) probes of \(topology.deployment) every \(topology.health.interval.seconds) s "
                    + "(fall \(topology.health.fall), rise \(topology.health.rise)); history in \(history.path)")
        }
        let json = output.json
        try await observe(watcher, json: json)
    }

    private func observe(_ watcher: HealthWatcher, json: Bool) async throws {
        try await watcher.run(rounds: rounds) { round in
            let down = round.results.filter { $0.outcome == .down }.map(\.probe)
            let primary = round.verdicts[.primary] ?? .unknown
            let secondary = round.verdicts[.secondary] ?? .unknown
            if json {
                let line = RoundLine(
                    round: round.number, at: Date(), primary: primary.rawValue, secondary: secondary.rawValue,
                    down: down,
                    transitions: round.transitions.map {
                        Change(subject: $0.subjectName, from: $0.from, to: $0.to, detail: $0.detail)
                    })
                if let text = try? JSON.encodeLine(line) { print(text) }
            } else {
                let failing = down.isEmpty ? "" : "; failing: " + down.joined(separator: ", ")
                print(
                    "\(RunReport.time(Date()))  round \(round.number): primary \(primary.rawValue), secondary \(secondary.rawValue)\(failing)"
                )
                for change in round.transitions {
                    let what = change.isSiteVerdict ? "site \(change.subjectName)" : "probe \(change.subjectName)"
                    print("    \(what): \(change.from) -> \(change.to) (\(change.detail))")
                }
            }
            fflush(nil)
        }
    }

    static func table(_ results: [ProbeResult]) -> String {
        let header = ["PROBE", "SITE", "KIND", "TARGET", "RESULT", "LATENCY", "DETAIL"]
        let rows = results.map { result in
            [
                result.probe, result.site.rawValue, result.kind, result.target, result.outcome.rawValue,
                String(format: "%.1f ms", result.latencyMilliseconds), result.detail,
            ]
        }
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated().dropLast() { widths[index] = max(widths[index], cell.count) }
        }
        return ([header] + rows).map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

extension JSON {
    /// One compact line (for `--watch --json`: a stream of objects, one per round).
    static func encodeLine(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
