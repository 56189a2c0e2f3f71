import Foundation
import GRDB
import GRDBSQLite
import Logging
import StandbyBase
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The deduplicating store at the secondary: pack files of chunks under `packs/`, and the
/// catalog of sets, versions, files and chunks in `catalog.sqlite`.
///
/// Locks: `replicate.lock` (exclusive) is held by a replicate and by garbage collection, one
/// at a time per store; `readers.lock` is shared by restores and verifies and taken exclusive
/// only while garbage collection deletes packs. Both are flock(2) locks that die with their
/// process. Every operation runs its blocking work on a thread of its own.
public final class ReplicationStore: Sendable {
    public let directory: String
    let pool: DatabasePool
    let logger: Logger

    var packDirectory: String { directory + "/packs" }
    var catalogPath: String { directory + "/" + Catalog.fileName }

    private init(directory: String, pool: DatabasePool, logger: Logger) {
        self.directory = directory
        self.pool = pool
        self.logger = logger
    }

    /// Opens the store in `directory`, creating it if needed. A store written by a newer
    /// Standby is refused (`storeTooNew`).
    public static func open(directory: String, logger: Logger) throws -> ReplicationStore {
        do {
            try FileManager.default.createDirectory(atPath: directory + "/packs", withIntermediateDirectories: true)
        } catch {
            throw ReplicationError(.storeIO, "cannot create the store directory \(directory): \(error)")
        }
        let pool = try Catalog.open(directory: directory)
        return ReplicationStore(directory: directory, pool: pool, logger: logger)
    }

    func lockReplicate(_ what: String) throws -> StoreLock {
        try StoreLock.acquire(directory + "/replicate.lock", exclusive: true, what: what)
    }

    func lockReaders(exclusive: Bool, _ what: String) throws -> StoreLock {
        try StoreLock.acquire(directory + "/readers.lock", exclusive: exclusive, wait: .seconds(60), what: what)
    }

    func catalog<T>(_ body: () throws -> T) throws -> T {
        try Catalog.wrap(catalogPath, body)
    }

    // MARK: - Recovery after a kill

    /// Run under the replicate lock before anything else: drops versions a killed run left
    /// pending (never visible), and adopts the chunks of packs it left behind, re-hashing each
    /// record, so a re-run does not fetch them again.
    func recover(_ db: Database) throws {
        try db.execute(sql: Self.resumeTable)
        let pending = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM versions WHERE state = 'pending'") ?? 0
        if pending > 0 {
            try db.inTransaction {
                try keepResumePoints(db, state: "pending")
                try db.execute(sql: "DELETE FROM versions WHERE state = 'pending'")
                return .commit
            }
            logger.info("Dropped unfinished versions of an interrupted run", metadata: ["count": "\(pending)"])
        }
        let known = Set(try String.fetchAll(db, sql: "SELECT name FROM packs"))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: packDirectory)) ?? []
        for file in names.sorted() {
            let path = packDirectory + "/" + file
            let isTemp = file.hasSuffix(".pack.tmp")
            guard isTemp || file.hasSuffix(".pack") else { continue }
            let name = String(file.prefix(while: { $0 != "." }))
            if !isTemp && known.contains(name) { continue }
            try adopt(db, path: path, name: name, isTemp: isTemp)
        }
    }

    /// Where an unfinished copy of a file stopped, kept when its version is dropped: the file's
    /// size, modification time and source then, and the recipe entries of its first bytes as the
    /// run's checkpoints committed them. The next replicate of the set starts after them when
    /// the source is unchanged (see `Replicator.resumePoint`). Dropped when a version of the set
    /// is committed.
    static let resumeTable = """
        CREATE TABLE IF NOT EXISTS resume_points(
            set_name TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime INTEGER,
            entries BLOB NOT NULL,
            PRIMARY KEY(set_name, name)) WITHOUT ROWID
        """

    /// Records a resume point for each file of the versions in `state` (or of `version`) whose
    /// recipe has committed segments, unless the set already has a longer one for that file.
    func keepResumePoints(_ db: Database, state: String? = nil, version: Int64? = nil) throws {
        try db.execute(sql: Self.resumeTable)
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT s.name, f.id, f.name, f.source, f.size, f.mtime FROM files f
                JOIN versions v ON v.id = f.version_id JOIN sets s ON s.id = v.set_id
                WHERE (? IS NULL OR v.state = ?) AND (? IS NULL OR v.id = ?)
                """, arguments: [state, state, version, version])
        for row in rows {
            let (setName, fileID, name, source, size): (String, Int64, String, String, Int64) = (
                row[0], row[1], row[2], row[3], row[4]
            )
            let mtime: Int64? = row[5]
            var entries = Data()
            var expected = 0
            let segments = try Row.fetchCursor(
                db, sql: "SELECT seq, entries FROM recipes WHERE file_id = ? ORDER BY seq", arguments: [fileID])
            while let segment = try segments.next() {
                // Only the unbroken run of segments from the start counts.
                guard (segment[0] as Int) == expected else { break }
                entries.append(segment[1] as Data)
                expected += 1
            }
            guard !entries.isEmpty else { continue }
            let longer = try Int.fetchOne(
                db, sql: "SELECT length(entries) FROM resume_points WHERE set_name = ? AND name = ?",
                arguments: [setName, name])
            if let longer, longer >= entries.count, try resumePointMatches(db, setName, name, source, size, mtime) {
                continue
            }
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO resume_points(set_name, name, source, size, mtime, entries) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [setName, name, source, size, mtime, entries])
        }
    }

    private func resumePointMatches(
        _ db: Database, _ set: String, _ name: String, _ source: String, _ size: Int64, _ mtime: Int64?
    ) throws -> Bool {
        try Bool.fetchOne(
            db,
            sql: """
                SELECT 1 FROM resume_points WHERE set_name = ? AND name = ? AND source = ? AND size = ? AND mtime IS ?
                """, arguments: [set, name, source, size, mtime]) ?? false
    }

    private func adopt(_ db: Database, path: String, name: String, isTemp: Bool) throws {
        let (records, validLength) = try scanPack(path)
        var fresh: [(ChunkID, Int64, Int)] = []
        for record in records where try !chunkExists(db, record.0) {
            fresh.append(record)
        }
        guard !fresh.isEmpty else {
            unlink(path)
            return
        }
        let finalPath = packDirectory + "/" + name + ".pack"
        let fd = try FileIO.open(path, O_RDWR)
        defer { close(fd) }
        guard ftruncate(fd, off_t(validLength)) == 0 else { throw FileIO.fail("truncate", path) }
        try FileIO.fsync(fd, path: path)
        if isTemp { try FileIO.rename(path, finalPath) }
        try FileIO.syncDirectory(packDirectory)
        try registerPack(db, name: name, size: validLength, chunks: fresh.map { ($0.0, $0.1, $0.2) })
        logger.info(
            "Adopted chunks of an interrupted run",
            metadata: ["pack": "\(name)", "chunks": "\(fresh.count)", "bytes": "\(validLength)"])
    }

    // MARK: - Catalog helpers (called inside pool closures)

    /// For a run that looks up or inserts many chunks (a replicate, a verify). Chunk ids are
    /// random keys: every look-up and insert lands on another page of the chunk table. 16 MiB of
    /// page cache keeps the table of a 1 GiB backup (and much of a larger one) in memory,
    /// within the memory goal.
    func widenPageCache(_ db: Database) throws {
        try db.execute(sql: "PRAGMA cache_size = -16384")
    }

    func chunkExists(_ db: Database, _ id: ChunkID) throws -> Bool {
        let statement = try db.cachedStatement(sql: "SELECT 1 FROM chunks WHERE id = ?")
        return try Int.fetchOne(statement, arguments: [id.data]) != nil
    }

    /// Runs `select` (whose `WHERE id IN (...)` the batch fills) for every `width` ids, padded
    /// with the batch's first id so one prepared statement serves every batch, and hands each
    /// row to `body` as the SQLite statement (its columns read with `ChunkRow`). The ids are
    /// bound straight from their words: a replicate asks about every chunk of the file.
    private func queryInBatches(
        _ db: Database, _ ids: some Sequence<ChunkID>, width: Int, select: String,
        _ body: (ChunkRow) throws -> Void
    ) throws {
        let statement = try db.cachedStatement(
            sql: select + " WHERE id IN (\(repeatElement("?", count: width).joined(separator: ",")))")
        let handle = statement.sqliteStatement
        var batch: [ChunkID] = []
        batch.reserveCapacity(width)
        func run() throws {
            guard !batch.isEmpty else { return }
            defer { batch.removeAll(keepingCapacity: true) }
            try batch.withUnsafeBytes { words in
                guard let base = words.baseAddress else { return }
                // Bound without a copy: the batch outlives the statement's steps. A ChunkID's
                // memory is its 32 bytes in order.
                precondition(ChunkID.isDigestInMemory)
                for slot in 0..<width {
                    let id = slot < batch.count ? slot : 0
                    sqlite3_bind_blob(handle, Int32(slot + 1), base + id * 32, 32, nil)
                }
                defer {
                    sqlite3_reset(handle)
                    sqlite3_clear_bindings(handle)
                }
                while true {
                    let code = sqlite3_step(handle)
                    if code == SQLITE_DONE { return }
                    guard code == SQLITE_ROW else { throw Self.sqliteError(db, code, statement) }
                    try body(ChunkRow(handle: handle))
                }
            }
        }
        for id in ids {
            batch.append(id)
            if batch.count == width { try run() }
        }
        try run()
    }

    /// A result row of `queryInBatches`.
    struct ChunkRow {
        let handle: OpaquePointer

        /// The id in column 0, nil unless it is a 32-byte blob.
        var id: ChunkID? {
            guard sqlite3_column_bytes(handle, 0) == 32, let blob = sqlite3_column_blob(handle, 0) else { return nil }
            return ChunkID(bytes: UnsafeRawBufferPointer(start: blob, count: 32))
        }

        func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    }

    static func sqliteError(_ db: Database, _ code: Int32, _ statement: Statement) -> DatabaseError {
        DatabaseError(
            resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)),
            sql: statement.sql)
    }

    /// Which of `ids` the catalog has: one query for every 64 ids, not one for each.
    func existingChunks(_ db: Database, _ ids: [ChunkID]) throws -> Set<ChunkID> {
        var found = Set<ChunkID>()
        try queryInBatches(db, ids, width: 64, select: "SELECT id FROM chunks") { row in
            if let id = row.id { found.insert(id) }
        }
        return found
    }

    /// Where the store has each of `ids` (those it has): one query for every 128 ids. Pack
    /// names are looked up once per pack (`packNames` keeps them), not joined for every chunk.
    func chunkLocations(
        _ db: Database, _ ids: some Sequence<ChunkID>, packNames: inout [Int64: String]
    ) throws -> [ChunkID: ChunkLocation] {
        let packName = try db.cachedStatement(sql: "SELECT name FROM packs WHERE id = ?")
        var found: [ChunkID: ChunkLocation] = [:]
        var names = packNames
        try queryInBatches(db, ids, width: 128, select: "SELECT id, pack, offset, length FROM chunks") { row in
            let pack = row.int64(1)
            guard let id = row.id else { return }
            let name: String
            if let known = names[pack] {
                name = known
            } else {
                guard let fetched = try String.fetchOne(packName, arguments: [pack]) else { return }
                names[pack] = fetched
                name = fetched
            }
            found[id] = ChunkLocation(pack: name, offset: row.int64(2), length: Int(row.int64(3)))
        }
        packNames = names
        return found
    }

    func chunkLocation(_ db: Database, _ id: ChunkID) throws -> ChunkLocation? {
        let statement = try db.cachedStatement(
            sql: "SELECT p.name, c.offset, c.length FROM chunks c JOIN packs p ON p.id = c.pack WHERE c.id = ?")
        guard let row = try Row.fetchOne(statement, arguments: [id.data]) else { return nil }
        return ChunkLocation(pack: row[0], offset: row[1], length: row[2])
    }

    func registerPack(_ db: Database, name: String, size: Int64, chunks: [(ChunkID, Int64, Int)]) throws {
        try db.inTransaction {
            try insertPack(db, name: name, size: size, chunks: chunks)
            return .commit
        }
    }

    /// The rows of a sealed pack and its chunks, inside the caller's transaction. Returns the
    /// pack's id.
    @discardableResult
    func insertPack(_ db: Database, name: String, size: Int64, chunks: [(ChunkID, Int64, Int)]) throws -> Int64 {
        try db.execute(
            sql: "INSERT INTO packs(name, size, created) VALUES (?, ?, ?)",
            arguments: [name, size, Date().timeIntervalSince1970])
        let pack = db.lastInsertedRowID
        // A run's checkpoints insert some 100 000 rows per GiB: bound straight through SQLite's
        // calls, which costs a fraction of boxing four values per row.
        let insert = try db.makeStatement(
            sql: "INSERT OR IGNORE INTO chunks(id, pack, offset, length) VALUES (?, ?, ?, ?)")
        let handle = insert.sqliteStatement
        defer { sqlite3_clear_bindings(handle) }
        // In key order (the blobs' byte order): each insert lands beside the one before it in
        // the chunk table, on pages the last one brought into the cache, not on a random page.
        for (id, offset, length) in chunks.sorted(by: { $0.0.precedesInKeyOrder($1.0) }) {
            var words = (id.a, id.b, id.c, id.d)
            let code = withUnsafeBytes(of: &words) { key -> Int32 in
                sqlite3_bind_blob(handle, 1, key.baseAddress, 32, nil)
                sqlite3_bind_int64(handle, 2, pack)
                sqlite3_bind_int64(handle, 3, offset)
                sqlite3_bind_int64(handle, 4, Int64(length))
                let code = sqlite3_step(handle)
                sqlite3_reset(handle)
                return code
            }
            guard code == SQLITE_DONE else { throw Self.sqliteError(db, code, insert) }
        }
        return pack
    }

    /// Calls `body` with each segment of a file's recipe, in file order, one at a time.
    func forEachRecipeSegment(_ db: Database, file: Int64, _ body: ([RecipeEntry]) throws -> Void) throws {
        let rows = try Data.fetchCursor(
            db, sql: "SELECT entries FROM recipes WHERE file_id = ? ORDER BY seq", arguments: [file])
        while let data = try rows.next() {
            try body([RecipeEntry].decode(data))
        }
    }

    /// Calls `body` with each recipe segment of every committed version (for marking and for
    /// naming the versions a bad chunk breaks), one segment at a time.
    func forEachRecipe(
        _ db: Database, _ body: (_ set: String, _ version: Int64, _ entries: [RecipeEntry]) throws -> Void
    ) throws {
        let rows = try Row.fetchCursor(
            db,
            sql: """
                SELECT s.name, v.id, r.entries FROM recipes r
                JOIN files f ON f.id = r.file_id JOIN versions v ON v.id = f.version_id JOIN sets s ON s.id = v.set_id
                WHERE v.state = 'committed'
                """)
        while let row = try rows.next() {
            let data: Data = row[2]
            try body(row[0], row[1], [RecipeEntry].decode(data))
        }
    }

    static let versionColumns = """
        v.id, s.name, v.created, v.captured, v.size, \
        (SELECT COUNT(*) FROM files f WHERE f.version_id = v.id), v.new_bytes, v.broken, v.verified
        """

    static func version(_ row: Row) -> SetVersion {
        let captured: Double? = row[3]
        let verified: Double? = row[8]
        return SetVersion(
            id: row[0], set: row[1], created: Date(timeIntervalSince1970: row[2]),
            captured: captured.map { Date(timeIntervalSince1970: $0) }, size: row[4], fileCount: row[5],
            newBytes: row[6], broken: (row[7] as Int) != 0, verified: verified.map { Date(timeIntervalSince1970: $0) })
    }

    func versions(_ db: Database, set: String) throws -> [SetVersion] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT \(Self.versionColumns) FROM versions v JOIN sets s ON s.id = v.set_id
                WHERE s.name = ? AND v.state = 'committed' ORDER BY v.id DESC
                """, arguments: [set]
        ).map(Self.version)
    }

    // MARK: - Queries

    /// The committed versions of `set`, newest first.
    public func versions(set: String) async throws -> [SetVersion] {
        let store = self
        return try await Blocking.run { _ in
            try store.catalog { try store.pool.read { try store.versions($0, set: set) } }
        }
    }

    /// The files of a version.
    public func files(version: Int64) async throws -> [VersionFile] {
        let store = self
        return try await Blocking.run { _ in
            try store.catalog {
                try store.pool.read { db in
                    try Row.fetchAll(
                        db,
                        sql: "SELECT name, source, size, mtime, sha256 FROM files WHERE version_id = ? ORDER BY name",
                        arguments: [version]
                    ).map { row in
                        let mtime: Int64? = row[3]
                        let hash: Data? = row[4]
                        return VersionFile(
                            name: row[0], source: row[1], size: row[2],
                            modificationTime: mtime.map { Date(timeIntervalSince1970: TimeInterval($0)) },
                            sha256: hash.map { $0.map { String(format: "%02x", $0) }.joined() } ?? "")
                    }
                }
            }
        }
    }

    /// Per set: newest verified version, capture time, size, stored bytes, dedup ratio.
    public func status() async throws -> [SetStatus] {
        let store = self
        return try await Blocking.run { _ in
            try store.catalog {
                try store.pool.read { db in
                    try String.fetchAll(db, sql: "SELECT name FROM sets ORDER BY name").map { name in
                        let versions = try store.versions(db, set: name)
                        let newest = versions.first(where: { !$0.broken })
                        return SetStatus(
                            name: name, newestVerified: newest, versionCount: versions.count, size: newest?.size ?? 0,
                            storedBytes: versions.reduce(0) { $0 + $1.newBytes },
                            logicalBytes: versions.reduce(0) { $0 + $1.size })
                    }
                }
            }
        }
    }

    /// Bytes the pack files occupy on disk.
    public func packBytesOnDisk() -> Int64 {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: packDirectory)) ?? []
        return names.reduce(0) { $0 + FileIO.allocated(packDirectory + "/" + $1) }
    }
}
