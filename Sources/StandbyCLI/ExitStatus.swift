import ArgumentParser
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

    /// The status and message for an error of one of our modules, or nil for others
    /// (ArgumentParser's own, which it renders itself, and unexpected errors).
    static func mapping(_ error: any Error) -> (status: ExitStatus, message: String)? {
        switch error {
        case let error as TopologyError:
            return (.badInput, error.description)
        case let error as PlanError:
            return (.badInput, "standby: \(error.message)")
        case let error as StateError:
            return (.failed, "standby: \(error.description)")
        default:
            return nil
        }
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
