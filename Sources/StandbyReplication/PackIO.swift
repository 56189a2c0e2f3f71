import CFileIO
import Foundation
import StandbyBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A buffer aligned for direct I/O.
final class IOBuffer: @unchecked Sendable {
    // Written by the thread that fills it, then only read by the writing thread until it is
    // back in the pool; the channels' lock orders the hand-overs.
    let base: UnsafeMutableRawPointer
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: PackIO.alignment)
    }

    deinit { base.deallocate() }
}

/// What a pack's writes have come to: how many are still queued or under way, and the first
/// that failed. Shared by the pack (which waits on it) and the writing thread.
final class PackWriteState: @unchecked Sendable {
    // Both fields are guarded by `condition`.
    private let condition = NSCondition()
    private var outstanding = 0
    private var failure: (any Error)?

    var error: (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        return failure
    }

    func queued() {
        condition.lock()
        outstanding += 1
        condition.unlock()
    }

    func done(_ error: (any Error)?) {
        condition.lock()
        if failure == nil, let error { failure = error }
        outstanding -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every write queued so far is on disk or failed; the first failure, if any.
    func drain() -> (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        while outstanding > 0 { condition.wait() }
        return failure
    }
}

/// Writes the packs of one replicate (or one retention pass) on a thread of its own, so the
/// device works while the cores cut, hash and look up. Packs are written with O_DIRECT where
/// the filesystem allows it: from the staging buffer to the device, with no copy into the page
/// cache and no writeback to wait for at the fsync that seals the pack (on a 2-core machine the
/// page cache's copy and its writeback were a fifth of a full replicate's CPU). Where O_DIRECT
/// is refused (ramfs, some network filesystems) the writes are buffered, with writeback started
/// as they go.
///
/// With one thread (the packs' writer) writes run in the order they are queued: a pack is laid
/// down front to back. With several (a restored file's writer) several writes are in flight at
/// once, each at its own offset, which a disk serves faster than one at a time. At most
/// `buffers` buffers exist, so a slow disk slows the writer instead of growing its memory.
final class PackIO: @unchecked Sendable {
    static let bufferSize = 2 << 20
    static let alignment = 4096
    static let buffers = 4

    struct Job: @unchecked Sendable {
        // The descriptor is the pack's; the pack outlives the job (it drains before closing).
        var fd: Int32
        var path: String
        var buffer: IOBuffer
        var offset: Int64
        var length: Int
        var state: PackWriteState
    }

    private let pool = Channel<IOBuffer>()
    private let jobs = Channel<Job>()
    private var threads: [Blocking.Worker] = []

    init(threads: Int = 1, buffers: Int = PackIO.buffers, bufferSize: Int = PackIO.bufferSize) {
        for _ in 0..<buffers { pool.put(IOBuffer(capacity: bufferSize)) }
        let pool = pool
        let jobs = jobs
        self.threads = (0..<max(1, threads)).map { _ in
            Blocking.Worker(name: "standby.pack-io") {
                while let job = try jobs.take() {
                    var failure: (any Error)?
                    if job.state.error == nil {
                        do {
                            try Self.write(job)
                        } catch {
                            failure = error
                        }
                    }
                    pool.put(job.buffer)
                    job.state.done(failure)
                }
            }
        }
    }

    deinit { stop() }

    /// An empty buffer; waits while every buffer is queued for writing.
    func buffer() throws -> IOBuffer {
        guard let buffer = try pool.take() else {
            throw ReplicationError(.storeIO, "the pack writer stopped")
        }
        return buffer
    }

    /// A buffer that will not be written after all goes back to the pool.
    func recycle(_ buffer: IOBuffer) {
        pool.put(buffer)
    }

    /// Queues `length` bytes of `buffer` to be written at `offset` of the pack's file. With
    /// O_DIRECT, offset and length are multiples of `alignment`.
    func write(_ job: Job) {
        job.state.queued()
        if !jobs.put(job) {
            pool.put(job.buffer)
            job.state.done(ReplicationError(.storeIO, "the pack writer stopped before writing \(job.path)"))
        }
    }

    /// Ends the writing thread once what is queued is written.
    func stop() {
        guard !threads.isEmpty else { return }
        jobs.finish()
        for thread in threads { _ = thread.join() }
        threads = []
    }

    /// O_DIRECT, or 0 where the system has none.
    static var directFlag: Int32 { standby_o_direct() }

    /// Creates a new pack file for writing, with O_DIRECT turned on when the filesystem takes it.
    static func create(_ path: String) throws -> Int32 {
        let fd = try FileIO.open(path, O_RDWR | O_CREAT | O_EXCL)
        setDirect(fd)
        return fd
    }

    /// Turns O_DIRECT on for the descriptor where the filesystem takes it (set after the open:
    /// a filesystem that refuses it at open may have created the file already); nothing
    /// changes where it does not.
    static func setDirect(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if directFlag != 0, flags >= 0 { _ = fcntl(fd, F_SETFL, flags | directFlag) }
    }

    private static func write(_ job: Job) throws {
        var done = 0
        while done < job.length {
            let n = pwrite(job.fd, job.buffer.base + done, job.length - done, off_t(job.offset) + off_t(done))
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                // A filesystem that opened the file with O_DIRECT but refuses the write (an
                // alignment it wants larger, a short write before): go on buffered.
                if code == EINVAL, clearDirect(job.fd) { continue }
                throw FileIO.fail("write", job.path, errno: code)
            }
            done += n
        }
        if !isDirect(job.fd) { FileIO.startWriteback(job.fd, offset: job.offset, length: Int64(job.length)) }
    }

    static func isDirect(_ fd: Int32) -> Bool {
        let direct = directFlag
        return direct != 0 && fcntl(fd, F_GETFL) & direct != 0
    }

    /// Turns O_DIRECT off on the descriptor; false if it was not on (or cannot be turned off).
    static func clearDirect(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        let direct = directFlag
        guard flags >= 0, direct != 0, flags & direct != 0 else { return false }
        return fcntl(fd, F_SETFL, flags & ~direct) == 0
    }
}
