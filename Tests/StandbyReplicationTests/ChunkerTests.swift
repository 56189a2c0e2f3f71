import Foundation
import Testing

@testable import StandbyReplication

@Suite struct ChunkerTests {
    func chunks(_ data: [UInt8], pieces: Int) -> [Int] {
        var chunker = StreamChunker()
        var sizes: [Int] = []
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = min(pieces, raw.count - offset)
                chunker.feed(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])) { sizes.append($0.count) }
                offset += n
            }
        }
        chunker.finish { sizes.append($0.count) }
        return sizes
    }

    @Test func cutPointsDoNotDependOnHowBytesArrive() {
        var random = TestRandom(state: 7)
        let data = random.bytes(3 << 20)
        let whole = chunks(data, pieces: data.count)
        #expect(chunks(data, pieces: 16_384) == whole)
        #expect(chunks(data, pieces: 1_000) == whole)
        #expect(whole.reduce(0, +) == data.count)
        let p = ChunkerParameters.standard
        #expect(whole.dropLast().allSatisfy { $0 >= p.minSize && $0 <= p.maxSize })
        let average = data.count / whole.count
        #expect(average > 6_000 && average < 14_000, "average chunk \(average)")
    }

    @Test func aChangeInTheMiddleChangesOnlyNearbyChunks() {
        var random = TestRandom(state: 9)
        var data = random.bytes(2 << 20)
        func ids(_ bytes: [UInt8]) -> [ChunkID] {
            var chunker = StreamChunker()
            var out: [ChunkID] = []
            bytes.withUnsafeBytes { raw in chunker.feed(raw) { out.append(ChunkID.of($0)) } }
            chunker.finish { out.append(ChunkID.of($0)) }
            return out
        }
        let before = Set(ids(data))
        for i in 1_000_000..<1_008_192 { data[i] ^= 0x5A }
        let after = ids(data)
        let fresh = after.filter { !before.contains($0) }
        #expect(fresh.count <= 4, "\(fresh.count) new chunks for one rewritten page")
        // Inserting bytes shifts offsets, but cut points resynchronise.
        data.insert(contentsOf: [1, 2, 3], at: 500_000)
        let shifted = ids(data).filter { !before.contains($0) }
        #expect(shifted.count <= 8)
    }

    @Test func indexHeaderRoundTripsAndRejectsDamage() {
        var builder = ChunkIndexBuilder()
        var random = TestRandom(state: 3)
        for _ in 0..<100 {
            let bytes = random.bytes(32)
            builder.add(RecipeEntry(id: ChunkID(bytes: bytes) ?? ChunkID(a: 0, b: 0, c: 0, d: 0), length: 8192))
        }
        let block = random.bytes(4096)
        for _ in 0..<200 { block.withUnsafeBytes { builder.addBlock($0) } }
        var index = builder.finish(parameters: .standard, size: 819_200, mtime: 42, sha256: random.bytes(32))
        let header = ChunkIndexHeader.decode(Array(index.prefix(128)))
        #expect(header?.chunkCount == 100)
        #expect(header?.fileSize == 819_200)
        #expect(header?.modificationTime == 42)
        if let header {
            #expect(header.format == 2)
            #expect(Int64(index.count) == header.indexSize)
            let top = Array(index[128..<(128 + header.groupCount * 24)])
            let parsed = ChunkIndexTop.parse(header: header, top: top)
            #expect(parsed?.groups.count == header.groupCount)
            #expect(parsed?.groups.reduce(0) { $0 + $1.byteLength } == 819_200)
        }
        index[30] ^= 1
        #expect(ChunkIndexHeader.decode(Array(index.prefix(128))) == nil)
    }
}
