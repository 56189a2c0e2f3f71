import Dispatch
import Foundation
import StandbyBase
import StandbyTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads chunks back for `verify --read-data`: the chunks of a pack, given in pack order, go in
/// runs of up to `runBytes` read with one `pread` each. One worker a core reads and re-hashes
/// runs, each into its own buffer, while the caller goes on through the catalog; a bounded queue
/// between them keeps memory at about `workers × runBytes`. A chunk that does not match its id,
/// or that the pack ends before, is corrupt; any other read error is thrown by `finish`.
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

    struct Totals: Sendable {
        var corrupt: [Corrupt] = []
        var chunksRead = 0
        var bytesRead: Int64 = 0
        var error: ReplicationError?
    }

    static let runBytes: Int64 = 2 << 20
    /// A gap between two chunks of a run (other chunks, not sampled) larger than this starts a new
    /// run rather than reading the gap.
    static let maxGap: Int64 = 256 << 10

    /// What the caller and the workers share: the queue of runs (nil stops a worker), its two
    /// counting semaphores, and the totals.
    final class Shared: Sendable {
        let queue = Mutex<[Run?]>([])
        let slots: DispatchSemaphore
        let items = DispatchSemaphore(value: 0)
        let totals = Mutex(Totals())
        let done = DispatchGroup()

        init(capacity: Int) { slots = DispatchSemaphore(value: capacity) }
    }

    private let cancellation: CancellationFlag
    private let shared: Shared
    private let workers: Int
    private var current: Run?
    private var stopped = false

    init(directory: String, cancellation: CancellationFlag) {
        self.cancellation = cancellation
        workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let shared = Shared(capacity: 2 * workers)
        self.shared = shared
        for _ in 0..<workers {
            DispatchQueue.global().async(group: shared.done) {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(Self.runBytes), alignment: 64)
                defer { buffer.deallocate() }
                while true {
                    shared.items.wait()
                    let next = shared.queue.withLock { $0.removeFirst() }
                    shared.slots.signal()
                    guard let run = next else { return }
                    let outcome = Self.check(run, directory: directory, buffer: buffer)
                    shared.totals.withLock { totals in
                        switch outcome {
                        case .success(let corrupt):
                            totals.corrupt += corrupt
                            totals.chunksRead += run.chunks.count
                            totals.bytesRead += run.chunks.reduce(0) { $0 + Int64($1.location.length) }
                        case .failure(let error):
                            if totals.error == nil { totals.error = error }
                        }
                    }
                }
            }
        }
    }

    /// A caller that threw before `finish` still stops the workers.
    deinit { stop() }

    func add(_ id: ChunkID, at location: ChunkLocation) throws {
        let end = location.offset + Int64(location.length)
        // Asked of a borrowed copy gone before the append, so the run's chunks grow in place.
        let follows =
            current.map { run in
                run.pack == location.pack && location.offset >= run.end && location.offset - run.end <= Self.maxGap
                    && end - run.start <= Self.runBytes
            } ?? false
        if follows {
            current?.end = end
            current?.chunks.append((id, location))
            return
        }
        if let run = current { try send(run) }
        current = Run(pack: location.pack, start: location.offset, end: end, chunks: [(id, location)])
    }

    /// Waits for every run; answers what they found, or throws the first read error.
    func finish() throws -> Totals {
        if let run = current { try send(run) }
        current = nil
        stop()
        let result = shared.totals.withLock { $0 }
        if let error = result.error { throw error }
        if cancellation.isCancelled { throw ReplicationError(.cancelled, "verify cancelled") }
        return result
    }

    private func send(_ run: Run) throws {
        if cancellation.isCancelled { throw ReplicationError(.cancelled, "verify cancelled") }
        shared.slots.wait()
        shared.queue.withLock { $0.append(run) }
        shared.items.signal()
    }

    private func stop() {
        guard !stopped else { return }
        stopped = true
        for _ in 0..<workers {
            shared.slots.wait()
            shared.queue.withLock { $0.append(nil) }
            shared.items.signal()
        }
        shared.done.wait()
    }

    /// One run: one read of the pack from its first chunk to its last, each chunk re-hashed.
    static func check(_ run: Run, directory: String, buffer: UnsafeMutableRawBufferPointer)
        -> Result<[Corrupt], ReplicationError>
    {
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
        // Only a single chunk longer than a run (a catalog row no chunker wrote) needs more room.
        let wide =
            length > buffer.count ? UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 64) : nil
        defer { wide?.deallocate() }
        let buffer = wide ?? buffer
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
