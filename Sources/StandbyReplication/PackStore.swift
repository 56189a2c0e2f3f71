import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where a chunk's bytes live: a pack file and the offset of the bytes in it.
struct ChunkLocation: Sendable, Hashable {
    var pack: String
    var offset: Int64
    var length: Int
}

/// Pack files: chunks appended one after another, each record self-describing
/// (`length u32 LE | SHA-256 | bytes`) so a pack left behind by a killed run can be scanned,
/// every record re-hashed, and the valid ones adopted instead of fetched again.
///
/// A pack is written as `NAME.pack.tmp`, and sealed by fsync, rename to `NAME.pack` and an
/// fsync of the directory; only then does the catalog learn its chunks.
enum PackFormat {
    static let magic: [UInt8] = Array("SBYPACK1".utf8)
    static let recordHeader = 36
    /// A pack is sealed once it holds this much, so a kill loses little and GC rewrites little.
    static let targetSize: Int64 = 32 << 20
}

/// The pack being written by a replicate. Not thread-safe: one replicate owns it.
final class PackWriter {
    let directory: String
    let name: String
    let tempPath: String
    let finalPath: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var size: Int64
    /// Bytes already written to the file (the rest of `size` waits in `buffer`).
    private var written: Int64 = 0
    private(set) var chunks: [ChunkID: (offset: Int64, length: Int)] = [:]
    private(set) var order: [ChunkID] = []
    private var closed = false
    /// A write failed (a full disk): what the pack holds on disk is not what `chunks` says.
    private(set) var failed = false
    private var synced = false
    private var renamed = false

    init(directory: String) throws {
        self.directory = directory
        name = String(format: "%016llx", UInt64.random(in: 0...UInt64.max))
        finalPath = directory + "/" + name + ".pack"
        tempPath = finalPath + ".tmp"
        fd = try FileIO.open(tempPath, O_RDWR | O_CREAT | O_EXCL)
        buffer.reserveCapacity(1 << 20)
        buffer.append(contentsOf: PackFormat.magic)
        size = Int64(PackFormat.magic.count)
    }

    deinit {
        if !closed { close(fd) }
    }

    /// Appends a chunk; returns the offset of its bytes. Written through a 1 MiB buffer: a
    /// kill loses at most that much of what was fetched.
    func append(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) throws {
        if chunks[id] != nil { return }
        var length = UInt32(bytes.count).littleEndian
        withUnsafeBytes(of: &length) { buffer.append(contentsOf: $0) }
        id.append(to: &buffer)
        buffer.append(contentsOf: bytes)
        let offset = size + Int64(PackFormat.recordHeader)
        size += Int64(PackFormat.recordHeader + bytes.count)
        chunks[id] = (offset, bytes.count)
        order.append(id)
        if buffer.count >= 1 << 20 { try flush() }
    }

    /// Appends chunks of a block of the stream (`chunks` are their indices in it, `block.ids`
    /// their ids) with one writev from the block's memory: no copy of the bytes on the way.
    func append(_ block: StreamBlock, chunks indices: [Int]) throws {
        guard !indices.isEmpty else { return }
        try flush()
        guard !failed else { throw ReplicationError(.storeIO, "pack \(tempPath) failed an earlier write") }
        var headers = [UInt8](repeating: 0, count: indices.count * PackFormat.recordHeader)
        var vectors: [iovec] = []
        vectors.reserveCapacity(indices.count * 2)
        try headers.withUnsafeMutableBytes { raw in
            guard let headerBase = raw.baseAddress else { return }
            for (n, index) in indices.enumerated() {
                let id = block.ids[index]
                let chunk = block.chunk(index)
                let header = headerBase + n * PackFormat.recordHeader
                header.storeBytes(of: UInt32(chunk.count).littleEndian, as: UInt32.self)
                header.storeBytes(of: id.a, toByteOffset: 4, as: UInt64.self)
                header.storeBytes(of: id.b, toByteOffset: 12, as: UInt64.self)
                header.storeBytes(of: id.c, toByteOffset: 20, as: UInt64.self)
                header.storeBytes(of: id.d, toByteOffset: 28, as: UInt64.self)
                vectors.append(iovec(iov_base: header, iov_len: PackFormat.recordHeader))
                vectors.append(
                    iovec(iov_base: UnsafeMutableRawPointer(mutating: chunk.baseAddress), iov_len: chunk.count))
            }
            do {
                try FileIO.writevAll(fd, &vectors, path: tempPath)
            } catch {
                // Some records may be on disk, torn or whole: the pack is never registered
                // (the replicate deletes it to give the disk its space back).
                failed = true
                throw error
            }
        }
        // Only what is on disk is known to be in the pack.
        for index in indices {
            let id = block.ids[index]
            let length = block.ends[index] - block.start(of: index)
            chunks[id] = (size + Int64(PackFormat.recordHeader), length)
            order.append(id)
            size += Int64(PackFormat.recordHeader + length)
        }
        FileIO.startWriteback(fd, offset: written, length: size - written)
        written = size
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        guard !failed else { throw ReplicationError(.storeIO, "pack \(tempPath) failed an earlier write") }
        do {
            try buffer.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tempPath) }
        } catch {
            failed = true
            throw error
        }
        FileIO.startWriteback(fd, offset: written, length: Int64(buffer.count))
        written += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Reads back a chunk of this pack (the whole-file check of a delta reads old chunks).
    func read(_ id: ChunkID, into out: inout [UInt8]) throws -> Bool {
        guard let (offset, length) = chunks[id] else { return false }
        guard !closed else { throw ReplicationError(.storeIO, "pack \(tempPath) is closed") }
        try flush()
        out = [UInt8](repeating: 0, count: length)
        let got = try out.withUnsafeMutableBytes { try FileIO.preadAll(fd, into: $0, at: offset, path: tempPath) }
        guard got == length else {
            throw ReplicationError(.corruptPack, "pack \(tempPath) is shorter than its chunk \(id)")
        }
        return true
    }

    /// fsync, rename to the final name, fsync the directory.
    func seal() throws {
        try sealFile()
        try FileIO.syncDirectory(directory)
    }

    /// fsync and rename to the final name; the caller fsyncs the directory (once for several
    /// packs) before the catalog learns of them. Called again after a failure (a checkpoint
    /// retried), it does only what is left: the descriptor is never used once closed.
    func sealFile() throws {
        if !synced {
            try flush()
            guard !failed, !closed else {
                throw ReplicationError(.storeIO, "pack \(tempPath) failed an earlier write or was given up")
            }
            try FileIO.fsync(fd, path: tempPath)
            close(fd)
            closed = true
            synced = true
        }
        if !renamed {
            try FileIO.rename(tempPath, finalPath)
            renamed = true
        }
    }

    /// Gives up on the pack (nothing in it was committed); the file stays for recovery.
    func abandon() {
        try? flush()
        if !closed {
            close(fd)
            closed = true
        }
    }
}

/// Reads chunks from sealed packs, keeping a few file descriptors open.
final class PackReader {
    let directory: String
    private var open: [String: Int32] = [:]

    init(directory: String) {
        self.directory = directory
    }

    deinit {
        for fd in open.values { close(fd) }
    }

    func path(_ pack: String) -> String { directory + "/" + pack + ".pack" }

    func descriptor(_ pack: String) throws -> Int32 {
        if let fd = open[pack] { return fd }
        if open.count >= 64, let (name, fd) = open.first {
            close(fd)
            open[name] = nil
        }
        let path = path(pack)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw ReplicationError(.corruptPack, "pack \(path) is missing")
            }
            throw FileIO.fail("open", path, errno: code)
        }
        open[pack] = fd
        return fd
    }

    /// The chunk's bytes, checked against its id.
    func read(_ id: ChunkID, at location: ChunkLocation, verify: Bool = true) throws -> [UInt8] {
        let fd = try descriptor(location.pack)
        var bytes = [UInt8](repeating: 0, count: location.length)
        let got = try bytes.withUnsafeMutableBytes {
            try FileIO.preadAll(fd, into: $0, at: location.offset, path: path(location.pack))
        }
        guard got == location.length else {
            throw ReplicationError(
                .corruptPack, "pack \(path(location.pack)) ends before chunk \(id) (offset \(location.offset))")
        }
        if verify {
            let actual = bytes.withUnsafeBytes { ChunkID.of($0) }
            guard actual == id else {
                throw ReplicationError(
                    .corruptPack,
                    "chunk \(id) in pack \(path(location.pack)) at offset \(location.offset) does not match its hash")
            }
        }
        return bytes
    }

    func forget(_ pack: String) {
        if let fd = open.removeValue(forKey: pack) { close(fd) }
    }
}

/// Scans a pack left behind (a `.tmp` of a killed run, or a sealed pack the catalog never
/// learnt of) and returns its valid records, stopping at the first torn or corrupt one.
/// `validLength` is where the valid prefix ends.
func scanPack(_ path: String) throws -> (records: [(ChunkID, Int64, Int)], validLength: Int64) {
    let fd = try FileIO.open(path, O_RDONLY)
    defer { close(fd) }
    let total = FileIO.size(path) ?? 0
    var magic = [UInt8](repeating: 0, count: PackFormat.magic.count)
    let got = try magic.withUnsafeMutableBytes { try FileIO.preadAll(fd, into: $0, at: 0, path: path) }
    guard got == magic.count, magic == PackFormat.magic else { return ([], 0) }
    var records: [(ChunkID, Int64, Int)] = []
    var offset = Int64(magic.count)
    var header = [UInt8](repeating: 0, count: PackFormat.recordHeader)
    var data: [UInt8] = []
    while offset + Int64(PackFormat.recordHeader) <= total {
        let n = try header.withUnsafeMutableBytes { try FileIO.preadAll(fd, into: $0, at: offset, path: path) }
        guard n == PackFormat.recordHeader else { break }
        let (length, id) = header.withUnsafeBytes {
            (Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))), ChunkID(bytes: $0, at: 4))
        }
        let dataOffset = offset + Int64(PackFormat.recordHeader)
        guard length > 0, length <= 16 << 20, dataOffset + Int64(length) <= total else { break }
        data = [UInt8](repeating: 0, count: length)
        let read = try data.withUnsafeMutableBytes { try FileIO.preadAll(fd, into: $0, at: dataOffset, path: path) }
        guard read == length, data.withUnsafeBytes({ ChunkID.of($0) }) == id else { break }
        records.append((id, dataOffset, length))
        offset = dataOffset + Int64(length)
    }
    return (records, offset)
}
