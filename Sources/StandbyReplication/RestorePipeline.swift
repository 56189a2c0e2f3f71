import Foundation
import StandbyBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Chunks of one file that lie one after another in a pack (as the run that stored them wrote
/// them): read with one `pread`.
struct RestoreRun: Sendable {
    struct Piece: Sendable {
        var id: ChunkID
        /// Where the chunk's bytes start, from the run's first byte.
        var start: Int
        var length: Int
    }

    var pack: String
    var offset: Int64
    var length: Int
    var pieces: [Piece]

    /// A run ends at a pack change, at a gap (another file's chunks between) or at this length.
    static let maxLength = 4 << 20

    /// Cuts a recipe into runs as its entries come, in file order, so the first runs can be
    /// read while the rest of the recipe is still being looked up.
    struct Planner {
        let describe: String
        private var current: RestoreRun?

        init(describe: String) {
            self.describe = describe
        }

        /// Adds the next entry at `location` (nil: the store lacks the chunk, `corruptPack`);
        /// returns the run it closes, if any.
        mutating func add(_ entry: RecipeEntry, at location: ChunkLocation?) throws -> RestoreRun? {
            guard let location else {
                throw ReplicationError(.corruptPack, "\(describe): chunk \(entry.id) is missing from the store")
            }
            let end = location.offset + Int64(location.length)
            // Whether the chunk follows the current run's last in the same pack; asked of a
            // borrowed copy that is gone before the append, so the pieces grow in place (a
            // copy held across it would copy the whole array on every chunk).
            let follows =
                current.map { run in
                    run.pack == location.pack
                        && location.offset == run.offset + Int64(run.length) + Int64(PackFormat.recordHeader)
                        && end - run.offset <= Int64(RestoreRun.maxLength)
                } ?? false
            if follows, let start = current?.offset {
                current?.pieces.append(
                    Piece(id: entry.id, start: Int(location.offset - start), length: location.length))
                current?.length = Int(end - start)
                return nil
            }
            let closed = current
            current = RestoreRun(
                pack: location.pack, offset: location.offset, length: location.length,
                pieces: [Piece(id: entry.id, start: 0, length: location.length)])
            return closed
        }

        /// The last run, once every entry is added.
        mutating func finish() -> RestoreRun? {
            defer { current = nil }
            return current
        }
    }
}

/// Writes a file from its runs of chunks. The calling thread plans the runs (the catalog's
/// look-ups of the chunks' places) and hands them out as it goes, so the disk starts at once;
/// `readers` threads read them from the packs, buffered with the kernel's readahead (the packs'
/// pages dropped from the cache when done: a restore leaves none there); one thread lays
/// the chunks' bytes end to end in blocks, in file order; one computes every chunk's SHA-256,
/// checks it against the chunk's id, and the whole file's SHA-256 in the same pass; one hands the
/// checked blocks to the output, which has several writes in flight. No byte is written before
/// its chunk is checked.
enum RestorePipeline {
    static let blockSize = 8 << 20
    static let blocks = 4
    /// Reading threads, each with `runBuffers` runs read or being read: a disk (a virtual one
    /// above all) serves several reads at once faster than one after another.
    static let readers = 4
    static let runBuffers = 2
    /// Writes of the restored file in flight at once.
    static let writers = 2

    final class Block: @unchecked Sendable {
        // Filled by the laying-out thread, then read by the hashing and writing threads in turn;
        // the channels' lock orders the hand-overs.
        let capacity: Int
        let base: UnsafeMutableRawPointer
        var count = 0
        var ends: [Int] = []
        var expected: [ChunkID] = []
        var ids: [ChunkID] = []
        /// Where each chunk was read from, for the message naming a bad one.
        var origins: [(pack: String, offset: Int64)] = []

        init(capacity: Int) {
            self.capacity = capacity
            base = .allocate(byteCount: capacity, alignment: 64)
            ends.reserveCapacity(capacity / 2048 + 1)
            expected.reserveCapacity(capacity / 2048 + 1)
            ids.reserveCapacity(capacity / 2048 + 1)
        }

        deinit { base.deallocate() }

        func reset() {
            count = 0
            ends.removeAll(keepingCapacity: true)
            expected.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
            origins.removeAll(keepingCapacity: true)
        }
    }

    /// A run a reading thread has read. The buffer is the reading thread's until handed over,
    /// then the laying-out thread's until it goes back to `free`, the reading thread's own.
    struct Read: Sendable {
        var run: RestoreRun
        var buffer: IOBuffer
        /// Where the run's first byte is in the buffer.
        var skip: Int
        /// Nil for the buffer of a run longer than the usual ones, which is not reused.
        var free: Channel<IOBuffer>?
    }

    static let bufferCapacity = RestoreRun.maxLength + 2 * PackIO.alignment

    /// A reading thread's work: each run into one of its own buffers, taken from `free`.
    static func reading(packDirectory: String, free: Channel<IOBuffer>, cancellation: CancellationFlag)
        -> (RestoreRun) throws -> Read
    {
        for _ in 0..<runBuffers { free.put(IOBuffer(capacity: bufferCapacity)) }
        // Buffered reads: the kernel's readahead keeps several large reads of a pack in
        // flight, which was faster here than direct reads four at a time (1.0-1.2 s against
        // 1.4-1.6 s for 1 GiB). A pack's pages are dropped when the reader is done with it
        // (dropping each run's as it went cost most of the gain), so a restore leaves no
        // packs in the page cache.
        let packs = PackReader(directory: packDirectory, direct: false, dropsCache: true)
        return { run in
            if cancellation.isCancelled { throw ReplicationError(.cancelled, "restore cancelled") }
            // A single chunk longer than a run (a catalog row no chunker wrote) gets room of its own.
            guard run.length <= RestoreRun.maxLength else {
                let wide = IOBuffer(capacity: run.length + 2 * PackIO.alignment)
                let skip = try packs.readRun(run.pack, at: run.offset, length: run.length, into: wide)
                return Read(run: run, buffer: wide, skip: skip, free: nil)
            }
            guard let buffer = try free.take() else { throw Stopped() }
            let skip = try packs.readRun(run.pack, at: run.offset, length: run.length, into: buffer)
            return Read(run: run, buffer: buffer, skip: skip, free: free)
        }
    }

    struct Stopped: Error {}

    /// Writes the chunks of the runs `plan` hands to its argument, in file order, to `fd` (an
    /// empty file, from its start) and answers the whole file's SHA-256 and length. `plan` runs
    /// on the calling thread while the runs are read. The file is not fsynced here.
    static func write(
        packDirectory: String, to fd: Int32, path: String, cancellation: CancellationFlag,
        plan: (_ emit: (RestoreRun) throws -> Void) throws -> Void
    ) throws -> (sha256: [UInt8], bytes: Int64) {
        let frees = (0..<Self.readers).map { _ in Channel<IOBuffer>() }
        let pool = Channel<Block>()
        let toHash = Channel<Block>()
        let toWrite = Channel<Block>()
        for _ in 0..<blocks { pool.put(Block(capacity: blockSize)) }
        let stages: @Sendable (any Error) -> Void = { error in
            for free in frees { free.close(error) }
            pool.close(error)
            toHash.close(error)
            toWrite.close(error)
        }
        // The runs go to the reading threads in turn, a bounded number waiting for each.
        let reads = InTurn<RestoreRun, Read>(
            threads: Self.readers, jobLimit: 256, name: "standby.restore-read", failed: stages
        ) { n in
            reading(packDirectory: packDirectory, free: frees[n], cancellation: cancellation)
        }
        let failed: @Sendable (any Error) -> Void = { error in
            reads.close(error)
            stages(error)
        }
        final class Outcome: @unchecked Sendable {
            // Written by the hashing and writing threads before they end; read after they are joined.
            var digest: [UInt8] = []
            var written: Int64 = 0
        }
        let outcome = Outcome()
        let layout = Blocking.Worker(name: "standby.restore-layout") {
            do {
                try layOut(reads, pool: pool, into: toHash)
                toHash.finish()
            } catch {
                failed(error)
                throw error
            }
        }
        let hasher = Blocking.Worker(name: "standby.restore-hash") {
            do {
                var sha = StreamHasher()
                while let block = try toHash.take() {
                    sha.chunks(block.base, ends: block.ends, into: &block.ids)
                    for (index, id) in block.ids.enumerated() where id != block.expected[index] {
                        let origin = block.origins[index]
                        throw ReplicationError(
                            .corruptPack,
                            "chunk \(block.expected[index]) in pack \(packDirectory)/\(origin.pack).pack at offset \(origin.offset) does not match its hash"
                        )
                    }
                    guard toWrite.put(block) else { throw Stopped() }
                }
                outcome.digest = sha.finalize()
                toWrite.finish()
            } catch {
                failed(error)
                throw error
            }
        }
        let writer = Blocking.Worker(name: "standby.restore-write") {
            let output = RestoreOutput(fd: fd, path: path)
            defer { output.stop() }
            do {
                while let block = try toWrite.take() {
                    try output.write(UnsafeRawBufferPointer(start: block.base, count: block.count))
                    block.reset()
                    pool.put(block)
                }
                try output.finish()
                outcome.written = output.written
            } catch {
                failed(error)
                throw error
            }
        }

        var planning: (any Error)?
        do {
            try plan { run in
                if cancellation.isCancelled { throw ReplicationError(.cancelled, "restore cancelled") }
                guard reads.hand(run) else { throw Stopped() }
            }
            reads.finish()
        } catch {
            planning = error
            failed(error)
        }
        let outcomes = reads.join() + [layout.join(), hasher.join(), writer.join()]
        var failures = planning.map { [$0] } ?? []
        for case .failure(let error) in outcomes { failures.append(error) }
        // The first failure is the cause; the others are threads it stopped.
        if let cause = failures.first(where: { !($0 is Stopped) }) { throw cause }
        if cancellation.isCancelled || !failures.isEmpty { throw ReplicationError(.cancelled, "restore cancelled") }
        return (outcome.digest, outcome.written)
    }

    /// Takes the runs back in file order from the reading threads and lays their chunks end to
    /// end in blocks.
    private static func layOut(_ reads: InTurn<RestoreRun, Read>, pool: Channel<Block>, into toHash: Channel<Block>)
        throws
    {
        var block: Block?
        while let read = try reads.take() {
            for piece in read.run.pieces {
                if block.map({ $0.capacity - $0.count < piece.length }) ?? true {
                    if let full = block, full.count > 0 { guard toHash.put(full) else { throw Stopped() } }
                    if piece.length > blockSize {
                        block = Block(capacity: piece.length)
                    } else {
                        guard let next = try pool.take() else { throw Stopped() }
                        block = next
                    }
                }
                guard let current = block else { continue }
                (current.base + current.count).copyMemory(
                    from: read.buffer.base + read.skip + piece.start, byteCount: piece.length)
                current.count += piece.length
                current.ends.append(current.count)
                current.expected.append(piece.id)
                current.origins.append((read.run.pack, read.run.offset + Int64(piece.start)))
            }
            read.free?.put(read.buffer)
        }
        if let last = block, last.count > 0 { guard toHash.put(last) else { throw Stopped() } }
    }

    /// The restored file's writes, several in flight (`PackIO` with `writers` threads): with
    /// O_DIRECT where the filesystem takes it, from aligned staging buffers in whole multiples of
    /// 4 KiB (the disk's DMA reads the buffer: no copy into the page cache, no writeback for the
    /// fsync to wait for), the last bytes buffered. Elsewhere (or once a direct write is refused),
    /// buffered writes whose writeback starts as they go, so the final fsync waits for little.
    final class RestoreOutput {
        let fd: Int32
        let path: String
        private let io = PackIO(
            threads: RestorePipeline.writers, buffers: RestorePipeline.writers + 1,
            bufferSize: RestorePipeline.blockSize)
        private let state = PackWriteState()
        private var staging: IOBuffer?
        private var fill = 0
        /// Where the staging buffer's first byte goes in the file.
        private var offset: Int64 = 0
        /// Bytes handed over so far.
        private(set) var written: Int64 = 0

        init(fd: Int32, path: String) {
            self.fd = fd
            self.path = path
            PackIO.setDirect(fd)
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            written += Int64(bytes.count)
            var rest = bytes
            while let from = rest.baseAddress, !rest.isEmpty {
                if let error = state.error { throw error }
                let buffer = try staging ?? io.buffer()
                staging = buffer
                let take = min(rest.count, buffer.capacity - fill)
                (buffer.base + fill).copyMemory(from: from, byteCount: take)
                fill += take
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                if fill == buffer.capacity { queue(buffer, fill) }
            }
        }

        /// Writes what is staged (the whole 4 KiB multiples as the rest were, the last bytes
        /// buffered) and waits for every write.
        func finish() throws {
            var tail: [UInt8] = []
            var tailOffset = offset
            if let buffer = staging {
                let aligned = fill / PackIO.alignment * PackIO.alignment
                tail = Array(UnsafeRawBufferPointer(start: buffer.base + aligned, count: fill - aligned))
                tailOffset = offset + Int64(aligned)
                if aligned > 0 { queue(buffer, aligned) } else { io.recycle(buffer) }
                staging = nil
            }
            if let error = state.drain() { throw error }
            guard !tail.isEmpty else { return }
            _ = PackIO.clearDirect(fd)
            try tail.withUnsafeBytes { try FileIO.pwriteAll(fd, $0, at: tailOffset, path: path) }
        }

        /// Ends the writing threads (after `finish`, or after a failure).
        func stop() {
            io.stop()
        }

        private func queue(_ buffer: IOBuffer, _ count: Int) {
            io.write(PackIO.Job(fd: fd, path: path, buffer: buffer, offset: offset, length: count, state: state))
            offset += Int64(count)
            fill = 0
            staging = nil
        }
    }
}
