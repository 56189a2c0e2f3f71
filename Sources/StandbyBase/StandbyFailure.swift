/// What every error of Standby's modules says about itself, so that the command line turns them
/// all into text and an exit status one way (`ExitStatus(for:)` in StandbyCLI), whichever module
/// threw: the transport, DNS, probes, replication, the failover engine, the service.
///
/// Like the errors of SwiftNIO's file system, each carries a code the caller can branch on (the
/// module's own `code`), a message in plain words, where it happened and the error underneath.
public protocol StandbyFailure: Error, Sendable, CustomStringConvertible {
    /// What the failure means for the operation; decides the exit status.
    var outcome: FailureOutcome { get }
    /// The message in plain words (the description may add where and what is served now).
    var message: String { get }
    /// Where it happened: a file position (`site.yaml:12:5`), a host, a server, a backup set.
    var place: String? { get }
    /// The error this one was made from, when there is one (a transport error under a
    /// replication error, a DNS error under a failed step).
    var underlying: (any Error)? { get }
}

extension StandbyFailure {
    public var place: String? { nil }
    public var underlying: (any Error)? { nil }
}

/// The three ways an operation fails, as the command-line contract tells them apart.
public enum FailureOutcome: String, Sendable, Hashable, Codable {
    /// The operation failed (exit 1): a server did not answer, a step failed, data is corrupt.
    case failed
    /// The input is wrong (exit 2): the topology, an option, a name that does not exist.
    case badInput
    /// Refused for safety, nothing changed (exit 3): another controller holds the lease, a
    /// DNS prerequisite failed, the store is in use.
    case refused
}
