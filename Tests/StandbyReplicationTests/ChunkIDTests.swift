import Testing

@testable import StandbyReplication

/// Chunk rows are inserted in the catalog's key order, which is the blobs' byte order.
@Suite struct ChunkIDTests {
    @Test func keyOrderIsTheOrderOfTheBytes() {
        var random = TestRandom(state: 0x1D0)
        var ids: [ChunkID] = []
        for n in 0..<2_000 {
            var bytes = random.bytes(32)
            // Ids sharing a prefix, so that later words decide too.
            if n % 4 == 0, let last = ids.last {
                bytes.replaceSubrange(0..<(8 * (n % 3 + 1)), with: last.bytes[0..<(8 * (n % 3 + 1))])
            }
            ids.append(ChunkID(bytes: bytes)!)
        }
        let byKey = ids.sorted { $0.precedesInKeyOrder($1) }.map(\.bytes)
        let byBytes = ids.map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) }
        #expect(byKey == byBytes)
    }
}
