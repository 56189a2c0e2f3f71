import Foundation
import GRDB
import StandbyLab
import Testing

@testable import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct VerifyAndStoreTests {
    /// Flips one byte in the middle of the biggest pack.
    func corruptAPack(_ storePath: String) throws -> String {
        let packs = try FileManager.default.contentsOfDirectory(atPath: storePath + "/packs").filter {
            $0.hasSuffix(".pack")
        }
        let pack = try #require(packs.first)
        let path = storePath + "/packs/" + pack
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 2)
        let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
        try handle.seek(toOffset: size / 2)
        try handle.write(contentsOf: Data([byte ^ 0xFF]))
        try handle.close()
        return pack
    }

    @Test func verifyFindsAFlippedByteAndNamesTheVersions() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 256)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)])
        let v1 = try await fixture.store.replicate(set: spec)
        let v2 = try await fixture.store.replicate(set: spec)  // same content: shares every chunk
        #expect(try await fixture.store.verify(readData: true).isClean)

        _ = try corruptAPack(fixture.storePath)
        let quick = try await fixture.store.verify()  // catalog and pack sizes only
        #expect(quick.isClean)
        let report = try await fixture.store.verify(readData: true)
        #expect(report.problems.count == 1)
        #expect(report.problems.first?.kind == .corrupt)
        #expect(
            report.brokenVersions == [
                VersionRef(set: "sql", version: v1.version.id), VersionRef(set: "sql", version: v2.version.id),
            ])

        // Broken versions are not restorable and not counted as verified.
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.restore(set: "sql", version: v2.version.id, to: fixture.lab.file("out"))
        }
        #expect(error?.code == .corruptPack)
        #expect(!FileManager.default.fileExists(atPath: fixture.lab.file("out/db.bak")))
        #expect(try await fixture.store.status().first?.newestVerified == nil)

        // The next replicate stores the damaged chunk again; the new version is whole.
        let v3 = try await fixture.store.replicate(set: spec)
        #expect(v3.version.newBytes > 0)
        _ = try await fixture.store.restore(set: "sql", to: fixture.lab.file("out3"))
        #expect(try contents(fixture.lab.file("out3/db.bak")) == contents(source))
        // Old versions referenced the same chunk id: with it stored again, they are whole too.
        let after = try await fixture.store.verify(readData: true)
        #expect(after.isClean)
        #expect(try await fixture.store.status().first?.newestVerified?.id == v3.version.id)
    }

    @Test func readBackFindsEveryDamagedChunkAcrossRunsAndPacks() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        // 48 MiB: several packs, each read back in many runs on several threads.
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 6144)
        _ = try await fixture.store.replicate(set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]))
        let chunks = try await fixture.store.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT c.id, p.name, c.offset, c.length FROM chunks c JOIN packs p ON p.id = c.pack
                    ORDER BY p.id, c.offset
                    """
            ).map { row -> (id: ChunkID?, pack: String, offset: Int64, length: Int) in
                (ChunkID(bytes: row[0] as Data), row[1], row[2], row[3])
            }
        }
        let packs = Array(Set(chunks.map(\.pack))).sorted()
        #expect(packs.count >= 2, "\(packs)")
        // One byte flipped in the first, a middle and the last chunk of the first pack.
        let first = chunks.filter { $0.pack == packs[0] }
        let flipped = [first[0], first[first.count / 2], first[first.count - 1]]
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: fixture.storePath + "/packs/\(packs[0]).pack"))
        for chunk in flipped {
            try handle.seek(toOffset: UInt64(chunk.offset) + UInt64(chunk.length / 2))
            let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
            try handle.seek(toOffset: UInt64(chunk.offset) + UInt64(chunk.length / 2))
            try handle.write(contentsOf: Data([byte ^ 0x5A]))
        }
        try handle.close()
        // The last pack loses its last chunk's final byte: the catalog still says it is there.
        let last = try #require(chunks.last { $0.pack == packs[packs.count - 1] })
        let lastPack = fixture.storePath + "/packs/\(last.pack).pack"
        #expect(truncate(lastPack, off_t(last.offset) + off_t(last.length) - 1) == 0)

        let quick = try await fixture.store.verify()
        #expect(quick.problems.map(\.chunk) == [last.id?.hex], "the catalog check sees the short pack")
        let report = try await fixture.store.verify(readData: true)
        let expected = Set((flipped + [last]).compactMap { $0.id?.hex })
        #expect(Set(report.problems.map(\.chunk)) == expected)
        #expect(report.problems.allSatisfy { $0.versions.count == 1 })
        let hashProblems = report.problems.filter { $0.detail.contains("does not match its hash") }
        #expect(hashProblems.count == 3, "\(report.problems.map(\.detail))")
        // Every other chunk was read back once.
        #expect(report.chunksRead == chunks.count - 1, "the short one is not read")
    }

    /// A restore reads many runs at once on several threads and lays them out in file order:
    /// a day-2 version, its chunks in runs alternating between two packs, comes back byte for
    /// byte; with one byte of a chunk in its middle flipped, the restore fails naming the pack and
    /// the offset, and leaves nothing under the file's name.
    @Test func aVersionInManyRunsIsRestoredInOrderAndADamagedChunkFailsIt() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 8192)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)])
        let first = try await fixture.store.replicate(set: spec)
        try rewritePages(source, count: 300, seed: 5, mtime: 1_700_086_400)
        let second = try await fixture.store.replicate(set: spec)
        let newChunks = try await fixture.store.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT p.name, c.offset, c.length FROM chunks c JOIN packs p ON p.id = c.pack
                    WHERE p.id > (SELECT MIN(id) FROM packs) ORDER BY p.id, c.offset
                    """
            ).map { row -> (pack: String, offset: Int64, length: Int) in (row[0], row[1], row[2]) }
        }
        #expect(newChunks.count > 100, "day 2 stored its rewritten pages in packs of its own")

        _ = try await fixture.store.restore(set: "sql", version: second.version.id, to: fixture.lab.file("out"))
        #expect(try contents(fixture.lab.file("out/db.bak")) == contents(source))
        let older = fixture.lab.file("older")
        _ = try await fixture.store.restore(set: "sql", version: first.version.id, to: older)
        try writeDatabase(fixture.lab.file("original.bak"), pages: 8192)
        #expect(try contents(older + "/db.bak") == contents(fixture.lab.file("original.bak")))

        let damaged = newChunks[newChunks.count / 2]
        let handle = try FileHandle(
            forUpdating: URL(fileURLWithPath: fixture.storePath + "/packs/\(damaged.pack).pack"))
        let at = UInt64(damaged.offset) + UInt64(damaged.length / 2)
        try handle.seek(toOffset: at)
        let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
        try handle.seek(toOffset: at)
        try handle.write(contentsOf: Data([byte ^ 0x5A]))
        try handle.close()
        let out = fixture.lab.file("damaged")
        let error = try await #require(throws: ReplicationError.self) {
            _ = try await fixture.store.restore(set: "sql", version: second.version.id, to: out)
        }
        #expect(error.code == .corruptPack)
        #expect(error.message.contains("\(damaged.pack).pack at offset \(damaged.offset)"), "\(error.message)")
        #expect(error.message.contains("does not match its hash"), "\(error.message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty, "no file, no temporary left")
    }

    @Test func missingPackIsReported() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 64)
        let v1 = try await fixture.store.replicate(set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]))
        for pack in try FileManager.default.contentsOfDirectory(atPath: fixture.storePath + "/packs") {
            unlink(fixture.storePath + "/packs/" + pack)
        }
        let report = try await fixture.store.verify()
        #expect(!report.isClean)
        #expect(report.problems.allSatisfy { $0.kind == .missing })
        #expect(report.brokenVersions == [VersionRef(set: "sql", version: v1.version.id)])
    }

    @Test func aChunkLostFromTheCatalogBreaksOnlyTheVersionsThatUseIt() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let sourceA = fixture.lab.file("a.bak")
        let sourceB = fixture.lab.file("b.bak")
        try writeDatabase(sourceA, pages: 128, seed: 1)
        try writeDatabase(sourceB, pages: 128, seed: 2)
        let a = try await fixture.store.replicate(set: SetSpec(name: "a", sources: [URL(fileURLWithPath: sourceA)]))
        let b = try await fixture.store.replicate(set: SetSpec(name: "b", sources: [URL(fileURLWithPath: sourceB)]))
        // The catalog loses the row of one of b's chunks (its bytes stay in the pack).
        let lost = try await fixture.store.pool.write { db -> ChunkID in
            let entries = try Data.fetchOne(
                db,
                sql: "SELECT r.entries FROM recipes r JOIN files f ON f.id = r.file_id WHERE f.version_id = ?",
                arguments: [b.version.id])
            let id = try #require(entries.map { [RecipeEntry].decode($0) }?.last?.id)
            try db.execute(sql: "DELETE FROM chunks WHERE id = ?", arguments: [id.data])
            #expect(db.changesCount == 1)
            return id
        }
        let report = try await fixture.store.verify()
        #expect(report.problems.map(\.chunk) == [lost.hex])
        #expect(report.problems.first?.kind == .missing)
        #expect(report.problems.first?.detail == "no such chunk in the store")
        #expect(report.brokenVersions == [VersionRef(set: "b", version: b.version.id)])
        _ = try await fixture.store.restore(set: "a", version: a.version.id, to: fixture.lab.file("out-a"))
        #expect(try contents(fixture.lab.file("out-a/a.bak")) == contents(sourceA))
        await #expect(throws: ReplicationError.self) {
            try await fixture.store.restore(set: "b", version: b.version.id, to: fixture.lab.file("out-b"))
        }
    }

    @Test func samplingReadsAShareOfChunks() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 1024)
        _ = try await fixture.store.replicate(set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]))
        let report = try await fixture.store.verify(readData: true, samplePercent: 10)
        #expect(report.chunksRead > 0)
        #expect(report.chunksRead < report.chunksChecked / 2)
    }

    @Test func storeWrittenByANewerStandbyIsRefused() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let queue = try DatabaseQueue(path: fixture.storePath + "/catalog.sqlite")
        try await queue.write { db in
            try db.execute(sql: "UPDATE meta SET value = '99' WHERE key = 'format'")
        }
        let error = #expect(throws: ReplicationError.self) {
            _ = try ReplicationStore.open(directory: fixture.storePath, logger: testLogger)
        }
        #expect(error?.code == .storeTooNew)
        #expect(error?.description.contains(fixture.storePath) == true)
    }

    @Test func storeWithAnUnknownMigrationIsRefused() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let queue = try DatabaseQueue(path: fixture.storePath + "/catalog.sqlite")
        try await queue.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('v9: from the future')")
        }
        let error = #expect(throws: ReplicationError.self) {
            _ = try ReplicationStore.open(directory: fixture.storePath, logger: testLogger)
        }
        #expect(error?.code == .storeTooNew)
    }

    @Test func aStoreOfTheFirstFormatIsMigratedAndKeepsItsVersions() async throws {
        let lab = try LabDirectory(prefix: "standby-migrate")
        defer { lab.remove() }
        let storePath = lab.file("store")
        try FileManager.default.createDirectory(atPath: storePath + "/packs", withIntermediateDirectories: true)
        // A catalog as the first release left it: migrated up to v1 only, index by pack and all.
        let queue = try DatabaseQueue(path: storePath + "/catalog.sqlite")
        try Catalog.migrator.migrate(queue, upTo: "v1: packs, chunks, sets, versions, files, recipes")
        try queue.close()
        let store = try ReplicationStore.open(directory: storePath, logger: testLogger)
        let source = lab.file("db.bak")
        try writeDatabase(source, pages: 300)
        _ = try await store.replicate(set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]))
        let indexes = try await DatabaseQueue(path: storePath + "/catalog.sqlite").read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chunks'")
        }
        #expect(indexes.isEmpty, "v2 drops chunks_by_pack: \(indexes)")
        #expect(try await store.verify(readData: true).isClean)
    }

    @Test func leftoverPackOfAKilledRunIsAdopted() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 256)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)])
        _ = try await fixture.store.replicate(set: spec)
        // What a run killed before sealing leaves: its pack still under the temporary name,
        // with a torn record at the end, and the catalog knowing nothing of it.
        let packs = fixture.storePath + "/packs"
        let pack = try #require(try FileManager.default.contentsOfDirectory(atPath: packs).first)
        let other = fixture.lab.file("other")
        let otherStore = try ReplicationStore.open(directory: other, logger: testLogger)
        _ = try await otherStore.replicate(set: spec)
        let sealed = try #require(try FileManager.default.contentsOfDirectory(atPath: other + "/packs").first)
        var bytes = try contents(other + "/packs/" + sealed)
        bytes.append(contentsOf: [7, 7, 7])
        try FileManager.default.removeItem(atPath: packs + "/" + pack)
        let fresh = try ReplicationStore.open(directory: fixture.lab.file("fresh"), logger: testLogger)
        try bytes.write(to: URL(fileURLWithPath: fixture.lab.file("fresh/packs/0123456789abcdef.pack.tmp")))
        let report = try await fresh.replicate(set: spec)
        #expect(report.version.newBytes == 0)  // every chunk came from the adopted pack
        _ = try await fresh.restore(set: "sql", to: fixture.lab.file("out"))
        #expect(try contents(fixture.lab.file("out/db.bak")) == contents(source))
        #expect(try await fresh.verify(readData: true).isClean)
    }
}
