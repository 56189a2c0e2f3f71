import StandbyBase

/// What went wrong in the probes module itself: a target that cannot be parsed, a history store
/// that cannot be opened or written. A probe that finds its server down is not an error: that is
/// a `ProbeResult` with outcome `.down` and the reason in its detail.
public struct ProbeError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A probe target (host:port, URL, SIP URI, DNS query) that cannot be parsed.
        case badTarget
        /// The health history database cannot be opened, migrated, read or written.
        case history
        /// A webhook did not take an alert (bad URL, no answer, a status other than 2xx).
        case alert
        /// A probe definition that makes no sense (no probes, fall or rise below 1, a bad interval).
        case badConfiguration
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        if let underlying { return "probes: \(message): \(underlying)" }
        return "probes: \(message)"
    }
}

/// Why one probe attempt failed; turned into a `.down` result with `reason` as its detail.
struct ProbeFailure: Error, CustomStringConvertible {
    var reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}

extension ProbeError: StandbyFailure {
    /// A probe or health setting that cannot be used is bad input; the history and alerts failed.
    public var outcome: FailureOutcome {
        switch code {
        case .badTarget, .badConfiguration: .badInput
        case .history, .alert: .failed
        }
    }
}
