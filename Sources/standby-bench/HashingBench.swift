import ArgumentParser
import Crypto
import Foundation
import StandbyReplication

/// `standby-bench hashing`: what the hashing thread of a whole-file read does to each block,
/// the SHA-256 of every chunk and of the whole stream, with the interleaved SHA-NI kernel
/// against swift-crypto (one chunk hash after the other and the stream hash beside them), and
/// one plain SHA-256 of the data for scale (what `sha256sum` computes). In memory, best of
/// `--rounds`.
struct HashingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hashing",
        abstract: "Chunk ids and the whole-file SHA-256: the interleaved kernel against swift-crypto.")

    @Option(help: "MiB of generated data.")
    var mebibytes = 512

    @Option(help: "Rounds per contender; the best is reported.")
    var rounds = 3

    func run() throws {
        let count = mebibytes << 20
        var random = BenchRandom(state: 0xA5A5)
        var data = [UInt8](repeating: 0, count: count)
        data.withUnsafeMutableBytes { raw in
            for offset in stride(from: 0, to: count - 7, by: 8) {
                raw.storeBytes(of: random.next(), toByteOffset: offset, as: UInt64.self)
            }
        }
        // Blocks of whole chunks, about 2 MiB each, as the read pipeline hands them over.
        var blocks: [(start: Int, ends: [Int])] = []
        var chunker = StreamChunker()
        var blockStart = 0
        var ends: [Int] = []
        var position = 0
        func cut(_ chunk: UnsafeRawBufferPointer) {
            position += chunk.count
            ends.append(position - blockStart)
            if position - blockStart >= 2 << 20 {
                blocks.append((blockStart, ends))
                blockStart = position
                ends = []
            }
        }
        data.withUnsafeBytes { raw in
            chunker.feed(raw, emit: cut)
            chunker.finish(emit: cut)
        }
        if !ends.isEmpty { blocks.append((blockStart, ends)) }
        let chunkCount = blocks.reduce(0) { $0 + $1.ends.count }
        print(
            "\(mebibytes) MiB in \(chunkCount) chunks, \(blocks.count) blocks; SHA extensions: \(StreamHasher.accelerated ? "yes" : "no")"
        )

        func chunksAndStream(accelerated: Bool) -> (Double, [UInt8]) {
            var best = Double.infinity
            var digest: [UInt8] = []
            for _ in 0..<rounds {
                var ids: [ChunkID] = []
                ids.reserveCapacity(chunkCount)
                let start = ContinuousClock.now
                var hasher = StreamHasher(accelerated: accelerated)
                data.withUnsafeBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    for block in blocks {
                        hasher.chunks(base + block.start, ends: block.ends, into: &ids)
                    }
                }
                digest = hasher.finalize()
                best = min(best, seconds(ContinuousClock.now - start))
            }
            return (best, digest)
        }
        var results: [(String, Double)] = []
        if StreamHasher.accelerated {
            let (time, digest) = chunksAndStream(accelerated: true)
            let (_, portable) = chunksAndStream(accelerated: false)
            guard digest == portable else { throw ValidationError("the two hashers disagree on the stream's digest") }
            results.append(("chunk ids + stream, interleaved SHA-NI", time))
        }
        results.append(("chunk ids + stream, swift-crypto", chunksAndStream(accelerated: false).0))
        var plain = Double.infinity
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            _ = data.withUnsafeBytes { SHA256.hash(data: $0) }
            plain = min(plain, seconds(ContinuousClock.now - start))
        }
        results.append(("one SHA-256 of the data (sha256sum's work)", plain))
        let reference = results.first { $0.0.hasSuffix("swift-crypto") }?.1 ?? 1
        for (name, time) in results {
            print(
                "  " + name.padding(toLength: 44, withPad: " ", startingAt: 0)
                    + String(
                        format: "%7.3f s  %5.2f GB/s of input  %.2fx swift-crypto's time", time,
                        Double(count) / time / 1e9, time / reference))
        }
    }
}
