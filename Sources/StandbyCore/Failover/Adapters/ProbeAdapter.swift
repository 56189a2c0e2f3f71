import Foundation
import Logging
import StandbyProbes

/// `probe` steps and the primary's health evidence through StandbyProbes.
public struct ProbeAdapter: ProbeWaiter, HealthEvidence {
    public var stateDirectory: StateDirectory
    public var logger: Logger
    /// Pause between attempts while waiting for a probe to pass.
    public var interval: Duration

    public init(stateDirectory: StateDirectory, logger: Logger, interval: Duration = .seconds(1)) {
        self.stateDirectory = stateDirectory
        self.logger = logger
        self.interval = interval
    }

    public static func probe(_ spec: ProbeSpec, defaultTimeout: TimeSpan) throws -> Probe {
        var options = ProbeOptions()
        let target: ProbeTarget
        switch spec.check {
        case .tcp(let text): target = .tcp(try HostPort(parsing: text))
        case .tls(let text, let serverName): target = .tls(try TLSTarget(parsing: text, serverName: serverName))
        case .http(let url, let expect, let bodyMatch):
            target = .http(try HTTPTarget(url: url, expectStatus: Set(expect), bodyMatch: bodyMatch))
        case .sipOptions(let uri, let accept):
            target = .sipOptions(try SIPTarget(parsing: uri))
            options = ProbeOptions(sipUpStatuses: Set(accept))
        case .dns(let server, let name, let type): target = .dns(try DNSTarget(server: server, name: name, type: type))
        case .clientView(let resolver, let srv, let sites):
            var probeSites: [String: ProbeSite] = [:]
            for (host, site) in sites { probeSites[host] = site == .primary ? .primary : .secondary }
            target = .clientView(try ClientViewTarget(resolver: resolver, srv: srv, sites: probeSites))
        }
        options.caFile = spec.caFile
        return Probe(
            name: spec.name, site: spec.site == .primary ? .primary : .secondary, target: target,
            timeout: (spec.timeout ?? defaultTimeout).duration, options: options)
    }

    public func waitUntilPassing(_ spec: ProbeSpec, timeout: Duration) async throws -> String {
        let probe = try Self.probe(spec, defaultTimeout: TimeSpan(seconds: 5))
        let runner = ProbeRunner(logger: logger)
        let deadline = ContinuousClock.now + timeout
        // The client view waits out a resolver's cache: asked often, the moment clients first
        // reach the secondary is known to a fraction of a second, not to `interval`.
        let interval: Duration
        if case .clientView = probe.target {
            interval = min(self.interval, .milliseconds(200))
        } else {
            interval = self.interval
        }
        var attempts = 0
        while true {
            attempts += 1
            let result = await runner.run(probe)
            if result.outcome.isSuccess {
                return
                    "probe \(spec.name) (\(probe.target)) \(result.outcome.rawValue) after \(attempts) attempt(s): \(result.detail)"
            }
            guard ContinuousClock.now + interval < deadline else {
                throw FailoverError(
                    .stepFailed,
                    "probe \(spec.name) (\(probe.target)) did not pass within \(timeout) (\(attempts) attempts); last: \(result.detail)"
                )
            }
            try await Task.sleep(for: interval)
        }
    }

    /// The health module's recorded verdict on the primary when `standby health` has been
    /// watching, then one fresh attempt of every primary probe.
    public func primaryEvidence(_ topology: Topology) async -> [HealthLine] {
        var lines: [HealthLine] = []
        let historyFile = stateDirectory.file(HealthHistory.fileName)
        if FileManager.default.fileExists(atPath: historyFile),
            let history = try? HealthHistory(directory: stateDirectory.path),
            let verdict = try? history.currentVerdict(for: .primary)
        {
            lines.append(
                HealthLine(
                    probe: "site verdict", verdict: verdict.verdict.rawValue,
                    detail: "since \(ISO8601DateFormatter().string(from: verdict.since)): \(verdict.detail)"))
        }
        let runner = ProbeRunner(logger: logger)
        let probes = topology.health.probes.filter { $0.site == .primary }
        let results = await withTaskGroup(of: (Int, HealthLine).self) { group in
            for (index, spec) in probes.enumerated() {
                group.addTask {
                    do {
                        let probe = try Self.probe(spec, defaultTimeout: topology.health.timeout)
                        let result = await runner.run(probe)
                        return (
                            index, HealthLine(probe: spec.name, verdict: result.outcome.rawValue, detail: result.detail)
                        )
                    } catch {
                        return (index, HealthLine(probe: spec.name, verdict: "error", detail: "\(error)"))
                    }
                }
            }
            var out: [(Int, HealthLine)] = []
            for await item in group { out.append(item) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
        lines += results
        if lines.isEmpty {
            lines.append(HealthLine(probe: "-", verdict: "unknown", detail: "the topology has no probe of the primary"))
        }
        return lines
    }
}
