import Foundation
import GRDB
import StandbyBase
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension ReplicationStore {
    /// Keeps the `keepLast` newest versions of `set`, drops the others, and removes the chunks
    /// no version references any more (packs deleted or rewritten; the space is given back).
    /// Never runs beside a replicate (same lock) nor while a restore or verify reads.
    public func applyRetention(set: String, keepLast: Int) async throws -> RetentionReport {
        let store = self
        return try await Blocking.run { _ in
            let lock = try store.lockReplicate("retention of set \(set)")
            defer { withExtendedLifetime(lock) {} }
            return try store.catalog {
                try store.pool.writeWithoutTransaction { db in
                    try store.recover(db)
                    guard let report = try store.retainLocked(db, set: set, keepLast: keepLast) else {
                        throw ReplicationError(
                            .storeBusy, "a restore or verify is reading the store; retention not applied", set: set)
                    }
                    return report
                }
            }
        }
    }

    /// Garbage collection alone: removes chunks no version references.
    public func collectGarbage() async throws -> RetentionReport {
        let store = self
        return try await Blocking.run { _ in
            let lock = try store.lockReplicate("garbage collection")
            defer { withExtendedLifetime(lock) {} }
            return try store.catalog {
                try store.pool.writeWithoutTransaction { db in
                    try store.recover(db)
                    guard let report = try store.retainLocked(db, set: nil, keepLast: nil) else {
                        throw ReplicationError(.storeBusy, "a restore or verify is reading the store")
                    }
                    return report
                }
            }
        }
    }

    /// Under the replicate lock. Returns nil when readers hold the store (retention waits for
    /// a later run rather than pull packs from under a restore).
    func retainLocked(_ db: Database, set: String?, keepLast: Int?) throws -> RetentionReport? {
        let readers: StoreLock
        do {
            readers = try lockReaders(exclusive: true, "garbage collection")
        } catch let error as ReplicationError where error.code == .storeBusy {
            logger.warning("Retention postponed: the store is being read", metadata: ["set": "\(set ?? "-")"])
            return nil
        }
        defer { withExtendedLifetime(readers) {} }

        var dropped: [Int64] = []
        var droppedNewBytes: Int64 = 0
        if let set, let keepLast {
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT v.id, v.new_bytes FROM versions v JOIN sets s ON s.id = v.set_id
                    WHERE s.name = ? AND v.state = 'committed' ORDER BY v.id DESC
                    """, arguments: [set])
            for row in rows.dropFirst(max(keepLast, 1)) {
                dropped.append(row[0])
                droppedNewBytes += row[1] as Int64
            }
            if !dropped.isEmpty {
                try db.inTransaction {
                    for id in dropped { try db.execute(sql: "DELETE FROM versions WHERE id = ?", arguments: [id]) }
                    return .commit
                }
                logger.info("Versions dropped by retention", metadata: ["set": "\(set)", "versions": "\(dropped)"])
            }
        }

        // Mark: every chunk a committed version references.
        try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS live(id BLOB PRIMARY KEY) WITHOUT ROWID")
        defer { try? db.execute(sql: "DROP TABLE IF EXISTS temp.live") }
        try db.inTransaction {
            try db.execute(sql: "DELETE FROM temp.live")
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO temp.live(id) VALUES (?)")
            try forEachRecipe(db) { _, _, entries in
                for entry in entries { try insert.execute(arguments: [Data(entry.id.bytes)]) }
            }
            return .commit
        }

        // Sweep, pack by pack: a pack with no live chunk is deleted; one mostly dead is
        // rewritten with its live chunks; the rest keep their dead chunks for now (still valid,
        // and still reused by dedup) until they cross the threshold. The chunk table has no
        // index by pack (a replicate would pay for it on every insert), so each step below
        // reads it once, in one pass, for all the packs it concerns.
        var tally: [Int64: (all: Int64, live: Int64, dead: Int)] = [:]
        let sums = try Row.fetchCursor(
            db,
            sql: """
                SELECT c.pack, SUM(c.length),
                    SUM(CASE WHEN l.id IS NULL THEN 0 ELSE c.length END),
                    SUM(CASE WHEN l.id IS NULL THEN 1 ELSE 0 END)
                FROM chunks c LEFT JOIN temp.live l ON l.id = c.id
                GROUP BY c.pack
                """)
        while let row = try sums.next() { tally[row[0]] = (row[1], row[2], row[3]) }
        var report = RetentionReport(
            droppedVersions: dropped, chunksRemoved: 0, packsDeleted: 0, packsRewritten: 0, reclaimedBytes: 0)
        var deadBytesTotal: Int64 = 0
        var doomed: [(id: Int64, path: String, dead: Int)] = []
        var worn: [(id: Int64, name: String, path: String, dead: Int)] = []
        for row in try Row.fetchAll(db, sql: "SELECT id, name, size FROM packs ORDER BY id") {
            let (packID, name, size): (Int64, String, Int64) = (row[0], row[1], row[2])
            let (allBytes, liveBytes, deadCount) = tally[packID] ?? (0, 0, 0)
            deadBytesTotal += allBytes - liveBytes
            let path = packDirectory + "/" + name + ".pack"
            if liveBytes == 0 {
                doomed.append((packID, path, deadCount))
            } else if deadCount > 0 && allBytes - liveBytes > size / 2 {
                worn.append((packID, name, path, deadCount))
            }
        }
        if !doomed.isEmpty {
            // One transaction forgets them all, then the files go; a kill in between leaves
            // files the catalog does not know, which recovery adopts or deletes.
            let onDisk = doomed.map { FileIO.allocated($0.path) }
            try db.inTransaction {
                try withPackList(db, doomed.map(\.id)) {
                    try db.execute(sql: "DELETE FROM chunks WHERE pack IN temp.pack_list")
                    try db.execute(sql: "DELETE FROM packs WHERE id IN temp.pack_list")
                }
                return .commit
            }
            for pack in doomed { unlink(pack.path) }
            report.packsDeleted += doomed.count
            report.chunksRemoved += doomed.reduce(0) { $0 + $1.dead }
            report.reclaimedBytes += onDisk.reduce(0, +)
        }
        if !worn.isEmpty {
            var contents: [Int64: [PackedChunk]] = [:]
            try withPackList(db, worn.map(\.id)) {
                let rows = try Row.fetchCursor(
                    db,
                    sql: """
                        SELECT c.pack, c.id, c.offset, c.length, l.id IS NOT NULL
                        FROM chunks c LEFT JOIN temp.live l ON l.id = c.id
                        WHERE c.pack IN temp.pack_list ORDER BY c.pack, c.offset
                        """)
                while let row = try rows.next() {
                    let key: Data = row[1]
                    contents[row[0], default: []].append(
                        PackedChunk(key: key, id: ChunkID(bytes: key), offset: row[2], length: row[3], live: row[4]))
                }
            }
            for pack in worn {
                let before = FileIO.allocated(pack.path)
                let after = try rewrite(db, packID: pack.id, name: pack.name, chunks: contents[pack.id] ?? [])
                report.packsRewritten += 1
                report.chunksRemoved += pack.dead
                report.reclaimedBytes += max(0, before - after)
            }
        }
        if let set, droppedNewBytes > 0 {
            // The dropped versions' chunks that live on are now the oldest remaining version's.
            let carried = max(0, droppedNewBytes - deadBytesTotal)
            try db.execute(
                sql: """
                    UPDATE versions SET new_bytes = new_bytes + ? WHERE id = (
                        SELECT v.id FROM versions v JOIN sets s ON s.id = v.set_id
                        WHERE s.name = ? AND v.state = 'committed' ORDER BY v.id LIMIT 1)
                    """, arguments: [carried, set])
        }
        if report.reclaimedBytes > 0 || !dropped.isEmpty {
            logger.info(
                "Garbage collected",
                metadata: [
                    "chunks": "\(report.chunksRemoved)", "packsDeleted": "\(report.packsDeleted)",
                    "packsRewritten": "\(report.packsRewritten)", "reclaimed": "\(report.reclaimedBytes)",
                ])
        }
        return report
    }

    /// A chunk of a pack being rewritten, and whether a version still references it.
    private struct PackedChunk {
        /// The row's key as stored; `id` is nil when it is not a chunk id (the row goes).
        var key: Data
        var id: ChunkID?
        var offset: Int64
        var length: Int
        var live: Bool

        /// Copied into the new pack; every other row of the old pack is deleted.
        var kept: ChunkID? { live ? id : nil }
    }

    /// Runs `body` with the pack ids in `temp.pack_list`, for statements about many packs.
    private func withPackList(_ db: Database, _ ids: [Int64], _ body: () throws -> Void) throws {
        try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS pack_list(id INTEGER PRIMARY KEY)")
        defer { try? db.execute(sql: "DROP TABLE IF EXISTS temp.pack_list") }
        try db.execute(sql: "DELETE FROM temp.pack_list")
        let insert = try db.cachedStatement(sql: "INSERT INTO temp.pack_list(id) VALUES (?)")
        for id in ids { try insert.execute(arguments: [id]) }
        try body()
    }

    /// Copies a pack's live chunks into a new pack, points the catalog at it, deletes the old
    /// one. A kill in between leaves either the old pack in use and an orphan new one (recovery
    /// finds nothing new in it and deletes it), or the new one in use and an orphan old one.
    private func rewrite(_ db: Database, packID: Int64, name: String, chunks: [PackedChunk]) throws -> Int64 {
        let reader = PackReader(directory: packDirectory)
        let io = PackIO()
        defer { io.stop() }
        let writer = try PackWriter(directory: packDirectory, io: io)
        for chunk in chunks {
            guard let id = chunk.kept else { continue }
            let bytes = try reader.read(id, at: ChunkLocation(pack: name, offset: chunk.offset, length: chunk.length))
            try bytes.withUnsafeBytes { try writer.append(id, $0) }
        }
        try writer.seal()
        try db.inTransaction {
            // Its chunks have rows already: they are moved to it, not inserted.
            let fresh = try insertPack(db, name: writer.name, size: writer.size, chunks: [])
            let update = try db.cachedStatement(sql: "UPDATE chunks SET pack = ?, offset = ? WHERE id = ?")
            for id in writer.order {
                guard let location = writer.chunks[id] else { continue }
                try update.execute(arguments: [fresh, location.offset, id.data])
            }
            let delete = try db.cachedStatement(sql: "DELETE FROM chunks WHERE id = ? AND pack = ?")
            for chunk in chunks where chunk.kept == nil { try delete.execute(arguments: [chunk.key, packID]) }
            try db.execute(sql: "DELETE FROM packs WHERE id = ?", arguments: [packID])
            return .commit
        }
        reader.forget(name)
        unlink(packDirectory + "/" + name + ".pack")
        return FileIO.allocated(writer.finalPath)
    }
}
