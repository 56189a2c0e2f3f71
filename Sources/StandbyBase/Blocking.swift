import Foundation
import Synchronization

/// Blocking work (libcurl, sockets and libldns, getaddrinfo and OpenSSL, file I/O and fsync)
/// on a thread of its own, never on Swift's cooperative pool, with the result bridged back:
/// the one helper every module uses for it.
///
/// A thread per call, not a Dispatch queue: on Linux a concurrent queue shares the CPU-wide
/// thread pool with the cooperative executor, so work blocked in `poll` starved every task and
/// timer of the process (measured: 100 silent probe peers with a 1 s timeout answered after up
/// to 12 s; one hung DNS server delayed the queries to the healthy ones). A thread costs tens
/// of microseconds; the work it does costs milliseconds or more.
public enum Blocking {
    /// Runs `body` on a new thread and returns what it returns. When the awaiting task is
    /// cancelled, `flag` is: the work should check it (a transfer does, at each progress
    /// callback). Typed throws pass through: a `throws(DNSError)` body stays one.
    public static func run<T: Sendable, Failure: Error>(
        name: String = "standby.blocking", stackSize: Int = 1 << 20,
        _ body: @escaping @Sendable (CancellationFlag) throws(Failure) -> T
    ) async throws(Failure) -> T {
        let flag = CancellationFlag()
        let result: Result<T, Failure> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let thread = Thread {
                    do throws(Failure) {
                        continuation.resume(returning: .success(try body(flag)))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                }
                thread.name = name
                thread.stackSize = stackSize
                thread.start()
            }
        } onCancel: {
            flag.cancel()
        }
        return try result.get()
    }

    /// Runs `body` on a new thread and answers by `deadline` whatever the work is doing:
    /// `onTimeout()` if it has not finished. The work should keep to the same deadline through
    /// its own timeouts; when it cannot (glibc's getaddrinfo has none), the caller still gets
    /// its answer in time and the thread finishes in the background.
    public static func run<T: Sendable>(
        name: String = "standby.blocking", stackSize: Int = 512 << 10, deadline: ContinuousClock.Instant,
        onTimeout: @escaping @Sendable () -> T, _ body: @escaping @Sendable () -> T
    ) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let pending = Mutex<CheckedContinuation<T, Never>?>(continuation)
            let finish: @Sendable (T) -> Void = { value in
                let waiting = pending.withLock { slot in
                    defer { slot = nil }
                    return slot
                }
                waiting?.resume(returning: value)
            }
            let timer = Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                if Task.isCancelled { return }
                finish(onTimeout())
            }
            let thread = Thread {
                finish(body())
                timer.cancel()
            }
            thread.name = name
            thread.stackSize = stackSize
            thread.start()
        }
    }

    /// A thread of its own for one body, started at once, and a way for another thread (not a
    /// task) to wait for its end: the stages of a pipeline that threads feed one another.
    public final class Worker: @unchecked Sendable {
        // `result` is written by the thread before `done` is signalled and read only after.
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<Void, any Error> = .success(())
        private var joined = false

        public init(name: String, _ body: @escaping @Sendable () throws -> Void) {
            let thread = Thread { [self] in
                do {
                    try body()
                } catch {
                    result = .failure(error)
                }
                done.signal()
            }
            thread.name = name
            thread.start()
        }

        /// Waits for the body's end (once) and returns how it ended. Blocks: never from a task.
        public func join() -> Result<Void, any Error> {
            if !joined {
                done.wait()
                joined = true
            }
            return result
        }
    }
}

/// Set from another thread to stop blocking work at its next check (a transfer's progress
/// callback).
public final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public func cancel() { flag.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
}
