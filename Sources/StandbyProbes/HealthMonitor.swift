import Foundation

/// How many consecutive results it takes to change a probe's state: one lost packet changes nothing.
public struct Hysteresis: Sendable, Hashable, Codable {
    /// Consecutive failures before a probe counts as down.
    public var fall: Int
    /// Consecutive successes before a probe counts as up again.
    public var rise: Int

    public init(fall: Int = 3, rise: Int = 2) throws {
        guard fall >= 1, rise >= 1 else {
            throw ProbeError(.badConfiguration, "fall (\(fall)) and rise (\(rise)) must be at least 1")
        }
        self.fall = fall
        self.rise = rise
    }

    /// One result decides: for a one-shot check.
    public static let immediate = Hysteresis(uncheckedFall: 1, rise: 1)

    init(uncheckedFall fall: Int, rise: Int) {
        self.fall = fall
        self.rise = rise
    }
}

/// A probe's state after hysteresis. Unknown until the first `fall` failures or `rise` successes in a row.
public enum ProbeState: String, Sendable, Hashable, Codable {
    case unknown
    case up
    case down
}

/// What a site looks like from its probes.
public enum SiteVerdict: String, Sendable, Hashable, Codable {
    /// No probe of the site has settled yet.
    case unknown
    /// Every settled probe is up.
    case up
    /// Some probes are down, not all.
    case degraded
    /// Every probe of the site is down.
    case unreachable

    /// The site verdict from its probes' states: unreachable only when every probe is down;
    /// probes still unknown count neither way.
    public static func from(_ states: [ProbeState]) -> SiteVerdict {
        let down = states.filter { $0 == .down }.count
        let up = states.filter { $0 == .up }.count
        if !states.isEmpty && down == states.count { return .unreachable }
        if down > 0 { return .degraded }
        if up > 0 { return .up }
        return .unknown
    }
}

/// One probe's hysteresis counters.
public struct ProbeHealth: Sendable, Hashable {
    public private(set) var state: ProbeState = .unknown
    public private(set) var consecutiveSuccesses = 0
    public private(set) var consecutiveFailures = 0

    public init() {}

    /// Records one attempt; returns the new state when it changed.
    public mutating func record(success: Bool, policy: Hysteresis) -> ProbeState? {
        if success {
            consecutiveSuccesses += 1
            consecutiveFailures = 0
            if state != .up && consecutiveSuccesses >= policy.rise {
                state = .up
                return .up
            }
        } else {
            consecutiveFailures += 1
            consecutiveSuccesses = 0
            if state != .down && consecutiveFailures >= policy.fall {
                state = .down
                return .down
            }
        }
        return nil
    }
}

/// A change of a probe's state or a site's verdict.
public struct HealthTransition: Sendable, Hashable, Codable {
    public enum Subject: Sendable, Hashable, Codable {
        case probe(String)
        case site(ProbeSite)
    }

    public var subject: Subject
    public var site: ProbeSite
    public var from: String
    public var to: String
    public var at: Date
    /// Why: the detail of the result that tipped it (probe), or the probes down (site).
    public var detail: String

    public init(subject: Subject, site: ProbeSite, from: String, to: String, at: Date, detail: String) {
        self.subject = subject
        self.site = site
        self.from = from
        self.to = to
        self.at = at
        self.detail = detail
    }

    /// The probe name or the site name.
    public var subjectName: String {
        switch subject {
        case .probe(let name): name
        case .site(let site): site.rawValue
        }
    }

    public var isSiteVerdict: Bool {
        if case .site = subject { return true }
        return false
    }
}

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
