import Foundation

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
