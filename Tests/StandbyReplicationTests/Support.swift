import Crypto
import Foundation
import Logging
import StandbyLab
import StandbyReplication
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Tag {
    @Tag static var server: Self
}

let testLogger = Logger(label: "test.replication", factory: { _ in SwiftLogNoOpLogHandler() })

/// A small deterministic generator for test content.
struct TestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = next()
            for _ in 0..<8 where i < count {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }
}

let pageSize = 8192

/// A database-like file of 8 KiB pages with random content.
func writeDatabase(_ path: String, pages: Int, seed: UInt64 = 1, mtime: Int = 1_700_000_000) throws {
    var random = TestRandom(state: seed)
    try Data(random.bytes(pages * pageSize)).write(to: URL(fileURLWithPath: path))
    setModificationTime(path, mtime)
}

/// Rewrites `count` pages at scattered places, as a day of database activity would.
func rewritePages(_ path: String, count: Int, seed: UInt64, mtime: Int, contentSeed: UInt64? = nil) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    let pages = Int(try handle.seekToEnd()) / pageSize
    var random = TestRandom(state: seed)
    var content = TestRandom(state: contentSeed ?? seed &+ 0x1234)
    for _ in 0..<count {
        let page = Int(random.next() % UInt64(pages))
        try handle.seek(toOffset: UInt64(page * pageSize))
        try handle.write(contentsOf: Data(content.bytes(pageSize)))
    }
    try handle.synchronize()
    try handle.close()
    setModificationTime(path, mtime)
}

func setModificationTime(_ path: String, _ seconds: Int) {
    var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
    _ = utimensat(AT_FDCWD, path, &times, 0)
}

func contents(_ path: String) throws -> Data {
    try Data(contentsOf: URL(fileURLWithPath: path))
}

/// A lab directory with a store in it.
struct StoreFixture {
    let lab: LabDirectory
    let store: ReplicationStore
    let storePath: String

    init() throws {
        lab = try LabDirectory(prefix: "standby-repl")
        storePath = lab.file("store")
        store = try ReplicationStore.open(directory: storePath, logger: testLogger)
    }

    func remove() { lab.remove() }
}

/// Thread-safe flag for progress callbacks.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false

    /// True the first time only.
    func first() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }
}

/// A format 2 index's hash of a 4 KiB block: the first 8 bytes of its SHA-256.
func blockHash(_ bytes: [UInt8]) -> [UInt8] {
    Array(SHA256.hash(data: bytes).prefix(8))
}
