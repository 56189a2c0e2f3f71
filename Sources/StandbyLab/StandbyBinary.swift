import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs the built `standby` binary the way a user does, for end-to-end tests: arguments,
/// environment, and the exit code, stdout and stderr it ends with.
public struct StandbyBinary: Sendable {
    public struct Result: Sendable, CustomStringConvertible {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// Set when the process died of a signal (kill -9 shows here as 9).
        public var signal: Int32?

        public var description: String {
            "exit \(status)\(signal.map { " (signal \($0))" } ?? "")\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
        }
    }

    public let path: String

    /// Any program, run the same way (a test runs chromium or python3 through it too).
    public init(path: String) {
        self.path = path
    }

    /// `$STANDBY_BIN`, else `standby` beside the running test bundle (SwiftPM puts products and
    /// the test runner in the same build directory).
    public init() throws {
        if let explicit = ProcessInfo.processInfo.environment["STANDBY_BIN"] {
            path = explicit
        } else {
            let exe =
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0]
            var directory = (exe as NSString).deletingLastPathComponent
            if directory.hasSuffix(".xctest/Contents/MacOS") {
                directory = ((directory as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
                directory = (directory as NSString).deletingLastPathComponent
            }
            path = (directory as NSString).appendingPathComponent("standby")
        }
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw LabError(.missingProgram, "the standby binary is not built at \(path) (run `swift build` first)")
        }
    }

    /// Runs to completion. Output goes through files, not pipes, so a chatty command can never
    /// block on a full pipe.
    public func run(_ arguments: [String], environment: [String: String] = [:], directory: LabDirectory? = nil) throws
        -> Result
    {
        let scratch = try directory ?? LabDirectory(prefix: "standby-run")
        let tag = UUID().uuidString.prefix(8)
        let out = scratch.file("stdout-\(tag)")
        let err = scratch.file("stderr-\(tag)")
        let process = try start(arguments, environment: environment, stdout: out, stderr: err)
        let (status, signal) = process.wait()
        let result = Result(
            status: status, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", signal: signal)
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: err)
        if directory == nil { scratch.remove() }
        return result
    }

    /// Starts the binary without waiting, for tests that kill it mid-run.
    /// `removing` names variables of this process's environment the child must not inherit
    /// (a test's STANDBY_STATE, say).
    public func start(
        _ arguments: [String], environment: [String: String] = [:], removing: Set<String> = [], stdout: String,
        stderr: String
    ) throws -> RunningCommand {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ServerProcess.closeInheritedDescriptors(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        var merged = ProcessInfo.processInfo.environment.filter { !removing.contains($0.key) }
        for (key, value) in environment { merged[key] = value }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, env)
        guard result == 0 else {
            throw LabError(.spawnFailed, "could not start \(path): \(String(cString: strerror(result)))")
        }
        return RunningCommand(pid: pid)
    }
}

/// A `standby` process started by a test.
public struct RunningCommand: Sendable {
    public let pid: pid_t

    /// Waits for the process; returns its exit status, or the signal that killed it.
    public func wait() -> (status: Int32, signal: Int32?) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status & 0x7f == 0 { return ((status >> 8) & 0xff, nil) }
        return (128 + (status & 0x7f), status & 0x7f)
    }

    /// `wait()` on a thread of its own (waitpid blocks), for async tests.
    public func waitAsync() async -> (status: Int32, signal: Int32?) {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: self.wait()) }.start()
        }
    }

    /// kill -9 of the process and everything it started.
    public func kill9() {
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
    }
}
