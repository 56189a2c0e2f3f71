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

    /// The pack being written and the full ones waiting for the next checkpoint.
    let sink: PackSink
    /// The recipe of the file being read, written to the catalog in segments as it grows.
    var recipe = RecipeWriter()
    let reader: PackReader
    /// The first source's index, asked for while the sources are statted.
    private var indexStart: DeltaTransfer.IndexStart?
    private var newBytes: Int64 = 0
    var processed: Int64 = 0
    private var total: Int64 = 0
    private var lastProgress = ContinuousClock.now - .seconds(1)
    /// The session's received bytes before the current pipelined transfer began.
    private var receivedBefore: Int64 = 0
    /// What the sessions of range fetchers received, and their requests.
    var otherSessionBytes: Int64 = 0
    var otherSessionRequests = 0
    private var receivedBytes: Int64 { session.stats.totalBytes + otherSessionBytes }
    private var currentFile = ""
    private var phase = ReplicationProgress.Phase.checking
    private var filesByIndex = 0
    private var filesRead = 0
    init(store: ReplicationStore, spec: SetSpec, options: ReplicateOptions, session: TransferSession) {
        self.store = store
        self.spec = spec
        self.options = options
        self.session = session
        self.logger = store.logger
        self.reader = PackReader(directory: store.packDirectory)
        self.sink = PackSink(directory: store.packDirectory)
    }

    var set: String { spec.name }

    func run(_ db: Database) throws -> ReplicationReport {
        let sources = try expandSources()
        indexStart = try startIndex(db, sources.first)
        defer { takeIndexStart() }
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
            sink.finishPack()
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
            recipe.flush()
            sink.finishPack()
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
        var byIndex = false
        if options.useIndex {
            recipe.start(fileID)
            outcome = try replicateByIndex(db, source: source, info: info)
            if outcome == nil {
                recipe.discardPending(of: fileID)
                try db.execute(sql: "DELETE FROM recipes WHERE file_id = ?", arguments: [fileID])
                processed = base
            } else {
                filesByIndex += 1
                byIndex = true
            }
        }
        if outcome == nil {
            recipe.start(fileID)
            outcome = try replicateWhole(db, source: source, info: info)
            filesRead += 1
        }
        guard let outcome else { return }
        // A file rebuilt by its index is the file the index describes, which matched the first
        // stat: every fetched byte was checked against the index's chunk ids and the whole
        // against its SHA-256 (a range the source rewrote meanwhile fails them), so a second stat
        // would only cost a round trip. Bytes read whole have nothing to check them by.
        if !byIndex {
            let after = try stat(source.url)
            guard after == info else {
                throw ReplicationError(
                    .sourceChanged,
                    "\(redacted(source.url)) changed while it was read (size \(info.size ?? -1) → \(after.size ?? -1), mtime \(info.modificationTime ?? -1) → \(after.modificationTime ?? -1)); nothing was committed, run replicate again",
                    set: set, host: source.url.host)
            }
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
        return (outcome.sha256, recipe.count)
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
        let flying = block.ids.map(sink.holds)
        let existing = try store.existingChunks(db, block.ids.indices.filter { !flying[$0] }.map { block.ids[$0] })
        var fresh: [Int] = []
        var taken = Set<ChunkID>()
        for (index, id) in block.ids.enumerated()
        where !flying[index] && !existing.contains(id) && taken.insert(id).inserted {
            fresh.append(index)
            newBytes += Int64(block.ends[index] - block.start(of: index))
        }
        if !fresh.isEmpty { try sink.openWriter().append(block, chunks: fresh) }
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

    func keep(_ db: Database, _ id: ChunkID, _ chunk: UnsafeRawBufferPointer) throws {
        if !(try has(db, id)) {
            let pack = try sink.openWriter()
            try pack.append(id, chunk)
            newBytes += Int64(chunk.count)
            try packWritten(db)
        }
        try appendRecipe(db, RecipeEntry(id: id, length: chunk.count))
    }

    private func has(_ db: Database, _ id: ChunkID) throws -> Bool {
        if sink.holds(id) { return true }
        return try store.chunkExists(db, id)
    }

    /// After writes to the open pack: a checkpoint when one is due.
    private func packWritten(_ db: Database) throws {
        if sink.written() { try checkpoint(db) }
    }

    /// Makes the finished packs durable and known: sealed (`PackSink.seal`), then one catalog
    /// transaction registers them all with the recipe segments waiting. From here on their
    /// chunks are stored for good.
    private func checkpoint(_ db: Database) throws {
        let packs = try sink.seal()
        if !packs.isEmpty {
            // The recipe so far goes with the packs: after a kill the next run resumes the file
            // where this checkpoint leaves it (a chunk the catalog then lacks stops it early).
            recipe.flush()
        }
        let segments = recipe.pending
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
        sink.registered()
        recipe.committed()
    }

    // MARK: - Recipes

    func appendRecipe(_ db: Database, _ entry: RecipeEntry) throws {
        if recipe.append(entry) { try checkpoint(db) }
    }

    /// The buffered entries become a segment for the next checkpoint (brought forward when
    /// enough segments wait, so memory stays bounded when nothing new is stored).
    func flushRecipe(_ db: Database) throws {
        if recipe.flush() { try checkpoint(db) }
    }

    // MARK: - Delta transfer with a published index

    /// Fetches the index and then only the chunks the store lacks (`DeltaTransfer`). Returns
    /// nil (read the whole file instead) when there is no usable index: none published, stale
    /// (size or mtime differ), corrupt, made with other chunk sizes, or when the fetched bytes
    /// do not match it.
    private func replicateByIndex(_ db: Database, source: Source, info: RemoteFileInfo) throws -> ([UInt8], Int)? {
        guard let size = info.size, let mtime = info.modificationTime else { return nil }
        // Without a previous version every group is fetched, but only missing chunks are: a run
        // after a kill in the middle of the first copy does not fetch again what was stored.
        let previous = try previousRecipe(db, name: source.name)
        let indexURL = ChunkIndexLocation.index(of: source.url)
        phase = .readingIndex
        let start = indexStart?.url == indexURL ? takeIndexStart() : nil
        do {
            let top = try DeltaTransfer.topLevel(
                of: indexURL, size: size, mtime: mtime, parameters: parameters, session: session, start: start)
            phase = .fetching
            let delta = DeltaTransfer(
                self, db: db, url: source.url, indexURL: indexURL, size: size, top: top, previous: previous,
                connected: start.map { [$0.session] } ?? [])
            let outcome = try delta.run()
            return (outcome.sha256, outcome.chunks)
        } catch let error as TransportError where error.code == .notFound {
            logger.debug("No chunk index published", metadata: ["set": "\(set)", "index": "\(error.url)"])
            return nil
        } catch let error as TransportError where error.code != .cancelled {
            logger.info(
                "Chunk index unusable, reading the whole file",
                metadata: ["set": "\(set)", "index": "\(error.url)", "reason": "\(error.message)"])
            return nil
        } catch let problem as DeltaTransfer.IndexProblem {
            logger.warning(
                "Chunk index unusable, reading the whole file",
                metadata: ["set": "\(set)", "index": "\(redacted(indexURL))", "reason": "\(problem.reason)"])
            return nil
        }
    }

    /// The early index request, answered, and counted with the run's requests.
    @discardableResult
    private func takeIndexStart() -> DeltaTransfer.IndexStart? {
        guard let start = indexStart else { return nil }
        indexStart = nil
        start.join()
        otherSessionBytes += start.session.stats.totalBytes
        otherSessionRequests += start.session.stats.requests
        return start
    }

    /// Asks for the start of the source's index on a session of its own, over HTTP, so that its
    /// round trip overlaps the stats'. Its size is guessed from the previous version's.
    private func startIndex(_ db: Database, _ source: Source?) throws -> DeltaTransfer.IndexStart? {
        guard options.useIndex, let source, let scheme = source.url.scheme?.lowercased(),
            scheme == "http" || scheme == "https"
        else { return nil }
        let size = try Int64.fetchOne(
            db,
            sql: """
                SELECT f.size FROM files f JOIN versions v ON v.id = f.version_id JOIN sets s ON s.id = v.set_id
                WHERE s.name = ? AND f.name = ? AND v.state = 'committed' ORDER BY v.id DESC LIMIT 1
                """, arguments: [set, source.name])
        return try DeltaTransfer.IndexStart(
            url: ChunkIndexLocation.index(of: source.url), length: DeltaTransfer.guess(size ?? 0),
            options: session.options, cancellation: session.cancellation, logger: logger)
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

    /// Transfers on other threads may be ahead of what is stored: a cancelled run stops at
    /// the next piece it stores, not when those transfers end.
    func checkCancelled() throws {
        if session.cancellation?.isCancelled == true {
            throw ReplicationError(.cancelled, "the replicate was cancelled; nothing of this run is visible", set: set)
        }
    }

    // MARK: - Progress

    /// `received`: what the current transfer has delivered, when another thread runs it (the
    /// session's own figures are then not to be read here).
    func reportProgress(force: Bool = false, received: Int64? = nil) {
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
