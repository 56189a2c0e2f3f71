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
    var fill = 0
    /// Bytes of whole chunks: what the block hands over (the cut-short chunk moves on to the
    /// next block before the hand-over).
    fileprivate(set) var count = 0
    /// Where each chunk ends, in order; the last ends at `count`.
    fileprivate(set) var ends: [Int] = []
    /// The chunks' ids, filled in by the storing thread.
    var ids: [ChunkID] = []
    /// For the file hasher: the pieces of the file the block stands for, in order.
    var pieces: [FilePiece] = []

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

    func reset() {
        fill = 0
        count = 0
        ends.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
        pieces.removeAll(keepingCapacity: true)
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
