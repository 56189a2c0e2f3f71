import Foundation
import GRDB

/// The SQLite catalog of the store: packs, chunks, sets, versions, files and their recipes
/// (the chunk ids of a file, in order, as blobs of 36-byte entries).
///
/// Migrations are named and never edited once shipped. `formatVersion` is the on-disk format
/// this build reads and writes: a store whose `format` is higher, or that has migrations this
/// build does not know, was written by a newer Standby and is refused rather than misread.
enum Catalog {
    static let formatVersion = 1
    static let fileName = "catalog.sqlite"

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: packs, chunks, sets, versions, files, recipes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE packs(
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE,
                        size INTEGER NOT NULL,
                        created REAL NOT NULL);
                    CREATE TABLE chunks(
                        id BLOB PRIMARY KEY,
                        pack INTEGER NOT NULL REFERENCES packs(id),
                        offset INTEGER NOT NULL,
                        length INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE INDEX chunks_by_pack ON chunks(pack);
                    CREATE TABLE sets(
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE,
                        created REAL NOT NULL);
                    CREATE TABLE versions(
                        id INTEGER PRIMARY KEY,
                        set_id INTEGER NOT NULL REFERENCES sets(id),
                        state TEXT NOT NULL,
                        created REAL NOT NULL,
                        captured REAL,
                        size INTEGER NOT NULL DEFAULT 0,
                        new_bytes INTEGER NOT NULL DEFAULT 0,
                        fetched_bytes INTEGER NOT NULL DEFAULT 0,
                        broken INTEGER NOT NULL DEFAULT 0,
                        verified REAL);
                    CREATE INDEX versions_by_set ON versions(set_id, state);
                    CREATE TABLE files(
                        id INTEGER PRIMARY KEY,
                        version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
                        name TEXT NOT NULL,
                        source TEXT NOT NULL,
                        size INTEGER NOT NULL DEFAULT 0,
                        mtime INTEGER,
                        sha256 BLOB,
                        chunks INTEGER NOT NULL DEFAULT 0,
                        UNIQUE(version_id, name));
                    CREATE TABLE recipes(
                        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
                        seq INTEGER NOT NULL,
                        entries BLOB NOT NULL,
                        PRIMARY KEY(file_id, seq)) WITHOUT ROWID;
                    """)
            try db.execute(
                sql: "INSERT INTO meta(key, value) VALUES ('format', ?), ('chunker', ?), ('created', ?)",
                arguments: [
                    "\(formatVersion)", ChunkerParameters.standard.description,
                    "\(Date().timeIntervalSince1970)",
                ])
        }
        migrator.registerMigration("v2: no chunk index by pack") { db in
            // Every chunk a replicate stores went into two B-trees; only retention asked by
            // pack, and it now reads the chunk table once per pass instead.
            try db.execute(sql: "DROP INDEX chunks_by_pack")
        }
        return migrator
    }

    /// How long an open waits for other processes opening the same catalog.
    static let openPatience: Duration = .seconds(30)

    /// Opens (creating and migrating if needed) the catalog, refusing a store from a newer Standby.
    ///
    /// Several processes may open one catalog at the same instant (the controllers of a cluster
    /// share the store). SQLite's busy timeout does not cover all of that: `PRAGMA journal_mode =
    /// WAL` on a fresh file, and the first write after it, upgrade a read lock to a write lock, and
    /// when two connections both hold the read lock SQLite answers `database is locked` at once
    /// instead of waiting (waiting would deadlock them). So a busy open is closed and tried again,
    /// after a short random pause, for up to `openPatience`. Migrations run under a file lock
    /// (`catalog.lock`), one process at a time.
    static func open(directory: String) throws -> DatabasePool {
        let path = directory + "/" + fileName
        let clock = ContinuousClock()
        let deadline = clock.now + openPatience
        var pause = 0.002
        var attempts = 1
        while true {
            do {
                return try openOnce(directory: directory, path: path)
            } catch let error as DatabaseError where isBusy(error) {
                guard clock.now < deadline else {
                    throw ReplicationError(
                        .catalog,
                        "cannot open the catalog \(path): still locked by another process after \(attempts) attempts in \(openPatience) (\(error.message ?? "\(error)"))"
                    )
                }
                usleep(UInt32(Double.random(in: pause...(pause * 2)) * 1_000_000))
                pause = min(pause * 2, 0.1)
                attempts += 1
            } catch let error as DatabaseError {
                throw ReplicationError(.catalog, "cannot open the catalog \(path): \(error.message ?? "\(error)")")
            }
        }
    }

    static func isBusy(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }

    /// One attempt; a database error comes out as it is, so that `open` can tell a busy one.
    private static func openOnce(directory: String, path: String) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.label = "standby.catalog"
        let pool = try DatabasePool(path: path, configuration: configuration)
        let migrator = migrator
        let (superseded, format) = try pool.read { db -> (Bool, Int?) in
            let superseded = try migrator.hasBeenSuperseded(db)
            let hasMeta = try db.tableExists("meta")
            let format =
                hasMeta
                ? try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'format'").flatMap { Int($0) }
                : nil
            return (superseded, format)
        }
        if superseded || (format ?? 0) > formatVersion {
            throw ReplicationError(
                .storeTooNew,
                "the store at \(directory) was written by a newer version of Standby (format \(format.map(String.init) ?? "?"), this one reads up to \(formatVersion)); upgrade Standby to use it"
            )
        }
        do {
            if try !pool.read({ try migrator.hasCompletedMigrations($0) }) {
                // GRDB's migrator reads which migrations are applied before it opens their
                // transactions: two processes migrating a fresh catalog at once both ran v1 (seen:
                // `table meta already exists`). One migrator at a time, across processes; the
                // next finds the work done.
                let lock = try StoreLock.acquire(
                    directory + "/catalog.lock", exclusive: true, wait: openPatience, what: "migrating the catalog")
                try withExtendedLifetime(lock) { try migrator.migrate(pool) }
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_FULL {
            throw ReplicationError(.storeFull, "the store's disk is full: the catalog \(path) cannot grow")
        }
        return pool
    }

    /// Runs `body`, turning database errors into `catalog` errors naming the catalog file.
    static func wrap<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ReplicationError {
            throw error
        } catch let error as DatabaseError {
            if error.resultCode == .SQLITE_FULL {
                throw ReplicationError(.storeFull, "the store's disk is full: the catalog \(path) cannot grow")
            }
            throw ReplicationError(.catalog, "catalog \(path): \(error.message ?? "\(error)")")
        }
    }
}

/// One recipe entry: a chunk id and its length. 36 bytes on disk (id, then u32 LE length).
struct RecipeEntry: Hashable, Sendable {
    var id: ChunkID
    var length: Int

    static let size = 36
}

extension Array where Element == RecipeEntry {
    func encoded() -> Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * RecipeEntry.size)
        for entry in self {
            entry.id.append(to: &bytes)
            var length = UInt32(entry.length).littleEndian
            Swift.withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        }
        return Data(bytes)
    }

    static func decode(_ data: Data) -> [RecipeEntry] {
        data.withUnsafeBytes { raw in
            let count = raw.count / RecipeEntry.size
            return (0..<count).map { i in
                let base = i * RecipeEntry.size
                return RecipeEntry(
                    id: ChunkID(bytes: raw, at: base),
                    length: Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 32, as: UInt32.self))))
            }
        }
    }
}
