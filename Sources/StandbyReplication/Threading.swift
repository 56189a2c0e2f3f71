import Foundation

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
