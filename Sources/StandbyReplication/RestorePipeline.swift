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

    /// The runs of a recipe, in file order. A chunk `locations` lacks is `corruptPack`.
    static func plan(_ entries: [RecipeEntry], locations: [ChunkID: ChunkLocation], describe: String) throws
        -> [RestoreRun]
    {
        var runs: [RestoreRun] = []
        var current: RestoreRun?
        for entry in entries {
            guard let location = locations[entry.id] else {
                throw ReplicationError(.corruptPack, "\(describe): chunk \(entry.id) is missing from the store")
            }
            let end = location.offset + Int64(location.length)
            if var run = current, run.pack == location.pack,
                location.offset == run.offset + Int64(run.length) + Int64(PackFormat.recordHeader),
                end - run.offset <= Int64(maxLength)
            {
                run.pieces.append(
                    Piece(id: entry.id, start: Int(location.offset - run.offset), length: location.length))
                run.length = Int(end - run.offset)
                current = run
                continue
            }
            if let run = current { runs.append(run) }
            current = RestoreRun(
                pack: location.pack, offset: location.offset, length: location.length,
                pieces: [Piece(id: entry.id, start: 0, length: location.length)])
        }
        if let run = current { runs.append(run) }
        return runs
    }
}

/// Writes a file from its runs of chunks on three threads: one reads the runs from the packs
/// (O_DIRECT where the filesystem takes it, so a restore does not fill the page cache with
/// packs) and lays the chunks' bytes end to end in blocks; one computes every chunk's SHA-256,
/// checks it against the chunk's id, and the whole file's SHA-256 in the same pass; one writes
/// the checked blocks and starts their writeback as it goes, so the final fsync waits for
/// little. No byte is written before its chunk is checked.
enum RestorePipeline {
    static let blockSize = 8 << 20
    static let blocks = 6
    /// Writeback is started each time this much more is written.
    static let writebackStep: Int64 = 16 << 20

    final class Block: @unchecked Sendable {
        // Filled by the reading thread, then read by the hashing and writing threads in turn;
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

    private struct Stopped: Error {}

    /// Writes the runs' chunks to `fd` (at its current position, from the start of an empty
    /// file) and answers the whole file's SHA-256 and length. The file is not fsynced here.
    static func write(
        _ runs: [RestoreRun], packDirectory: String, to fd: Int32, path: String, cancellation: CancellationFlag
    ) throws -> (sha256: [UInt8], bytes: Int64) {
        let pool = Channel<Block>()
        let toHash = Channel<Block>()
        let toWrite = Channel<Block>()
        for _ in 0..<blocks { pool.put(Block(capacity: blockSize)) }
        let failed: @Sendable (any Error) -> Void = { error in
            pool.close(error)
            toHash.close(error)
            toWrite.close(error)
        }
        final class Digest: @unchecked Sendable {
            // Written by the hashing thread before it ends; read after it is joined.
            var value: [UInt8] = []
        }
        let digest = Digest()
        let reader = Blocking.Worker(name: "standby.restore-read") {
            do {
                try readRuns(runs, packDirectory: packDirectory, pool: pool, into: toHash, cancellation: cancellation)
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
                    guard toWrite.put(block) else { break }
                }
                digest.value = sha.finalize()
                toWrite.finish()
            } catch {
                failed(error)
                throw error
            }
        }
        let output = RestoreOutput(fd: fd, path: path)
        var failure: (any Error)?
        do {
            while let block = try toWrite.take() {
                try output.write(UnsafeRawBufferPointer(start: block.base, count: block.count))
                block.reset()
                pool.put(block)
            }
            try output.finish()
        } catch {
            failure = error
            failed(error)
        }
        let written = output.written
        let readOutcome = reader.join()
        let hashOutcome = hasher.join()
        if let failure, !(failure is Stopped) { throw failure }
        try readOutcome.get()
        try hashOutcome.get()
        if cancellation.isCancelled { throw ReplicationError(.cancelled, "restore cancelled") }
        return (digest.value, written)
    }

    /// The restored file's writes: with O_DIRECT where the filesystem takes it, through an
    /// aligned staging buffer in whole multiples of 4 KiB (the disk's DMA reads the buffer: no
    /// copy into the page cache, no writeback for the fsync to wait for), the last bytes buffered.
    /// Elsewhere (or once a direct write is refused), buffered writes whose writeback starts as
    /// they go, so the final fsync waits for little.
    final class RestoreOutput {
        let fd: Int32
        let path: String
        private var direct: Bool
        private let staging = IOBuffer(capacity: RestorePipeline.blockSize)
        private var fill = 0
        /// Bytes handed over so far.
        private(set) var written: Int64 = 0
        private var writebackFrom: Int64 = 0

        init(fd: Int32, path: String) {
            self.fd = fd
            self.path = path
            PackIO.setDirect(fd)
            direct = PackIO.isDirect(fd)
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            written += Int64(bytes.count)
            guard direct else { return try buffered(bytes) }
            var rest = bytes
            while let from = rest.baseAddress, !rest.isEmpty {
                let take = min(rest.count, staging.capacity - fill)
                (staging.base + fill).copyMemory(from: from, byteCount: take)
                fill += take
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                if fill == staging.capacity { try flush(whole: fill) }
                if !direct { return try buffered(rest) }
            }
        }

        /// Writes what is staged: the whole 4 KiB multiples directly, then the rest buffered.
        func finish() throws {
            let aligned = fill / PackIO.alignment * PackIO.alignment
            if direct, aligned > 0 { try flush(whole: aligned) }
            guard fill > 0 else { return }
            _ = PackIO.clearDirect(fd)
            direct = false
            try FileIO.writeAll(fd, UnsafeRawBufferPointer(start: staging.base, count: fill), path: path)
            fill = 0
        }

        /// Writes the first `count` staged bytes (a multiple of 4 KiB) and keeps the rest.
        private func flush(whole count: Int) throws {
            var done = 0
            while done < count {
                let n = Glibc.write(fd, staging.base + done, count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    // Refused after all (EINVAL): the rest goes buffered.
                    if errno == EINVAL, PackIO.clearDirect(fd) {
                        direct = false
                        try FileIO.writeAll(
                            fd, UnsafeRawBufferPointer(start: staging.base + done, count: fill - done), path: path)
                        fill = 0
                        return
                    }
                    throw FileIO.fail("write", path)
                }
                done += n
            }
            if fill > count { (staging.base).copyMemory(from: staging.base + count, byteCount: fill - count) }
            fill -= count
        }

        private func buffered(_ bytes: UnsafeRawBufferPointer) throws {
            try FileIO.writeAll(fd, bytes, path: path)
            if written - writebackFrom >= RestorePipeline.writebackStep {
                FileIO.startWriteback(fd, offset: writebackFrom, length: written - writebackFrom)
                writebackFrom = written
            }
        }
    }

    private static func readRuns(
        _ runs: [RestoreRun], packDirectory: String, pool: Channel<Block>, into toHash: Channel<Block>,
        cancellation: CancellationFlag
    ) throws {
        let packs = PackReader(directory: packDirectory, direct: true)
        let buffer = IOBuffer(capacity: RestoreRun.maxLength + 2 * PackIO.alignment)
        var block: Block?
        func take() throws -> Block {
            guard let next = try pool.take() else { throw Stopped() }
            return next
        }
        for run in runs {
            if cancellation.isCancelled { throw ReplicationError(.cancelled, "restore cancelled") }
            // A single chunk longer than a run (a catalog row no chunker wrote) gets room of its own.
            let wide = run.length > RestoreRun.maxLength ? IOBuffer(capacity: run.length + 2 * PackIO.alignment) : nil
            let into = wide ?? buffer
            let skip = try packs.readRun(run.pack, at: run.offset, length: run.length, into: into)
            for piece in run.pieces {
                if block.map({ $0.capacity - $0.count < piece.length }) ?? true {
                    if let full = block, full.count > 0 { guard toHash.put(full) else { throw Stopped() } }
                    block = piece.length > blockSize ? Block(capacity: piece.length) : try take()
                }
                guard let current = block else { continue }
                (current.base + current.count).copyMemory(from: into.base + skip + piece.start, byteCount: piece.length)
                current.count += piece.length
                current.ends.append(current.count)
                current.expected.append(piece.id)
                current.origins.append((run.pack, run.offset + Int64(piece.start)))
            }
        }
        if let last = block, last.count > 0 { guard toHash.put(last) else { throw Stopped() } }
    }
}
