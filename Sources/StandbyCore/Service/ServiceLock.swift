import Foundation
import StandbyBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One `standby run` per state directory: an exclusive `flock` on `service.lock` in it. The kernel
/// drops the lock when the process dies, however it dies, so a crash never leaves a stale lock.
public final class ServiceLock: Sendable {
    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Takes the lock, or throws `ServiceError(.alreadyRunning)` naming the pid that holds it.
    public static func acquire(directory: StateDirectory) throws -> ServiceLock {
        try directory.create()
        let path = directory.file("service.lock")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ServiceError(.lock, "\(path): cannot open the service lock: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let cause = errno
            var holder = ""
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                holder = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            close(fd)
            if cause == EWOULDBLOCK {
                throw ServiceError(
                    .alreadyRunning,
                    "\(path): another standby run serves this state directory\(holder.isEmpty ? "" : " (\(holder))")")
            }
            throw ServiceError(.lock, "\(path): cannot lock: \(String(cString: strerror(cause)))")
        }
        let text = "pid \(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return ServiceLock(path: path, descriptor: fd)
    }
}

/// The errors of the service: a code, and a message naming the thing and the cause.
public struct ServiceError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case alreadyRunning = "already-running"
        case lock
        case token
        case listen
        case job
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Another `standby run` holding the state directory says it refused.
    public var description: String { code == .alreadyRunning ? "refused: \(message)" : message }
}

extension ServiceError: StandbyFailure {
    /// Another `standby run` on the state directory is refused; a token file or listen address
    /// that cannot be used is bad input; the rest failed.
    public var outcome: FailureOutcome {
        switch code {
        case .alreadyRunning: .refused
        case .token, .listen: .badInput
        case .lock, .job: .failed
        }
    }
}
