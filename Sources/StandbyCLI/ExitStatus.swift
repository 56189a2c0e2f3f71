import ArgumentParser
import StandbyBase
import StandbyCore

/// The exit codes of the command-line contract.
public enum ExitStatus: Int32, Sendable {
    /// Done.
    case done = 0
    /// The operation failed: a halted run, corruption found, an RPO breached where asked to check.
    case failed = 1
    /// Bad input: usage, an invalid topology.
    case badInput = 2
    /// Refused for safety: another run holds the lease, a DNS prerequisite failed, no declaration.
    case refused = 3
    /// A run is waiting, for a confirmation or an off-peak window.
    case waiting = 4

    /// The one mapping from a module's failure to the contract's status.
    init(_ outcome: FailureOutcome) {
        switch outcome {
        case .failed: self = .failed
        case .badInput: self = .badInput
        case .refused: self = .refused
        }
    }

    /// What stderr shows for a module's failure: the topology's `site.yaml:LINE:COL: message`
    /// lines as they are, anything else after `standby: `.
    static func text(of failure: any StandbyFailure) -> String {
        failure is TopologyError ? failure.description : "standby: \(failure.description)"
    }
}

/// Thrown by a command to end with a given status after it printed its own output.
struct CommandExit: Error {
    var status: ExitStatus
    var message: String?

    init(_ status: ExitStatus, _ message: String? = nil) {
        self.status = status
        self.message = message
    }
}
