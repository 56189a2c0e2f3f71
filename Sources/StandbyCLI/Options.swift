import ArgumentParser
import Foundation
import StandbyCore

/// The site argument and the state directory, shared by every command.
struct SiteOptions: ParsableArguments {
    @Argument(help: "The deployment directory (sites/NAME) or its site.yaml.")
    var site: String

    @Option(
        help:
            "The state directory (journal, catalog, default store). Default: $STANDBY_STATE, else $XDG_STATE_HOME/standby/DEPLOYMENT."
    )
    var state: String?

    func loadTopology() throws -> Topology {
        try TopologyLoader.load(site)
    }

    func stateDirectory(for topology: Topology) -> StateDirectory {
        StateDirectory(explicit: state, deployment: topology.deployment)
    }
}

/// `--json` for read commands.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of text.")
    var json = false
}

/// `--now`, so that a plan or a check can be evaluated at a given moment (reviews, tests).
struct ClockOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp("Evaluate as of this moment (ISO 8601, like 2026-11-25T21:30:00Z).", visibility: .hidden))
    var now: String?

    func date() throws -> Date {
        guard let now else { return Date() }
        guard let date = ISO8601DateFormatter().date(from: now) else {
            throw ValidationError("--now: '\(now)' is not an ISO 8601 time like 2026-11-25T21:30:00Z")
        }
        return date
    }
}

enum JSON {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func print(_ value: some Encodable) throws {
        Swift.print(try encode(value))
    }
}
