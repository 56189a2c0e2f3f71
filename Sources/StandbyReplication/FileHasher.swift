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
/// reading threads in turn (`InTurn`), so several reads are in flight (a disk serves them faster than one
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
        /// The next read handed to the reading threads: the `ranges` of the window (from the
        /// read's first byte) belong to the file.
        case window(ranges: [Range<Int>])
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

    private let pool = Channel<StreamBlock>()
    private let queue = Channel<StreamBlock>()
    private let toHash = Channel<HashWork>()
    private let windows = Channel<IOBuffer>()
    private let reads: InTurn<WindowRead, WindowDone>
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
        // A thread that fails wakes whoever waits: the caller for a block, the others for
        // work, a read or a buffer (a failed read closes the reads itself).
        let failed: @Sendable (any Error) -> Void = { error in
            queue.close(error)
            pool.close(error)
            toHash.close(error)
            windows.close(error)
        }
        let reads = InTurn<WindowRead, WindowDone>(
            threads: Self.readers, name: "standby.pack-read", failed: failed
        ) { _ in
            let packs = PackReader(directory: packDirectory, direct: true)
            return { read in
                let skip = try packs.readRun(read.pack, at: read.offset, length: read.length, into: read.buffer)
                return WindowDone(buffer: read.buffer, skip: skip)
            }
        }
        self.reads = reads
        readerThread = Blocking.Worker(name: "standby.pack-read") {
            do {
                try Self.handOut(queue: queue, windows: windows, to: reads, into: toHash)
                reads.finish()
                toHash.finish()
            } catch {
                reads.close(error)
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
                    case .window(let ranges):
                        guard let read = try reads.take() else {
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
                reads.close(error)
                failed(error)
                throw error
            }
        }
    }

    /// Hands each stored run's windows to the reading threads in turn, and tells the hashing
    /// thread, in file order, what to hash and which thread's next read holds it.
    private static func handOut(
        queue: Channel<StreamBlock>, windows: Channel<IOBuffer>, to reads: InTurn<WindowRead, WindowDone>,
        into toHash: Channel<HashWork>
    ) throws {
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
                        let read = WindowRead(
                            pack: pack, offset: offset + Int64(windowStart), length: length, buffer: window)
                        guard reads.hand(read) else { return }
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
                        toHash.put(.window(ranges: ranges))
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
        let readsEnded = reads.join()
        let hashed = hashThread?.join() ?? .success(())
        readerThread = nil
        hashThread = nil
        try read.get()
        for outcome in readsEnded { try outcome.get() }
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
        reads.close(nil)
        _ = readerThread?.join()
        _ = reads.join()
        _ = hashThread?.join()
        readerThread = nil
        hashThread = nil
    }

    private func send(_ block: StreamBlock) throws {
        guard queue.put(block) else { throw stopped() }
    }

    /// A thread ended early: its own error (a pack shorter than the catalog says).
    private func stopped() -> any Error {
        for case .failure(let error) in [readerThread?.join(), hashThread?.join()].compactMap({ $0 }) + reads.join() {
            return error
        }
        return ReplicationError(.storeIO, "the file hasher stopped")
    }
}
