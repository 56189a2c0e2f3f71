import Foundation
import GRDB
import Logging
import StandbyBase
import StandbyTransport

/// The delta path of one file: with the index `standby publish` wrote next to it, fetch only the
/// chunks the store lacks, and rebuild the file's recipe and whole-file hash from them and the
/// stored ones.
///
/// It works in three parts. The index's top level (one request) names every group of chunks;
/// the groups the previous version had are known, and the second-level entries of the others
/// are all asked for at once. Then, window by window, a plan: where each chunk is (stored in a
/// pack, in a pack of this run, or missing) and the byte ranges of the missing ones, asked for
/// a window ahead of the walk. Last, the walk in file order: stored runs are read back for the
/// hash, missing chunks checked against their ids and stored as they arrive.
///
/// Across a WAN the cost is round trips, so ranges travel together (`RangeFetcher`: several a
/// request, several requests in flight): a day's changes cost a few round trips, not one each.
final class DeltaTransfer {
    /// The index is unusable or the file does not match it: the replicator reads it whole.
    struct IndexProblem: Error {
        var reason: String
    }

    /// What the walk does with a window's chunks, in file order.
    enum Step: Equatable {
        /// Chunks the catalog has, read back from their packs.
        case stored(Range<Int>)
        /// A chunk in a pack of this run: there already, or fetched earlier in the walk.
        case inFlight(Int)
        /// Chunks the store lacks: one byte range of the source.
        case fetch(Range<Int>, offset: Int64, length: Int)
        /// Chunks the store lacks, put together from the previous version's bytes where their
        /// 4 KiB blocks are unchanged and byte ranges of the source where not.
        case patch(Range<Int>, offset: Int64, length: Int, pieces: [Piece])
    }

    enum Piece: Equatable {
        /// Bytes of the previous version, at the same offsets of the file.
        case kept([UInt8])
        case fetched(ByteRange)
    }

    /// Patched runs whose chunks did not match their ids (a block hash that collided, an old
    /// chunk damaged), fetched again whole; and the bytes patching kept from being fetched.
    private var patchMisses = 0
    private var keptBytes: Int64 = 0

    /// A run of missing chunks and the byte range of the source that holds it.
    private struct Fetch: Equatable {
        var run: Range<Int>
        var offset: Int64
        var length: Int
    }

    /// One window of groups, planned: its chunks, where they are, what to do with each.
    private struct Plan {
        var entries: [RecipeEntry]
        var locations: [ChunkID: ChunkLocation]
        var steps: [Step]
        /// The chunks this window fetches, so a later copy of one (zero pages, say) is read
        /// back from this run's pack instead of fetched again.
        var fetching: Set<ChunkID>
    }

    /// Groups per window: some 256 MiB of the file, 32,768 entries.
    static let window = 4096
    /// A run of missing chunks is one range of at most this.
    /// (a request's worth: the runs of a first copy then arrive in file order, a request each,
    /// and the walk keeps up with them instead of waiting for the first of several large ones).
    static let maxRun = 1 << 20

    private let replicator: Replicator
    private let db: Database
    private let url: URL
    private let indexURL: URL
    private let size: Int64
    private let top: ChunkIndexTop
    private let previous: PreviousRecipe?
    /// The previous version's groups: their entries need not be fetched.
    private let known: [UInt64: UInt64]
    private var packNames: [Int64: String] = [:]
    private var pool: SessionPool?
    private var store: ReplicationStore { replicator.store }

    /// Sessions already connected to the source's server, for the pool.
    private let connected: [TransferSession]

    init(
        _ replicator: Replicator, db: Database, url: URL, indexURL: URL, size: Int64, top: ChunkIndexTop,
        previous: PreviousRecipe?, connected: [TransferSession] = []
    ) {
        self.connected = connected
        self.replicator = replicator
        self.db = db
        self.url = url
        self.indexURL = indexURL
        self.size = size
        self.top = top
        self.previous = previous
        self.known = previous?.groups ?? [:]
    }

    /// The index's header and top level, checked, in one request (two if the top level is
    /// larger than a guess of it); what was fetched for them is freed on return.
    static func topLevel(
        of indexURL: URL, size: Int64, mtime: Int64, parameters: ChunkerParameters, session: TransferSession,
        start: IndexStart? = nil
    ) throws -> ChunkIndexTop {
        let (head, reportedSize) = try start?.result.get() ?? session.fetchStart(indexURL, length: guess(size))
        guard let indexSize = reportedSize else {
            throw IndexProblem(reason: "the server does not tell the index's size")
        }
        guard indexSize >= Int64(ChunkIndexHeader.size), head.count >= ChunkIndexHeader.size else {
            throw IndexProblem(reason: "index too short")
        }
        guard let header = ChunkIndexHeader.decode(Array(head)) else {
            throw IndexProblem(reason: "index header corrupt")
        }
        guard header.fileSize == size, header.modificationTime == mtime else {
            throw IndexProblem(
                reason: "index is stale (it describes size \(header.fileSize), mtime \(header.modificationTime))")
        }
        guard header.parameters == parameters else {
            throw IndexProblem(reason: "index made with chunk sizes \(header.parameters), the store uses \(parameters)")
        }
        guard indexSize == header.indexSize else {
            throw IndexProblem(reason: "index length does not match its header")
        }
        var topBytes = Array(head.dropFirst(ChunkIndexHeader.size).prefix(header.topLevelLength))
        if topBytes.count < header.topLevelLength {
            let rest = try session.fetch(
                indexURL,
                range: ByteRange(
                    offset: Int64(ChunkIndexHeader.size + topBytes.count),
                    length: Int64(header.topLevelLength - topBytes.count)), maxBytes: header.topLevelLength)
            topBytes.append(contentsOf: rest)
        }
        guard let top = ChunkIndexTop.parse(header: header, top: topBytes) else {
            throw IndexProblem(reason: "index top level corrupt")
        }
        return top
    }

    /// How much of an index to ask for first: the header and a guess at the top level, about
    /// 1/15 of an index (1/12 of a file's size over 8 KiB chunks covers it).
    static func guess(_ size: Int64) -> Int {
        Int(max(4096, Int64(ChunkIndexHeader.size) + size / 8192 * 36 / 12 + 1024))
    }

    /// The start of an index asked for on a session of its own while the replicator stats the
    /// source: the two round trips overlap, and the session, connected, joins the transfer's.
    final class IndexStart: @unchecked Sendable {
        let url: URL
        let session: TransferSession
        // Written by the worker before it ends, read after `join`.
        private(set) var result: Result<(Data, Int64?), any Error> = .failure(CancellationError())
        private var worker: Blocking.Worker?

        init(url: URL, length: Int, options: TransportOptions, cancellation: CancellationFlag?, logger: Logger) throws {
            self.url = url
            session = try TransferSession(options: options, logger: logger)
            session.cancellation = cancellation
            worker = Blocking.Worker(name: "standby.index-start") { [self] in
                result = Result { try session.fetchStart(url, length: length) }
            }
        }

        /// Waits for the answer; then the session is the caller's.
        func join() {
            _ = worker?.join()
            worker = nil
        }
    }

    /// Fetches what is missing and returns the file's SHA-256 (the index's, checked against the
    /// bytes) and its number of chunks.
    func run() throws -> (sha256: [UInt8], chunks: Int) {
        let session = replicator.session
        let hasher = FileHasher(packDirectory: store.packDirectory)
        defer { hasher.abort() }
        let limits = RangeFetcher.Limits.suited(to: url)
        let pool = try SessionPool(
            options: session.options, cancellation: session.cancellation, logger: replicator.logger,
            count: limits.connections, connected: [session] + connected)
        self.pool = pool
        // The index's requests are few and small: as many ranges a request as a header holds,
        // on a few connections (those already open first).
        var indexLimits = RangeFetcher.Limits.suited(to: indexURL)
        indexLimits.connections = min(indexLimits.connections, 4)
        indexLimits.rangesPerRequest = 250
        indexLimits.bytesPerRequest = 4 << 20
        let index = RangeFetcher(pool: pool, limits: indexLimits)
        let data = RangeFetcher(pool: pool, limits: limits)
        let before = session.stats
        defer {
            pool.close()
            for fetcher in [index, data] {
                fetcher.stop()
                replicator.otherSessionBytes += fetcher.receivedBytes
                replicator.otherSessionRequests += fetcher.requests
            }
            // What the fetchers did on the replicator's own session it counts itself.
            replicator.otherSessionBytes -= session.stats.totalBytes - before.totalBytes
            replicator.otherSessionRequests -= session.stats.requests - before.requests
        }
        let base = replicator.processed
        let windows = stride(from: 0, to: top.groups.count, by: Self.window).map {
            $0..<min($0 + Self.window, top.groups.count)
        }
        // Every unknown group's entries, asked for at once (and with a previous version, the
        // hashes of their blocks): the fetcher batches them and keeps a bounded number of
        // answers ahead of the planning.
        let runs = windows.map(indexRuns)
        for run in runs.joined() {
            let count = run.reduce(0) { $0 + top.groups[$1].chunkCount }
            index.request(
                indexURL,
                ByteRange(offset: top.secondLevelOffsets[run.lowerBound], length: Int64(count * RecipeEntry.size)))
            if let blocks = blockRange(of: run) {
                index.request(
                    indexURL,
                    ByteRange(
                        offset: top.header.blocksOffset + blocks.lowerBound * Int64(ChunkIndexHeader.blockHashSize),
                        length: Int64(blocks.count) * Int64(ChunkIndexHeader.blockHashSize)))
            }
        }
        index.flush()

        var offset: Int64 = 0
        var fileOffset: Int64 = 0
        var upcoming: Plan?
        for w in windows.indices {
            let current: Plan
            if let planned = upcoming {
                current = planned
            } else {
                current = try plan(windows[w], runs: runs[w], at: fileOffset, index: index, data: data, earlier: [])
                fileOffset += current.entries.reduce(0) { $0 + Int64($1.length) }
            }
            // The next window is planned, and its ranges asked for, before this one is walked,
            // so its round trip overlaps the walk.
            upcoming = nil
            if w + 1 < windows.count {
                let next = try plan(
                    windows[w + 1], runs: runs[w + 1], at: fileOffset, index: index, data: data,
                    earlier: current.fetching)
                fileOffset += next.entries.reduce(0) { $0 + Int64($1.length) }
                upcoming = next
            }
            try walk(current, data: data, hasher: hasher, offset: &offset, base: base)
        }
        let digest = try hasher.finalize()
        guard offset == size, digest == top.header.fileSHA256 else {
            throw IndexProblem(reason: "the file rebuilt from the index does not match its SHA-256")
        }
        try replicator.flushRecipe(db)
        replicator.logger.debug(
            "Delta transfer done",
            metadata: [
                "set": "\(replicator.set)", "keptFromPrevious": "\(keptBytes)", "patchMisses": "\(patchMisses)",
            ])
        return (top.header.fileSHA256, replicator.recipe.count)
    }

    /// The 4 KiB blocks a run of groups covers, when their hashes are of use: the index has
    /// them and there is a previous version to compare them with.
    private func blockRange(of run: Range<Int>) -> Range<Int64>? {
        guard previous != nil, top.header.hasBlocks, let last = run.last else { return nil }
        let start = top.fileOffsets[run.lowerBound]
        let end = top.fileOffsets[last] + top.groups[last].byteLength
        guard end > start else { return nil }
        let size = Int64(ChunkIndexHeader.blockSize)
        return (start / size)..<((end - 1) / size + 1)
    }

    /// The groups of a window whose entries the previous version lacks, in runs of adjacent
    /// groups: one range of the index each.
    private func indexRuns(_ groups: Range<Int>) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var i = groups.lowerBound
        while i < groups.upperBound {
            guard known[top.groups[i].key.high] == nil else {
                i += 1
                continue
            }
            var j = i
            while j < groups.upperBound && known[top.groups[j].key.high] == nil && j - i < 256 { j += 1 }
            runs.append(i..<j)
            i = j
        }
        return runs
    }

    /// A window's entries (the previous version's for known groups, the fetched ones for the
    /// others, each checked against its group key), where the store has each chunk, the steps,
    /// and the missing ranges asked for.
    private func plan(
        _ groups: Range<Int>, runs: [Range<Int>], at start: Int64, index: RangeFetcher, data: RangeFetcher,
        earlier: Set<ChunkID>
    ) throws -> Plan {
        var fetched: [Int: [RecipeEntry]] = [:]
        var blockHashes: [Int64: UInt64] = [:]
        for run in runs {
            let count = run.reduce(0) { $0 + top.groups[$1].chunkCount }
            let bytes = try index.next()
            guard bytes.count == count * RecipeEntry.size else {
                throw IndexProblem(reason: "index entries of groups \(run) are short")
            }
            if let blocks = blockRange(of: run) {
                let hashes = try index.next()
                guard hashes.count == blocks.count * ChunkIndexHeader.blockHashSize else {
                    throw IndexProblem(reason: "block hashes of groups \(run) are short")
                }
                hashes.withUnsafeBytes { raw in
                    for (k, block) in blocks.enumerated() {
                        blockHashes[block] = UInt64(
                            littleEndian: raw.loadUnaligned(
                                fromByteOffset: k * ChunkIndexHeader.blockHashSize, as: UInt64.self))
                    }
                }
            }
            let decoded = [RecipeEntry].decode(Data(bytes))
            var at = 0
            for k in run {
                let slice = decoded[at..<(at + top.groups[k].chunkCount)]
                guard GroupKey.of(slice) == top.groups[k].key else {
                    throw IndexProblem(reason: "index entries of group \(k) corrupt")
                }
                fetched[k] = Array(slice)
                at += top.groups[k].chunkCount
            }
        }
        var entries: [RecipeEntry] = []
        // The chunks of the groups the previous version has are in the store (it is committed
        // and not broken), so only the other groups' chunks decide what is fetched: only theirs
        // are looked up before the requests go out, the rest while the first answers travel.
        var knownIDs = Set<ChunkID>()
        var changedIDs: [ChunkID] = []
        for k in groups {
            if let previous, let packed = known[top.groups[k].key.high] {
                let (first, count) = PreviousRecipe.unpack(packed)
                let list = try previous.entries(db, start: first, count: count)
                entries.append(contentsOf: list)
                for entry in list { knownIDs.insert(entry.id) }
            } else if let list = fetched[k] {
                entries.append(contentsOf: list)
                changedIDs.append(contentsOf: list.lazy.map(\.id))
            }
        }
        // Where the store has each chunk: one catalog query per 128 chunks.
        let sink = replicator.sink
        var locations = try store.chunkLocations(
            db, changedIDs.lazy.filter { !sink.holds($0) }, packNames: &packNames)
        let somewhere = ChunkLocation(pack: "", offset: 0, length: 0)
        var planned = Set<ChunkID>()
        let fetches = Self.steps(
            entries, at: start, stored: { locations[$0] ?? (knownIDs.contains($0) ? somewhere : nil) },
            inFlight: { sink.holds($0) || earlier.contains($0) || planned.contains($0) },
            fetching: { planned.insert($0) }
        ).compactMap { step -> Fetch? in
            guard case .fetch(let run, let at, let length) = step else { return nil }
            return Fetch(run: run, offset: at, length: length)
        }
        // Runs of missing chunks that the previous version's bytes may patch: the old chunks
        // under them are looked up together (one catalog query per 128), then compared.
        var candidates: [(fetch: Int, old: [(entry: RecipeEntry, offset: Int64)])] = []
        if let previous, !blockHashes.isEmpty {
            for (n, fetch) in fetches.enumerated() {
                guard let span = blockSpan(at: fetch.offset, length: fetch.length),
                    let old = try previous.chunks(db, covering: span)
                else { continue }
                candidates.append((n, old))
            }
        }
        let oldLocations = try store.chunkLocations(
            db, candidates.lazy.flatMap { $0.old.lazy.map(\.entry.id) }, packNames: &packNames)
        for candidate in candidates {
            for (entry, _) in candidate.old {
                if let location = oldLocations[entry.id] { replicator.reader.prefetch(location) }
            }
        }
        // The candidates compared on a few threads at once, each with its own pack reader (the
        // old bytes are read from disk, and several reads in flight take less time than the
        // same reads one after another), then each run's ranges asked for in file order.
        let compared = compare(candidates, fetches: fetches, locations: oldLocations, blockHashes: blockHashes)
        var patches: [Int: [Piece]] = [:]
        for (n, fetch) in fetches.enumerated() {
            if let pieces = compared[n] {
                patches[n] = pieces
                for case .fetched(let range) in pieces { data.request(url, range) }
            } else {
                data.request(url, ByteRange(offset: fetch.offset, length: Int64(fetch.length)))
            }
        }
        data.flush()
        // Then where every other chunk is, for the walk. Its steps must fetch what was asked
        // for; a chunk of the previous version that the store lacks after all (a catalog
        // changed by hand) makes them differ, and the file is read whole.
        let others = try store.chunkLocations(
            db, knownIDs.lazy.filter { locations[$0] == nil && !sink.holds($0) }, packNames: &packNames)
        locations.merge(others) { found, _ in found }
        var fetching = Set<ChunkID>()
        var steps = Self.steps(
            entries, at: start, stored: { locations[$0] },
            inFlight: { sink.holds($0) || earlier.contains($0) || fetching.contains($0) },
            fetching: { fetching.insert($0) })
        var n = 0
        for (k, step) in steps.enumerated() {
            guard case .fetch(let run, let at, let length) = step else { continue }
            guard n < fetches.count, fetches[n] == Fetch(run: run, offset: at, length: length) else {
                throw IndexProblem(reason: "a chunk of the previous version is missing from the store")
            }
            if let pieces = patches[n] { steps[k] = .patch(run, offset: at, length: length, pieces: pieces) }
            n += 1
        }
        guard n == fetches.count else {
            throw IndexProblem(reason: "a chunk of the previous version is missing from the store")
        }
        return Plan(entries: entries, locations: locations, steps: steps, fetching: fetching)
    }

    /// Splits a window's chunks into steps: runs that follow each other in one pack (as a
    /// previous copy of the file left them, one read each, at most a hasher block), chunks of
    /// this run's packs or fetched before in it, and runs of missing chunks (one byte range
    /// each, at most `maxRun`). `fetching` hears of each chunk a range brings.
    static func steps(
        _ entries: [RecipeEntry], at start: Int64, stored: (ChunkID) -> ChunkLocation?,
        inFlight: (ChunkID) -> Bool, fetching: (ChunkID) -> Void
    ) -> [Step] {
        var steps: [Step] = []
        var offset = start
        var c = 0
        while c < entries.count {
            let entry = entries[c]
            if let location = stored(entry.id) {
                var stop = c + 1
                var spanEnd = location.offset + Int64(location.length)
                while stop < entries.count, let next = stored(entries[stop].id), next.pack == location.pack,
                    next.offset == spanEnd + Int64(PackFormat.recordHeader),
                    next.offset + Int64(next.length) - location.offset <= Int64(FileHasher.blockSize)
                {
                    spanEnd = next.offset + Int64(next.length)
                    stop += 1
                }
                steps.append(.stored(c..<stop))
                offset += entries[c..<stop].reduce(0) { $0 + Int64($1.length) }
                c = stop
            } else if inFlight(entry.id) {
                steps.append(.inFlight(c))
                offset += Int64(entry.length)
                c += 1
            } else {
                var stop = c
                var length = 0
                var ids = Set<ChunkID>()
                while stop < entries.count, length < maxRun, stored(entries[stop].id) == nil,
                    !inFlight(entries[stop].id), !ids.contains(entries[stop].id)
                {
                    ids.insert(entries[stop].id)
                    length += entries[stop].length
                    stop += 1
                }
                for id in ids { fetching(id) }
                steps.append(.fetch(c..<stop, offset: offset, length: length))
                offset += Int64(length)
                c = stop
            }
        }
        return steps
    }

    /// The whole 4 KiB blocks under a run of missing chunks at `at`, cut at the end of both
    /// versions of the file; nil when there is nothing to compare.
    private func blockSpan(at: Int64, length: Int) -> Range<Int64>? {
        guard let previous, length > 0 else { return nil }
        let blockSize = Int64(ChunkIndexHeader.blockSize)
        let low = at / blockSize * blockSize
        let high = min(((at + Int64(length) - 1) / blockSize + 1) * blockSize, size, previous.size)
        return high > low ? low..<high : nil
    }

    /// The pieces of a run of missing chunks at `at`: where a 4 KiB block's hash in the index
    /// is that of the previous version's bytes at the same offsets (`old`, the chunks under
    /// `blockSpan`), those bytes; the other blocks' parts in the run, fetched. Nil when
    /// nothing can be kept.
    /// The pieces of each candidate run (by its fetch's number), patched where `patch` finds
    /// unchanged blocks; candidates are shared out in slices among `comparers` threads.
    private func compare(
        _ candidates: [(fetch: Int, old: [(entry: RecipeEntry, offset: Int64)])], fetches: [Fetch],
        locations: [ChunkID: ChunkLocation], blockHashes: [Int64: UInt64]
    ) -> [Int: [Piece]] {
        guard !candidates.isEmpty else { return [:] }
        let slices = min(Self.comparers, candidates.count)
        final class Results: @unchecked Sendable {
            // Each slice writes its own element; read after concurrentPerform returns.
            var pieces: [[(Int, [Piece])]]
            init(_ count: Int) { pieces = Array(repeating: [], count: count) }
        }
        let results = Results(slices)
        let directory = store.packDirectory
        // `patch` reads only what this transfer never changes (its size, the previous version's).
        nonisolated(unsafe) let transfer = self
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            let reader = PackReader(directory: directory)
            var found: [(Int, [Piece])] = []
            for k in stride(from: slice, to: candidates.count, by: slices) {
                let candidate = candidates[k]
                let fetch = fetches[candidate.fetch]
                if let pieces = transfer.patch(
                    at: fetch.offset, length: fetch.length, old: candidate.old, locations: locations,
                    blockHashes: blockHashes, reader: reader)
                {
                    found.append((candidate.fetch, pieces))
                }
            }
            results.pieces[slice] = found
        }
        var compared: [Int: [Piece]] = [:]
        for (fetch, pieces) in results.pieces.joined() { compared[fetch] = pieces }
        return compared
    }

    /// Threads comparing candidate runs with the previous version's bytes.
    static let comparers = 4

    private func patch(
        at: Int64, length: Int, old chunks: [(entry: RecipeEntry, offset: Int64)],
        locations: [ChunkID: ChunkLocation], blockHashes: [Int64: UInt64], reader: PackReader
    ) -> [Piece]? {
        guard let span = blockSpan(at: at, length: length) else { return nil }
        let blockSize = Int64(ChunkIndexHeader.blockSize)
        let end = at + Int64(length)
        let first = at / blockSize
        let last = (end - 1) / blockSize
        let (low, high) = (span.lowerBound, span.upperBound)
        var old: [UInt8] = []
        old.reserveCapacity(span.count)
        for (entry, offset) in chunks {
            guard let location = locations[entry.id],
                let bytes = try? reader.read(entry.id, at: location, verify: false),
                bytes.count == entry.length
            else { return nil }
            let from = Int(max(low, offset) - offset)
            let to = Int(min(high, offset + Int64(entry.length)) - offset)
            old.append(contentsOf: bytes[from..<to])
        }
        guard old.count == span.count else { return nil }
        var pieces: [Piece] = []
        var kept = false
        for block in first...last {
            let blockStart = block * blockSize
            let blockEnd = min(blockStart + blockSize, size)
            let from = max(blockStart, at)
            let to = min(blockEnd, end)
            var same = false
            if blockEnd <= high, let hash = blockHashes[block] {
                same = old[Int(blockStart - low)..<Int(blockEnd - low)].withUnsafeBytes { BlockHash.of($0) } == hash
            }
            if same {
                kept = true
                let bytes = Array(old[Int(from - low)..<Int(to - low)])
                if case .kept(let before) = pieces.last {
                    pieces[pieces.count - 1] = .kept(before + bytes)
                } else {
                    pieces.append(.kept(bytes))
                }
            } else if case .fetched(let before) = pieces.last {
                pieces[pieces.count - 1] = .fetched(ByteRange(offset: before.offset, length: to - before.offset))
            } else {
                pieces.append(.fetched(ByteRange(offset: from, length: to - from)))
            }
        }
        return kept ? pieces : nil
    }

    /// Walks a window's chunks in file order: stored ones read back for the whole-file hash,
    /// missing ones taken from the fetcher as they come, checked and stored.
    private func walk(_ plan: Plan, data: RangeFetcher, hasher: FileHasher, offset: inout Int64, base: Int64) throws {
        let entries = plan.entries
        for step in plan.steps {
            try replicator.checkCancelled()
            switch step {
            case .stored(let run):
                try readStored(entries[run], plan.locations, into: hasher)
                for entry in entries[run] { try replicator.appendRecipe(db, entry) }
                offset += entries[run].reduce(0) { $0 + Int64($1.length) }
            case .inFlight(let c):
                try readInFlight(entries[c], into: hasher)
                try replicator.appendRecipe(db, entries[c])
                offset += Int64(entries[c].length)
            case .fetch(let run, let at, let length):
                let bytes: [UInt8]
                do {
                    bytes = try data.next()
                } catch let error as TransportError {
                    throw ReplicationError.source(error, set: replicator.set)
                }
                try storeFetched(entries[run], bytes, at: at, into: hasher)
                offset += Int64(length)
            case .patch(let run, let at, let length, let pieces):
                var bytes: [UInt8] = []
                bytes.reserveCapacity(length)
                var kept: Int64 = 0
                do {
                    for piece in pieces {
                        switch piece {
                        case .kept(let old):
                            bytes.append(contentsOf: old)
                            kept += Int64(old.count)
                        case .fetched:
                            bytes.append(contentsOf: try data.next())
                        }
                    }
                } catch let error as TransportError {
                    throw ReplicationError.source(error, set: replicator.set)
                }
                let patched = Self.matches(entries[run], bytes)
                if patched {
                    keptBytes += kept
                } else {
                    // A block hash that collided, or an old chunk damaged on disk: the run is
                    // fetched whole, and its ids check it as usual.
                    patchMisses += 1
                    replicator.logger.info(
                        "A patched run does not match its chunks; fetching it whole",
                        metadata: ["set": "\(replicator.set)", "offset": "\(at)", "length": "\(length)"])
                    do {
                        bytes = try fetchWhole(ByteRange(offset: at, length: Int64(length)))
                    } catch let error as TransportError {
                        throw ReplicationError.source(error, set: replicator.set)
                    }
                }
                // A patched run that matched is checked already: its chunks are not hashed twice.
                try storeFetched(entries[run], bytes, at: at, into: hasher, checked: patched)
                offset += Int64(length)
            }
            replicator.processed = base + offset
            replicator.reportProgress()
        }
    }

    /// A range fetched on its own, on a session of the pool, and counted with the fetchers'.
    private func fetchWhole(_ range: ByteRange) throws -> [UInt8] {
        guard let pool, let session = pool.take() else {
            throw ReplicationError(.storeIO, "the delta transfer's sessions are closed", set: replicator.set)
        }
        defer { pool.give(session) }
        let before = session.stats
        defer {
            replicator.otherSessionBytes += session.stats.totalBytes - before.totalBytes
            replicator.otherSessionRequests += session.stats.requests - before.requests
        }
        return Array(try session.fetch(url, range: range, maxBytes: Int(range.length)))
    }

    /// Whether the bytes are the run's chunks, each its id's.
    static func matches(_ run: ArraySlice<RecipeEntry>, _ buffer: [UInt8]) -> Bool {
        guard buffer.count == run.reduce(0, { $0 + $1.length }) else { return false }
        return buffer.withUnsafeBytes { raw in
            var at = 0
            for entry in run {
                guard ChunkID.of(UnsafeRawBufferPointer(rebasing: raw[at..<(at + entry.length)])) == entry.id else {
                    return false
                }
                at += entry.length
            }
            return true
        }
    }

    /// Checks each chunk of a fetched run against its id, stores it and feeds it to the file
    /// hasher.
    private func storeFetched(
        _ run: ArraySlice<RecipeEntry>, _ buffer: [UInt8], at offset: Int64, into hasher: FileHasher,
        checked: Bool = false
    ) throws {
        var at = 0
        try buffer.withUnsafeBytes { raw in
            for entry in run {
                guard at + entry.length <= raw.count else {
                    throw IndexProblem(reason: "the range at offset \(offset) is shorter than the index says")
                }
                let chunk = UnsafeRawBufferPointer(rebasing: raw[at..<(at + entry.length)])
                guard checked || ChunkID.of(chunk) == entry.id else {
                    throw IndexProblem(reason: "bytes at offset \(offset + Int64(at)) do not match the index")
                }
                try hasher.update(chunk)
                try replicator.keep(db, entry.id, chunk)
                at += entry.length
            }
        }
    }

    /// Reads stored chunks that lie one after another in a pack straight into the file hasher,
    /// with one read (the record headers between them are skipped by the hasher). Not re-hashed
    /// one by one: the whole-file hash covers them. A length other than the index's means the
    /// index lies.
    private func readStored(
        _ run: ArraySlice<RecipeEntry>, _ locations: [ChunkID: ChunkLocation], into hasher: FileHasher
    ) throws {
        var segments: [(start: Int, length: Int)] = []
        segments.reserveCapacity(run.count)
        var first: ChunkLocation?
        for entry in run {
            guard let location = locations[entry.id] else { continue }
            guard location.length == entry.length else {
                throw IndexProblem(
                    reason: "the index gives chunk \(entry.id) \(entry.length) bytes, the store has \(location.length)")
            }
            let start = first.map { location.offset - $0.offset } ?? 0
            if first == nil { first = location }
            segments.append((Int(start), location.length))
        }
        guard let first, let last = segments.last else { return }
        try hasher.stored(pack: first.pack, offset: first.offset, span: last.start + last.length, segments: segments)
    }

    /// A chunk of this run, read back into the file hasher: from the pack it is in, or, once a
    /// checkpoint registered that pack, from the store.
    private func readInFlight(_ entry: RecipeEntry, into hasher: FileHasher) throws {
        var bytes: [UInt8] = []
        if let pack = replicator.sink.pack(holding: entry.id) {
            guard try pack.read(entry.id, into: &bytes) else {
                throw ReplicationError(.corruptPack, "chunk \(entry.id) is not in the open pack", set: replicator.set)
            }
        } else if let location = try store.chunkLocations(db, [entry.id], packNames: &packNames)[entry.id] {
            bytes = try replicator.reader.read(entry.id, at: location, verify: true)
        } else {
            throw ReplicationError(
                .corruptPack, "chunk \(entry.id) of this run is neither in its packs nor in the store",
                set: replicator.set)
        }
        guard bytes.count == entry.length else {
            throw IndexProblem(
                reason: "the index gives chunk \(entry.id) \(entry.length) bytes, the store has \(bytes.count)")
        }
        try bytes.withUnsafeBytes { try hasher.update($0) }
    }
}
