import Foundation

/// The hysteresis state machine of a set of probes and the verdict of each site. Pure: it is fed
/// results and answers transitions; it does no I/O and reads no clock.
public struct HealthMonitor: Sendable {
    public let policy: Hysteresis
    private var health: [String: ProbeHealth]
    private let sites: [String: ProbeSite]
    /// Probe names in declaration order, for stable output.
    public let probeNames: [String]
    private var verdicts: [ProbeSite: SiteVerdict]

    public init(probes: [(name: String, site: ProbeSite)], policy: Hysteresis) {
        self.policy = policy
        probeNames = probes.map(\.name)
        sites = Dictionary(probes.map { ($0.name, $0.site) }, uniquingKeysWith: { first, _ in first })
        health = Dictionary(probes.map { ($0.name, ProbeHealth()) }, uniquingKeysWith: { first, _ in first })
        verdicts = Dictionary(uniqueKeysWithValues: ProbeSite.allCases.map { ($0, SiteVerdict.unknown) })
    }

    public init(probes: [Probe], policy: Hysteresis) {
        self.init(probes: probes.map { (name: $0.name, site: $0.site) }, policy: policy)
    }

    public func state(of probe: String) -> ProbeState { health[probe]?.state ?? .unknown }

    public func health(of probe: String) -> ProbeHealth? { health[probe] }

    public func verdict(for site: ProbeSite) -> SiteVerdict { verdicts[site] ?? .unknown }

    /// Feeds one round of results (results of unknown probes are ignored) and returns the
    /// transitions it caused: probe transitions first, then site verdicts.
    public mutating func record(_ results: [ProbeResult]) -> [HealthTransition] {
        var transitions: [HealthTransition] = []
        var at = Date(timeIntervalSince1970: 0)
        for result in results {
            guard var probe = health[result.probe], let site = sites[result.probe] else { continue }
            at = max(at, result.at)
            let before = probe.state
            if let after = probe.record(success: result.outcome.isSuccess, policy: policy) {
                transitions.append(
                    HealthTransition(
                        subject: .probe(result.probe), site: site, from: before.rawValue, to: after.rawValue,
                        at: result.at, detail: result.detail))
            }
            health[result.probe] = probe
        }
        for site in ProbeSite.allCases {
            let names = probeNames.filter { sites[$0] == site }
            guard !names.isEmpty else { continue }
            let verdict = SiteVerdict.from(names.map { state(of: $0) })
            let before = verdicts[site] ?? .unknown
            guard verdict != before else { continue }
            verdicts[site] = verdict
            let down = names.filter { state(of: $0) == .down }
            transitions.append(
                HealthTransition(
                    subject: .site(site), site: site, from: before.rawValue, to: verdict.rawValue, at: at,
                    detail: down.isEmpty ? "no probe down" : "down: " + down.joined(separator: ", ")))
        }
        return transitions
    }
}
