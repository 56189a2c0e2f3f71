import CFileIO
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A server started by the lab: a foreground process in its own process group, with its output
/// in a log file. It is stopped by process id (the group gets SIGTERM, then SIGKILL), and it is
/// stopped when the last reference goes away, so a failing test leaves no server behind.
public final class ServerProcess: Sendable {
    public let name: String
    public let pid: pid_t
    public let logPath: String
    private let reaped = Mutex(false)

    init(name: String, pid: pid_t, logPath: String) {
        self.name = name
        self.pid = pid
        self.logPath = logPath
    }

    deinit { stop() }

    /// Whether the process is still running (it has not exited or been reaped).
    public var isRunning: Bool {
        reaped.withLock { done in
            if done { return false }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result < 0 && errno == ECHILD) {
                done = true
                return false
            }
            return true
        }
    }

    /// Stops the server: SIGTERM to its process group, up to `grace` for it to exit, then SIGKILL.
    public func stop(grace: Duration = .seconds(5)) {
        reaped.withLock { done in
            if done { return }
            kill(-pid, SIGTERM)
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + grace
            var status: Int32 = 0
            while ContinuousClock.now < deadline {
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid || (result < 0 && errno == ECHILD) {
                    done = true
                    kill(-pid, SIGKILL)  // anything the server forked and left behind
                    return
                }
                usleep(10_000)
            }
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            done = true
        }
    }

    /// Lets the server outlive this object (the lab's `up` command leaves servers running and
    /// records their pids; `down` stops them).
    public func detach() {
        reaped.withLock { $0 = true }
    }

    /// Sends a signal to the server's process group without waiting (to simulate a crash, say).
    public func signal(_ signal: Int32) {
        kill(-pid, signal)
    }

    /// The tail of the server's log, for error messages when it fails to start.
    public func logTail(bytes: Int = 2000) -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    /// Closes every descriptor above stderr in the child. Without it a child inherits whatever
    /// another thread of the test runner has open at that instant, such as the write end of a
    /// step script being written, which then cannot be executed ("Text file busy") for as long
    /// as the child, a server perhaps, runs.
    static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        _ = standby_spawn_close_from(&actions, 3)
    }

    /// `spawn`, then waits until the server accepts TCP on `host:port`. A server that does not is
    /// stopped, and the error carries the end of its log (and of `extraLog`, when it has one).
    public static func spawnListening(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil,
        logPath: String, host: String = "127.0.0.1", port: UInt16, extraLog: String? = nil
    ) throws -> ServerProcess {
        let process = try spawn(
            name: name, executable: executable, arguments: arguments, environment: environment, logPath: logPath)
        do {
            try Ports.waitForTCP(host, port, server: name, process: process)
        } catch {
            let extra = extraLog.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            let tail = process.logTail() + extra
            process.stop()
            throw LabError(.notReady, "\(name) did not start on \(host):\(port): \(tail)")
        }
        return process
    }

    /// Starts `executable` with `arguments` in its own process group; stdout and stderr go to
    /// `logPath`, stdin is /dev/null. Give servers absolute paths: the working directory is inherited.
    public static func spawn(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil,
        logPath: String
    ) throws -> ServerProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        ServerProcess.closeInheritedDescriptors(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        // Servers must not inherit the test runner's blocked or ignored signals (SIGPIPE, say).
        var defaultSignals = sigset_t()
        sigfillset(&defaultSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, env)
        guard result == 0 else {
            throw LabError(
                .spawnFailed, "could not start \(name) (\(executable)): \(String(cString: strerror(result)))")
        }
        return ServerProcess(name: name, pid: pid, logPath: logPath)
    }
}
