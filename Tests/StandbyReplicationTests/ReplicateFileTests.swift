import Foundation
import StandbyLab
import StandbyReplication
import StandbyTransport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Replication from file:// sources: no server needed.
@Suite struct ReplicateFileTests {
    @Test func replicateAndRestoreRoundTripByteExact() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 512)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)])

        let first = try await fixture.store.replicate(set: spec)
        #expect(first.version.size == 512 * 8192)
        #expect(first.version.newBytes == 512 * 8192)
        #expect(first.version.captured == Date(timeIntervalSince1970: 1_700_000_000))

        let restored = try await fixture.store.restore(set: "sql", to: fixture.lab.file("out"))
        #expect(restored.version.id == first.version.id)
        #expect(try contents(fixture.lab.file("out/db.bak")) == contents(source))
        let attributes = try FileManager.default.attributesOfItem(atPath: fixture.lab.file("out/db.bak"))
        #expect((attributes[.modificationDate] as? Date) == Date(timeIntervalSince1970: 1_700_000_000))
        // No temporary file left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.lab.file("out")) == ["db.bak"])
    }

    @Test func unchangedSourceStoresNothingNewAndChangedOneLittle() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 512)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)])
        _ = try await fixture.store.replicate(set: spec)
        let same = try await fixture.store.replicate(set: spec)
        #expect(same.version.newBytes == 0)

        try rewritePages(source, count: 5, seed: 11, mtime: 1_700_086_400)
        let changed = try await fixture.store.replicate(set: spec)
        #expect(changed.version.newBytes > 0)
        #expect(changed.version.newBytes < 5 * 4 * 8192 * 2)
        let versions = try await fixture.store.versions(set: "sql")
        #expect(versions.map(\.id) == [changed.version.id, same.version.id, versions[2].id])

        let status = try #require(try await fixture.store.status().first)
        #expect(status.newestVerified?.id == changed.version.id)
        #expect(status.versionCount == 3)
        #expect(status.dedupRatio > 2.5)
        #expect(status.captureTime == Date(timeIntervalSince1970: 1_700_086_400))

        // The older version is still restorable, byte for byte.
        let older = fixture.lab.file("older")
        try writeDatabase(fixture.lab.file("original.bak"), pages: 512)
        _ = try await fixture.store.restore(set: "sql", version: same.version.id, to: older)
        #expect(try contents(older + "/db.bak") == contents(fixture.lab.file("original.bak")))
    }

    @Test func aDirectoryOfFilesIsOneVersion() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let share = try fixture.lab.directory("updates")
        try FileManager.default.createDirectory(atPath: share + "/sub", withIntermediateDirectories: true)
        try writeDatabase(share + "/a.cab", pages: 10, seed: 1)
        try writeDatabase(share + "/sub/b.cab", pages: 20, seed: 2)
        try Data().write(to: URL(fileURLWithPath: share + "/empty.txt"))
        let report = try await fixture.store.replicate(
            set: SetSpec(name: "updates", sources: [URL(fileURLWithPath: share)]))
        #expect(report.version.fileCount == 3)
        let files = try await fixture.store.files(version: report.version.id)
        #expect(files.map(\.name) == ["updates/a.cab", "updates/empty.txt", "updates/sub/b.cab"])
        let out = fixture.lab.file("restored")
        _ = try await fixture.store.restore(set: "updates", to: out)
        #expect(try contents(out + "/updates/sub/b.cab") == contents(share + "/sub/b.cab"))
        #expect(try contents(out + "/updates/empty.txt").isEmpty)
    }

    @Test func missingSourceIsNotFoundAndNoVersionAppears() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: fixture.lab.file("absent.bak"))])
        let error = await #expect(throws: ReplicationError.self) { try await fixture.store.replicate(set: spec) }
        #expect(error?.code == .notFound)
        #expect(error?.set == "sql")
        #expect(error?.description.contains("absent.bak") == true)
        #expect(try await fixture.store.versions(set: "sql").isEmpty)
    }

    @Test func sourceChangingDuringTheReadIsNotCommitted() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 2048)
        let once = Once()
        let options = ReplicateOptions(progress: { progress in
            if progress.phase == .fetching, progress.processedBytes > 0, once.first() {
                // The backup job writes on while we read: a new mtime.
                setModificationTime(source, 1_700_000_777)
            }
        })
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.replicate(
                set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]), options: options)
        }
        #expect(error?.code == .sourceChanged)
        #expect(try await fixture.store.versions(set: "sql").isEmpty)
        // What was read is kept: the next run stores nothing new for unchanged content.
        let again = try await fixture.store.replicate(
            set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]))
        #expect(again.version.newBytes == 0)
    }

    @Test func truncatedSourceIsNotCommitted() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 4096)
        let once = Once()
        let options = ReplicateOptions(progress: { progress in
            if progress.phase == .fetching, progress.processedBytes > 0, once.first() {
                truncate(source, 1 << 20)
            }
        })
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.replicate(
                set: SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)]), options: options)
        }
        #expect(error?.code == .sourceTruncated || error?.code == .sourceChanged)
        #expect(try await fixture.store.versions(set: "sql").isEmpty)
        let status = try await fixture.store.status()
        #expect(status.first?.newestVerified == nil)
    }

    @Test func twoReplicatesAtOnceOneIsRefused() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 1024)
        let started = AsyncStream<Void>.makeStream()
        let once = Once()
        // The first run is held inside its transfer (its progress callback waits) until the second
        // has tried, so it surely holds the store's lock then, however busy the machine is.
        let release = DispatchSemaphore(value: 0)
        let options = ReplicateOptions(
            progress: { _ in
                if once.first() {
                    started.continuation.yield()
                    release.wait()
                }
            })
        let store = fixture.store
        let first = Task {
            try await store.replicate(
                set: SetSpec(name: "a", sources: [URL(fileURLWithPath: source)]), options: options)
        }
        var iterator = started.stream.makeAsyncIterator()
        _ = await iterator.next()
        let error = await #expect(throws: ReplicationError.self) {
            try await store.replicate(set: SetSpec(name: "b", sources: [URL(fileURLWithPath: source)]))
        }
        #expect(error?.code == .storeBusy)
        #expect(error?.description.contains("\(getpid())") == true)
        release.signal()
        let done = try await first.value
        #expect(done.version.set == "a")
        // The lock died with the first run: the next one goes through.
        _ = try await store.replicate(set: SetSpec(name: "b", sources: [URL(fileURLWithPath: source)]))
    }

    @Test func retentionDropsOldVersionsAndReclaimsSpace() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let source = fixture.lab.file("db.bak")
        try writeDatabase(source, pages: 1024, seed: 1)
        let spec = SetSpec(name: "sql", sources: [URL(fileURLWithPath: source)], keepLast: 1)
        _ = try await fixture.store.replicate(set: spec)
        let full = fixture.store.packBytesOnDisk()
        #expect(full >= 1024 * 8192)
        // An entirely new backup: the first version's chunks are all garbage after retention.
        try writeDatabase(source, pages: 256, seed: 2, mtime: 1_700_100_000)
        let second = try await fixture.store.replicate(set: spec)
        #expect(second.droppedVersions.count == 1)
        #expect(second.reclaimedBytes >= 1000 * 8192)
        #expect(fixture.store.packBytesOnDisk() < full / 2)
        #expect(try await fixture.store.versions(set: "sql").map(\.id) == [second.version.id])
        let out = fixture.lab.file("out")
        _ = try await fixture.store.restore(set: "sql", to: out)
        #expect(try contents(out + "/db.bak") == contents(source))
        let verify = try await fixture.store.verify(readData: true)
        #expect(verify.isClean)
    }

    @Test func partlyDeadPacksAreRewritten() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let keep = fixture.lab.file("keep.bak")
        let drop = fixture.lab.file("drop.bak")
        try writeDatabase(keep, pages: 100, seed: 5)
        try writeDatabase(drop, pages: 900, seed: 6)
        // One pack holds both files' chunks; then the set keeps only `keep.bak`.
        _ = try await fixture.store.replicate(
            set: SetSpec(name: "s", sources: [URL(fileURLWithPath: keep), URL(fileURLWithPath: drop)]))
        _ = try await fixture.store.replicate(set: SetSpec(name: "s", sources: [URL(fileURLWithPath: keep)]))
        let before = fixture.store.packBytesOnDisk()
        let report = try await fixture.store.applyRetention(set: "s", keepLast: 1)
        #expect(report.packsRewritten == 1)
        #expect(fixture.store.packBytesOnDisk() < before / 4)
        let out = fixture.lab.file("out")
        _ = try await fixture.store.restore(set: "s", to: out)
        #expect(try contents(out + "/keep.bak") == contents(keep))
        // The catalog names no chunk of the old pack, and every chunk it names reads back.
        let verify = try await fixture.store.verify(readData: true)
        #expect(verify.isClean)
        #expect(try await fixture.store.collectGarbage().chunksRemoved == 0, "nothing dead is left behind")
    }
}
