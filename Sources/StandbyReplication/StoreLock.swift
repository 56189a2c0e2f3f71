import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An flock(2) lock on a file in the store. The kernel drops it when the process dies, however
/// it dies: there is never a stale lock to clean up. The holder's pid is written in the file
/// for the error message of whoever finds it taken.
final class StoreLock {
    private let fd: Int32
    let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// Takes the lock, waiting up to `wait` (zero: fail at once) before `storeBusy`.
    static func acquire(_ path: String, exclusive: Bool, wait: Duration = .zero, what: String) throws -> StoreLock {
        let fd = try FileIO.open(path, O_RDWR | O_CREAT, mode: 0o644)
        let deadline = ContinuousClock.now + wait
        while flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            let code = errno
            guard code == EWOULDBLOCK || code == EINTR else {
                close(fd)
                throw FileIO.fail("lock", path, errno: code)
            }
            if ContinuousClock.now >= deadline {
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 31, 0) }
                close(fd)
                let holder =
                    n > 0
                    ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    : "?"
                throw ReplicationError(
                    .storeBusy, "the store is busy: \(what) cannot run while process \(holder) holds \(path)")
            }
            usleep(20_000)
        }
        if exclusive {
            let pid = Array("\(getpid())\n".utf8)
            _ = ftruncate(fd, 0)
            _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        return StoreLock(fd: fd, path: path)
    }
}
