import Foundation

/// Where a replicate run's new chunks go: the pack being written, and the full packs that wait
/// for the next checkpoint (still `.pack.tmp`, their chunks known only here). Finished packs are
/// sealed together, so a run pays one fsync of the directory and one catalog commit for several
/// packs, not for each. Lives on the run's thread; the writes themselves go to `PackIO`'s.
final class PackSink {
    let directory: String
    /// Writes the packs on a thread of its own.
    private let io = PackIO()
    private var writer: PackWriter?
    private(set) var finished: [PackWriter] = []
    private var finishedBytes: Int64 = 0
    private var oldestFinished: ContinuousClock.Instant?
    static let checkpointBytes: Int64 = 128 << 20
    static let checkpointAge: Duration = .seconds(1)

    init(directory: String) {
        self.directory = directory
    }

    /// The open pack, made at the first chunk that needs it.
    func openWriter() throws -> PackWriter {
        if let writer { return writer }
        let fresh = try PackWriter(directory: directory, io: io)
        writer = fresh
        return fresh
    }

    /// Whether the chunk is in a pack of this run that the catalog does not know yet.
    func holds(_ id: ChunkID) -> Bool {
        if writer?.chunks[id] != nil { return true }
        return finished.contains { $0.chunks[id] != nil }
    }

    /// The pack of this run (open or finished, not yet in the catalog) that holds the chunk.
    func pack(holding id: ChunkID) -> PackWriter? {
        if let writer, writer.chunks[id] != nil { return writer }
        return finished.first { $0.chunks[id] != nil }
    }

    /// After writes to the open pack: a full one is finished. Returns whether a checkpoint is
    /// due: the finished packs hold `checkpointBytes`, or the oldest waited `checkpointAge` (so a
    /// slow, rate-capped transfer still makes its chunks durable as it goes).
    func written() -> Bool {
        if let pack = writer, pack.size >= PackFormat.targetSize { finishPack() }
        return finishedBytes >= Self.checkpointBytes
            || oldestFinished.map({ ContinuousClock.now - $0 >= Self.checkpointAge }) == true
    }

    /// Closes the open pack for appends; it waits for the next checkpoint.
    func finishPack() {
        guard let pack = writer else { return }
        writer = nil
        // A pack whose write failed (a full disk, mostly) is deleted: the space it holds is
        // what the store needs now, for the catalog and the next run. Packs of this run that
        // were finished before stay, and are registered by the checkpoint.
        guard !pack.order.isEmpty, !pack.failed else {
            pack.discard()
            return
        }
        // Its last bytes are queued; the checkpoint waits for them.
        pack.finish()
        finished.append(pack)
        finishedBytes += pack.size
        if oldestFinished == nil { oldestFinished = .now }
    }

    /// Makes the finished packs durable: each fsynced and renamed, then the directory fsynced
    /// once. Returns them, for the caller to register in one catalog transaction and then call
    /// `registered`. A pack whose last writes failed (a full disk) is deleted, and the others
    /// wait for the checkpoint to be retried.
    func seal() throws -> [PackWriter] {
        let packs = finished
        for pack in packs {
            do {
                try pack.sealFile()
            } catch {
                guard pack.failed else { throw error }
                pack.discard()
                finished.removeAll { $0 === pack }
                finishedBytes -= pack.size
                throw error
            }
        }
        if !packs.isEmpty { try FileIO.syncDirectory(directory) }
        return packs
    }

    /// The sealed packs are in the catalog: their chunks are stored for good.
    func registered() {
        finished.removeAll()
        finishedBytes = 0
        oldestFinished = nil
    }
}
