import Dispatch
import Foundation
import StandbyTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads chunks back for `verify --read-data`: the chunks of a pack, given in pack order, go in
/// runs of up to `runBytes` read with one `pread` each, and the runs are read and hashed on as
/// many threads as the machine has cores, `inFlight` at a time (so memory stays at about
/// `inFlight × runBytes`). A chunk that does not match its id, or that the pack ends before, is
/// corrupt; any other read error is thrown.
final class VerifyReader {
    struct Run: Sendable {
        var pack: String
        var start: Int64
        var end: Int64
        var chunks: [(id: ChunkID, location: ChunkLocation)] = []
    }

    struct Corrupt: Sendable {
        var id: ChunkID
        var pack: String
        var message: String
    }

    /// What the runs read so far found.
    private(set) var corrupt: [Corrupt] = []
    private(set) var chunksRead = 0
    private(set) var bytesRead: Int64 = 0

    static let runBytes: Int64 = 4 << 20
    /// A gap between two chunks of a run (other chunks, not sampled) larger than this starts a new
    /// run rather than reading the gap.
    static let maxGap: Int64 = 256 << 10

    private let directory: String
    private let inFlight: Int
    private let cancellation: CancellationFlag
    private var pending: [Run] = []
    private var current: Run?

    init(directory: String, cancellation: CancellationFlag) {
        self.directory = directory
        self.cancellation = cancellation
        inFlight = 2 * max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    func add(_ id: ChunkID, at location: ChunkLocation) throws {
        let end = location.offset + Int64(location.length)
        if var run = current, run.pack == location.pack, location.offset >= run.end,
            location.offset - run.end <= Self.maxGap, end - run.start <= Self.runBytes
        {
            run.end = end
            run.chunks.append((id, location))
            current = run
            return
        }
        if let run = current { try queue(run) }
        current = Run(pack: location.pack, start: location.offset, end: end, chunks: [(id, location)])
    }

    /// Reads what is still queued.
    func finish() throws {
        if let run = current { try queue(run) }
        current = nil
        try flush()
    }

    private func queue(_ run: Run) throws {
        pending.append(run)
        if pending.count >= inFlight { try flush() }
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        if cancellation.isCancelled { throw ReplicationError(.cancelled, "verify cancelled") }
        let runs = pending
        pending = []
        let outcomes = Mutex<[Result<[Corrupt], ReplicationError>?]>(Array(repeating: nil, count: runs.count))
        let directory = self.directory
        DispatchQueue.concurrentPerform(iterations: runs.count) { index in
            let outcome = Self.check(runs[index], directory: directory)
            outcomes.withLock { $0[index] = outcome }
        }
        let results = outcomes.withLock { $0 }
        for (index, run) in runs.enumerated() {
            corrupt += try results[index]?.get() ?? []
            chunksRead += run.chunks.count
            bytesRead += run.chunks.reduce(0) { $0 + Int64($1.location.length) }
        }
    }

    /// One run: one read of the pack from its first chunk to its last, each chunk re-hashed.
    static func check(_ run: Run, directory: String) -> Result<[Corrupt], ReplicationError> {
        let path = directory + "/" + run.pack + ".pack"
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT {
                return .success(
                    run.chunks.map { Corrupt(id: $0.id, pack: run.pack, message: "pack \(path) is missing") })
            }
            return .failure(FileIO.fail("open", path))
        }
        defer { close(fd) }
        let length = Int(run.end - run.start)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, length), alignment: 64)
        defer { buffer.deallocate() }
        let got: Int
        do {
            got = try FileIO.preadAll(
                fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]), at: run.start, path: path)
        } catch let error as ReplicationError {
            return .failure(error)
        } catch {
            return .failure(ReplicationError(.storeIO, "cannot read \(path): \(error)"))
        }
        var corrupt: [Corrupt] = []
        for (id, location) in run.chunks {
            let from = Int(location.offset - run.start)
            guard from + location.length <= got else {
                corrupt.append(
                    Corrupt(
                        id: id, pack: run.pack,
                        message: "pack \(path) ends before chunk \(id) (offset \(location.offset))"))
                continue
            }
            let actual = ChunkID.of(UnsafeRawBufferPointer(rebasing: buffer[from..<(from + location.length)]))
            if actual != id {
                corrupt.append(
                    Corrupt(
                        id: id, pack: run.pack,
                        message: "chunk \(id) in pack \(path) at offset \(location.offset) does not match its hash"))
            }
        }
        return .success(corrupt)
    }
}
