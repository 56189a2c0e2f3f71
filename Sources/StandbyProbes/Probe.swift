import Foundation

/// Which site a probe looks at. Verdicts are per site: the incident lead reads the primary's,
/// the failover engine waits on the secondary's after restoring services.
public enum ProbeSite: String, Sendable, Hashable, Codable, CaseIterable {
    case primary
    case secondary
}

/// One health probe: a name, the site it looks at, what it checks and how long it may take.
public struct Probe: Sendable, Hashable, Identifiable {
    public var name: String
    public var site: ProbeSite
    public var target: ProbeTarget
    /// The whole attempt — name resolution, connect, handshake, request, answer — never takes longer.
    public var timeout: Duration
    public var options: ProbeOptions

    public var id: String { name }

    public init(
        name: String, site: ProbeSite, target: ProbeTarget, timeout: Duration = .seconds(5),
        options: ProbeOptions = ProbeOptions()
    ) {
        self.name = name
        self.site = site
        self.target = target
        self.timeout = timeout
        self.options = options
    }
}

/// Settings shared by probe kinds; each kind reads the ones it needs.
public struct ProbeOptions: Sendable, Hashable {
    /// Extra CA certificates (PEM) trusted besides the system store, for `tls` and SIP over TLS.
    public var caFile: String?
    /// Whether the certificate chain must lead to a trusted CA (`tls`, SIP over TLS). Expiry and
    /// name are checked either way.
    public var verifyChain: Bool
    /// A certificate that expires sooner than this makes a `tls` probe a warning (still up).
    public var expiryWarning: Duration
    /// Final SIP responses that count as up (200 always does).
    public var sipUpStatuses: Set<Int>

    public init(
        caFile: String? = nil, verifyChain: Bool = true, expiryWarning: Duration = .seconds(30 * 86_400),
        sipUpStatuses: Set<Int> = [200]
    ) {
        self.caFile = caFile
        self.verifyChain = verifyChain
        self.expiryWarning = expiryWarning
        self.sipUpStatuses = sipUpStatuses.union([200])
    }
}

/// The result of one probe attempt. A warning is up with something the operator should see
/// (a certificate about to expire).
public enum ProbeOutcome: String, Sendable, Hashable, Codable {
    case up
    case warning
    case down

    /// Whether the attempt counts as a success for hysteresis.
    public var isSuccess: Bool { self != .down }
}

/// The certificate a TLS server presented.
public struct CertificateInfo: Sendable, Hashable, Codable {
    public var subject: String
    public var issuer: String
    public var notBefore: Date
    public var notAfter: Date
}

/// One probe attempt: what was checked, the outcome, how long it took and why.
public struct ProbeResult: Sendable, Hashable {
    public var probe: String
    public var site: ProbeSite
    public var kind: String
    public var target: String
    public var outcome: ProbeOutcome
    public var latency: Duration
    public var detail: String
    public var certificate: CertificateInfo?
    public var at: Date

    public init(
        probe: String, site: ProbeSite, kind: String, target: String, outcome: ProbeOutcome,
        latency: Duration, detail: String, certificate: CertificateInfo? = nil, at: Date
    ) {
        self.probe = probe
        self.site = site
        self.kind = kind
        self.target = target
        self.outcome = outcome
        self.latency = latency
        self.detail = detail
        self.certificate = certificate
        self.at = at
    }

    /// The latency in milliseconds, for tables and JSON.
    public var latencyMilliseconds: Double {
        let parts = latency.components
        return Double(parts.seconds) * 1000 + Double(parts.attoseconds) / 1e15
    }
}

extension Duration {
    var milliseconds: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }

    var timeInterval: TimeInterval {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
