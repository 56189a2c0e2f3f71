import Foundation
import StandbyLab
import Testing

@testable import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Packs written through staging buffers and the writing thread, with O_DIRECT (the lab's
/// directory) and without (a ramfs, which refuses it): every chunk reads back the same while
/// the pack is written (from the file or from the staging buffer) and after the seal, and the
/// sealed file is exactly its records, as a recovery scan sees them.
@Suite(.serialized) struct PackWriterTests {
    /// Chunks of varied lengths, some longer than a staging buffer, so that records straddle
    /// buffer boundaries.
    func chunks() -> [[UInt8]] {
        var random = TestRandom(state: 0x9ACC)
        var lengths = (0..<300).map { _ in 1 + Int(random.next() % 20_000) }
        lengths[17] = PackIO.bufferSize + 12_345
        lengths[200] = 3 * PackIO.alignment
        return lengths.map { random.bytes($0) }
    }

    func roundTrip(in directory: String, direct: Bool) throws {
        let io = PackIO()
        defer { io.stop() }
        let writer = try PackWriter(directory: directory, io: io)
        #expect(writer.writesDirect == direct)
        let all = chunks()
        var ids: [ChunkID] = []
        for (n, bytes) in all.enumerated() {
            let id = bytes.withUnsafeBytes { ChunkID.of($0) }
            ids.append(id)
            try bytes.withUnsafeBytes { try writer.append(id, $0) }
            if n % 50 == 49 {
                // Read back while the pack grows: early chunks are on disk, the last in the
                // staging buffer, some in between.
                for k in [0, n / 2, n - 1, n] {
                    var out: [UInt8] = []
                    #expect(try writer.read(ids[k], into: &out))
                    #expect(out == all[k], "chunk \(k) read back after \(n + 1) appends")
                }
            }
        }
        writer.finish()
        var out: [UInt8] = []
        #expect(try writer.read(ids[299], into: &out) && out == all[299])
        try writer.seal()

        let expectedSize = PackFormat.magic.count + all.reduce(0) { $0 + PackFormat.recordHeader + $1.count }
        #expect(writer.size == Int64(expectedSize))
        #expect(FileIO.size(writer.finalPath) == Int64(expectedSize), "the padding of the last write is cut off")
        #expect(!FileManager.default.fileExists(atPath: writer.tempPath))
        let scan = try scanPack(writer.finalPath)
        #expect(scan.records.count == all.count)
        #expect(scan.validLength == Int64(expectedSize))
        let reader = PackReader(directory: directory)
        for (n, record) in scan.records.enumerated() {
            #expect(record.0 == ids[n])
            let location = ChunkLocation(pack: writer.name, offset: record.1, length: record.2)
            #expect(try reader.read(ids[n], at: location) == all[n])
        }
    }

    @Test func directWritesReadBackAndSealExactly() throws {
        let lab = try LabDirectory(prefix: "standby-pack-direct")
        defer { lab.remove() }
        try roundTrip(in: try lab.directory("packs"), direct: true)
    }

    @Test func bufferedWritesWhereODirectIsRefused() throws {
        let lab = try LabDirectory(prefix: "standby-pack-buffered")
        defer { lab.remove() }
        let ramfs = try SmallFilesystem.mountWithoutDirectIO(at: lab.file("ramfs"))
        defer { ramfs.unmount() }
        // The premise: this filesystem does refuse O_DIRECT.
        let probe = ramfs.path + "/probe"
        let fd = open(probe, O_RDWR | O_CREAT | O_CLOEXEC | PackIO.directFlag, 0o644)
        #expect(fd < 0 && errno == EINVAL)
        if fd >= 0 { close(fd) }
        try roundTrip(in: ramfs.path, direct: false)
    }
}
