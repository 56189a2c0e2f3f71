import Dispatch
import Synchronization

/// Runs blocking probe work (getaddrinfo, poll, OpenSSL) off the cooperative thread pool, on a
/// queue of its own, and answers by `deadline` whatever the work is doing. The work itself keeps
/// to the same deadline through its C-level timeouts; the only call that can overrun is
/// getaddrinfo (glibc has no timeout for it), and then the caller still gets its answer in time
/// while the thread finishes the lookup in the background.
enum Offload {
    // A custom concurrent queue targets an overcommitting root queue: a blocked probe gets a new
    // thread instead of starving the others.
    private static let queue = DispatchQueue(label: "standby.probes.blocking", attributes: .concurrent)

    static func run<T: Sendable>(
        deadline: ContinuousClock.Instant, onTimeout: @escaping @Sendable () -> T,
        _ body: @escaping @Sendable () -> T
    ) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let pending = Mutex<CheckedContinuation<T, Never>?>(continuation)
            @Sendable func finish(_ value: @autoclosure () -> T) {
                guard
                    let waiting = pending.withLock({ slot in
                        defer { slot = nil }; return slot
                    })
                else { return }
                waiting.resume(returning: value())
            }
            queue.async { finish(body()) }
            let remaining = max(ContinuousClock.now.duration(to: deadline), .zero)
            queue.asyncAfter(deadline: .now() + .nanoseconds(Int(remaining.milliseconds * 1_000_000))) {
                finish(onTimeout())
            }
        }
    }
}
