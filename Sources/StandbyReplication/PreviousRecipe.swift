import Foundation
import GRDB

/// The previous version's recipe of a file, as the delta transfer needs it: which groups it
/// had (group key → where the group's entries start, and how many), with the entries read back
/// segment by segment when a group is used. Memory is the map (a few bytes per 8 chunks) and a
/// few segments, not the whole recipe: a 10 GiB file stays well under 100 MB.
///
/// The map is keyed by the first 8 bytes of the group key, the value packs start and count: a
/// collision (about one in 10^7 for a 10 GiB file) would only make the whole-file hash fail,
/// and the file be read whole.
final class PreviousRecipe {
    let file: Int64
    private(set) var groups: [UInt64: UInt64] = [:]
    /// Segment seq numbers, the index of their first entry and where it starts in the file,
    /// in order.
    private var segments: [(seq: Int, start: Int, offset: Int64)] = []
    /// The previous version's size.
    private(set) var size: Int64 = 0
    private var cache: [Int: [RecipeEntry]] = [:]
    private var cacheOrder: [Int] = []

    static func pack(start: Int, count: Int) -> UInt64 { UInt64(start) << 8 | UInt64(count) }
    static func unpack(_ packed: UInt64) -> (start: Int, count: Int) { (Int(packed >> 8), Int(packed & 0xFF)) }

    init(_ db: Database, file: Int64) throws {
        self.file = file
        let chunks = try Int.fetchOne(db, sql: "SELECT chunks FROM files WHERE id = ?", arguments: [file]) ?? 0
        groups.reserveCapacity(chunks / 6 + 16)
        var current: [RecipeEntry] = []
        var currentStart = 0
        var index = 0
        let rows = try Row.fetchCursor(
            db, sql: "SELECT seq, entries FROM recipes WHERE file_id = ? ORDER BY seq", arguments: [file])
        while let row = try rows.next() {
            let data: Data = row[1]
            segments.append((row[0], index, size))
            for entry in [RecipeEntry].decode(data) {
                current.append(entry)
                index += 1
                size += Int64(entry.length)
                if Grouping.endsGroup(entry.id, count: current.count) {
                    groups[GroupKey.of(current[...]).high] = Self.pack(start: currentStart, count: current.count)
                    currentStart = index
                    current.removeAll(keepingCapacity: true)
                }
            }
        }
        if !current.isEmpty {
            groups[GroupKey.of(current[...]).high] = Self.pack(start: currentStart, count: current.count)
        }
    }

    /// The entries of a group found in `groups`.
    func entries(_ db: Database, start: Int, count: Int) throws -> [RecipeEntry] {
        var out: [RecipeEntry] = []
        out.reserveCapacity(count)
        var position = start
        while position < start + count {
            // The last segment starting at or before `position`.
            var low = 0
            var high = segments.count - 1
            while low < high {
                let mid = (low + high + 1) / 2
                if segments[mid].start <= position { low = mid } else { high = mid - 1 }
            }
            let segment = try load(db, ordinal: low)
            let offset = position - segments[low].start
            guard offset < segment.count else { break }
            let take = min(segment.count - offset, start + count - position)
            out.append(contentsOf: segment[offset..<(offset + take)])
            position += take
        }
        return out
    }

    /// The previous version's chunks that hold the bytes `range` of the file, each with where
    /// it starts; nil when the range runs past the version's end.
    func chunks(_ db: Database, covering range: Range<Int64>) throws -> [(entry: RecipeEntry, offset: Int64)]? {
        guard range.lowerBound >= 0, range.upperBound <= size, !range.isEmpty else { return nil }
        // The last segment starting at or before the range.
        var low = 0
        var high = segments.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if segments[mid].offset <= range.lowerBound { low = mid } else { high = mid - 1 }
        }
        var out: [(entry: RecipeEntry, offset: Int64)] = []
        var ordinal = low
        var at = segments[low].offset
        while at < range.upperBound, ordinal < segments.count {
            for entry in try load(db, ordinal: ordinal) {
                let start = at
                at += Int64(entry.length)
                guard at > range.lowerBound else { continue }
                out.append((entry, start))
                if at >= range.upperBound { break }
            }
            ordinal += 1
        }
        return out
    }

    private func load(_ db: Database, ordinal: Int) throws -> [RecipeEntry] {
        let seq = segments[ordinal].seq
        if let cached = cache[seq] { return cached }
        let data =
            try Data.fetchOne(
                db, sql: "SELECT entries FROM recipes WHERE file_id = ? AND seq = ?", arguments: [file, seq]) ?? Data()
        let entries = [RecipeEntry].decode(data)
        cache[seq] = entries
        cacheOrder.append(seq)
        if cacheOrder.count > 4 { cache[cacheOrder.removeFirst()] = nil }
        return entries
    }
}
