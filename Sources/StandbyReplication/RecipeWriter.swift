import Foundation

/// The recipe of the file being read (its chunks' ids and lengths, in order), kept in segments
/// of `segmentSize` entries that wait for the next checkpoint's transaction, so that the recipe
/// becomes durable with the packs its chunks are in.
struct RecipeWriter {
    static let segmentSize = 4096
    /// Pending segments past this bring the checkpoint forward, so memory stays bounded when
    /// nothing new is stored.
    static let pendingLimit = 16

    private(set) var file: Int64 = 0
    /// Entries of the file so far.
    private(set) var count = 0
    private var seq = 0
    private var buffer: [RecipeEntry] = []
    private(set) var pending: [(file: Int64, seq: Int, entries: Data)] = []

    mutating func start(_ file: Int64) {
        self.file = file
        seq = 0
        count = 0
        buffer.removeAll(keepingCapacity: true)
    }

    /// Appends an entry; true when the pending segments call for a checkpoint.
    mutating func append(_ entry: RecipeEntry) -> Bool {
        buffer.append(entry)
        count += 1
        return buffer.count >= Self.segmentSize ? flush() : false
    }

    /// The buffered entries become a segment, whatever their number; true when the pending
    /// segments call for a checkpoint.
    @discardableResult
    mutating func flush() -> Bool {
        guard !buffer.isEmpty else { return false }
        pending.append((file, seq, buffer.encoded()))
        seq += 1
        buffer.removeAll(keepingCapacity: true)
        return pending.count >= Self.pendingLimit
    }

    /// The file's recipe is dropped (its rows are deleted by the caller): it is read again.
    mutating func discardPending(of file: Int64) {
        pending.removeAll { $0.file == file }
    }

    /// The pending segments are in the catalog.
    mutating func committed() {
        pending.removeAll()
    }
}
