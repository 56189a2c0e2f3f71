import Crypto
import Foundation
import StandbyLab
import Testing

@testable import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The day-2 file hasher gives the SHA-256 of the file it is handed piece by piece: bytes
/// copied in (short fetched runs between stored ones, and runs longer than a block) and runs
/// of chunks read back from a sealed pack, the record headers between them skipped; many
/// more pieces than a block holds. A pack shorter than the catalog says is an error naming it.
@Suite struct FileHasherTests {
    func sealedPack(in directory: String, chunks: [[UInt8]]) throws -> (PackWriter, [ChunkID]) {
        let io = PackIO()
        defer { io.stop() }
        let writer = try PackWriter(directory: directory, io: io)
        var ids: [ChunkID] = []
        for bytes in chunks {
            let id = bytes.withUnsafeBytes { ChunkID.of($0) }
            ids.append(id)
            try bytes.withUnsafeBytes { try writer.append(id, $0) }
        }
        writer.finish()
        try writer.seal()
        return (writer, ids)
    }

    /// With O_DIRECT reads (the lab's directory) and with buffered ones (a ramfs refuses
    /// O_DIRECT).
    @Test(arguments: [true, false]) func storedRunsAndCopiedBytesHashAsTheFile(direct: Bool) throws {
        let lab = try LabDirectory(prefix: "standby-file-hasher")
        defer { lab.remove() }
        let ramfs = direct ? nil : try SmallFilesystem.mountWithoutDirectIO(at: lab.file("ramfs"))
        defer { ramfs?.unmount() }
        let packs = try ramfs.map { $0.path } ?? lab.directory("packs")
        var random = TestRandom(state: 0xF11E)
        let stored = (0..<200).map { _ in random.bytes(1 + Int(random.next() % 12_000)) }
        let (pack, ids) = try sealedPack(in: packs, chunks: stored)

        let hasher = FileHasher(packDirectory: packs)
        var file: [UInt8] = []
        var next = 0
        var step = 0
        while next < stored.count {
            // A run of 1-5 chunks that follow each other in the pack, then some bytes handed
            // over: a few, a whole block's worth and more, or none.
            let run = min(1 + Int(random.next() % 5), stored.count - next)
            let first = try #require(pack.chunks[ids[next]])
            var segments: [(start: Int, length: Int)] = []
            for k in next..<(next + run) {
                let location = try #require(pack.chunks[ids[k]])
                segments.append((Int(location.offset - first.offset), location.length))
                file.append(contentsOf: stored[k])
            }
            let span = segments.last.map { $0.start + $0.length } ?? 0
            try hasher.stored(pack: pack.name, offset: first.offset, span: span, segments: segments)
            next += run
            let handed: Int
            switch step % 4 {
            case 0: handed = 1 + Int(random.next() % 300)
            case 1: handed = step % 8 == 1 ? FileHasher.blockSize + 777 : 9_000
            case 2: handed = 0
            default: handed = 64
            }
            let bytes = random.bytes(handed)
            try bytes.withUnsafeBytes { try hasher.update($0) }
            file.append(contentsOf: bytes)
            step += 1
        }
        #expect(step > 3 * FileHasher.piecesPerBlock, "the pieces fill several blocks")
        let digest = try hasher.finalize()
        #expect(digest == Array(SHA256.hash(data: file)))
    }

    @Test func aPackShorterThanItsChunksIsNamed() throws {
        let lab = try LabDirectory(prefix: "standby-file-hasher-short")
        defer { lab.remove() }
        let packs = try lab.directory("packs")
        var random = TestRandom(state: 0x5407)
        let (pack, ids) = try sealedPack(in: packs, chunks: (0..<4).map { _ in random.bytes(5_000) })
        let last = try #require(pack.chunks[ids[3]])
        #expect(truncate(pack.finalPath, off_t(last.offset + 100)) == 0)

        let hasher = FileHasher(packDirectory: packs)
        let first = try #require(pack.chunks[ids[0]])
        let span = Int(last.offset - first.offset) + last.length
        var failure: (any Error)?
        do {
            try hasher.stored(pack: pack.name, offset: first.offset, span: span, segments: [(0, span)])
            _ = try hasher.finalize()
        } catch {
            failure = error
        }
        let error = try #require(failure as? ReplicationError)
        #expect(error.code == .corruptPack)
        #expect(error.message.contains(pack.finalPath))
    }
}
