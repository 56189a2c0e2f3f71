import Crypto
import Foundation

/// The chunk index `standby publish` writes next to a backup file (`FILE.standby-index`), so
/// the replicator can fetch only the byte ranges of chunks its store lacks.
///
/// Two levels keep what crosses the wire small. Chunks are grouped where a chunk's id ends a
/// group (one in eight, by content, so groups resynchronise after a change just as chunks do).
/// The top level holds, per group, its chunk count and a 16-byte hash of its entries; the
/// second level the entries (id, length) of every group. The replicator fetches the header and
/// top level, recognises the groups it already has from the previous version's recipe, and
/// fetches the second-level entries of the other groups only: for 1 GiB with 1% of pages
/// rewritten, about 0.6 MB instead of 4 MB.
///
/// Format 2 adds a third level: an 8-byte hash of every 4 KiB block of the file, at offsets
/// that are multiples of 4 KiB. A chunk the store lacks is most often an old chunk with a page
/// or two rewritten; the replicator compares the blocks' hashes with those of the previous
/// version's bytes at the same offsets and fetches only the blocks that differ, so a rewritten
/// 8 KiB page costs about 8 KiB on the wire, not the 20 KiB of the chunks around it. The
/// chunk's id still checks the bytes put together. The top level then also gives each group's
/// length in bytes, so the blocks of the groups to fetch are asked for with their entries.
///
/// Layout (little-endian): a 128-byte header (magic, format, chunker sizes, the file's size,
/// mtime, SHA-256, chunk and group counts, the SHA-256 of the top level, and a checksum of the
/// header), the top level (per group: chunk count u32, in format 2 byte length u32, key 16
/// bytes), the second level (36 bytes per chunk), in format 2 the block hashes (8 bytes per
/// 4 KiB). Format 1 indexes are still read. Any mismatch makes the index unusable and the
/// replicator reads the whole file instead.
public struct ChunkIndexHeader: Sendable, Equatable {
    static let magic: [UInt8] = Array("SBYINDX1".utf8)
    static let size = 128
    /// The format `standby publish` writes; 1 is still read.
    static let currentFormat: UInt32 = 2
    static let blockSize = 4096
    static let blockHashSize = 8

    /// 1: two levels; 2: group byte lengths in the top level and block hashes.
    var format: UInt32 = currentFormat
    public var parameters: ChunkerParameters
    public var fileSize: Int64
    public var modificationTime: Int64
    public var fileSHA256: [UInt8]
    public var chunkCount: Int
    public var groupCount: Int
    var topLevelSHA256: [UInt8]

    var groupEntrySize: Int { format >= 2 ? 24 : 20 }
    var topLevelLength: Int { groupCount * groupEntrySize }
    var hasBlocks: Bool { format >= 2 }
    var blockCount: Int64 { hasBlocks ? (fileSize + Int64(Self.blockSize) - 1) / Int64(Self.blockSize) : 0 }
    var secondLevelOffset: Int64 { Int64(Self.size + topLevelLength) }
    var blocksOffset: Int64 { secondLevelOffset + Int64(chunkCount) * Int64(RecipeEntry.size) }
    /// The size of the whole index file.
    var indexSize: Int64 { blocksOffset + blockCount * Int64(Self.blockHashSize) }

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        out.append(contentsOf: Self.magic)
        put(format)
        put(UInt32(parameters.minSize))
        put(UInt32(parameters.averageSize))
        put(UInt32(parameters.maxSize))
        put(UInt64(fileSize))
        put(Int64(modificationTime))
        put(UInt64(chunkCount))
        put(UInt64(groupCount))
        out.append(contentsOf: fileSHA256)
        out.append(contentsOf: topLevelSHA256)
        var hasher = SHA256()
        hasher.update(data: out)
        out.append(contentsOf: hasher.finalize().prefix(8))
        return out
    }

    static func decode(_ bytes: [UInt8]) -> ChunkIndexHeader? {
        guard bytes.count >= size, Array(bytes[0..<8]) == magic else { return nil }
        var hasher = SHA256()
        hasher.update(data: bytes[0..<120])
        guard Array(hasher.finalize().prefix(8)) == Array(bytes[120..<128]) else { return nil }
        return bytes.withUnsafeBytes { raw -> ChunkIndexHeader? in
            func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
                T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
            }
            let format = get(8, UInt32.self)
            guard format == 1 || format == 2 else { return nil }
            let chunks = get(40, UInt64.self)
            let groups = get(48, UInt64.self)
            guard chunks < 1 << 40, groups <= chunks else { return nil }
            return ChunkIndexHeader(
                format: format,
                parameters: ChunkerParameters(
                    minSize: Int(get(12, UInt32.self)), averageSize: Int(get(16, UInt32.self)),
                    maxSize: Int(get(20, UInt32.self))),
                fileSize: Int64(get(24, UInt64.self)), modificationTime: get(32, Int64.self),
                fileSHA256: Array(bytes[56..<88]), chunkCount: Int(chunks), groupCount: Int(groups),
                topLevelSHA256: Array(bytes[88..<120]))
        }
    }
}

/// One group of the top level.
struct IndexGroup: Hashable, Sendable {
    var key: GroupKey
    var chunkCount: Int
    /// Format 2: the group's bytes of the file (0 in format 1, which does not say).
    var byteLength: Int64 = 0
}

/// The hash of a 4 KiB block of a file in format 2 indexes: the first 8 bytes of its SHA-256.
enum BlockHash {
    static func of(_ bytes: UnsafeRawBufferPointer) -> UInt64 { ChunkID.of(bytes).a }
}

/// The first 16 bytes of the SHA-256 of a group's encoded entries.
struct GroupKey: Hashable, Sendable {
    var high: UInt64
    var low: UInt64

    static func of(_ entries: ArraySlice<RecipeEntry>) -> GroupKey {
        let data = Array(entries).encoded()
        var hasher = SHA256()
        hasher.update(data: data)
        return hasher.finalize().withUnsafeBytes {
            GroupKey(high: $0.loadUnaligned(as: UInt64.self), low: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
    }
}

enum Grouping {
    static let maxChunks = 64

    /// Whether a group ends after this chunk: one id in eight, or a full group.
    static func endsGroup(_ id: ChunkID, count: Int) -> Bool {
        (id.a & 7) == 0 || count >= maxChunks
    }

    /// Cuts a recipe into groups, calling `body` with each group's entries.
    static func groups(_ entries: [RecipeEntry], _ body: (ArraySlice<RecipeEntry>) throws -> Void) rethrows {
        var start = 0
        for (i, entry) in entries.enumerated() where endsGroup(entry.id, count: i - start + 1) {
            try body(entries[start...i])
            start = i + 1
        }
        if start < entries.count { try body(entries[start...]) }
    }
}

/// Builds the index of a file from its chunks, in order.
struct ChunkIndexBuilder {
    private var top: [UInt8] = []
    private var second: [UInt8] = []
    private var blocks: [UInt8] = []
    private var group: [RecipeEntry] = []
    private var groupBytes = 0
    private(set) var chunkCount = 0
    private(set) var groupCount = 0

    mutating func add(_ entry: RecipeEntry) {
        group.append(entry)
        groupBytes += entry.length
        chunkCount += 1
        if Grouping.endsGroup(entry.id, count: group.count) { closeGroup() }
    }

    private mutating func closeGroup() {
        guard !group.isEmpty else { return }
        let key = GroupKey.of(group[...])
        var count = UInt32(group.count).littleEndian
        withUnsafeBytes(of: &count) { top.append(contentsOf: $0) }
        // A group holds at most 64 chunks of at most `maxSize` bytes: well within 32 bits.
        var bytes = UInt32(groupBytes).littleEndian
        withUnsafeBytes(of: &bytes) { top.append(contentsOf: $0) }
        groupBytes = 0
        withUnsafeBytes(of: key.high) { top.append(contentsOf: $0) }
        withUnsafeBytes(of: key.low) { top.append(contentsOf: $0) }
        second.append(contentsOf: group.encoded())
        groupCount += 1
        group.removeAll(keepingCapacity: true)
    }

    /// The next 4 KiB block of the file (the last may be shorter), in order.
    mutating func addBlock(_ bytes: UnsafeRawBufferPointer) {
        var hash = BlockHash.of(bytes).littleEndian
        withUnsafeBytes(of: &hash) { blocks.append(contentsOf: $0) }
    }

    mutating func finish(parameters: ChunkerParameters, size: Int64, mtime: Int64, sha256: [UInt8]) -> [UInt8] {
        closeGroup()
        precondition(Int64(blocks.count / ChunkIndexHeader.blockHashSize) == (size + 4095) / 4096)
        var hasher = SHA256()
        hasher.update(data: top)
        let header = ChunkIndexHeader(
            parameters: parameters, fileSize: size, modificationTime: mtime, fileSHA256: sha256,
            chunkCount: chunkCount, groupCount: groupCount, topLevelSHA256: Array(hasher.finalize()))
        return header.encoded() + top + second + blocks
    }
}

/// The top level of an index, parsed and checked.
struct ChunkIndexTop {
    var header: ChunkIndexHeader
    var groups: [IndexGroup]
    /// Where each group's entries start in the index file.
    var secondLevelOffsets: [Int64]
    /// Format 2: where each group starts in the file (empty in format 1).
    var fileOffsets: [Int64] = []

    static func parse(header: ChunkIndexHeader, top: [UInt8]) -> ChunkIndexTop? {
        guard top.count == header.topLevelLength else { return nil }
        var hasher = SHA256()
        hasher.update(data: top)
        guard Array(hasher.finalize()) == header.topLevelSHA256 else { return nil }
        var groups: [IndexGroup] = []
        var offsets: [Int64] = []
        var fileOffsets: [Int64] = []
        groups.reserveCapacity(header.groupCount)
        offsets.reserveCapacity(header.groupCount)
        var offset = header.secondLevelOffset
        var total = 0
        var fileOffset: Int64 = 0
        let keyAt = header.hasBlocks ? 8 : 4
        top.withUnsafeBytes { raw in
            for g in 0..<header.groupCount {
                let base = g * header.groupEntrySize
                let count = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt32.self)))
                let key = GroupKey(
                    high: raw.loadUnaligned(fromByteOffset: base + keyAt, as: UInt64.self),
                    low: raw.loadUnaligned(fromByteOffset: base + keyAt + 8, as: UInt64.self))
                var group = IndexGroup(key: key, chunkCount: count)
                if header.hasBlocks {
                    group.byteLength = Int64(
                        UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self)))
                    fileOffsets.append(fileOffset)
                    fileOffset += group.byteLength
                }
                groups.append(group)
                offsets.append(offset)
                offset += Int64(count * RecipeEntry.size)
                total += count
            }
        }
        guard total == header.chunkCount,
            groups.allSatisfy({ $0.chunkCount > 0 && $0.chunkCount <= Grouping.maxChunks }),
            !header.hasBlocks || fileOffset == header.fileSize
        else { return nil }
        return ChunkIndexTop(header: header, groups: groups, secondLevelOffsets: offsets, fileOffsets: fileOffsets)
    }
}

/// The index file next to a source: `URL.standby-index`.
public enum ChunkIndexLocation {
    public static let suffix = ".standby-index"

    public static func index(of source: URL) -> URL {
        source.deletingLastPathComponent().appendingPathComponent(source.lastPathComponent + suffix)
    }
}
