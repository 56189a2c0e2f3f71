import Foundation
import StandbyBase

/// The one error type of the failover engine: a code a caller can switch on, and a message that
/// names the run, step, set or file and the cause.
public struct FailoverError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        /// Refused for safety: another run holds the lease, a lead not in policy, no verified copy.
        case refused
        /// The command names a run, step or service the journal does not know, or the wrong state.
        case badInput
        /// A step's side effect failed.
        case stepFailed
        /// The journal could not be read or written.
        case journal
        /// Cluster mode: etcd could not be reached, or has no quorum; nothing was written.
        case cluster
        /// Cluster mode: this controller is no longer the leader (its lease lapsed, another took
        /// over), so its write was refused and it must stop before any further side effect.
        case deposed
    }

    public var code: Code
    public var message: String
    /// The module's error this one was made from, when there is one.
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}

extension FailoverError: StandbyFailure {
    public var outcome: FailureOutcome {
        switch code {
        case .refused: .refused
        case .badInput: .badInput
        case .stepFailed, .journal, .cluster, .deposed: .failed
        }
    }
}
