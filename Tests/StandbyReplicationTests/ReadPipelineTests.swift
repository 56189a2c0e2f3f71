import Crypto
import Foundation
import Testing

@testable import StandbyReplication

/// The fast paths cut and hash exactly as the plain definitions do: an index published with
/// `StreamChunker` must match what `replicate` stores through the pipeline.
@Suite struct ReadPipelineTests {
    /// The Gear cut as FastCDC defines it, one byte at a time.
    func referenceCut(_ data: ArraySlice<UInt8>, _ p: ChunkerParameters, final: Bool) -> Int? {
        let count = data.count
        if count <= p.minSize { return final ? count : nil }
        if count < p.maxSize && !final { return nil }
        let limit = min(count, p.maxSize)
        let normal = min(limit, p.averageSize)
        var hash: UInt64 = 0
        let base = data.startIndex
        for i in p.minSize..<limit {
            hash = (hash << 1) &+ Gear.table[Int(data[base + i])]
            if hash & (i < normal ? p.strictMask : p.looseMask) == 0 { return i + 1 }
        }
        return limit
    }

    func referenceChunks(_ data: [UInt8], _ p: ChunkerParameters) -> [Int] {
        var sizes: [Int] = []
        var start = 0
        while start < data.count {
            let length = referenceCut(data[start...], p, final: true)!
            sizes.append(length)
            start += length
        }
        return sizes
    }

    /// Where two lists of chunk sizes first differ (nil when equal), short enough to print.
    func firstDifference(_ a: [Int], _ b: [Int]) -> String? {
        if a == b { return nil }
        let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        let at = a.prefix(i).reduce(0, +)
        return "chunk \(i) at offset \(at): \(i < a.count ? a[i] : -1) against \(i < b.count ? b[i] : -1) bytes"
    }

    func pipelineChunks(_ data: [UInt8], _ p: ChunkerParameters, pieces: Int) throws -> (sizes: [Int], sha: [UInt8]) {
        let pipeline = ReadPipeline(parameters: p)
        let source = data
        pipeline.start { sink in
            try source.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = min(pieces, raw.count - offset)
                    try sink(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]))
                    offset += n
                }
            }
        }
        var sizes: [Int] = []
        var joined: [UInt8] = []
        while let block = try pipeline.next() {
            for i in 0..<block.chunkCount { sizes.append(block.chunk(i).count) }
            #expect(block.ids == (0..<block.chunkCount).map { ChunkID.of(block.chunk($0)) })
            joined.append(contentsOf: block.bytes)
            pipeline.release(block)
        }
        let outcome = try pipeline.join()
        #expect(joined == data, "the blocks hand over the stream's bytes in order, each once")
        #expect(outcome.bytes == Int64(data.count))
        return (sizes, outcome.sha256)
    }

    /// Random bytes with long runs of zeros and of one repeated byte, where masks are hit or
    /// never hit for a long stretch (so max-size cuts happen too).
    func mixedData(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = TestRandom(state: seed)
        var data = random.bytes(count)
        var at = 0
        while at < count {
            let run = Int(random.next() % 150_000)
            let fill: UInt8 = random.next() % 2 == 0 ? 0 : 0xA5
            for i in at..<min(count, at + run) { data[i] = fill }
            at += run + Int(random.next() % 400_000)
        }
        return data
    }

    @Test(arguments: [
        ChunkerParameters.standard, ChunkerParameters(minSize: 512, averageSize: 2048, maxSize: 8192),
        ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536),
    ])
    func gearCutMatchesTheByteAtATimeDefinition(parameters: ChunkerParameters) {
        let data = mixedData(3 << 20, seed: 11)
        var start = 0
        var fast: [Int] = []
        data.withUnsafeBytes { raw in
            Gear.table.withUnsafeBufferPointer { table in
                while start < raw.count {
                    let rest = UnsafeRawBufferPointer(rebasing: raw[start...])
                    let length = Gear.cut(rest, parameters: parameters, table: table, final: true)!
                    fast.append(length)
                    start += length
                }
            }
        }
        let reference = referenceChunks(data, parameters)
        #expect(firstDifference(fast, reference) == nil)
        #expect(reference.count > 100)
        #expect(reference.contains(parameters.maxSize), "the data has runs that end in max-size cuts")
    }

    @Test(arguments: [
        ChunkerParameters.standard, ChunkerParameters(minSize: 512, averageSize: 2048, maxSize: 8192),
        ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536),
    ])
    func streamChunkerCutsAsTheByteAtATimeDefinition(parameters: ChunkerParameters) {
        let data = mixedData(2 << 20, seed: 17)
        var chunker = StreamChunker(parameters: parameters)
        var sizes: [Int] = []
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = min(10_000, raw.count - offset)
                chunker.feed(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])) { sizes.append($0.count) }
                offset += n
            }
        }
        chunker.finish { sizes.append($0.count) }
        #expect(firstDifference(sizes, referenceChunks(data, parameters)) == nil)
    }

    @Test(arguments: [1, 1000, 65_536, 3 << 20])
    func pipelineCutsAndHashesAsTheStreamChunker(pieces: Int) throws {
        // Over four blocks, so chunks cut short by a block's end move on to the next.
        let data = mixedData(9 << 20 + 12_345, seed: 5)
        var chunker = StreamChunker()
        var sizes: [Int] = []
        data.withUnsafeBytes { raw in chunker.feed(raw) { sizes.append($0.count) } }
        chunker.finish { sizes.append($0.count) }
        let piped = try pipelineChunks(data, .standard, pieces: pieces)
        #expect(firstDifference(piped.sizes, sizes) == nil)
        #expect(piped.sha == Array(SHA256.hash(data: data)))
    }

    @Test(arguments: [0, 1, 2048, 2049, 2 << 20])
    func pipelineHandlesTinyAndBlockSizedSources(size: Int) throws {
        var random = TestRandom(state: 3)
        let data = random.bytes(size)
        let piped = try pipelineChunks(data, .standard, pieces: 4096)
        #expect(piped.sizes == referenceChunks(data, .standard))
        #expect(piped.sha == Array(SHA256.hash(data: data)))
    }

    @Test func aFailingTransferReachesTheCallerAndStopsTheThreads() throws {
        struct Broken: Error {}
        let pipeline = ReadPipeline(parameters: .standard)
        pipeline.start { sink in
            let bytes = [UInt8](repeating: 7, count: 5 << 20)
            try bytes.withUnsafeBytes { try sink($0) }
            throw Broken()
        }
        var failure: (any Error)?
        do {
            while let block = try pipeline.next() { pipeline.release(block) }
        } catch {
            failure = error
        }
        #expect(failure is Broken)
        #expect(throws: Broken.self) { try pipeline.join() }
    }

    @Test func theCallerStoppingEndsAnEndlessTransfer() throws {
        let pipeline = ReadPipeline(parameters: .standard)
        pipeline.start { sink in
            let bytes = [UInt8](repeating: 1, count: 1 << 20)
            while true { try bytes.withUnsafeBytes { try sink($0) } }
        }
        let first = try #require(try pipeline.next())
        pipeline.release(first)
        pipeline.abort()
        // The transfer sees the stop at its next block and the threads end.
        #expect(throws: (any Error).self) { try pipeline.join() }
    }

    @Test func fileHasherHashesPiecesInOrder() throws {
        var random = TestRandom(state: 21)
        let data = random.bytes(7 << 20 + 99)
        let hasher = FileHasher(packDirectory: "/nonexistent")
        try data.withUnsafeBytes { raw in
            var at = 0
            var size = 1
            while at < raw.count {
                let n = min(size, raw.count - at)
                if size % 2 == 0 {
                    let room = try hasher.reserve(n)
                    room.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]))
                    hasher.commit(n)
                } else {
                    try hasher.update(UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]))
                }
                at += n
                size = size * 3 % 70_001 + 1
            }
        }
        #expect(try hasher.finalize() == Array(SHA256.hash(data: data)))
    }
}
