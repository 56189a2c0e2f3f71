import Crypto
import Foundation
import GRDB
import Logging
import StandbyBase
import StandbyTransport

extension ReplicationStore {
    /// Copies the set's sources into the store as one new version, fetching only what the
    /// store lacks. The version becomes visible only when every file is stored, its whole-file
    /// hash checked, and its size and modification time unchanged since before the read.
    /// One replicate per store at a time (`storeBusy` otherwise). Chunks stored before a failure
    /// or a kill stay, and the next run does not fetch them again.
    public func replicate(set spec: SetSpec, options: ReplicateOptions = ReplicateOptions()) async throws
        -> ReplicationReport
    {
        let store = self
        return try await Blocking.run { flag in try store.replicateBlocking(spec, options: options, cancellation: flag)
        }
    }

    func replicateBlocking(_ spec: SetSpec, options: ReplicateOptions, cancellation: CancellationFlag?) throws
        -> ReplicationReport
    {
        guard !spec.name.isEmpty, !spec.sources.isEmpty else {
            throw ReplicationError(.invalidInput, "a set needs a name and at least one source", set: spec.name)
        }
        let lock = try lockReplicate("replicate of set \(spec.name)")
        defer { withExtendedLifetime(lock) {} }
        var transportOptions = options.transport
        if let rate = options.rateLimit { transportOptions.maxReceiveRate = rate }
        let session = try TransferSession(options: transportOptions, logger: logger)
        session.cancellation = cancellation
        let replicator = Replicator(store: self, spec: spec, options: options, session: session)
        do {
            return try catalog {
                try pool.writeWithoutTransaction { db in
                    try widenPageCache(db)
                    // The run's checkpoints need not wait for the disk: a power loss may undo
                    // the last ones, whose packs (fsynced before) the next run adopts. The
                    // version's commit is made durable before the run reports it, and the
                    // connection is left as it was found for whatever writes next.
                    try db.execute(sql: "PRAGMA synchronous = NORMAL")
                    defer { try? db.execute(sql: "PRAGMA synchronous = FULL") }
                    try recover(db)
                    return try replicator.run(db)
                }
            }
        } catch var error as ReplicationError where error.set == nil {
            // A failure at the store: say which set's run it stopped, and what became of it.
            error.set = spec.name
            if error.code == .storeFull {
                error.message +=
                    "; the set's earlier versions are intact and nothing of this run is visible: free space at the store and run replicate again (the chunks it stored are kept and reused)"
            }
            throw error
        }
    }
}

/// One replicate run: owns the transfer session, the pack being written and the recipe of the
/// file being read. Lives on one thread.
final class Replicator {
    struct Source {
        var name: String
        var url: URL
    }

    let store: ReplicationStore
    let spec: SetSpec
    let options: ReplicateOptions
    let session: TransferSession
    let logger: Logger
    let parameters = ChunkerParameters.standard
    let started = ContinuousClock.now

    /// Writes the packs on a thread of its own.
    private let io = PackIO()
    private var writer: PackWriter?
    /// Full packs not yet in the catalog: still `.pack.tmp`, their chunks known here. They are
    /// sealed and registered together at a checkpoint, so a run pays one fsync of the directory
    /// and one catalog commit for several packs, not for each.
    private var finished: [PackWriter] = []
    private var finishedBytes: Int64 = 0
    private var oldestFinished: ContinuousClock.Instant?
    /// Recipe segments waiting for the next checkpoint's transaction.
    private var pendingSegments: [(file: Int64, seq: Int, entries: Data)] = []
    static let checkpointBytes: Int64 = 128 << 20
    static let checkpointAge: Duration = .seconds(1)
    static let pendingSegmentLimit = 16
    private let reader: PackReader
    private var newBytes: Int64 = 0
    private var processed: Int64 = 0
    private var total: Int64 = 0
    private var lastProgress = ContinuousClock.now - .seconds(1)
    /// The session's received bytes before the current pipelined transfer began.
    private var receivedBefore: Int64 = 0
    /// What the sessions of range fetchers received, and their requests.
    private var otherSessionBytes: Int64 = 0
    private var otherSessionRequests = 0
    private var receivedBytes: Int64 { session.stats.totalBytes + otherSessionBytes }
    private var currentFile = ""
    private var phase = ReplicationProgress.Phase.checking
    private var filesByIndex = 0
    private var filesRead = 0
    // The recipe of the file being read, written to the catalog in segments as it grows.
    private var recipeFile: Int64 = 0
    private var recipeSeq = 0
    private var recipeBuffer: [RecipeEntry] = []
    private var recipeCount = 0
    static let recipeSegment = 4096

    init(store: ReplicationStore, spec: SetSpec, options: ReplicateOptions, session: TransferSession) {
        self.store = store
        self.spec = spec
        self.options = options
        self.session = session
        self.logger = store.logger
        self.reader = PackReader(directory: store.packDirectory)
    }

    var set: String { spec.name }

    func run(_ db: Database) throws -> ReplicationReport {
        let sources = try expandSources()
        var before: [RemoteFileInfo] = []
        for source in sources {
            currentFile = source.name
            let info = try stat(source.url)
            guard info.size != nil else {
                throw ReplicationError(
                    .sourceUnreadable, "the server does not tell the size of \(redacted(source.url))", set: set,
                    host: source.url.host)
            }
            before.append(info)
        }
        total = before.reduce(0) { $0 + ($1.size ?? 0) }
        let versionID = try beginVersion(db)
        do {
            for (source, info) in zip(sources, before) {
                try replicateFile(db, source: source, info: info, version: versionID)
            }
            phase = .committing
            reportProgress(force: true)
            try finishPack(db)
            try checkpoint(db)
            let captured = before.compactMap(\.modificationTime).max()
            let now = Date().timeIntervalSince1970
            // Durable before the run reports success: with FULL, this commit syncs the log
            // and, with it, every checkpoint before it.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.inTransaction {
                try db.execute(
                    sql: """
                        UPDATE versions SET state = 'committed', size = ?, captured = ?, new_bytes = ?,
                            fetched_bytes = ?, verified = ? WHERE id = ?
                        """,
                    arguments: [total, captured.map(Double.init), newBytes, receivedBytes, now, versionID])
                try db.execute(sql: "DELETE FROM resume_points WHERE set_name = ?", arguments: [set])
                return .commit
            }
        } catch {
            // Keep what was fetched (the next run skips it, and resumes the file being read
            // after it); the version never becomes visible.
            segmentRecipe()
            try? finishPack(db)
            try? checkpoint(db)
            try? db.inTransaction {
                try store.keepResumePoints(db, version: versionID)
                try db.execute(sql: "DELETE FROM versions WHERE id = ?", arguments: [versionID])
                return .commit
            }
            throw error
        }
        logger.info(
            "Set replicated",
            metadata: [
                "set": "\(set)", "version": "\(versionID)", "bytes": "\(total)", "new": "\(newBytes)",
                "received": "\(receivedBytes)",
            ])
        var dropped: [Int64] = []
        var reclaimed: Int64 = 0
        if let keep = spec.keepLast {
            if let retention = try store.retainLocked(db, set: set, keepLast: keep) {
                dropped = retention.droppedVersions
                reclaimed = retention.reclaimedBytes
            }
        }
        let version = try Row.fetchOne(
            db,
            sql:
                "SELECT \(ReplicationStore.versionColumns) FROM versions v JOIN sets s ON s.id = v.set_id WHERE v.id = ?",
            arguments: [versionID]
        ).map(ReplicationStore.version)
        guard let version else {
            throw ReplicationError(.catalog, "version \(versionID) vanished after its commit", set: set)
        }
        return ReplicationReport(
            version: version, bytesReceived: receivedBytes, requests: session.stats.requests + otherSessionRequests,
            filesByIndex: filesByIndex, filesRead: filesRead, elapsed: ContinuousClock.now - started,
            droppedVersions: dropped, reclaimedBytes: reclaimed)
    }

    // MARK: - Sources

    /// file:// directories, and smb:// URLs that end with /, stand for every regular file
    /// under them (a file share); any other source is one file named by its last path component.
    func expandSources() throws -> [Source] {
        var result: [Source] = []
        for url in spec.sources {
            if url.scheme?.lowercased() == "smb", url.absoluteString.hasSuffix("/") {
                let names: [String]
                do {
                    names = try session.listFiles(under: url)
                } catch let error as TransportError {
                    throw ReplicationError.source(error, set: set)
                }
                for name in names {
                    let file = name.split(separator: "/").reduce(url) {
                        $0.appendingPathComponent(String($1), isDirectory: false)
                    }
                    result.append(Source(name: url.lastPathComponent + "/" + name, url: file))
                }
                continue
            }
            var isDirectory: ObjCBool = false
            if url.isFileURL, FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory),
                isDirectory.boolValue
            {
                let root = url.standardizedFileURL.path
                for file in try Publisher.regularFiles(under: root) {
                    let relative = String(file.dropFirst(root.count + 1))
                    result.append(Source(name: url.lastPathComponent + "/" + relative, url: URL(fileURLWithPath: file)))
                }
            } else {
                result.append(Source(name: url.lastPathComponent, url: url))
            }
        }
        var seen: Set<String> = []
        for source in result where !seen.insert(source.name).inserted {
            throw ReplicationError(
                .invalidInput, "two sources are both named \(source.name); a set's files need distinct names",
                set: set)
        }
        guard !result.isEmpty else {
            throw ReplicationError(.invalidInput, "the set's sources hold no files", set: set)
        }
        return result
    }

    func redacted(_ url: URL) -> String { Redaction.redacted(url) }

    func stat(_ url: URL) throws -> RemoteFileInfo {
        do {
            return try session.stat(url)
        } catch let error as TransportError {
            throw ReplicationError.source(error, set: set)
        }
    }

    // MARK: - Versions and files

    private func beginVersion(_ db: Database) throws -> Int64 {
        try db.inTransaction {
            try db.execute(
                sql: "INSERT OR IGNORE INTO sets(name, created) VALUES (?, ?)",
                arguments: [set, Date().timeIntervalSince1970])
            try db.execute(
                sql: """
                    INSERT INTO versions(set_id, state, created) SELECT id, 'pending', ? FROM sets WHERE name = ?
                    """, arguments: [Date().timeIntervalSince1970, set])
            return .commit
        }
        return db.lastInsertedRowID
    }

    private func replicateFile(_ db: Database, source: Source, info: RemoteFileInfo, version: Int64) throws {
        currentFile = source.name
        try db.execute(
            sql: "INSERT INTO files(version_id, name, source, size, mtime) VALUES (?, ?, ?, ?, ?)",
            arguments: [version, source.name, redacted(source.url), info.size, info.modificationTime])
        let fileID = db.lastInsertedRowID
        let base = processed
        var outcome: (sha: [UInt8], chunks: Int)?
        if options.useIndex {
            startRecipe(fileID)
            outcome = try replicateByIndex(db, source: source, info: info)
            if outcome == nil {
                pendingSegments.removeAll { $0.file == fileID }
                try db.execute(sql: "DELETE FROM recipes WHERE file_id = ?", arguments: [fileID])
                processed = base
            } else {
                filesByIndex += 1
            }
        }
        if outcome == nil {
            startRecipe(fileID)
            outcome = try replicateWhole(db, source: source, info: info)
            filesRead += 1
        }
        guard let outcome else { return }
        let after = try stat(source.url)
        guard after == info else {
            throw ReplicationError(
                .sourceChanged,
                "\(redacted(source.url)) changed while it was read (size \(info.size ?? -1) → \(after.size ?? -1), mtime \(info.modificationTime ?? -1) → \(after.modificationTime ?? -1)); nothing was committed, run replicate again",
                set: set, host: source.url.host)
        }
        try db.execute(
            sql: "UPDATE files SET sha256 = ?, chunks = ? WHERE id = ?",
            arguments: [Data(outcome.sha), outcome.chunks, fileID])
    }

    // MARK: - Whole-file read

    /// Reads the whole source through a `ReadPipeline`: the transfer and the cutting on one
    /// thread, the chunks' and the whole file's SHA-256 on another, and on this one (which owns
    /// the catalog) the look-ups and the pack writes.
    private func replicateWhole(_ db: Database, source: Source, info: RemoteFileInfo) throws -> ([UInt8], Int) {
        phase = .fetching
        let base = processed
        // After a kill: the bytes the interrupted run stored are read back from the packs for
        // the whole-file hash, and the source is read from where they end.
        var sha = StreamHasher()
        let resumed = try resume(db, source: source, info: info, into: &sha)
        processed = base + resumed
        receivedBefore = receivedBytes
        let pipeline = ReadPipeline(parameters: parameters, hasher: sha)
        let range = resumed > 0 ? ByteRange(offset: resumed, length: (info.size ?? resumed) - resumed) : nil
        let transfer = UncheckedTransfer(session: session, url: source.url, range: range)
        pipeline.start { sink in try transfer.run(sink) }
        var stored: Int64 = resumed
        let outcome: (sha256: [UInt8], bytes: Int64)
        do {
            while let block = try pipeline.next() {
                defer { pipeline.release(block) }
                try checkCancelled()
                try store(db, block)
                stored += Int64(block.count)
                processed = base + stored
                reportProgress(received: pipeline.receivedBytes)
            }
            let joined = try pipeline.join()
            outcome = (joined.sha256, joined.bytes + resumed)
        } catch {
            pipeline.abort()
            _ = try? pipeline.join()
            if let error = error as? TransportError { throw ReplicationError.source(error, set: set) }
            throw error
        }
        if let size = info.size, outcome.bytes != size {
            let code: ReplicationError.Code = outcome.bytes < size ? .sourceTruncated : .sourceChanged
            throw ReplicationError(
                code, "\(redacted(source.url)) gave \(outcome.bytes) bytes, but its size was \(size)", set: set,
                host: source.url.host)
        }
        try flushRecipe(db)
        return (outcome.sha256, recipeCount)
    }

    /// Schemes whose transports serve byte ranges of a file (HTTP Range, SFTP and SMB reads at
    /// an offset, file:// reads at an offset).
    static let rangedSchemes: Set<String> = ["http", "https", "sftp", "smb", "file"]

    /// Where an interrupted copy of this file stopped, when it can be taken up: the source
    /// serves byte ranges, its size and modification time are those of the interrupted run and
    /// the chunks its checkpoints recorded are still stored. Those chunks are read back (each
    /// checked against its id) into `sha` and the file's recipe; returns the offset after them,
    /// a chunk boundary: the chunker starts afresh at every boundary, so cutting the rest from
    /// there gives the chunks a reading from byte 0 would. 0 when there is nothing to resume.
    private func resume(_ db: Database, source: Source, info: RemoteFileInfo, into sha: inout StreamHasher) throws
        -> Int64
    {
        try db.execute(sql: ReplicationStore.resumeTable)
        guard
            let row = try Row.fetchOne(
                db, sql: "SELECT source, size, mtime, entries FROM resume_points WHERE set_name = ? AND name = ?",
                arguments: [set, source.name])
        else { return 0 }
        let (oldSource, oldSize, oldMtime, data): (String, Int64, Int64?, Data) = (row[0], row[1], row[2], row[3])
        guard let size = info.size, let mtime = info.modificationTime, oldMtime == mtime, oldSize == size,
            oldSource == redacted(source.url)
        else {
            logger.info(
                "Source changed since the interrupted run, reading it from the start",
                metadata: [
                    "set": "\(set)", "file": "\(source.name)",
                    "then": "size \(oldSize), mtime \(oldMtime ?? -1)",
                    "now": "size \(info.size ?? -1), mtime \(info.modificationTime ?? -1)",
                ])
            return 0
        }
        guard let scheme = source.url.scheme?.lowercased(), Self.rangedSchemes.contains(scheme) else {
            logger.info(
                "The source serves no byte ranges, reading it from the start",
                metadata: ["set": "\(set)", "file": "\(source.name)"])
            return 0
        }
        let entries = [RecipeEntry].decode(data)
        var packNames: [Int64: String] = [:]
        let locations = try store.chunkLocations(db, entries.lazy.map(\.id), packNames: &packNames)
        var offset: Int64 = 0
        for entry in entries {
            // Stop at the first chunk no longer stored (reclaimed, or its pack lost), and never
            // past the end of the file.
            guard let location = locations[entry.id], location.length == entry.length,
                offset + Int64(entry.length) <= size
            else { break }
            try checkCancelled()
            let bytes: [UInt8]
            do {
                bytes = try reader.read(entry.id, at: location, verify: true)
            } catch let error as ReplicationError where error.code == .corruptPack {
                logger.warning(
                    "A stored chunk of the interrupted run is damaged; reading the file from there",
                    metadata: ["set": "\(set)", "file": "\(source.name)", "reason": "\(error.message)"])
                break
            }
            bytes.withUnsafeBytes { sha.update($0) }
            try appendRecipe(db, entry)
            offset += Int64(entry.length)
            processed += Int64(entry.length)
            reportProgress()
        }
        if offset > 0 {
            logger.info(
                "Resuming an interrupted copy",
                metadata: [
                    "set": "\(set)", "file": "\(source.name)", "offset": "\(offset)", "size": "\(size)",
                ])
        }
        return offset
    }

    /// Stores the chunks of a block (their ids computed): which of them the store lacks (one
    /// catalog query per 64 chunks), those copied into the open pack, and every chunk appended
    /// to the file's recipe.
    private func store(_ db: Database, _ block: StreamBlock) throws {
        let flying = block.ids.map(inFlight)
        let existing = try store.existingChunks(db, block.ids.indices.filter { !flying[$0] }.map { block.ids[$0] })
        var fresh: [Int] = []
        var taken = Set<ChunkID>()
        for (index, id) in block.ids.enumerated()
        where !flying[index] && !existing.contains(id) && taken.insert(id).inserted {
            fresh.append(index)
            newBytes += Int64(block.ends[index] - block.start(of: index))
        }
        if !fresh.isEmpty { try openWriter().append(block, chunks: fresh) }
        for (index, id) in block.ids.enumerated() {
            try appendRecipe(db, RecipeEntry(id: id, length: block.ends[index] - block.start(of: index)))
        }
        try packWritten(db)
    }

    /// Stores a chunk unless the store has it, and appends it to the file's recipe.
    private func keep(_ db: Database, _ chunk: UnsafeRawBufferPointer) throws {
        let id = ChunkID.of(chunk)
        try keep(db, id, chunk)
    }

    private func keep(_ db: Database, _ id: ChunkID, _ chunk: UnsafeRawBufferPointer) throws {
        if !(try has(db, id)) {
            let pack = try openWriter()
            try pack.append(id, chunk)
            newBytes += Int64(chunk.count)
            try packWritten(db)
        }
        try appendRecipe(db, RecipeEntry(id: id, length: chunk.count))
    }

    private func has(_ db: Database, _ id: ChunkID) throws -> Bool {
        if inFlight(id) { return true }
        return try store.chunkExists(db, id)
    }

    /// Whether the chunk is in a pack of this run that the catalog does not know yet.
    private func inFlight(_ id: ChunkID) -> Bool {
        if writer?.chunks[id] != nil { return true }
        return finished.contains { $0.chunks[id] != nil }
    }

    /// The pack of this run (open or finished, not yet in the catalog) that holds the chunk.
    private func inFlightPack(_ id: ChunkID) -> PackWriter? {
        if let writer, writer.chunks[id] != nil { return writer }
        return finished.first { $0.chunks[id] != nil }
    }

    private func openWriter() throws -> PackWriter {
        if let writer { return writer }
        let fresh = try PackWriter(directory: store.packDirectory, io: io)
        writer = fresh
        return fresh
    }

    /// After writes to the open pack: a full one is finished, and a checkpoint is due once the
    /// finished packs hold `checkpointBytes` or the oldest waited `checkpointAge` (so a slow,
    /// rate-capped transfer still makes its chunks durable as it goes).
    private func packWritten(_ db: Database) throws {
        if let pack = writer, pack.size >= PackFormat.targetSize { try finishPack(db) }
        if finishedBytes >= Self.checkpointBytes
            || oldestFinished.map({ ContinuousClock.now - $0 >= Self.checkpointAge }) == true
        {
            try checkpoint(db)
        }
    }

    /// Closes the open pack for appends; it waits for the next checkpoint.
    private func finishPack(_ db: Database) throws {
        guard let pack = writer else { return }
        writer = nil
        // A pack whose write failed (a full disk, mostly) is deleted: the space it holds is
        // what the store needs now, for the catalog and the next run. Packs of this run that
        // were finished before stay, and are registered by the checkpoint.
        guard !pack.order.isEmpty, !pack.failed else {
            pack.discard()
            return
        }
        // Its last bytes are queued; the checkpoint waits for them.
        pack.finish()
        finished.append(pack)
        finishedBytes += pack.size
        if oldestFinished == nil { oldestFinished = .now }
    }

    /// Makes the finished packs durable and known: each fsynced and renamed, the directory
    /// fsynced once, then one catalog transaction registers them all with the recipe segments
    /// waiting. From here on their chunks are stored for good.
    private func checkpoint(_ db: Database) throws {
        let packs = finished
        for pack in packs {
            do {
                try pack.sealFile()
            } catch {
                // Its last writes failed (a full disk): it is deleted, as the open pack would
                // be, and the others are registered when the checkpoint is retried.
                guard pack.failed else { throw error }
                pack.discard()
                finished.removeAll { $0 === pack }
                finishedBytes -= pack.size
                throw error
            }
        }
        if !packs.isEmpty {
            try FileIO.syncDirectory(store.packDirectory)
            // The recipe so far goes with the packs: after a kill the next run resumes the file
            // where this checkpoint leaves it (a chunk the catalog then lacks stops it early).
            segmentRecipe()
        }
        let segments = pendingSegments
        guard !packs.isEmpty || !segments.isEmpty else { return }
        try db.inTransaction {
            for pack in packs {
                try store.insertPack(
                    db, name: pack.name, size: pack.size,
                    chunks: pack.order.compactMap { id in pack.chunks[id].map { (id, $0.offset, $0.length) } })
            }
            let insert = try db.cachedStatement(sql: "INSERT INTO recipes(file_id, seq, entries) VALUES (?, ?, ?)")
            for segment in segments {
                try insert.execute(arguments: [segment.file, segment.seq, segment.entries])
            }
            return .commit
        }
        finished.removeAll()
        finishedBytes = 0
        oldestFinished = nil
        pendingSegments.removeAll()
    }

    // MARK: - Recipes

    private func startRecipe(_ file: Int64) {
        recipeFile = file
        recipeSeq = 0
        recipeCount = 0
        recipeBuffer.removeAll(keepingCapacity: true)
    }

    /// The buffered entries become a segment, whatever their number.
    private func segmentRecipe() {
        guard !recipeBuffer.isEmpty else { return }
        pendingSegments.append((recipeFile, recipeSeq, recipeBuffer.encoded()))
        recipeSeq += 1
        recipeBuffer.removeAll(keepingCapacity: true)
    }

    private func appendRecipe(_ db: Database, _ entry: RecipeEntry) throws {
        recipeBuffer.append(entry)
        recipeCount += 1
        if recipeBuffer.count >= Self.recipeSegment { try flushRecipe(db) }
    }

    /// The buffered entries become a segment for the next checkpoint (brought forward when
    /// `pendingSegmentLimit` segments wait, so memory stays bounded when nothing new is stored).
    private func flushRecipe(_ db: Database) throws {
        guard !recipeBuffer.isEmpty else { return }
        pendingSegments.append((recipeFile, recipeSeq, recipeBuffer.encoded()))
        recipeSeq += 1
        recipeBuffer.removeAll(keepingCapacity: true)
        if pendingSegments.count >= Self.pendingSegmentLimit { try checkpoint(db) }
    }

    // MARK: - Delta transfer with a published index

    /// Fetches the index and then only the chunks the store lacks. Returns nil (read the whole
    /// file instead) when there is no usable index: none published, stale (size or mtime differ),
    /// corrupt, made with other chunk sizes, or when the fetched bytes do not match it.
    private func replicateByIndex(_ db: Database, source: Source, info: RemoteFileInfo) throws -> ([UInt8], Int)? {
        guard let size = info.size, let mtime = info.modificationTime else { return nil }
        // Without a previous version every group is fetched, but only missing chunks are: a run
        // after a kill in the middle of the first copy does not fetch again what was stored.
        let previous = try previousRecipe(db, name: source.name)
        let indexURL = ChunkIndexLocation.index(of: source.url)
        phase = .readingIndex
        do {
            return try deltaTransfer(
                db, source: source, indexURL: indexURL, size: size, mtime: mtime, previous: previous)
        } catch let error as TransportError where error.code == .notFound {
            logger.debug("No chunk index published", metadata: ["set": "\(set)", "index": "\(error.url)"])
            return nil
        } catch let error as TransportError where error.code != .cancelled {
            logger.info(
                "Chunk index unusable, reading the whole file",
                metadata: ["set": "\(set)", "index": "\(error.url)", "reason": "\(error.message)"])
            return nil
        } catch let problem as IndexProblem {
            logger.warning(
                "Chunk index unusable, reading the whole file",
                metadata: ["set": "\(set)", "index": "\(redacted(indexURL))", "reason": "\(problem.reason)"])
            return nil
        }
    }

    struct IndexProblem: Error {
        var reason: String
    }

    private func previousRecipe(_ db: Database, name: String) throws -> PreviousRecipe? {
        let file = try Int64.fetchOne(
            db,
            sql: """
                SELECT f.id FROM files f JOIN versions v ON v.id = f.version_id JOIN sets s ON s.id = v.set_id
                WHERE s.name = ? AND f.name = ? AND v.state = 'committed' AND v.broken = 0
                ORDER BY v.id DESC LIMIT 1
                """, arguments: [set, name])
        guard let file else { return nil }
        return try PreviousRecipe(db, file: file)
    }

    private func deltaTransfer(
        _ db: Database, source: Source, indexURL: URL, size: Int64, mtime: Int64, previous: PreviousRecipe?
    ) throws -> ([UInt8], Int)? {
        let top = try fetchTopLevel(indexURL, size: size, mtime: mtime)
        let header = top.header
        // The groups of the previous version: their entries need not be fetched.
        let known = previous?.groups ?? [:]
        return try deltaTransfer(
            db, source: source, indexURL: indexURL, size: size, top: top, header: header,
            previous: previous, known: known)
    }

    /// The index's header and top level, checked; what was fetched for them is freed on return.
    private func fetchTopLevel(_ indexURL: URL, size: Int64, mtime: Int64) throws -> ChunkIndexTop {
        let indexSize = try session.stat(indexURL).size ?? 0
        guard indexSize >= Int64(ChunkIndexHeader.size) else { throw IndexProblem(reason: "index too short") }
        // The header and the top level in one request: the top level is about 1/15 of an index.
        let first = min(indexSize, max(4096, Int64(ChunkIndexHeader.size) + indexSize / 12))
        let head = try session.fetch(indexURL, range: ByteRange(offset: 0, length: first), maxBytes: Int(first))
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
        let expectedSize =
            Int64(ChunkIndexHeader.size + header.topLevelLength) + Int64(header.chunkCount)
            * Int64(RecipeEntry.size)
        guard indexSize == expectedSize else { throw IndexProblem(reason: "index length does not match its header") }
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

    /// What the walk of a window does with its chunks, in file order.
    private enum Step {
        /// Chunks the catalog has, read back from their packs.
        case stored(Range<Int>)
        /// A chunk in a pack of this run, not yet in the catalog.
        case inFlight(Int)
        /// Chunks the store lacks: one byte range of the source, fetched ahead.
        case fetch(Range<Int>, offset: Int64, length: Int)
    }

    private func deltaTransfer(
        _ db: Database, source: Source, indexURL: URL, size: Int64, top: ChunkIndexTop, header: ChunkIndexHeader,
        previous: PreviousRecipe?, known: [UInt64: UInt64]
    ) throws -> ([UInt8], Int)? {
        phase = .fetching
        let hasher = FileHasher(packDirectory: store.packDirectory)
        defer { hasher.abort() }
        let fetcher = try RangeFetcher(
            options: session.options, cancellation: session.cancellation, logger: logger)
        defer {
            fetcher.stop()
            otherSessionBytes += fetcher.receivedBytes
            otherSessionRequests += fetcher.requests
        }
        let base = processed
        let window = 1024
        let windows = stride(from: 0, to: top.groups.count, by: window).map { $0..<min($0 + window, top.groups.count) }

        // The index entries of a window's groups that the previous version does not have, in
        // runs of adjacent groups: one range each, asked for a window ahead of the walk.
        func indexRuns(_ groups: Range<Int>) -> [Range<Int>] {
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
        func requestIndex(_ runs: [Range<Int>]) {
            for run in runs {
                let count = run.reduce(0) { $0 + top.groups[$1].chunkCount }
                fetcher.request(
                    indexURL,
                    ByteRange(offset: top.secondLevelOffsets[run.lowerBound], length: Int64(count * RecipeEntry.size)))
            }
        }

        var offset: Int64 = 0
        var packNames: [Int64: String] = [:]
        var nextRuns = windows.first.map(indexRuns) ?? []
        requestIndex(nextRuns)
        for (w, groups) in windows.enumerated() {
            let runs = nextRuns
            var fetched: [Int: [RecipeEntry]] = [:]
            for run in runs {
                let count = run.reduce(0) { $0 + top.groups[$1].chunkCount }
                let data = try fetcher.next()
                guard data.count == count * RecipeEntry.size else {
                    throw IndexProblem(reason: "index entries of groups \(run) are short")
                }
                let decoded = [RecipeEntry].decode(Data(data))
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
            for k in groups {
                if let previous, let packed = known[top.groups[k].key.high] {
                    let (start, count) = PreviousRecipe.unpack(packed)
                    entries.append(contentsOf: try previous.entries(db, start: start, count: count))
                } else if let list = fetched[k] {
                    entries.append(contentsOf: list)
                }
            }
            // Where the store has each chunk: one catalog query per 64 chunks.
            let locations = try store.chunkLocations(
                db, entries.lazy.map(\.id).filter { !self.inFlight($0) }, packNames: &packNames)
            let steps = plan(entries, locations: locations, at: offset)
            for case .fetch(_, let at, let length) in steps {
                fetcher.request(source.url, ByteRange(offset: at, length: Int64(length)))
            }
            // The next window's index entries come while this one is walked.
            nextRuns = w + 1 < windows.count ? indexRuns(windows[w + 1]) : []
            requestIndex(nextRuns)

            // Walk the chunks in file order: stored ones are read back for the whole-file
            // hash, missing ones taken from the fetcher as they come.
            for step in steps {
                try checkCancelled()
                switch step {
                case .stored(let run):
                    try readStored(entries[run], locations, into: hasher)
                    for entry in entries[run] { try appendRecipe(db, entry) }
                case .inFlight(let c):
                    guard let pack = inFlightPack(entries[c].id) else {
                        throw ReplicationError(.corruptPack, "chunk \(entries[c].id) left the open pack", set: set)
                    }
                    try readInFlight(entries[c], from: pack, into: hasher)
                    try appendRecipe(db, entries[c])
                case .fetch(let run, let at, _):
                    let bytes: [UInt8]
                    do {
                        bytes = try fetcher.next()
                    } catch let error as TransportError {
                        throw ReplicationError.source(error, set: set)
                    }
                    try storeFetched(db, entries[run], bytes, at: at, into: hasher)
                }
                switch step {
                case .stored(let run), .fetch(let run, _, _): offset += run.reduce(0) { $0 + Int64(entries[$1].length) }
                case .inFlight(let c): offset += Int64(entries[c].length)
                }
                processed = base + offset
                reportProgress()
            }
        }
        guard offset == size, try hasher.finalize() == header.fileSHA256 else {
            throw IndexProblem(reason: "the file rebuilt from the index does not match its SHA-256")
        }
        try flushRecipe(db)
        return (header.fileSHA256, recipeCount)
    }

    /// Splits a window's chunks into steps: runs that follow each other in one pack (as a
    /// previous copy of the file left them, one pread each), chunks of this run's packs, and
    /// runs of missing chunks (one byte range each, at most 4 MiB).
    private func plan(_ entries: [RecipeEntry], locations: [ChunkID: ChunkLocation], at start: Int64) -> [Step] {
        var steps: [Step] = []
        var offset = start
        var c = 0
        while c < entries.count {
            let entry = entries[c]
            if let location = locations[entry.id] {
                var stop = c + 1
                var spanEnd = location.offset + Int64(location.length)
                while stop < entries.count, let next = locations[entries[stop].id], next.pack == location.pack,
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
                while stop < entries.count, length < 4 << 20, locations[entries[stop].id] == nil,
                    !inFlight(entries[stop].id)
                {
                    length += entries[stop].length
                    stop += 1
                }
                steps.append(.fetch(c..<stop, offset: offset, length: length))
                offset += Int64(length)
                c = stop
            }
        }
        return steps
    }

    /// Checks each chunk of a fetched run against its id, stores it and feeds it to the file
    /// hasher.
    private func storeFetched(
        _ db: Database, _ run: ArraySlice<RecipeEntry>, _ buffer: [UInt8], at offset: Int64, into hasher: FileHasher
    ) throws {
        var at = 0
        try buffer.withUnsafeBytes { raw in
            for entry in run {
                guard at + entry.length <= raw.count else {
                    throw IndexProblem(reason: "the range at offset \(offset) is shorter than the index says")
                }
                let chunk = UnsafeRawBufferPointer(rebasing: raw[at..<(at + entry.length)])
                guard ChunkID.of(chunk) == entry.id else {
                    throw IndexProblem(reason: "bytes at offset \(offset + Int64(at)) do not match the index")
                }
                try hasher.update(chunk)
                try keep(db, entry.id, chunk)
                at += entry.length
            }
        }
    }

    /// Reads stored chunks that lie one after another in a pack straight into the file hasher,
    /// with one pread (the record headers between them are skipped by the hasher). Not
    /// re-hashed one by one: the whole-file hash covers them. A length other than the index's
    /// means the index lies.
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

    /// A chunk of a pack of this run, read back into the file hasher.
    private func readInFlight(_ entry: RecipeEntry, from pack: PackWriter, into hasher: FileHasher) throws {
        var bytes: [UInt8] = []
        guard try pack.read(entry.id, into: &bytes) else {
            throw ReplicationError(.corruptPack, "chunk \(entry.id) is not in the open pack", set: set)
        }
        guard bytes.count == entry.length else {
            throw IndexProblem(
                reason: "the index gives chunk \(entry.id) \(entry.length) bytes, the store has \(bytes.count)")
        }
        try bytes.withUnsafeBytes { try hasher.update($0) }
    }

    /// Transfers on other threads may be ahead of what is stored: a cancelled run stops at
    /// the next piece it stores, not when those transfers end.
    private func checkCancelled() throws {
        if session.cancellation?.isCancelled == true {
            throw ReplicationError(.cancelled, "the replicate was cancelled; nothing of this run is visible", set: set)
        }
    }

    // MARK: - Progress

    /// `received`: what the current transfer has delivered, when another thread runs it (the
    /// session's own figures are then not to be read here).
    private func reportProgress(force: Bool = false, received: Int64? = nil) {
        guard let progress = options.progress else { return }
        let now = ContinuousClock.now
        guard force || now - lastProgress >= .milliseconds(200) else { return }
        lastProgress = now
        let receivedBytes = received.map { receivedBefore + $0 } ?? self.receivedBytes
        progress(
            ReplicationProgress(
                set: set, file: currentFile, phase: phase, processedBytes: processed, totalBytes: total,
                receivedBytes: receivedBytes, elapsed: now - started))
    }
}

/// The session and URL of one whole-file transfer, handed to the pipeline's reading thread.
/// The session is used there alone until the pipeline is joined.
private struct UncheckedTransfer: @unchecked Sendable {
    let session: TransferSession
    let url: URL
    var range: ByteRange?

    func run(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        if let range, range.length == 0 { return }
        try session.get(url, range: range, sink: sink)
    }
}
