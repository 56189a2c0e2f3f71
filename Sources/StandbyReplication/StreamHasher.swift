import CHash
import Crypto

/// The SHA-256 of a stream fed in order, and of each chunk cut from it: with the CPU's SHA
/// extensions where it has them, the chunk and the stream hashed as two interleaved streams
/// (one SHA-256 is bound by the latency of its rounds; a second one runs in its gaps), with
/// swift-crypto otherwise.
public struct StreamHasher {
    /// Whether this CPU runs the interleaved kernel.
    public static let accelerated = standby_sha256_available() != 0

    private var fast = standby_sha256()
    private var portable: SHA256?

    /// `accelerated: false` uses swift-crypto even where the SHA extensions are there (tests).
    public init(accelerated: Bool = StreamHasher.accelerated) {
        if accelerated {
            precondition(Self.accelerated, "this CPU has no SHA extensions")
            standby_sha256_init(&fast)
        } else {
            portable = SHA256()
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if portable != nil {
            portable?.update(bufferPointer: bytes)
        } else if let base = bytes.baseAddress {
            standby_sha256_update(&fast, base, bytes.count)
        }
    }

    /// Feeds the chunks of `bytes` (chunk i ends at `ends[i]`, the first starts at 0; the last
    /// end is where the fed bytes stop) and appends each chunk's id to `ids`.
    public mutating func chunks(_ bytes: UnsafeRawPointer, ends: [Int], into ids: inout [ChunkID]) {
        guard !ends.isEmpty else { return }
        if portable != nil {
            var start = 0
            for end in ends {
                let chunk = UnsafeRawBufferPointer(start: bytes + start, count: end - start)
                ids.append(ChunkID.of(chunk))
                portable?.update(bufferPointer: chunk)
                start = end
            }
            return
        }
        // The digests are written straight into the ids: a ChunkID is the digest's 32 bytes.
        precondition(ChunkID.isDigestInMemory)
        let first = ids.count
        ids.append(contentsOf: repeatElement(ChunkID(a: 0, b: 0, c: 0, d: 0), count: ends.count))
        ids.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            ends.withUnsafeBufferPointer { ends in
                let digests = (base + first * 32).assumingMemoryBound(to: UInt8.self)
                standby_sha256_chunks(
                    &fast, bytes.assumingMemoryBound(to: UInt8.self), ends.baseAddress, ends.count, digests)
            }
        }
    }

    public mutating func finalize() -> [UInt8] {
        if let portable { return Array(portable.finalize()) }
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBufferPointer { standby_sha256_final(&fast, $0.baseAddress) }
        return digest
    }
}
