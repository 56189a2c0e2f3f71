import CFileIO
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Thin checked wrappers over the POSIX calls the store needs. Every failure becomes a
/// `ReplicationError` naming the file; a full disk is `storeFull`, never a generic I/O error.
enum FileIO {
    static func fail(_ what: String, _ path: String, errno code: Int32 = errno) -> ReplicationError {
        let reason = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT {
            return ReplicationError(.storeFull, "the store's disk is full: cannot \(what) \(path) (\(reason))")
        }
        return ReplicationError(.storeIO, "cannot \(what) \(path): \(reason)")
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw fail("open", path) }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress.map { $0 + done }, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", path)
            }
            done += n
        }
    }

    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress.map { $0 + done }, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", path)
            }
            done += n
        }
    }

    /// Asks the kernel to start writing the range to disk now, without waiting: the fsync that
    /// seals a pack then waits for little. Only a hint; a failure shows at that fsync.
    static func startWriteback(_ fd: Int32, offset: Int64, length: Int64) {
        _ = standby_start_writeback(fd, offset, length)
    }

    static func preadAll(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, path: String) throws
        -> Int
    {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress.map { $0 + done }, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("read", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func fsync(_ fd: Int32, path: String) throws {
        guard Glibc.fsync(fd) == 0 else { throw fail("fsync", path) }
    }

    /// fsync of a directory, so a rename in it survives a power cut.
    static func syncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw fail("rename to \(to)", from) }
    }

    /// stat(2) of `path`: the information, or the errno.
    static func status(_ path: String) -> Result<stat, Errno> {
        var info = stat()
        guard stat(path, &info) == 0 else { return .failure(Errno(code: errno)) }
        return .success(info)
    }

    struct Errno: Error {
        var code: Int32
    }

    /// Size in bytes, or nil if the file does not exist.
    static func size(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    /// Bytes the file occupies on disk (holes excluded).
    static func allocated(_ path: String) -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        return Int64(info.st_blocks) * 512
    }

    /// Writes `data` to `path` through a temporary file, fsync and rename: readers see the old
    /// file or the new one, never half of one.
    static func writeAtomically(_ data: UnsafeRawBufferPointer, to path: String) throws {
        let temp = path + ".tmp-\(getpid())"
        let fd = try open(temp, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try writeAll(fd, data, path: temp)
            try fsync(fd, path: temp)
            close(fd)
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        try rename(temp, path)
        try syncDirectory((path as NSString).deletingLastPathComponent)
    }
}
