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
    /// Checks the catalog against the store: every chunk a version references is catalogued,
    /// its pack exists and is long enough; with `readData` every chunk is read back and
    /// re-hashed (with `samplePercent`, that share of chunks, chosen at random). Each problem
    /// names the set versions it breaks; those are marked broken (not restorable, not counted
    /// for RPO), and corrupt chunks are dropped from the catalog so the next replicate stores
    /// them again. A full check (no sampling) clears the mark of versions found whole again.
    public func verify(readData: Bool = false, samplePercent: Double? = nil) async throws -> VerifyReport {
        let store = self
        return try await Blocking.run { flag in
            let lock = try store.lockReaders(exclusive: false, "verify")
            defer { withExtendedLifetime(lock) {} }
            return try store.catalog {
                try store.pool.writeWithoutTransaction { db in
                    try store.verifyLocked(db, readData: readData, samplePercent: samplePercent, cancellation: flag)
                }
            }
        }
    }

    func verifyLocked(_ db: Database, readData: Bool, samplePercent: Double?, cancellation: CancellationFlag)
        throws -> VerifyReport
    {
        var bad: [ChunkID: (kind: VerifyProblem.Kind, pack: String?, detail: String)] = [:]
        var checked = 0
        var read = 0
        var bytesRead: Int64 = 0

        try widenPageCache(db)

        // 1. Recipes against the chunk table: one query for each 64 ids of a recipe segment.
        try forEachRecipe(db) { _, _, entries in
            let ids = Array(Set(entries.lazy.map(\.id).filter { bad[$0] == nil }))
            guard !ids.isEmpty else { return }
            let found = try existingChunks(db, ids)
            for id in ids where !found.contains(id) {
                bad[id] = (.missing, nil, "no such chunk in the store")
            }
        }

        // 2. Chunks against the packs; with readData, their bytes read back in runs, in parallel.
        let reader = PackReader(directory: packDirectory)
        let readBack = VerifyReader(directory: packDirectory, cancellation: cancellation)
        var packSizes: [String: Int64?] = [:]
        let rows = try Row.fetchCursor(
            db,
            sql:
                "SELECT c.id, p.name, c.offset, c.length FROM chunks c JOIN packs p ON p.id = c.pack ORDER BY p.id, c.offset"
        )
        let fraction = samplePercent.map { max(0, min(100, $0)) / 100 } ?? 1
        while let row = try rows.next() {
            if cancellation.isCancelled { throw ReplicationError(.cancelled, "verify cancelled") }
            let data: Data = row[0]
            guard let id = ChunkID(bytes: data) else { continue }
            let location = ChunkLocation(pack: row[1], offset: row[2], length: row[3])
            checked += 1
            if packSizes[location.pack] == nil {
                packSizes[location.pack] = FileIO.size(reader.path(location.pack))
            }
            guard let size = packSizes[location.pack] ?? nil else {
                bad[id] = (.missing, location.pack, "pack \(location.pack) is missing")
                continue
            }
            guard location.offset + Int64(location.length) <= size else {
                bad[id] = (.missing, location.pack, "pack \(location.pack) is shorter than the chunk's end")
                continue
            }
            guard readData, fraction >= 1 || Double.random(in: 0..<1) < fraction else { continue }
            try readBack.add(id, at: location)
        }
        let totals = try readBack.finish()
        for problem in totals.corrupt { bad[problem.id] = (.corrupt, problem.pack, problem.message) }
        read = totals.chunksRead
        bytesRead = totals.bytesRead

        // 3. The versions each bad chunk breaks.
        var affected: [ChunkID: Set<VersionRef>] = [:]
        var allVersions: Set<VersionRef> = []
        try forEachRecipe(db) { set, version, entries in
            let ref = VersionRef(set: set, version: version)
            allVersions.insert(ref)
            guard !bad.isEmpty else { return }
            for entry in entries where bad[entry.id] != nil {
                affected[entry.id, default: []].insert(ref)
            }
        }
        let problems = bad.map { id, problem in
            VerifyProblem(
                kind: problem.kind, chunk: id.hex, pack: problem.pack, detail: problem.detail,
                versions: (affected[id] ?? []).sorted { ($0.set, $0.version) < ($1.set, $1.version) })
        }.sorted { $0.chunk < $1.chunk }

        let broken = Set(problems.flatMap(\.versions).map(\.version))
        let full = samplePercent == nil || fraction >= 1
        let now = Date().timeIntervalSince1970
        try db.inTransaction {
            for version in broken {
                try db.execute(sql: "UPDATE versions SET broken = 1 WHERE id = ?", arguments: [version])
            }
            for (id, problem) in bad where problem.kind == .corrupt {
                // Forget the corrupt copy: the next replicate stores the chunk again.
                try db.execute(sql: "DELETE FROM chunks WHERE id = ?", arguments: [id.data])
            }
            if full {
                for ref in allVersions where !broken.contains(ref.version) {
                    try db.execute(
                        sql: readData
                            ? "UPDATE versions SET broken = 0, verified = ? WHERE id = ?"
                            : "UPDATE versions SET broken = 0 WHERE id = ? AND ? IS NOT NULL",
                        arguments: readData ? [now, ref.version] : [ref.version, now])
                }
            }
            return .commit
        }
        for problem in problems {
            logger.error(
                "Chunk broken",
                metadata: [
                    "chunk": "\(problem.chunk.prefix(16))", "kind": "\(problem.kind.rawValue)",
                    "versions": "\(problem.versions.map(\.description))",
                ])
        }
        return VerifyReport(
            versionsChecked: allVersions.count, chunksChecked: checked, chunksRead: read, bytesRead: bytesRead,
            problems: problems)
    }
}
