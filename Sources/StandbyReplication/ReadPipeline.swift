import Foundation
import Logging
import StandbyBase
import StandbyTransport
import Synchronization

/// A piece of the source stream on its way from the reading thread to the storing and the
/// file-hashing ones: its bytes, cut into whole chunks. Blocks come from a fixed pool, so a
/// full read holds the pool's memory whatever the size of the file.
final class StreamBlock: @unchecked Sendable {
    // Written by the reading thread until the block is handed over, then only read (the ids
    // by the storing thread alone); the channels' lock orders the hand-over.
    let capacity: Int
    let base: UnsafeMutableRawPointer
    /// Bytes in the block, the start of a chunk the block's end cut short included.
    fileprivate(set) var fill = 0
    /// Bytes of whole chunks: what the block hands over (the cut-short chunk moves on to the
    /// next block before the hand-over).
    fileprivate(set) var count = 0
    /// Where each chunk ends, in order; the last ends at `count`.
    fileprivate(set) var ends: [Int] = []
    /// The chunks' ids, filled in by the storing thread.
    var ids: [ChunkID] = []
    /// For the file hasher: the pieces of the file the block stands for, in order.
    fileprivate var pieces: [FilePiece] = []

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 64)
        ends.reserveCapacity(capacity / 2048 + 1)
        ids.reserveCapacity(capacity / 2048 + 1)
    }

    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    var chunkCount: Int { ends.count }

    func start(of chunk: Int) -> Int { chunk == 0 ? 0 : ends[chunk - 1] }

    func chunk(_ index: Int) -> UnsafeRawBufferPointer {
        let start = start(of: index)
        return UnsafeRawBufferPointer(start: base + start, count: ends[index] - start)
    }

    fileprivate func reset() {
        fill = 0
        count = 0
        ends.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
        pieces.removeAll(keepingCapacity: true)
    }
}

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

/// The whole-file read of one source as a pipeline over the machine's cores. The reading
/// thread runs the transfer and cuts the bytes into chunks (Gear) in blocks of a fixed pool;
/// the hashing thread takes each block in order and, chunk by chunk while its bytes are in the
/// cache, computes the chunk's SHA-256 (its id) and feeds the whole file's, the two interleaved
/// (`StreamHasher`); then the caller (`next`, on the thread that owns the catalog) looks the
/// ids up and writes the new chunks.
/// A block returns to the pool when the caller releases it, so at most `blocks` × `blockSize`
/// bytes are held, and a slow disk or catalog slows the transfer instead of growing memory.
///
/// Cut points are exactly `StreamChunker`'s: a cut is decided only with a full window of
/// bytes, and the chunk a block's end cuts short is finished in the next block.
final class ReadPipeline: @unchecked Sendable {
    static let blockSize = 2 << 20
    static let blocks = 8

    private struct Stopped: Error {}

    private let parameters: ChunkerParameters
    private let pool = Channel<StreamBlock>()
    private let toStore = Channel<StreamBlock>()
    private let toHasher = Channel<StreamBlock>()
    private let delivered = Atomic<Int64>(0)
    // Written by the hashing thread before it ends; read after `join`.
    private var digest: [UInt8] = []
    private var reader: Blocking.Worker?
    private var hasher: Blocking.Worker?

    /// Bytes the transfer has delivered so far (for progress).
    var receivedBytes: Int64 { delivered.load(ordering: .relaxed) }

    /// The whole-file hash the hashing thread goes on from (one fed with the bytes before the
    /// transfer's, when a copy resumes).
    private let initialHasher: StreamHasher

    init(parameters: ChunkerParameters, hasher: StreamHasher = StreamHasher()) {
        self.parameters = parameters
        self.initialHasher = hasher
        for _ in 0..<Self.blocks { pool.put(StreamBlock(capacity: Self.blockSize)) }
    }

    /// Starts the reading and hashing threads. `transfer` runs on the reading thread and
    /// feeds the source's bytes, in order, to the sink it is given.
    func start(transfer: @escaping @Sendable (_ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
        let pipeline = self
        hasher = Blocking.Worker(name: "standby.hash") {
            do {
                var sha = pipeline.initialHasher
                while let block = try pipeline.toHasher.take() {
                    sha.chunks(block.base, ends: block.ends, into: &block.ids)
                    if !pipeline.toStore.put(block) { pipeline.release(block) }
                }
                pipeline.digest = sha.finalize()
                pipeline.toStore.finish()
            } catch {
                pipeline.toStore.close(error)
                throw error
            }
        }
        reader = Blocking.Worker(name: "standby.read") {
            do {
                var cutter = Cutter(pipeline: pipeline)
                try transfer { bytes in try cutter.feed(bytes) }
                try cutter.finish()
                pipeline.toHasher.finish()
            } catch {
                pipeline.toHasher.close(error)
                throw error
            }
        }
    }

    /// The next block in file order, its chunks cut and their ids computed; nil at the end of
    /// the source. Throws the transfer's error. Hand each block back with `release`.
    func next() throws -> StreamBlock? {
        try toStore.take()
    }

    func release(_ block: StreamBlock) {
        block.reset()
        pool.put(block)
    }

    /// Stops the transfer and the hashing (after an error of the caller's).
    func abort() {
        pool.close(Stopped())
        toStore.close()
        toHasher.close()
    }

    /// Waits for both threads. Returns the whole file's SHA-256 and the bytes delivered, or
    /// throws the transfer's error.
    func join() throws -> (sha256: [UInt8], bytes: Int64) {
        let read = reader?.join() ?? .success(())
        let hashed = hasher?.join() ?? .success(())
        try read.get()
        try hashed.get()
        return (digest, delivered.load(ordering: .relaxed))
    }

    /// Cuts the stream into the pool's blocks; lives on the reading thread.
    private struct Cutter {
        let pipeline: ReadPipeline
        let parameters: ChunkerParameters
        var block: StreamBlock?
        /// Where the chunk being cut starts in `block`.
        var chunkStart = 0

        init(pipeline: ReadPipeline) {
            self.pipeline = pipeline
            parameters = pipeline.parameters
        }

        mutating func feed(_ bytes: UnsafeRawBufferPointer) throws {
            var input = bytes
            while !input.isEmpty {
                let current = try self.current()
                let take = min(current.capacity - current.fill, input.count)
                UnsafeMutableRawBufferPointer(start: current.base + current.fill, count: take)
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: input[..<take]))
                current.fill += take
                input = UnsafeRawBufferPointer(rebasing: input[take...])
                pipeline.delivered.wrappingAdd(Int64(take), ordering: .relaxed)
                cut(current, final: false)
                if current.fill == current.capacity { try handOver(current) }
            }
        }

        mutating func finish() throws {
            guard let block else { return }
            cut(block, final: true)
            block.count = chunkStart
            self.block = nil
            if block.count > 0 { send(block) } else { pipeline.pool.put(block) }
        }

        private mutating func current() throws -> StreamBlock {
            if let block { return block }
            guard let fresh = try pipeline.pool.take() else { throw Stopped() }
            block = fresh
            chunkStart = 0
            return fresh
        }

        private mutating func cut(_ block: StreamBlock, final: Bool) {
            let parameters = parameters
            Gear.table.withUnsafeBufferPointer { table in
                while chunkStart < block.fill {
                    let rest = UnsafeRawBufferPointer(start: block.base + chunkStart, count: block.fill - chunkStart)
                    guard let length = Gear.cut(rest, parameters: parameters, table: table, final: final) else {
                        break
                    }
                    chunkStart += length
                    block.ends.append(chunkStart)
                }
            }
        }

        /// Sends the full block on; the chunk its end cut short starts the next block.
        private mutating func handOver(_ full: StreamBlock) throws {
            guard let next = try pipeline.pool.take() else { throw Stopped() }
            let tail = full.fill - chunkStart
            next.base.copyMemory(from: full.base + chunkStart, byteCount: tail)
            next.fill = tail
            full.count = chunkStart
            send(full)
            block = next
            chunkStart = 0
        }

        private func send(_ block: StreamBlock) {
            if !pipeline.toHasher.put(block) { pipeline.release(block) }
        }
    }
}

/// A piece of a file handed to `FileHasher`: bytes held in the block that carries it, or a
/// run of chunks stored in a pack (`span` bytes from `offset`, of which `segments`, offsets in
/// the span, belong to the file; the record headers between them do not).
fileprivate enum FilePiece {
    case bytes(start: Int, length: Int)
    case stored(pack: String, offset: Int64, span: Int, segments: [(start: Int, length: Int)])
}

/// The SHA-256 of a file assembled in order from pieces: runs of chunks stored in a pack (the
/// record headers between them skipped), and bytes handed over (fetched chunks, chunks of a
/// pack being written), which are copied into blocks of a fixed pool (`reserve` then `commit`,
/// or `update`). Both kinds go into the current block's list of pieces, which is handed over
/// when its bytes are full or it holds `piecesPerBlock` pieces: a short fetched run between
/// stored ones does not take a block of its own, so the caller can plan far ahead.
///
/// Two threads do the work: one reads the stored runs, `readWindow` at a time, into a few
/// aligned buffers with O_DIRECT (the disk's DMA lands in the buffer: no copy out of the page
/// cache, which on a cold cache costs more than the hashing, and none left in it); the other
/// hashes everything in file order. Where the filesystem refuses O_DIRECT, the reads are
/// buffered. The caller only plans. Memory: the pool and the read buffers.
final class FileHasher {
    static let blockSize = 2 << 20
    static let blocks = 6
    /// At about a megabyte per stored run, the pool then stands for some 100 MB of the file
    /// ahead of the hashing.
    static let piecesPerBlock = 16
    /// Stored runs are read this much at a time; `readBuffers` reads can be ahead of the hashing.
    static let readWindow = 1 << 20
    static let readBuffers = 4

    /// What the reading thread hands the hashing one, in file order.
    private enum HashWork {
        case bytes(StreamBlock, start: Int, length: Int)
        /// Read bytes of a stored run: the `ranges` of the buffer belong to the file.
        case window(IOBuffer, ranges: [Range<Int>])
        /// Every piece of the block is handed over: it can go back to the pool.
        case done(StreamBlock)
    }

    private let pool = Channel<StreamBlock>()
    private let queue = Channel<StreamBlock>()
    private let toHash = Channel<HashWork>()
    private let windows = Channel<IOBuffer>()
    private var current: StreamBlock?
    private var readerThread: Blocking.Worker?
    private var hashThread: Blocking.Worker?
    private let result = DigestBox()

    private final class DigestBox: @unchecked Sendable {
        // Written by the hashing thread before it ends; read after it is joined.
        var digest: [UInt8] = []
    }

    /// `packDirectory`: where `stored` runs are read.
    init(packDirectory: String) {
        for _ in 0..<Self.blocks { pool.put(StreamBlock(capacity: Self.blockSize)) }
        // Room for a window widened to the alignment at both ends.
        for _ in 0..<Self.readBuffers { windows.put(IOBuffer(capacity: Self.readWindow + 2 * PackIO.alignment)) }
        let (pool, queue, toHash, windows, result) = (pool, queue, toHash, windows, result)
        // A thread that fails wakes whoever waits: the caller for a block, the other thread
        // for work or a buffer.
        let failed: @Sendable (any Error) -> Void = { error in
            queue.close(error)
            pool.close(error)
            toHash.close(error)
            windows.close(error)
        }
        readerThread = Blocking.Worker(name: "standby.pack-read") {
            do {
                try Self.read(queue: queue, packDirectory: packDirectory, windows: windows, into: toHash)
                toHash.finish()
            } catch {
                failed(error)
                throw error
            }
        }
        hashThread = Blocking.Worker(name: "standby.file-hash") {
            do {
                var sha = StreamHasher()
                while let work = try toHash.take() {
                    switch work {
                    case .bytes(let block, let start, let length):
                        sha.update(UnsafeRawBufferPointer(start: block.base + start, count: length))
                    case .window(let window, let ranges):
                        for range in ranges {
                            sha.update(
                                UnsafeRawBufferPointer(start: window.base + range.lowerBound, count: range.count))
                        }
                        windows.put(window)
                    case .done(let block):
                        block.reset()
                        pool.put(block)
                    }
                }
                result.digest = sha.finalize()
            } catch {
                failed(error)
                throw error
            }
        }
    }

    private static func read(
        queue: Channel<StreamBlock>, packDirectory: String, windows: Channel<IOBuffer>, into toHash: Channel<HashWork>
    ) throws {
        let packs = PackReader(directory: packDirectory, direct: true)
        while let block = try queue.take() {
            for piece in block.pieces {
                switch piece {
                case .bytes(let start, let length):
                    toHash.put(.bytes(block, start: start, length: length))
                case .stored(let pack, let offset, let span, let segments):
                    var next = 0
                    var windowStart = 0
                    while windowStart < span {
                        let length = min(Self.readWindow, span - windowStart)
                        guard let window = try windows.take() else { return }
                        let skip = try packs.readRun(
                            pack, at: offset + Int64(windowStart), length: length, into: window)
                        // The segments' parts in this window; one that goes on is taken up
                        // again in the next.
                        let windowEnd = windowStart + length
                        var ranges: [Range<Int>] = []
                        while next < segments.count {
                            let segment = segments[next]
                            let from = max(segment.start, windowStart)
                            let to = min(segment.start + segment.length, windowEnd)
                            if from < to { ranges.append((skip + from - windowStart)..<(skip + to - windowStart)) }
                            guard segment.start + segment.length <= windowEnd else { break }
                            next += 1
                        }
                        toHash.put(.window(window, ranges: ranges))
                        windowStart = windowEnd
                    }
                }
            }
            toHash.put(.done(block))
        }
    }

    deinit { abort() }

    /// Room for the next `length` bytes of the file (at most `blockSize`): write them there,
    /// then `commit` how many were written.
    func reserve(_ length: Int) throws -> UnsafeMutableRawBufferPointer {
        precondition(length <= Self.blockSize)
        let block = try currentBlock(room: length)
        return UnsafeMutableRawBufferPointer(start: block.base + block.fill, count: length)
    }

    func commit(_ length: Int) {
        guard let block = current else { return }
        if case .bytes(let start, let held) = block.pieces.last, start + held == block.fill {
            block.pieces[block.pieces.count - 1] = .bytes(start: start, length: held + length)
        } else {
            block.pieces.append(.bytes(start: block.fill, length: length))
        }
        block.fill += length
    }

    /// Copies `bytes` in as the next bytes of the file.
    func update(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            let take = min(rest.count, Self.blockSize)
            let room = try reserve(take)
            room.copyMemory(from: UnsafeRawBufferPointer(rebasing: rest[..<take]))
            commit(take)
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
        }
    }

    /// The next bytes of the file are stored in `pack`: `span` bytes from `offset`, of which
    /// `segments` (offsets in the span, in order) belong to the file. At most `blockSize`.
    func stored(pack: String, offset: Int64, span: Int, segments: [(start: Int, length: Int)]) throws {
        precondition(span <= Self.blockSize)
        let block = try currentBlock(room: 0)
        block.pieces.append(.stored(pack: pack, offset: offset, span: span, segments: segments))
    }

    /// The block the next piece goes to, with `room` bytes free and room for a piece: the
    /// current one, or a fresh one from the pool once the current one is handed over.
    private func currentBlock(room: Int) throws -> StreamBlock {
        if let block = current, block.fill + room > block.capacity || block.pieces.count >= Self.piecesPerBlock {
            current = nil
            try send(block)
        }
        if let current { return current }
        guard let fresh = try pool.take() else { throw stopped() }
        current = fresh
        return fresh
    }

    /// Waits for both threads and returns the digest of everything handed over.
    func finalize() throws -> [UInt8] {
        if let block = current {
            current = nil
            try send(block)
        }
        queue.finish()
        let read = readerThread?.join() ?? .success(())
        let hashed = hashThread?.join() ?? .success(())
        readerThread = nil
        hashThread = nil
        try read.get()
        try hashed.get()
        return result.digest
    }

    /// Stops both threads without a digest.
    func abort() {
        guard readerThread != nil || hashThread != nil else { return }
        queue.close()
        pool.close()
        toHash.close()
        windows.close()
        _ = readerThread?.join()
        _ = hashThread?.join()
        readerThread = nil
        hashThread = nil
    }

    private func send(_ block: StreamBlock) throws {
        guard queue.put(block) else { throw stopped() }
    }

    /// A thread ended early: its own error (a pack shorter than the catalog says).
    private func stopped() -> any Error {
        for thread in [readerThread, hashThread] {
            if case .failure(let error) = thread?.join() { return error }
        }
        return ReplicationError(.storeIO, "the file hasher stopped")
    }
}

/// Fetches byte ranges on a thread and a transfer session of its own, in the order they are
/// asked for, ahead of the walk that uses them: the round trips of a delta transfer (an index
/// group's entries, a run of missing chunks) overlap the reading back of stored chunks instead
/// of adding up. At most `ahead` results wait, each at most `maxBytes`, so memory stays bounded.
final class RangeFetcher: @unchecked Sendable {
    struct Job: Sendable {
        var url: URL
        var range: ByteRange
    }

    private let jobs = Channel<Job>()
    private let results: Channel<Result<[UInt8], any Error>>
    private let counters = Counters()
    private var thread: Blocking.Worker?

    private final class Counters: Sendable {
        let bytes = Atomic<Int64>(0)
        let requests = Atomic<Int>(0)
    }

    /// Bytes received and requests made so far (body and headers, as `TransferStats` counts).
    var receivedBytes: Int64 { counters.bytes.load(ordering: .relaxed) }
    var requests: Int { counters.requests.load(ordering: .relaxed) }

    init(options: TransportOptions, cancellation: CancellationFlag?, logger: Logger, ahead: Int = 4) throws {
        results = Channel(limit: ahead)
        let session = try TransferSession(options: options, logger: logger)
        session.cancellation = cancellation
        let box = UncheckedSession(session: session)
        let jobs = jobs
        let results = results
        let counters = counters
        thread = Blocking.Worker(name: "standby.fetch") {
            while let job = try jobs.take() {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(Int(job.range.length))
                let before = box.session.stats
                let outcome: Result<[UInt8], any Error>
                do {
                    try box.session.get(job.url, range: job.range) { bytes.append(contentsOf: $0) }
                    outcome = .success(bytes)
                } catch {
                    outcome = .failure(error)
                }
                counters.bytes.wrappingAdd(box.session.stats.totalBytes - before.totalBytes, ordering: .relaxed)
                counters.requests.wrappingAdd(box.session.stats.requests - before.requests, ordering: .relaxed)
                guard results.put(outcome) else { return }
            }
        }
    }

    deinit { stop() }

    func request(_ url: URL, _ range: ByteRange) {
        jobs.put(Job(url: url, range: range))
    }

    /// The bytes of the oldest range not yet taken; throws the error its transfer ended with.
    func next() throws -> [UInt8] {
        guard let result = try results.take() else {
            throw ReplicationError(.storeIO, "the range fetcher stopped")
        }
        return try result.get()
    }

    /// Drops what is queued and waits for the thread (a transfer under way ends first).
    func stop() {
        guard let thread else { return }
        jobs.close()
        results.close()
        _ = thread.join()
        self.thread = nil
    }

    private struct UncheckedSession: @unchecked Sendable {
        // Used by the fetching thread alone.
        let session: TransferSession
    }
}
