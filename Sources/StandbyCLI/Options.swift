import ArgumentParser
import Foundation
import Logging
import StandbyCore

/// The site argument and the state directory, shared by every command, and the log level.
struct SiteOptions: ParsableArguments {
    @Argument(help: "The deployment directory (sites/NAME) or its site.yaml.")
    var site: String

    @Option(
        help:
            "The state directory (journal, catalog, default store). Default: $STANDBY_STATE, else $XDG_STATE_HOME/standby/DEPLOYMENT."
    )
    var state: String?

    @Option(
        help: "Cluster mode: this controller's node id. Default: $STANDBY_NODE, else the host name.")
    var node: String?

    @OptionGroup var logging: LoggingOptions

    /// The topology, with `STANDBY_ETCD` and `STANDBY_CLUSTER_TTL` applied to its `cluster:`.
    func loadTopology() throws -> Topology {
        var topology = try TopologyLoader.load(site)
        topology.cluster = ClusterSettings.resolve(topology.cluster, environment: ProcessInfo.processInfo.environment)
        return topology
    }

    /// This controller's name in the cluster.
    var nodeName: String {
        if let node, !node.isEmpty { return node }
        if let node = ProcessInfo.processInfo.environment["STANDBY_NODE"], !node.isEmpty { return node }
        return ControllerLock.hostName()
    }

    func stateDirectory(for topology: Topology) -> StateDirectory {
        StateDirectory(explicit: state, deployment: topology.deployment)
    }
}

/// `--log-level LEVEL` on every command; else `STANDBY_LOG_LEVEL`; else the command's default
/// (warning; info for `standby run`). Logs go to stderr; what a command prints goes to stdout.
struct LoggingOptions: ParsableArguments {
    @Option(
        help:
            "Log level on stderr: trace, debug, info, notice, warning, error, critical. Default: $STANDBY_LOG_LEVEL, else warning (info for `run`)."
    )
    var logLevel: String?

    func validate() throws { _ = try level(default: .warning) }

    func level(default fallback: Logger.Level, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> Logger.Level
    {
        let levels = "trace, debug, info, notice, warning, error, critical"
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
                throw ValidationError("--log-level: '\(logLevel)' is not a level (\(levels))")
            }
            return level
        }
        if let text = environment["STANDBY_LOG_LEVEL"], !text.isEmpty {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ValidationError("STANDBY_LOG_LEVEL: '\(text)' is not a level (\(levels))")
            }
            return level
        }
        return fallback
    }
}

/// A command whose logging the root sets up before it runs (`StandbyCommand.runMain`).
protocol LoggingCommand {
    var logging: LoggingOptions { get }
    /// The level without `--log-level` or `STANDBY_LOG_LEVEL`.
    static var defaultLogLevel: Logger.Level { get }
}

extension LoggingCommand {
    static var defaultLogLevel: Logger.Level { .warning }
}

/// The commands that take a site: their log level comes with `SiteOptions`.
protocol SiteCommand: LoggingCommand {
    var site: SiteOptions { get }
}

extension SiteCommand {
    var logging: LoggingOptions { site.logging }
}

/// `--lead NAME`: who decides. Every decision is recorded with it, and it must be listed in
/// `policy.incident_leads`.
struct LeadOptions: ParsableArguments {
    @Option(name: .customLong("lead"), help: "Your name, as listed in policy.incident_leads.")
    var name: String
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

    func validate() throws { _ = try date() }

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

extension CheckCommand: SiteCommand {}
extension PlanCommand: SiteCommand {}
extension ReplicateCommand: SiteCommand {}
extension VerifyCommand: SiteCommand {}
extension RestoreCommand: SiteCommand {}
extension StatusCommand: SiteCommand {}
extension HealthCommand: SiteCommand {}
extension RunCommand: SiteCommand {
    static var defaultLogLevel: Logger.Level { .info }
}
extension FailoverCommand: SiteCommand {}
extension FailbackCommand: SiteCommand {}
extension DrillCommand: SiteCommand {}
extension ResumeCommand: SiteCommand {}
extension ConfirmCommand: SiteCommand {}
extension RetryCommand: SiteCommand {}
extension SkipCommand: SiteCommand {}
extension AbortCommand: SiteCommand {}
extension ReportCommand: SiteCommand {}
extension DNSCommand.Show: SiteCommand {}
extension DNSCommand.Switch: SiteCommand {}
extension DNSCommand.Prepare: SiteCommand {}
extension PublishCommand: LoggingCommand {}
