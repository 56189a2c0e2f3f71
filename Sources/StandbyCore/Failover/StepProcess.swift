import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exec step's process as the journal records it. The process runs in its own group, so it
/// outlives a controller killed with -9; the next controller must find out whether it still runs
/// before it runs the step again. The pid alone cannot say: pids are reused, so the kernel's start
/// time of the process (clock ticks since boot, `/proc/PID/stat` field 22) goes with it, and a pid
/// whose start time differs is somebody else.
public struct StepProcess: Sendable, Equatable {
    public var pid: Int
    /// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
    public var startTicks: Int
    /// The process group: the step's program and everything it started.
    public var group: Int

    public init(pid: Int, startTicks: Int, group: Int) {
        self.pid = pid
        self.startTicks = startTicks
        self.group = group
    }

    /// The process that has this pid now, read from `/proc`; nil when there is none. A zombie (it
    /// ended, its parent has not reaped it yet) is still named: its start time is known, and a
    /// step that ended that fast is recorded all the same.
    public static func current(pid: Int) -> StepProcess? {
        stat(pid).map { StepProcess(pid: pid, startTicks: $0.ticks, group: $0.group) }
    }

    /// Still running: the same pid with the same start time, and not a zombie.
    public var isAlive: Bool {
        guard let stat = Self.stat(pid) else { return false }
        return stat.ticks == startTicks && stat.state != "Z" && stat.state != "X"
    }

    /// State, process group and start ticks from `/proc/PID/stat`.
    private static func stat(_ pid: Int) -> (state: Substring, group: Int, ticks: Int)? {
        guard pid > 0, let stat = readStat(pid) else { return nil }
        // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses, so the fields are
        // counted from the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        guard fields.count > 19, let group = Int(fields[2]), let ticks = Int(fields[19]) else { return nil }
        return (fields[0], group, ticks)
    }

    /// Sends `signal` to the whole group, if its leader is still this process; a group whose leader
    /// is gone is left alone, since its number may name another group by now.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        guard isAlive else { return false }
        return kill(pid_t(-group), signal) == 0
    }

    /// `/proc/PID/stat` with read(2): procfs files report size 0, so nothing that trusts the size.
    private static func readStat(_ pid: Int) -> String? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}

/// The process an exec step spawned, set by the spawn's callback and read by the engine after the
/// step, to keep it in the journal.
final class SpawnedProcess: Sendable {
    private let process = Mutex<StepProcess?>(nil)

    func set(_ value: StepProcess) { process.withLock { $0 = value } }
    func get() -> StepProcess? { process.withLock { $0 } }
}
