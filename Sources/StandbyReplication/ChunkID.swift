import Crypto
import Foundation

/// The SHA-256 of a chunk's bytes: its name in the store.
public struct ChunkID: Hashable, Sendable, CustomStringConvertible {
    // Four words hash and compare faster than 32 separate bytes.
    var a: UInt64
    var b: UInt64
    var c: UInt64
    var d: UInt64

    init(a: UInt64, b: UInt64, c: UInt64, d: UInt64) {
        (self.a, self.b, self.c, self.d) = (a, b, c, d)
    }

    /// Reads 32 bytes at `offset` of `buffer` (which must hold them).
    init(bytes buffer: UnsafeRawBufferPointer, at offset: Int = 0) {
        a = buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        b = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
        c = buffer.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)
        d = buffer.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self)
    }

    init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        let array = Array(bytes)
        self = array.withUnsafeBytes { ChunkID(bytes: $0) }
    }

    /// The id in a catalog blob; nil unless it holds 32 bytes.
    init?(data: Data) {
        guard data.count == 32 else { return nil }
        self = data.withUnsafeBytes { ChunkID(bytes: $0) }
    }

    init(digest: SHA256.Digest) {
        self = digest.withUnsafeBytes { ChunkID(bytes: $0) }
    }

    /// Whether a ChunkID's memory is its digest's 32 bytes in order (four words, no padding),
    /// as the code that writes digests into ids or binds ids from memory relies on.
    static let isDigestInMemory = MemoryLayout<ChunkID>.size == 32 && MemoryLayout<ChunkID>.stride == 32

    /// The SHA-256 of `bytes`.
    static func of(_ bytes: UnsafeRawBufferPointer) -> ChunkID {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        return ChunkID(digest: hasher.finalize())
    }

    /// Whether `self` sorts before `other` as the catalog's blob keys do (byte by byte).
    func precedesInKeyOrder(_ other: ChunkID) -> Bool {
        // The words hold the bytes in memory order; byte-swapped, they compare as the bytes do.
        let (x, y) = (
            (a.bigEndian, b.bigEndian, c.bigEndian, d.bigEndian),
            (other.a.bigEndian, other.b.bigEndian, other.c.bigEndian, other.d.bigEndian)
        )
        return x < y
    }

    var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: a, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: b, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: c, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: d, toByteOffset: 24, as: UInt64.self)
        }
        return out
    }

    /// The 32 bytes as `Data`, as the catalog stores them.
    var data: Data {
        var words = (a, b, c, d)
        return Swift.withUnsafeBytes(of: &words) { Data($0) }
    }

    func append(to out: inout [UInt8]) {
        withUnsafeBytes(of: a) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: b) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: c) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: d) { out.append(contentsOf: $0) }
    }

    public var hex: String { bytes.map { String(format: "%02x", $0) }.joined() }
    public var description: String { String(hex.prefix(16)) }
}

extension SHA256.Digest {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
    var bytes: [UInt8] { Array(self) }
}
