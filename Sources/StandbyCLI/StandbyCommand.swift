import ArgumentParser
import Foundation
import Logging
import StandbyBase

/// The root command. It parses, runs the subcommand, and alone turns errors into text on
/// stderr and the exit codes of the command-line contract.
public struct StandbyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "standby",
        abstract: "Secondary-site failover controller for unified-communications deployments.",
        discussion: """
            Exit codes: 0 done; 1 the operation failed; 2 bad input; 3 refused for safety; \
            4 a run is waiting (for a confirmation or an off-peak window).
            """,
        subcommands: [
            CheckCommand.self, PlanCommand.self,
            ReplicateCommand.self, PublishCommand.self, VerifyCommand.self, RestoreCommand.self,
            StatusCommand.self, HealthCommand.self, RunCommand.self,
            FailoverCommand.self,
            FailbackCommand.self,
            DrillCommand.self,
            ResumeCommand.self,
            ConfirmCommand.self,
            RetryCommand.self,
            SkipCommand.self,
            AbortCommand.self,
            ReportCommand.self,
            DNSCommand.self,
        ])

    public init() {}

    /// Runs the command line and exits with the contract's code.
    public static func runMain() async -> Never {
        do {
            var command = try parseAsRoot()
            try bootstrapLogging(for: command)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Foundation.exit(ExitStatus.done.rawValue)
        } catch {
            Foundation.exit(report(error).rawValue)
        }
    }

    /// Every logger of the process writes to stderr at the command's level (`--log-level`,
    /// `STANDBY_LOG_LEVEL`, else the command's default), set once before the command runs.
    static func bootstrapLogging(for command: any ParsableCommand) throws {
        guard let logging = command as? any LoggingCommand else { return }
        let level = try logging.logging.level(default: type(of: logging).defaultLogLevel)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Prints `error` the way a user should read it and returns the exit status it stands for.
    static func report(_ error: any Error) -> ExitStatus {
        if let exit = error as? CommandExit {
            if let message = exit.message, !message.isEmpty { printError(message) }
            return exit.status
        }
        if let failure = error as? any StandbyFailure {
            printError(ExitStatus.text(of: failure))
            return ExitStatus(failure.outcome)
        }
        // ArgumentParser's own errors: help and version exit 0, usage errors are bad input;
        // anything else is a failure of the operation.
        let code = exitCode(for: error)
        let message = fullMessage(for: error)
        if code == .success {
            if !message.isEmpty { print(message) }
            return .done
        }
        if code == .validationFailure {
            printError(message)
            return .badInput
        }
        printError("standby: \(error)")
        return .failed
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message.hasSuffix("\n") ? message : message + "\n").utf8))
}
