import Foundation
import StandbyBase

/// A first-in first-out hand-over between threads. `take` blocks while it is empty; `put`
/// blocks while it holds `limit` items. `finish` ends it normally (takers drain what is left,
/// then get nil); `close` ends it at once, and takers get the error it is closed with.
final class Channel<Element>: @unchecked Sendable {
    // Every field is guarded by `condition`.
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private let limit: Int
    private var finished = false
    private var closed = false
    private var failure: (any Error)?

    init(limit: Int = .max) {
        self.limit = limit
    }

    /// False when the channel was closed: the item was not taken.
    @discardableResult
    func put(_ item: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !closed && items.count - head >= limit { condition.wait() }
        guard !closed && !finished else { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// The next item; nil once the channel is finished and drained, or closed without an error.
    func take() throws -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while !closed && head == items.count && !finished { condition.wait() }
        if closed {
            if let failure { throw failure }
            return nil
        }
        guard head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return item
    }

    func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    func close(_ error: (any Error)? = nil) {
        condition.lock()
        if !closed {
            closed = true
            failure = error
            items.removeAll()
            head = 0
        }
        condition.broadcast()
        condition.unlock()
    }
}

/// Jobs done on several threads at once, their outputs taken back in the order the jobs were
/// handed over: job i goes to thread i % n, each thread does its jobs in turn, and `take`
/// answers job i's output from thread i % n. Each thread has its own work (and whatever it
/// holds: a pack reader, buffers of its own). `hand` and `take` each belong to one thread.
final class InTurn<Job: Sendable, Output: Sendable>: @unchecked Sendable {
    // `handed` is touched only by the handing thread, `taken` only by the taking one; the
    // channels are thread-safe.
    private let lanes: [(jobs: Channel<Job>, outputs: Channel<Output>)]
    private let workers: [Blocking.Worker]
    private var handed = 0
    private var taken = 0

    /// `work(n)` makes thread n's work; at most `jobLimit` jobs wait for each thread; a job that throws closes every thread's jobs and
    /// outputs with its error, then tells `failed`.
    init(
        threads: Int, jobLimit: Int = .max, name: String, failed: @escaping @Sendable (any Error) -> Void,
        work: (Int) -> (Job) throws -> Output
    ) {
        let lanes = (0..<max(1, threads)).map { _ in (jobs: Channel<Job>(limit: jobLimit), outputs: Channel<Output>()) }
        self.lanes = lanes
        workers = lanes.enumerated().map { n, lane in
            // Made here, used only on its own thread from then on.
            nonisolated(unsafe) let body = work(n)
            return Blocking.Worker(name: name) {
                do {
                    while let job = try lane.jobs.take() {
                        guard lane.outputs.put(try body(job)) else { return }
                    }
                    lane.outputs.finish()
                } catch {
                    for lane in lanes {
                        lane.jobs.close(error)
                        lane.outputs.close(error)
                    }
                    failed(error)
                    throw error
                }
            }
        }
    }

    /// Hands over the next job; false once closed.
    @discardableResult
    func hand(_ job: Job) -> Bool {
        defer { handed += 1 }
        return lanes[handed % lanes.count].jobs.put(job)
    }

    /// The next job's output, in the order handed; nil after the last once `finish` was called.
    func take() throws -> Output? {
        defer { taken += 1 }
        return try lanes[taken % lanes.count].outputs.take()
    }

    /// No more jobs: each thread ends once its jobs are done.
    func finish() {
        for lane in lanes { lane.jobs.finish() }
    }

    func close(_ error: (any Error)?) {
        for lane in lanes {
            lane.jobs.close(error)
            lane.outputs.close(error)
        }
    }

    /// Waits for every thread (once; later calls answer the same); how each ended.
    func join() -> [Result<Void, any Error>] {
        workers.map { $0.join() }
    }
}
