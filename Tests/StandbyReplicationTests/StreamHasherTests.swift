import Crypto
import Foundation
import Testing

@testable import StandbyReplication

/// The interleaved SHA-NI kernel gives swift-crypto's digests: for every message length around
/// the block and padding boundaries, fed in pieces that split blocks anywhere, and for runs of
/// chunks of every length class fed after a stream that holds part of a block.
@Suite struct StreamHasherTests {
    func reference(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        Array(bytes.withUnsafeBytes { SHA256.hash(data: $0) })
    }

    /// The modes this machine can run: the portable one always, the kernel where the CPU has it.
    static var modes: [Bool] { StreamHasher.accelerated ? [false, true] : [false] }

    @Test(arguments: modes) func wholeMessagesFedInPieces(accelerated: Bool) {
        var random = TestRandom(state: 0x5A17)
        let data = random.bytes(4096 + 200)
        for length in 0...(4096 + 200) {
            var hasher = StreamHasher(accelerated: accelerated)
            let cut = length == 0 ? 0 : Int(random.next() % UInt64(length + 1))
            data.withUnsafeBytes { raw in
                hasher.update(UnsafeRawBufferPointer(rebasing: raw[0..<cut]))
                hasher.update(UnsafeRawBufferPointer(rebasing: raw[cut..<length]))
            }
            let digest = hasher.finalize()
            #expect(digest == reference(data[0..<length]), "length \(length), split at \(cut)")
            if digest != reference(data[0..<length]) { return }
        }
    }

    @Test(arguments: modes) func chunkRunsAndTheStreamAroundThem(accelerated: Bool) {
        var random = TestRandom(state: 0xC4A1)
        let data = random.bytes(1 << 20)
        for trial in 0..<400 {
            // Short chunks (under a block, across the padding boundary) and long ones.
            let longest: UInt64 = trial % 3 == 0 ? 130 : (trial % 3 == 1 ? 2_000 : 40_000)
            var ends: [Int] = []
            var at = 0
            let count = 1 + Int(random.next() % 24)
            for _ in 0..<count {
                at += 1 + Int(random.next() % longest)
                ends.append(at)
            }
            let before = Int(random.next() % 300)
            let after = Int(random.next() % 150)
            guard before + at + after <= data.count else { continue }
            var hasher = StreamHasher(accelerated: accelerated)
            var ids: [ChunkID] = [ChunkID.of(UnsafeRawBufferPointer(start: nil, count: 0))]
            data.withUnsafeBytes { raw in
                hasher.update(UnsafeRawBufferPointer(rebasing: raw[0..<before]))
                hasher.chunks(raw.baseAddress! + before, ends: ends, into: &ids)
                hasher.update(UnsafeRawBufferPointer(rebasing: raw[(before + at)..<(before + at + after)]))
            }
            var expected: [ChunkID] = [ChunkID.of(UnsafeRawBufferPointer(start: nil, count: 0))]
            var start = before
            for end in ends {
                expected.append(
                    data.withUnsafeBytes { ChunkID.of(UnsafeRawBufferPointer(rebasing: $0[start..<(before + end)])) })
                start = before + end
            }
            #expect(ids == expected, "trial \(trial): chunk ids, ids already held kept")
            #expect(
                hasher.finalize() == reference(data[0..<(before + at + after)]), "trial \(trial): the stream's digest")
        }
    }

    @Test func aRunWithNoChunksChangesNothing() {
        var hasher = StreamHasher()
        var ids: [ChunkID] = []
        let byte: [UInt8] = [7]
        byte.withUnsafeBytes { hasher.chunks($0.baseAddress!, ends: [], into: &ids) }
        #expect(ids.isEmpty)
        #expect(hasher.finalize() == reference([][...]))
    }
}
