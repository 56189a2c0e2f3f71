import Foundation
import StandbyBase

/// A piece of a file handed to `FileHasher`: bytes held in the block that carries it, or a
/// run of chunks stored in a pack (`span` bytes from `offset`, of which `segments`, offsets in
/// the span, belong to the file; the record headers between them do not).
enum FilePiece {
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
/// Threads do the work: one hands the stored runs' reads, `readWindow` at a time, to `readers`
/// reading threads in turn, so several reads are in flight (a disk serves them faster than one
/// after another), into aligned buffers with O_DIRECT (the disk's DMA lands in the buffer: no
/// copy out of the page cache, which on a cold cache costs more than the hashing, and none left
/// in it); another hashes everything in file order, taking each read from the thread it went
/// to. Where the filesystem refuses O_DIRECT, the reads are buffered. The caller only plans.
/// Memory: the pool and the read buffers.
final class FileHasher {
    static let blockSize = 2 << 20
    static let blocks = 6
    /// At about a megabyte per stored run, the pool then stands for some 100 MB of the file
    /// ahead of the hashing.
    static let piecesPerBlock = 16
    /// Stored runs are read this much at a time; `readBuffers` reads can be ahead of the
    /// hashing, on `readers` threads.
    static let readWindow = 1 << 20
    static let readBuffers = 8
    static let readers = 4

    /// What the handing-out thread hands the hashing one, in file order.
    private enum HashWork {
        case bytes(StreamBlock, start: Int, length: Int)
        /// The next read of reading thread `reader`: the `ranges` of the window (from the
        /// read's first byte) belong to the file.
        case window(reader: Int, ranges: [Range<Int>])
        /// Every piece of the block is handed over: it can go back to the pool.
        case done(StreamBlock)
    }

    /// A read for a reading thread, and what it answers: where in the buffer the read's first
    /// byte is (a direct read starts aligned before it).
    private struct WindowRead: Sendable {
        var pack: String
        var offset: Int64
        var length: Int
        var buffer: IOBuffer
    }

    private struct WindowDone: Sendable {
        var buffer: IOBuffer
        var skip: Int
    }

    /// One reading thread's reads, in the order handed to it, and the same reads done.
    private final class Reader: Sendable {
        let reads = Channel<WindowRead>()
        let done = Channel<WindowDone>()

        func close(_ error: (any Error)?) {
            reads.close(error)
            done.close(error)
        }
    }

    private let pool = Channel<StreamBlock>()
    private let queue = Channel<StreamBlock>()
    private let toHash = Channel<HashWork>()
    private let windows = Channel<IOBuffer>()
    private let readers = (0..<FileHasher.readers).map { _ in Reader() }
    private var current: StreamBlock?
    private var readerThread: Blocking.Worker?
    private var readThreads: [Blocking.Worker] = []
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
        let (pool, queue, toHash, windows, result, readers) = (pool, queue, toHash, windows, result, readers)
        // A thread that fails wakes whoever waits: the caller for a block, the others for
        // work, a read or a buffer.
        let failed: @Sendable (any Error) -> Void = { error in
            queue.close(error)
            pool.close(error)
            toHash.close(error)
            windows.close(error)
            for reader in readers { reader.close(error) }
        }
        readerThread = Blocking.Worker(name: "standby.pack-read") {
            do {
                try Self.handOut(queue: queue, windows: windows, to: readers, into: toHash)
                for reader in readers { reader.reads.finish() }
                toHash.finish()
            } catch {
                failed(error)
                throw error
            }
        }
        readThreads = readers.map { reader in
            Blocking.Worker(name: "standby.pack-read") {
                do {
                    let packs = PackReader(directory: packDirectory, direct: true)
                    while let read = try reader.reads.take() {
                        let skip = try packs.readRun(read.pack, at: read.offset, length: read.length, into: read.buffer)
                        guard reader.done.put(WindowDone(buffer: read.buffer, skip: skip)) else { return }
                    }
                    reader.done.finish()
                } catch {
                    failed(error)
                    throw error
                }
            }
        }
        hashThread = Blocking.Worker(name: "standby.file-hash") {
            do {
                var sha = StreamHasher()
                while let work = try toHash.take() {
                    switch work {
                    case .bytes(let block, let start, let length):
                        sha.update(UnsafeRawBufferPointer(start: block.base + start, count: length))
                    case .window(let reader, let ranges):
                        guard let read = try readers[reader].done.take() else {
                            throw ReplicationError(.storeIO, "a pack read of the file hasher was lost")
                        }
                        for range in ranges {
                            sha.update(
                                UnsafeRawBufferPointer(
                                    start: read.buffer.base + read.skip + range.lowerBound, count: range.count))
                        }
                        windows.put(read.buffer)
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

    /// Hands each stored run's windows to the reading threads in turn, and tells the hashing
    /// thread, in file order, what to hash and which thread's next read holds it.
    private static func handOut(
        queue: Channel<StreamBlock>, windows: Channel<IOBuffer>, to readers: [Reader], into toHash: Channel<HashWork>
    ) throws {
        var next = 0
        while let block = try queue.take() {
            for piece in block.pieces {
                switch piece {
                case .bytes(let start, let length):
                    toHash.put(.bytes(block, start: start, length: length))
                case .stored(let pack, let offset, let span, let segments):
                    var segment = 0
                    var windowStart = 0
                    while windowStart < span {
                        let length = min(Self.readWindow, span - windowStart)
                        guard let window = try windows.take() else { return }
                        let reader = next
                        next = (next + 1) % readers.count
                        guard
                            readers[reader].reads.put(
                                WindowRead(
                                    pack: pack, offset: offset + Int64(windowStart), length: length, buffer: window))
                        else { return }
                        // The segments' parts in this window; one that goes on is taken up
                        // again in the next.
                        let windowEnd = windowStart + length
                        var ranges: [Range<Int>] = []
                        while segment < segments.count {
                            let part = segments[segment]
                            let from = max(part.start, windowStart)
                            let to = min(part.start + part.length, windowEnd)
                            if from < to { ranges.append((from - windowStart)..<(to - windowStart)) }
                            guard part.start + part.length <= windowEnd else { break }
                            segment += 1
                        }
                        toHash.put(.window(reader: reader, ranges: ranges))
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
        let reads = readThreads.map { $0.join() }
        let hashed = hashThread?.join() ?? .success(())
        readerThread = nil
        readThreads = []
        hashThread = nil
        try read.get()
        for outcome in reads { try outcome.get() }
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
        for reader in readers { reader.close(nil) }
        _ = readerThread?.join()
        for thread in readThreads { _ = thread.join() }
        _ = hashThread?.join()
        readerThread = nil
        readThreads = []
        hashThread = nil
    }

    private func send(_ block: StreamBlock) throws {
        guard queue.put(block) else { throw stopped() }
    }

    /// A thread ended early: its own error (a pack shorter than the catalog says).
    private func stopped() -> any Error {
        for thread in [readerThread, hashThread] + readThreads.map(Optional.some) {
            if case .failure(let error) = thread?.join() { return error }
        }
        return ReplicationError(.storeIO, "the file hasher stopped")
    }
}
