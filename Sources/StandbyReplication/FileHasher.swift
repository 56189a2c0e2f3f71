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
