import Foundation
import Logging
import StandbyBase
import StandbyTransport
import Synchronization

/// Fetches byte ranges ahead of the walk that uses them, so that a delta transfer across a WAN
/// costs about one round trip per batch of changes, not one per change.
///
/// The caller asks for ranges in the order it will take them (`request`, then `next` for each,
/// in the same order). Ranges asked for one after another of the same URL join one request,
/// several ranges a request (`Range: a-b,c-d,...`, up to `Limits`), with neighbours closer than
/// `coalesceGap` merged into one. Requests run on `connections` threads, each with a transfer
/// session (a connection) of its own, so several are in flight. At most `ahead` answers wait,
/// each at most `bytesPerRequest`, so memory stays bounded whatever the file.
final class RangeFetcher: @unchecked Sendable {
    struct Limits: Sendable {
        /// Requests in flight at once (one connection each).
        var connections = 4
        /// Small enough that the first answers come early and the walk starts on them while
        /// the rest are on their way; with `connections` in flight, large enough to fill a link.
        var rangesPerRequest = 64
        var bytesPerRequest: Int64 = 1 << 20
        /// The Range header's length: servers cap a header line (nginx at 8 KiB by default,
        /// IIS at 16 KiB).
        var headerCharacters = 6000
        /// Ranges this close are asked for as one: a part's headers cost about 100 bytes.
        var coalesceGap: Int64 = 128

        /// What suits a source: several connections where a round trip is dear (HTTP, SFTP,
        /// FTP); one for smb:// (libsmbclient serialises its calls) and file://.
        static func suited(to url: URL) -> Limits {
            var limits = Limits()
            switch url.scheme?.lowercased() {
            case "http", "https": limits.connections = 8
            case "sftp": limits.connections = 4
            case "ftp", "ftps": limits.connections = 2
            default: limits.connections = 1
            }
            return limits
        }
    }

    /// One request: ranges of one URL in the order asked for, whose bytes are laid end to end
    /// in the answer's buffer. On the wire they go sorted, overlaps and near neighbours merged.
    private struct Job: Sendable {
        var id: Int
        var url: URL
        var ranges: [ByteRange]
        var bytes: Int64
        var headerCharacters: Int
    }

    /// Where a range the caller asked for lies in a job's answer.
    private struct Slice {
        var job: Int
        var start: Int
        var length: Int
    }

    private let limits: Limits
    private let ahead: Int
    // The caller's side (one thread).
    private var open: Job?
    private var nextJob = 0
    private var slices: [Slice] = []
    private var sliceHead = 0
    private var answer: (job: Int, bytes: [UInt8])?

    // Shared with the workers, under `condition`.
    private let condition = NSCondition()
    private var queued: [Job] = []
    private var answers: [Int: Result<[UInt8], any Error>] = [:]
    /// The job the caller takes from now: workers start no job `ahead` or more past it.
    private var taking = 0
    private var stopped = false

    private var workers: [Blocking.Worker] = []
    private let counters = Counters()

    private final class Counters: Sendable {
        let bytes = Atomic<Int64>(0)
        let requests = Atomic<Int>(0)
    }

    /// Bytes received and requests made so far (body and headers, as `TransferStats` counts).
    var receivedBytes: Int64 { counters.bytes.load(ordering: .relaxed) }
    var requests: Int { counters.requests.load(ordering: .relaxed) }

    /// `connections` requests at once, on sessions of `pool` (shared with other fetchers).
    init(pool: SessionPool, limits: Limits, ahead: Int? = nil) {
        self.limits = limits
        self.ahead = ahead ?? max(4, 2 * limits.connections)
        for n in 0..<max(1, min(limits.connections, pool.count)) {
            workers.append(Blocking.Worker(name: "standby.fetch-\(n)") { [self] in work(pool) })
        }
    }

    deinit { stop() }

    /// Asks for `range` of `url`; its bytes are `next` once those asked for before are taken.
    func request(_ url: URL, _ range: ByteRange) {
        precondition(range.length > 0)
        let text = range.description.utf8.count + 1
        // Asked of a borrowed copy gone before the append, so the ranges grow in place.
        let joins =
            open.map { job in
                job.url == url && job.ranges.count < limits.rangesPerRequest
                    && job.bytes + range.length <= limits.bytesPerRequest
                    && job.headerCharacters + text <= limits.headerCharacters
            } ?? false
        if joins, let id = open?.id, let start = open?.bytes {
            slices.append(Slice(job: id, start: Int(start), length: Int(range.length)))
            open?.ranges.append(range)
            open?.bytes += range.length
            open?.headerCharacters += text
            return
        }
        if let job = open { send(job) }
        let job = Job(id: nextJob, url: url, ranges: [range], bytes: range.length, headerCharacters: text)
        nextJob += 1
        slices.append(Slice(job: job.id, start: 0, length: Int(range.length)))
        open = job
    }

    /// Sends the request being gathered: the caller will wait for its ranges before long.
    func flush() {
        if let job = open { send(job) }
    }

    /// The bytes of the oldest range not yet taken; throws the error its request ended with.
    func next() throws -> [UInt8] {
        guard sliceHead < slices.count else {
            throw ReplicationError(.storeIO, "the range fetcher was asked for more ranges than requested")
        }
        let slice = slices[sliceHead]
        sliceHead += 1
        if sliceHead > 1024 && sliceHead * 2 > slices.count {
            slices.removeFirst(sliceHead)
            sliceHead = 0
        }
        if answer?.job != slice.job {
            if open?.id == slice.job { flush() }
            answer = (slice.job, try take(slice.job))
        }
        guard let answer, slice.start + slice.length <= answer.bytes.count else {
            throw ReplicationError(.storeIO, "the range fetcher's answer is shorter than asked")
        }
        return Array(answer.bytes[slice.start..<(slice.start + slice.length)])
    }

    /// Drops what is queued and waits for the threads (transfers under way end first).
    func stop() {
        condition.lock()
        stopped = true
        queued.removeAll()
        condition.broadcast()
        condition.unlock()
        for worker in workers { _ = worker.join() }
        workers.removeAll()
    }

    private func send(_ job: Job) {
        open = nil
        condition.lock()
        queued.append(job)
        condition.broadcast()
        condition.unlock()
    }

    private func take(_ id: Int) throws -> [UInt8] {
        condition.lock()
        defer { condition.unlock() }
        taking = id
        condition.broadcast()
        while answers[id] == nil && !stopped { condition.wait() }
        guard let result = answers.removeValue(forKey: id) else {
            throw ReplicationError(.storeIO, "the range fetcher stopped")
        }
        return try result.get()
    }

    private func work(_ pool: SessionPool) {
        while true {
            condition.lock()
            while !stopped && (queued.isEmpty || queued[0].id >= taking + ahead) { condition.wait() }
            if stopped {
                condition.unlock()
                return
            }
            let job = queued.removeFirst()
            condition.unlock()

            let outcome: Result<[UInt8], any Error>
            if let session = pool.take() {
                let before = session.stats
                outcome = Result { try fetch(job, session) }
                counters.bytes.wrappingAdd(session.stats.totalBytes - before.totalBytes, ordering: .relaxed)
                counters.requests.wrappingAdd(session.stats.requests - before.requests, ordering: .relaxed)
                pool.give(session)
                pool.pace(session.stats.totalBytes - before.totalBytes)
            } else {
                outcome = .failure(ReplicationError(.storeIO, "the range fetcher stopped"))
            }

            condition.lock()
            answers[job.id] = outcome
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The ranges of a job as they go on the wire: sorted, with overlapping ranges and those
    /// closer than `gap` merged.
    static func wire(_ ranges: [ByteRange], gap: Int64) -> [ByteRange] {
        var wire: [ByteRange] = []
        for range in ranges.sorted(by: { $0.offset < $1.offset }) {
            if let last = wire.last, range.offset <= last.end + gap {
                wire[wire.count - 1].length = max(last.end, range.end) - last.offset
            } else {
                wire.append(range)
            }
        }
        return wire
    }

    private func fetch(_ job: Job, _ session: TransferSession) throws -> [UInt8] {
        let wire = Self.wire(job.ranges, gap: limits.coalesceGap)
        var starts: [Int] = []
        var total = 0
        for range in wire {
            starts.append(total)
            total += Int(range.length)
        }
        var filled = [Int](repeating: 0, count: wire.count)
        let received = try [UInt8](unsafeUninitializedCapacity: total) { buffer, count in
            count = 0
            try session.get(job.url, ranges: wire) { index, bytes in
                let at = starts[index] + filled[index]
                guard filled[index] + bytes.count <= Int(wire[index].length) else {
                    throw ReplicationError(.storeIO, "the server sent more of a range than asked for")
                }
                UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[at..<(at + bytes.count)])
                    .copyMemory(from: bytes)
                filled[index] += bytes.count
            }
            for (index, range) in wire.enumerated() where filled[index] != Int(range.length) {
                throw TransportError(
                    .truncated, url: Redaction.redacted(job.url), host: job.url.host ?? "localhost",
                    message:
                        "the source gave \(filled[index]) of the \(range.length) bytes asked for at offset \(range.offset)"
                )
            }
            count = total
        }
        if wire == job.ranges { return received }
        // Laid out again in the order asked for.
        var answer: [UInt8] = []
        answer.reserveCapacity(Int(job.bytes))
        for range in job.ranges {
            // The wire range that holds it: the last one starting at or before it.
            var low = 0
            var high = wire.count - 1
            while low < high {
                let mid = (low + high + 1) / 2
                if wire[mid].offset <= range.offset { low = mid } else { high = mid - 1 }
            }
            let start = starts[low] + Int(range.offset - wire[low].offset)
            answer.append(contentsOf: received[start..<(start + Int(range.length))])
        }
        return answer
    }
}

/// Transfer sessions, each with its connection, shared by the fetchers of one delta transfer:
/// the connections the index's requests opened then carry the chunks, and a session already
/// connected (the replicator's own) serves the first request. Across a WAN every new
/// connection costs a round trip before its first byte. A session is used by one thread at a
/// time: the one that took it.
final class SessionPool: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var idle: [TransferSession]
    private var closed = false
    let count: Int
    /// Bytes a second for all the sessions together, and what they received so far.
    private let rate: Int64?
    private var paced: Int64 = 0
    private let started = ContinuousClock.now

    /// `count` sessions: `connected` ones (given out first) and new ones. A rate cap is the set's,
    /// for all of them together (`pace`); each session's own cap (libcurl's) only smooths one
    /// transfer, and lets a short one through at full speed.
    init(
        options: TransportOptions, cancellation: CancellationFlag?, logger: Logger, count: Int,
        connected: [TransferSession] = []
    ) throws {
        let reuse = Array(connected.prefix(max(1, count)))
        rate = options.maxReceiveRate.flatMap { $0 > 0 ? $0 : nil }
        var sessions: [TransferSession] = []
        for _ in 0..<(max(1, count) - reuse.count) {
            let session = try TransferSession(options: options, logger: logger)
            session.cancellation = cancellation
            sessions.append(session)
        }
        sessions += reuse
        idle = sessions
        self.count = sessions.count
    }

    /// An idle session, waiting for one; nil once closed.
    func take() -> TransferSession? {
        condition.lock()
        defer { condition.unlock() }
        while idle.isEmpty && !closed { condition.wait() }
        return closed ? nil : idle.removeLast()
    }

    func give(_ session: TransferSession) {
        condition.lock()
        idle.append(session)
        condition.signal()
        condition.unlock()
    }

    /// After a request's answer of `bytes`: waits until the sessions' bytes so far fit the rate
    /// cap since the pool began, so that many short requests keep to it as one long one does.
    func pace(_ bytes: Int64) {
        guard let rate else { return }
        condition.lock()
        paced += bytes
        let due = started + .nanoseconds(Int64(Double(paced) / Double(rate) * 1e9))
        condition.unlock()
        let wait = due - .now
        if wait > .zero {
            Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
        }
    }

    /// Wakes whoever waits; sessions are not given out any more.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
