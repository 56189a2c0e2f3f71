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

/// The pack being written by a replicate (or a retention pass). Not thread-safe: one owner.
///
/// Records are copied into a staging buffer of `PackIO.bufferSize` bytes; each full buffer is
/// written by the `PackIO` thread (with O_DIRECT where the filesystem allows it) while the next
/// one fills. `finish` writes the last, partial buffer padded to the alignment; `sealFile`
/// waits for the writes, cuts the padding off, fsyncs and renames. A write that fails (a full
/// disk) fails the pack: it is never registered, and the appends and the seal that follow throw.
final class PackWriter {
    let directory: String
    let name: String
    let tempPath: String
    let finalPath: String
    private let fd: Int32
    private let io: PackIO
    private let state = PackWriteState()
    /// Where records are copied; it starts at file offset `stagingStart` (aligned).
    private var staging: IOBuffer?
    private var stagingStart: Int64 = 0
    private var stagingFill = 0
    /// A descriptor for reading back (direct I/O would want aligned reads); opened on demand.
    private var readFD: Int32 = -1
    private(set) var size: Int64
    private(set) var chunks: [ChunkID: (offset: Int64, length: Int)] = [:]
    private(set) var order: [ChunkID] = []
    private var finishing = false
    private var closed = false
    private var synced = false
    private var renamed = false

    /// A write failed (a full disk): what the pack holds on disk is not what `chunks` says.
    var failed: Bool { state.error != nil }

    /// Whether the pack is written with O_DIRECT (until sealed).
    var writesDirect: Bool { !closed && PackIO.isDirect(fd) }

    init(directory: String, io: PackIO) throws {
        self.directory = directory
        self.io = io
        name = String(format: "%016llx", UInt64.random(in: 0...UInt64.max))
        finalPath = directory + "/" + name + ".pack"
        tempPath = finalPath + ".tmp"
        fd = try PackIO.create(tempPath)
        size = 0
        try PackFormat.magic.withUnsafeBytes { try put($0) }
        size = Int64(PackFormat.magic.count)
    }

    deinit {
        // Queued writes use the descriptor: they end before it is closed.
        _ = state.drain()
        if let staging { io.recycle(staging) }
        closeDescriptors()
    }

    private func closeDescriptors() {
        if !closed {
            close(fd)
            closed = true
        }
        if readFD >= 0 {
            close(readFD)
            readFD = -1
        }
    }

    /// Appends a chunk (once: a chunk already in the pack is not appended again).
    func append(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) throws {
        if chunks[id] != nil { return }
        try appendRecord(id, bytes)
    }

    /// Appends chunks of a block of the stream (`chunks` are their indices in it, `block.ids`
    /// their ids).
    func append(_ block: StreamBlock, chunks indices: [Int]) throws {
        for index in indices {
            try appendRecord(block.ids[index], block.chunk(index))
        }
    }

    private func appendRecord(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) throws {
        // The failed write's own error (a full disk is `storeFull`).
        if let error = state.error { throw error }
        precondition(!finishing, "append to a finished pack")
        try withUnsafeTemporaryAllocation(byteCount: PackFormat.recordHeader, alignment: 8) { header in
            header.storeBytes(of: UInt32(bytes.count).littleEndian, as: UInt32.self)
            header.storeBytes(of: id.a, toByteOffset: 4, as: UInt64.self)
            header.storeBytes(of: id.b, toByteOffset: 12, as: UInt64.self)
            header.storeBytes(of: id.c, toByteOffset: 20, as: UInt64.self)
            header.storeBytes(of: id.d, toByteOffset: 28, as: UInt64.self)
            try put(UnsafeRawBufferPointer(header))
        }
        try put(bytes)
        chunks[id] = (size + Int64(PackFormat.recordHeader), bytes.count)
        order.append(id)
        size += Int64(PackFormat.recordHeader + bytes.count)
    }

    /// Copies bytes to the end of the pack, queueing each staging buffer as it fills.
    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            let buffer: IOBuffer
            if let staging {
                buffer = staging
            } else {
                buffer = try io.buffer()
                staging = buffer
            }
            let take = min(rest.count, buffer.capacity - stagingFill)
            (buffer.base + stagingFill).copyMemory(from: rest.baseAddress.unsafelyUnwrapped, byteCount: take)
            stagingFill += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if stagingFill == buffer.capacity { queueStaging(length: buffer.capacity) }
        }
    }

    private func queueStaging(length: Int) {
        guard let buffer = staging else { return }
        staging = nil
        io.write(
            PackIO.Job(fd: fd, path: tempPath, buffer: buffer, offset: stagingStart, length: length, state: state))
        stagingStart += Int64(buffer.capacity)
        stagingFill = 0
    }

    /// No more appends: the last bytes are queued (padded with zeros to the alignment; the
    /// seal cuts the padding off). Failures show at the seal.
    func finish() {
        guard !finishing else { return }
        finishing = true
        guard let buffer = staging, stagingFill > 0 else { return }
        let padded = (stagingFill + PackIO.alignment - 1) / PackIO.alignment * PackIO.alignment
        (buffer.base + stagingFill).initializeMemory(as: UInt8.self, repeating: 0, count: padded - stagingFill)
        queueStaging(length: padded)
    }

    /// Reads back a chunk of this pack (the whole-file check of a delta reads old chunks): what
    /// was written from the file, what still waits in the staging buffer from there.
    func read(_ id: ChunkID, into out: inout [UInt8]) throws -> Bool {
        guard let (offset, length) = chunks[id] else { return false }
        guard !closed else { throw ReplicationError(.storeIO, "pack \(tempPath) is closed") }
        if let error = state.error { throw error }
        out = [UInt8](repeating: 0, count: length)
        let onDisk = Int(max(0, min(Int64(length), stagingStart - offset)))
        if onDisk > 0 {
            // The part before the staging buffer is in the file once its writes are done.
            if let error = state.drain() { throw error }
            if readFD < 0 { readFD = try FileIO.open(tempPath, O_RDONLY) }
            let got = try out.withUnsafeMutableBytes {
                try FileIO.preadAll(
                    readFD, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<onDisk]), at: offset, path: tempPath)
            }
            guard got == onDisk else {
                throw ReplicationError(.corruptPack, "pack \(tempPath) is shorter than its chunk \(id)")
            }
        }
        if onDisk < length, let staging {
            let from = Int(offset + Int64(onDisk) - stagingStart)
            out.withUnsafeMutableBytes {
                ($0.baseAddress.unsafelyUnwrapped + onDisk).copyMemory(
                    from: staging.base + from, byteCount: length - onDisk)
            }
        }
        return true
    }

    /// fsync, rename to the final name, fsync the directory.
    func seal() throws {
        try sealFile()
        try FileIO.syncDirectory(directory)
    }

    /// Waits for the pack's writes, cuts off the padding, fsyncs and renames to the final
    /// name; the caller fsyncs the directory (once for several packs) before the catalog learns
    /// of them. Called again after a failure (a checkpoint retried), it does only what is left:
    /// the descriptor is never used once closed.
    func sealFile() throws {
        if !synced {
            finish()
            if let error = state.drain() { throw error }
            guard !closed else { throw ReplicationError(.storeIO, "pack \(tempPath) was given up") }
            guard ftruncate(fd, off_t(size)) == 0 else { throw FileIO.fail("truncate", tempPath) }
            try FileIO.fsync(fd, path: tempPath)
            closeDescriptors()
            synced = true
        }
        if !renamed {
            try FileIO.rename(tempPath, finalPath)
            renamed = true
        }
    }

    /// Gives up on the pack and deletes its file: after a failed write (a full disk), the space
    /// it holds is what the store needs now.
    func discard() {
        abandon()
        unlink(tempPath)
    }

    /// Gives up on the pack (nothing in it was committed); the file stays for recovery, with
    /// what was written of it.
    func abandon() {
        finish()
        _ = state.drain()
        closeDescriptors()
    }
}

/// Reads chunks from sealed packs, keeping a few file descriptors open.
final class PackReader {
    let directory: String
    /// Whether descriptors are opened for O_DIRECT reads (`readRun`), where the filesystem
    /// takes them.
    let direct: Bool
    /// Whether a pack's pages are dropped from the page cache when its descriptor is closed
    /// (buffered reads that should leave no packs in the cache).
    let dropsCache: Bool
    private var open: [String: Int32] = [:]

    init(directory: String, direct: Bool = false, dropsCache: Bool = false) {
        self.directory = directory
        self.direct = direct
        self.dropsCache = dropsCache
    }

    deinit {
        for fd in open.values { closeDescriptor(fd) }
    }

    private func closeDescriptor(_ fd: Int32) {
        if dropsCache { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
        close(fd)
    }

    func path(_ pack: String) -> String { directory + "/" + pack + ".pack" }

    func descriptor(_ pack: String) throws -> Int32 {
        if let fd = open[pack] { return fd }
        if open.count >= 64, let (name, fd) = open.first {
            closeDescriptor(fd)
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
        if direct { PackIO.setDirect(fd) }
        open[pack] = fd
        return fd
    }

    /// Reads `length` bytes of `pack` from `offset` into `buffer` (`PackIO.alignment` bytes
    /// longer than twice that at least) and returns where they start in it: with O_DIRECT, the
    /// read is widened to the alignment; where a read is refused (EINVAL), the descriptor goes
    /// on buffered. A pack that ends before the run is `corruptPack`.
    func readRun(_ pack: String, at offset: Int64, length: Int, into buffer: IOBuffer) throws -> Int {
        let fd = try descriptor(pack)
        guard PackIO.isDirect(fd) else {
            precondition(length <= buffer.capacity)
            let got = try FileIO.preadAll(
                fd, into: UnsafeMutableRawBufferPointer(start: buffer.base, count: length), at: offset, path: path(pack)
            )
            try checkRun(pack, ends: offset + Int64(got), wanted: offset + Int64(length))
            return 0
        }
        let alignment = PackIO.alignment
        let start = offset / Int64(alignment) * Int64(alignment)
        let skip = Int(offset - start)
        let wanted = (skip + length + alignment - 1) / alignment * alignment
        precondition(wanted <= buffer.capacity)
        var done = 0
        while done < wanted {
            let n = pread(fd, buffer.base + done, wanted - done, off_t(start) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                // Refused after all: the descriptor goes on buffered.
                if errno == EINVAL, PackIO.clearDirect(fd) {
                    return try readRun(pack, at: offset, length: length, into: buffer)
                }
                throw FileIO.fail("read", path(pack))
            }
            done += n
            // The end of the file; with O_DIRECT a short read is only ever that.
            if n == 0 || n % alignment != 0 { break }
        }
        try checkRun(pack, ends: start + Int64(done), wanted: offset + Int64(length))
        return skip
    }

    private func checkRun(_ pack: String, ends: Int64, wanted: Int64) throws {
        guard ends >= wanted else {
            throw ReplicationError(
                .corruptPack, "pack \(path(pack)) ends at \(ends), before its chunks do (\(wanted))")
        }
    }

    /// Tells the kernel a chunk will be read soon, so that scattered reads overlap on disk.
    func prefetch(_ location: ChunkLocation) {
        guard let fd = try? descriptor(location.pack) else { return }
        _ = posix_fadvise(fd, off_t(location.offset), off_t(location.length), POSIX_FADV_WILLNEED)
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
