import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive `flock` on `controller.lock` in the state directory, held while a process
/// executes a run, so that two controllers never execute the same run at once. The kernel drops
/// it when the process dies, even by `kill -9`. The file holds the holder's pid, host and start,
/// so a refused controller can name it.
public final class ControllerLock: Sendable {
    public let path: String
    private let fd: Int32

    public struct Holder: Sendable {
        public var pid: Int
        public var host: String
        public var since: String
    }

    /// Takes the lock without waiting; nil (with the holder, when readable) if another process has it.
    public static func acquire(directory: StateDirectory) throws -> Result<ControllerLock, HolderError> {
        try directory.create()
        let path = directory.file("controller.lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw FailoverError(
                .journal, "\(path): cannot open the controller lock: \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let cause = errno
            close(fd)
            guard cause == EWOULDBLOCK else {
                throw FailoverError(.journal, "\(path): cannot lock: \(String(cString: strerror(cause)))")
            }
            // The holder writes its line just after locking: give it a moment.
            var holder = readHolder(path)
            for _ in 0..<50 where holder == nil {
                usleep(10_000)
                holder = readHolder(path)
            }
            return .failure(HolderError(holder: holder))
        }
        let text = "\(getpid()) \(hostName()) \(ISO8601DateFormatter().string(from: Date()))\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return .success(ControllerLock(path: path, fd: fd))
    }

    public struct HolderError: Error, Sendable {
        public var holder: Holder?
    }

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    static func readHolder(_ path: String) -> Holder? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let parts = text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard parts.count >= 3, let pid = Int(parts[0]) else { return nil }
        return Holder(pid: pid, host: parts[1], since: parts[2])
    }

    public static func hostName() -> String {
        ProcessInfo.processInfo.hostName
    }
}
