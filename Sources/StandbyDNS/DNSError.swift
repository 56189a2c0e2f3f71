import StandbyBase

/// Everything that can go wrong in StandbyDNS. The message names the server (or the key file) and
/// says what happened in plain words; `code` is what a caller branches on. A failed prerequisite is
/// the one a controller must treat as "refused for safety": someone else changed the records.
public struct DNSError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The key file is missing, unreadable or not in BIND's key-file format.
        case keyFile
        /// The key file is readable by group or others.
        case keyPermissions
        /// A server address, record name, type or value that cannot be used.
        case invalidInput
        /// No answer within the timeout.
        case timeout
        /// Nothing listens on the server's port.
        case connectionRefused
        /// Another network failure (unreachable, reset, closed early, address lookup failed).
        case network
        /// NOTAUTH with TSIG error BADSIG: the server does not accept our signature (wrong secret).
        case badSignature
        /// NOTAUTH with TSIG error BADKEY: the server does not know the key (name or algorithm).
        case badKey
        /// NOTAUTH with TSIG error BADTIME: the clocks of the controller and the server differ too much.
        case badTime
        /// NOTAUTH without a TSIG error: the server is not authoritative for the zone.
        case notAuthoritative
        /// REFUSED: the server's update policy does not allow this key to change these records.
        case refused
        /// NXRRSET, YXRRSET, NXDOMAIN or YXDOMAIN on an update: a record set no longer holds the
        /// expected value. Nothing was changed.
        case prerequisiteFailed
        /// FORMERR: the server could not parse the message.
        case formatError
        /// SERVFAIL: the server failed internally.
        case serverFailure
        /// NOTZONE: a record is outside the zone.
        case notZone
        /// Any other response code.
        case unexpectedResponse
        /// The reply's TSIG signature does not verify, or a reply to a signed request is unsigned.
        case replyNotAuthenticated
        /// The update was applied but not every server served the new records in time.
        case verificationTimedOut
        /// libldns failed to build or parse a message.
        case ldns
        /// Kerberos or GSSAPI failed: no credential, an unknown principal, no ticket for the
        /// DNS server, a negotiation the server broke off.
        case gssapi
        /// The GSS-TSIG context expired: negotiate again.
        case gssContextExpired
    }

    public var code: Code
    /// The server this error is about, when there is one.
    public var server: DNSServer?
    public var message: String
    /// For a failed prerequisite: what each server serves now.
    public var servedNow: [ServerState]
    /// For a verification timeout: what each server served last.
    public var reports: [ServerState]
    /// For BADTIME: the server's clock minus ours, in seconds, when the server told us its time.
    public var clockSkew: Int64?

    public init(
        _ code: Code, server: DNSServer? = nil, _ message: String, servedNow: [ServerState] = [],
        reports: [ServerState] = [], clockSkew: Int64? = nil
    ) {
        self.code = code
        self.server = server
        self.message = message
        self.servedNow = servedNow
        self.reports = reports
        self.clockSkew = clockSkew
    }

    /// A prerequisite failed: the records were changed by someone else, and nothing was changed by
    /// us. A CLI maps this to exit 3 (refused for safety); every other error is exit 1.
    public var isPrerequisiteFailure: Bool { code == .prerequisiteFailed }

    /// The exit code of the command line contract: 3 for a failed prerequisite, 1 otherwise.
    public var exitCode: Int32 { isPrerequisiteFailure ? 3 : 1 }

    public var description: String {
        var lines = ["dns: \(message)"]
        if !servedNow.isEmpty {
            lines.append("served now:")
            lines += servedNow.map { "  " + $0.description }
        }
        if !reports.isEmpty {
            lines.append("per server:")
            lines += reports.map { "  " + $0.description }
        }
        return lines.joined(separator: "\n")
    }
}

extension DNSError: StandbyFailure {
    /// A failed prerequisite is refused for safety (someone else changed the records); a record
    /// or server that cannot be used is bad input; the rest failed.
    public var outcome: FailureOutcome {
        switch code {
        case .prerequisiteFailed: .refused
        case .invalidInput: .badInput
        default: .failed
        }
    }
    public var place: String? { server?.description }
}
