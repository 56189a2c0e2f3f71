import Crypto
import Foundation
import Logging
import StandbyBase
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What `publish` wrote for one file.
public struct PublishedIndex: Sendable, Hashable {
    public var file: String
    public var indexPath: String
    public var fileSize: Int64
    public var modificationTime: Int64
    public var chunkCount: Int
    public var indexBytes: Int64
}

/// `standby publish`: run at the primary beside the backup job, it writes a chunk index next to
/// each backup file so the replicator can fetch only what its store lacks.
public enum Publisher {
    /// Publishes an index for each file in `paths` (a directory: every regular file under it).
    public static func publish(
        paths: [String], parameters: ChunkerParameters = .standard, logger: Logger
    ) async throws -> [PublishedIndex] {
        try await Blocking.run { _ in
            var results: [PublishedIndex] = []
            for path in paths {
                for file in try regularFiles(under: path) {
                    results.append(try publishFile(file, parameters: parameters, logger: logger))
                }
            }
            return results
        }
    }

    /// The regular files at or under `path`, without index files, sorted.
    static func regularFiles(under path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ReplicationError(.notFound, "no such file: \(path)")
        }
        guard isDirectory.boolValue else { return [path] }
        guard let walker = FileManager.default.enumerator(atPath: path) else {
            throw ReplicationError(.storeIO, "cannot list \(path)")
        }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            let full = path + "/" + relative
            var sub: ObjCBool = false
            if FileManager.default.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue,
                !relative.hasSuffix(ChunkIndexLocation.suffix), !relative.contains(".standby-tmp")
            {
                files.append(full)
            }
        }
        return files.sorted()
    }

    /// Chunks and hashes one file and writes `FILE.standby-index` (temp file, fsync, rename).
    /// The file must not change while it is read: size and mtime are compared before and after.
    public static func publishFile(
        _ path: String, parameters: ChunkerParameters = .standard, logger: Logger
    ) throws -> PublishedIndex {
        let before = try LocalFile.of(path)
        let fd = try FileIO.open(path, O_RDONLY)
        defer { close(fd) }
        var chunker = StreamChunker(parameters: parameters)
        var builder = ChunkIndexBuilder()
        var fileHasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: Int64 = 0
        func add(_ chunk: UnsafeRawBufferPointer) {
            builder.add(RecipeEntry(id: ChunkID.of(chunk), length: chunk.count))
        }
        while true {
            let n = try buffer.withUnsafeMutableBytes { try FileIO.preadAll(fd, into: $0, at: total, path: path) }
            if n == 0 { break }
            buffer.withUnsafeBytes { raw in
                let part = UnsafeRawBufferPointer(rebasing: raw[..<n])
                fileHasher.update(bufferPointer: part)
                chunker.feed(part) { add($0) }
                // Reads are whole MiBs until the last: the blocks lie at multiples of 4 KiB.
                for start in stride(from: 0, to: n, by: ChunkIndexHeader.blockSize) {
                    builder.addBlock(
                        UnsafeRawBufferPointer(rebasing: part[start..<min(n, start + ChunkIndexHeader.blockSize)]))
                }
            }
            total += Int64(n)
        }
        chunker.finish { add($0) }
        let after = try LocalFile.of(path)
        guard before == after, total == before.size else {
            throw ReplicationError(
                .sourceChanged, "\(path) changed while it was indexed (size or modification time); publish again")
        }
        let index = builder.finish(
            parameters: parameters, size: total, mtime: before.mtime, sha256: Array(fileHasher.finalize()))
        let indexPath = path + ChunkIndexLocation.suffix
        try index.withUnsafeBytes { try FileIO.writeAtomically($0, to: indexPath) }
        logger.info(
            "Chunk index published",
            metadata: ["file": "\(path)", "chunks": "\(builder.chunkCount)", "indexBytes": "\(index.count)"])
        return PublishedIndex(
            file: path, indexPath: indexPath, fileSize: total, modificationTime: before.mtime,
            chunkCount: builder.chunkCount, indexBytes: Int64(index.count))
    }
}

/// Size and whole-second mtime of a local file: what HTTP Last-Modified, sftp and file:// report.
struct LocalFile: Equatable {
    var size: Int64
    var mtime: Int64

    static func of(_ path: String) throws -> LocalFile {
        let info: stat
        switch FileIO.status(path) {
        case .success(let found): info = found
        case .failure(let error):
            if error.code == ENOENT { throw ReplicationError(.notFound, "no such file: \(path)") }
            throw FileIO.fail("stat", path, errno: error.code)
        }
        return LocalFile(size: Int64(info.st_size), mtime: Int64(info.st_mtim.tv_sec))
    }
}
