import Logging

/// One round of every probe, run in parallel, and the verdict of each site from that round alone.
public struct HealthReport: Sendable {
    /// In the order the probes were given.
    public var results: [ProbeResult]
    public var verdicts: [ProbeSite: SiteVerdict]

    public var primaryVerdict: SiteVerdict { verdicts[.primary] ?? .unknown }

    public func verdict(for site: ProbeSite) -> SiteVerdict { verdicts[site] ?? .unknown }
}

/// Runs probes in parallel (a task group, at most `maximumInFlight` at once so that a large
/// topology does not open hundreds of sockets in the same millisecond).
public struct HealthCheck: Sendable {
    public let runner: ProbeRunner
    public let maximumInFlight: Int

    public init(runner: ProbeRunner, maximumInFlight: Int = 64) {
        self.runner = runner
        self.maximumInFlight = max(1, maximumInFlight)
    }

    public init(logger: Logger, maximumInFlight: Int = 64) {
        self.init(runner: ProbeRunner(logger: logger), maximumInFlight: maximumInFlight)
    }

    /// Every probe once; one failure decides (no hysteresis in a one-shot check).
    public func run(_ probes: [Probe]) async -> HealthReport {
        let results = await results(of: probes)
        var verdicts: [ProbeSite: SiteVerdict] = [:]
        for site in ProbeSite.allCases {
            let states = results.filter { $0.site == site }.map { $0.outcome.isSuccess ? ProbeState.up : .down }
            verdicts[site] = SiteVerdict.from(states)
        }
        return HealthReport(results: results, verdicts: verdicts)
    }

    /// Every probe once, results in the order of `probes`.
    public func results(of probes: [Probe]) async -> [ProbeResult] {
        await withTaskGroup(of: (Int, ProbeResult).self) { group in
            var results = [ProbeResult?](repeating: nil, count: probes.count)
            var next = 0
            func startNext() {
                guard next < probes.count else { return }
                let index = next
                let probe = probes[index]
                next += 1
                group.addTask { (index, await runner.run(probe)) }
            }
            for _ in 0..<min(maximumInFlight, probes.count) { startNext() }
            while let (index, result) = await group.next() {
                results[index] = result
                startNext()
            }
            return results.compactMap { $0 }
        }
    }
}
