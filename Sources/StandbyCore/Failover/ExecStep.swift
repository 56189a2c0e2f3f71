import Foundation
import Subprocess
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Runs one `exec` step: a program with arguments (through `/bin/sh -c` only when the topology
/// says `shell: true`), its own process group so a timeout kills everything it started, stdout
/// and stderr interleaved into a log file whose tail goes to the journal.
struct ExecStep: Sendable {
    var arguments: [String]
    var shell: Bool
    /// The step's own `env:`, set on top of what it inherits.
    var environment: [String: String]
    /// The controller's environment; the step inherits it without the secrets (`StepEnvironment`).
    var inherited: [String: String]
    var workingDirectory: String?
    var timeout: Duration?
    var logFile: String

    struct Outcome: Sendable {
        var succeeded: Bool
        var status: String
        var tail: String
    }

    /// The output kept in the journal: the last 64 KiB.
    static let tailLimit = 64 * 1024

    /// Runs the step; `started` gets the pid as soon as the process exists.
    func run(started: @escaping @Sendable (Int) -> Void) async throws -> Outcome {
        guard let first = arguments.first else {
            throw FailoverError(.stepFailed, "exec without a program")
        }
        let executable: Executable
        let args: [String]
        if shell {
            executable = .path(FilePath("/bin/sh"))
            args = ["-c", arguments.joined(separator: " ")]
        } else {
            executable = first.contains("/") ? .path(FilePath(first)) : .name(first)
            args = Array(arguments.dropFirst())
        }
        var env: [Environment.Key: String] = [:]
        for (key, value) in StepEnvironment.build(controller: inherited, step: environment) {
            if let k = Environment.Key(rawValue: key) { env[k] = value }
        }
        var options = PlatformOptions()
        // Its own process group: a timeout kills the program and everything it started.
        options.processGroupID = 0

        let log: FileDescriptor
        do {
            log = try FileDescriptor.open(
                FilePath(logFile), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        } catch {
            throw FailoverError(.journal, "\(logFile): cannot create the step's log: \(error)")
        }
        let configuration = Configuration(
            executable: executable, arguments: Arguments(args), environment: .custom(env),
            workingDirectory: workingDirectory.map { FilePath($0) }, platformOptions: options)

        let pidBox = PidBox()
        let timedOut: Bool
        let status: TerminationStatus
        do {
            (status, timedOut) = try await withThrowingTaskGroup(of: (TerminationStatus?, Bool).self) { group in
                group.addTask {
                    let result = try await Subprocess.run(
                        configuration, input: .none, output: .fileDescriptor(log, closeAfterSpawningProcess: true),
                        error: .combinedWithOutput
                    ) { execution in
                        let pid = Int(execution.processIdentifier.value)
                        pidBox.set(pid)
                        started(pid)
                    }
                    return (result.terminationStatus, false)
                }
                if let timeout {
                    group.addTask {
                        // Cancelled when the process ends first: no timeout then.
                        guard (try? await Task.sleep(for: timeout)) != nil else { return (nil, false) }
                        // The pid is known once the spawn returned; under load that may be late.
                        // It timed out only if a kill reached it (it may have ended meanwhile).
                        while !Task.isCancelled {
                            if let pid = pidBox.get() {
                                let killed = kill(pid_t(-pid), SIGKILL) == 0 || kill(pid_t(pid), SIGKILL) == 0
                                return (nil, killed)
                            }
                            try? await Task.sleep(for: .milliseconds(10))
                        }
                        return (nil, false)
                    }
                }
                var status: TerminationStatus?
                var timedOut = false
                while let (s, t) = try await group.next() {
                    if let s {
                        status = s
                        group.cancelAll()
                    }
                    if t { timedOut = true }
                }
                guard let status else { throw FailoverError(.stepFailed, "the process never finished") }
                return (status, timedOut)
            }
        } catch let error as SubprocessError {
            // The descriptor is not closed here: Subprocess owns it (closeAfterSpawningProcess), and
            // closing a number already closed could close someone else's file.
            throw FailoverError(.stepFailed, "cannot run \(first): \(error)")
        }
        let tail = Self.readTail(logFile)
        let description: String
        switch status {
        case .exited(let code): description = "exit \(code)"
        case .signaled(let signal): description = "killed by signal \(signal)"
        }
        if timedOut {
            return Outcome(
                succeeded: false, status: "timed out after \(timeout.map { "\($0)" } ?? "?"); process group killed",
                tail: tail)
        }
        return Outcome(succeeded: status.isSuccess, status: description, tail: tail)
    }

    static func readTail(_ path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > UInt64(tailLimit) ? size - UInt64(tailLimit) : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        var text = String(decoding: data, as: UTF8.self)
        if start > 0 { text = "[… \(start) bytes before]\n" + text }
        return text
    }
}

/// The child's pid, set by the task that spawned it and read by the timeout task.
final class PidBox: Sendable {
    private let pid = Mutex<Int?>(nil)

    func set(_ value: Int) { pid.withLock { $0 = value } }
    func get() -> Int? { pid.withLock { $0 } }
}
