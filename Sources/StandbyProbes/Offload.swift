import Foundation
import Synchronization

/// Runs blocking probe work (getaddrinfo, poll, OpenSSL) on a thread of its own, off the
/// cooperative pool, and answers by `deadline` whatever the work is doing. The work itself keeps
/// to the same deadline through its C-level timeouts; the only call that can overrun is
/// getaddrinfo (glibc has no timeout for it), and then the caller still gets its answer in time
/// while the thread finishes the lookup in the background.
///
/// Not a Dispatch queue: on Linux a concurrent queue shares the CPU-wide thread pool with the
/// Swift cooperative executor, so 150 probes blocked in `poll` starved every task (and every
/// timer) of the process: measured, 100 silent peers with a 1 s timeout answered after up to
/// 12 s. A thread per attempt costs tens of microseconds; an attempt costs milliseconds.
enum Offload {
    static func run<T: Sendable>(
        deadline: ContinuousClock.Instant, onTimeout: @escaping @Sendable () -> T,
        _ body: @escaping @Sendable () -> T
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
            thread.stackSize = 512 << 10
            thread.start()
        }
    }
}
