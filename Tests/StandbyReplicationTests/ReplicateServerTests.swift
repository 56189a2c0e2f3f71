import Crypto
import Foundation
import StandbyLab
import StandbyTransport
import Testing

@testable import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Replication from real servers on loopback: nginx (HTTP with Range) and sshd (sftp).
@Suite(.tags(.server)) struct ReplicateServerTests {
    /// Day 1 and day 2 of a database backup served by nginx.
    struct Day {
        let fixture: StoreFixture
        let nginx: NginxServer
        let path: String
        var url: URL { nginx.url("db.bak") }
        var spec: SetSpec { SetSpec(name: "sql", sources: [url]) }

        init(pages: Int, nginxServer: String = "") throws {
            fixture = try StoreFixture()
            nginx = try NginxServer.start(in: fixture.lab, extraServer: nginxServer)
            path = nginx.root + "/db.bak"
            try writeDatabase(path, pages: pages)
        }

        func stop() {
            nginx.stop()
            fixture.remove()
        }

        func restoredMatches() async throws -> Bool {
            let out = fixture.lab.file("out-\(UInt32.random(in: 0...UInt32.max))")
            _ = try await fixture.store.restore(set: "sql", to: out)
            return try contents(out + "/db.bak") == contents(path)
        }
    }

    @Test func deltaWithAPublishedIndexFetchesOnlyMissingRanges() async throws {
        let day = try Day(pages: 2048)  // 16 MiB
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        let first = try await day.fixture.store.replicate(set: day.spec)
        #expect(first.filesByIndex == 1)
        #expect(first.bytesReceived >= 2048 * 8192)
        #expect(first.bytesReceived < 2048 * 8192 * 11 / 10)
        let dayOneRequests = day.nginx.requestLines().count

        try rewritePages(day.path, count: 20, seed: 99, mtime: 1_700_086_400)  // 1% of pages
        let published = try await Publisher.publish(paths: [day.path], logger: testLogger)
        #expect(published.first?.chunkCount ?? 0 > 1000)
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesByIndex == 1)
        #expect(second.filesRead == 0)
        // 20 rewritten pages cost a few chunks each, plus the index: far below the 16 MiB file,
        // and at least the rewritten bytes.
        #expect(second.bytesReceived >= 20 * 8192)
        #expect(second.bytesReceived < 2048 * 8192 / 20, "received \(second.bytesReceived)")
        #expect(second.version.newBytes < 20 * 8192 * 4)
        #expect(try await day.restoredMatches())
        // The 20 changes scattered over the file travel together: the stats, the index's top
        // level, one request for the changed groups' entries and one for the missing chunks,
        // each answered with several parts, as nginx's log shows.
        let dayTwo = Array(day.nginx.requestLines().dropFirst(dayOneRequests))
        #expect(dayTwo.count <= 8, "day 2 made \(dayTwo.count) requests: \(dayTwo)")
        #expect(second.requests == dayTwo.count)
        let multipart = dayTwo.filter { $0.contains("\" 206 ") }
        #expect(multipart.count >= 2)
    }

    /// nginx with `max_ranges 1` answers a request for several ranges with the whole file, as
    /// some servers and proxies do: the replicator stops that answer at once and asks one range
    /// a request, and day 2 is still a delta.
    @Test func aServerThatIgnoresMultipleRangesIsAskedOneAtATime() async throws {
        let day = try Day(pages: 2048, nginxServer: "max_ranges 1;")
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        _ = try await day.fixture.store.replicate(set: day.spec)
        let dayOneRequests = day.nginx.requestLines().count
        try rewritePages(day.path, count: 20, seed: 7, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesByIndex == 1)
        #expect(second.filesRead == 0)
        #expect(second.bytesReceived < 2048 * 8192 / 10, "received \(second.bytesReceived)")
        #expect(try await day.restoredMatches())
        let dayTwo = Array(day.nginx.requestLines().dropFirst(dayOneRequests))
        // At least one request was answered whole (200) and cut short; the rest one range each.
        #expect(dayTwo.contains { $0.contains("\" 200 ") && $0.contains("GET ") })
        #expect(dayTwo.filter { $0.contains("\" 206 ") }.count >= 20)
    }

    @Test func staleIndexFallsBackToAFullRead() async throws {
        let day = try Day(pages: 512)
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        _ = try await day.fixture.store.replicate(set: day.spec)
        // The backup is rewritten but nobody publishes a new index.
        try rewritePages(day.path, count: 5, seed: 3, mtime: 1_700_086_400)
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesRead == 1)
        #expect(second.filesByIndex == 0)
        #expect(try await day.restoredMatches())
    }

    @Test func corruptIndexFallsBackToAFullRead() async throws {
        let day = try Day(pages: 512)
        defer { day.stop() }
        _ = try await day.fixture.store.replicate(set: day.spec)
        try rewritePages(day.path, count: 5, seed: 3, mtime: 1_700_086_400)
        let published = try #require(try await Publisher.publish(paths: [day.path], logger: testLogger).first)
        // Damage one byte of the second level (entries of some group), before the block hashes.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: published.indexPath))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size - UInt64((published.fileSize + 4095) / 4096 * 8) - 100)
        try handle.write(contentsOf: Data([0xEE, 0xEE]))
        try handle.close()
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesRead == 1)
        #expect(try await day.restoredMatches())
    }

    /// Day 2 asks for the missing ranges before it has looked up where the previous version's
    /// chunks are, taking them to be stored. A catalog that lost one of them (changed by hand,
    /// the version not marked broken) makes the walk differ from what was asked for: the file
    /// is read whole instead, and the copy is exact.
    @Test func aPreviousChunkLostFromTheCatalogMakesDayTwoReadTheWholeFile() async throws {
        let day = try Day(pages: 1024)
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        _ = try await day.fixture.store.replicate(set: day.spec)
        try await day.fixture.store.pool.write { db in
            try db.execute(
                sql: "DELETE FROM chunks WHERE id = (SELECT id FROM chunks ORDER BY pack, offset LIMIT 1 OFFSET 500)")
        }
        try rewritePages(day.path, count: 10, seed: 21, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesByIndex == 0)
        #expect(second.filesRead == 1)
        #expect(try await day.restoredMatches())
    }

    /// Block hashes are only hints: damaged ones make the patched runs fail their chunks' ids,
    /// and those runs are fetched whole. Day 2 is still a delta, and the copy exact.
    @Test func damagedBlockHashesCostBytesNotCorrectness() async throws {
        let day = try Day(pages: 512)
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        _ = try await day.fixture.store.replicate(set: day.spec)
        try rewritePages(day.path, count: 5, seed: 3, mtime: 1_700_086_400)
        let published = try #require(try await Publisher.publish(paths: [day.path], logger: testLogger).first)
        // Every block hash says "unchanged": each patched run keeps the old bytes, which fail.
        let blocks = Int((published.fileSize + 4095) / 4096)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: published.indexPath))
        let size = try handle.seekToEnd()
        let previous = day.fixture.lab.file("previous.bak")
        try writeDatabase(previous, pages: 512)
        var hashes = Data()
        let old = try contents(previous)
        for block in 0..<blocks {
            let piece = old[(block * 4096)..<min(old.count, (block + 1) * 4096)]
            hashes.append(contentsOf: blockHash(Array(piece)))
        }
        try handle.seek(toOffset: size - UInt64(blocks * 8))
        try handle.write(contentsOf: hashes)
        try handle.close()
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesByIndex == 1)
        #expect(second.filesRead == 0)
        #expect(second.bytesReceived < 512 * 8192 / 5)
        #expect(try await day.restoredMatches())
    }

    /// An index of the first format (no block hashes, 20-byte groups), as an older `standby
    /// publish` writes it, is still used: day 2 fetches whole missing chunks.
    @Test func anIndexOfTheFirstFormatIsStillUsed() async throws {
        let day = try Day(pages: 512)
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        _ = try await day.fixture.store.replicate(set: day.spec)
        try rewritePages(day.path, count: 5, seed: 11, mtime: 1_700_086_400)
        let published = try #require(try await Publisher.publish(paths: [day.path], logger: testLogger).first)
        let index = try [UInt8](contents(published.indexPath))
        var header = try #require(ChunkIndexHeader.decode(Array(index.prefix(128))))
        #expect(header.format == 2)
        var top: [UInt8] = []
        for group in 0..<header.groupCount {
            let entry = 128 + group * 24
            top += index[entry..<(entry + 4)] + index[(entry + 8)..<(entry + 24)]
        }
        let second = index[Int(header.secondLevelOffset)..<Int(header.blocksOffset)]
        header.format = 1
        header.topLevelSHA256 = Array(SHA256.hash(data: top))
        try Data(header.encoded() + top + second).write(to: URL(fileURLWithPath: published.indexPath))
        let dayTwo = try await day.fixture.store.replicate(set: day.spec)
        #expect(dayTwo.filesByIndex == 1)
        #expect(dayTwo.filesRead == 0)
        #expect(dayTwo.bytesReceived < 512 * 8192 / 5, "received \(dayTwo.bytesReceived)")
        #expect(try await day.restoredMatches())
    }

    @Test func indexWhoseContentLiesFallsBack() async throws {
        let day = try Day(pages: 512)
        defer { day.stop() }
        _ = try await day.fixture.store.replicate(set: day.spec)
        try rewritePages(day.path, count: 5, seed: 3, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        // The same pages change again, keeping size and mtime: the index matches the file's stat
        // but not the bytes it fetches. Chunk hashes catch it.
        try rewritePages(day.path, count: 5, seed: 3, mtime: 1_700_086_400, contentSeed: 77)
        let second = try await day.fixture.store.replicate(set: day.spec)
        #expect(second.filesRead == 1)
        #expect(try await day.restoredMatches())
    }

    @Test func missingFileIs404NamingSetAndHost() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let nginx = try NginxServer.start(in: fixture.lab)
        defer { nginx.stop() }
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.replicate(set: SetSpec(name: "sql", sources: [nginx.url("gone.bak")]))
        }
        #expect(error?.code == .notFound)
        #expect(error?.set == "sql")
        #expect(error?.host == "127.0.0.1")
        #expect(error?.description.contains("404") == true)
        #expect(try await fixture.store.versions(set: "sql").isEmpty)
    }

    @Test func refusedConnectionNamesSetAndHost() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let port = try Ports.free()
        let url = try #require(URL(string: "http://backup:secret@127.0.0.1:\(port)/db.bak"))
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.replicate(set: SetSpec(name: "sql", sources: [url]))
        }
        #expect(error?.code == .connectionRefused)
        #expect(error?.description.contains("set sql: 127.0.0.1") == true)
        #expect(error?.description.contains("secret") == false)
    }

    @Test func killedMidwayRunDoesNotFetchAgainWhatItStored() async throws {
        let day = try Day(pages: 4096)  // 32 MiB
        defer { day.stop() }
        _ = try await Publisher.publish(paths: [day.path], logger: testLogger)
        try await cancelMidway(day)
        let store = day.fixture.store
        let spec = day.spec

        let again = try await store.replicate(set: spec)
        // Only what the first run had not stored crosses the wire again.
        #expect(again.bytesReceived < 4096 * 8192 * 3 / 4, "received \(again.bytesReceived)")
        #expect(try await day.restoredMatches())
    }

    /// Cancels a replicate of `day` once it has processed 12 MiB: the run waits at that mark until
    /// the test has cancelled it, so a loaded machine that resumes the test late cannot let the
    /// run finish first. Nothing new is visible afterwards.
    func cancelMidway(_ day: Day) async throws {
        var transport = TransportOptions()
        transport.maxReceiveRate = 8 << 20
        let halfway = AsyncStream<Void>.makeStream()
        let once = Once()
        let cancelled = DispatchSemaphore(value: 0)
        let options = ReplicateOptions(
            transport: transport,
            progress: { progress in
                if progress.processedBytes > 12 << 20, once.first() {
                    halfway.continuation.yield()
                    _ = cancelled.wait(timeout: .now() + 60)
                }
            })
        let store = day.fixture.store
        let spec = day.spec
        let before = try await store.versions(set: "sql").count
        let run = Task { try await store.replicate(set: spec, options: options) }
        var iterator = halfway.stream.makeAsyncIterator()
        _ = await iterator.next()
        run.cancel()
        cancelled.signal()
        let error = await #expect(throws: ReplicationError.self) { try await run.value }
        #expect(error?.code == .cancelled)
        #expect(try await store.versions(set: "sql").count == before)
    }

    /// Without a published index: the rerun reads the source from the last checkpoint of the
    /// cancelled run (a ranged GET), feeds the whole-file hash with the stored bytes, and
    /// commits the version a fresh run would: the same SHA-256, the same bytes. A source
    /// changed since the cancelled run is read from the start.
    @Test func cancelledRunWithoutAnIndexResumesWhereItStopped() async throws {
        let day = try Day(pages: 4096)  // 32 MiB
        defer { day.stop() }
        try await cancelMidway(day)
        let again = try await day.fixture.store.replicate(set: day.spec)
        #expect(again.filesByIndex == 0)
        // At least the 12 MiB stored before the cancel are not fetched again.
        #expect(again.bytesReceived < (32 << 20) - (12 << 20) + (1 << 20), "received \(again.bytesReceived)")
        #expect(try await day.restoredMatches())

        let fresh = try StoreFixture()
        defer { fresh.remove() }
        let whole = try await fresh.store.replicate(set: day.spec)
        #expect(whole.bytesReceived >= 32 << 20)
        let resumedFiles = try await day.fixture.store.files(version: again.version.id)
        let freshFiles = try await fresh.store.files(version: whole.version.id)
        #expect(resumedFiles.map(\.sha256) == freshFiles.map(\.sha256))
        #expect(again.version.size == whole.version.size)

        try rewritePages(day.path, count: 4096, seed: 3, mtime: 1_700_086_400)
        try await cancelMidway(day)
        try rewritePages(day.path, count: 5, seed: 4, mtime: 1_700_172_800)
        let changed = try await day.fixture.store.replicate(set: day.spec)
        #expect(changed.bytesReceived >= 32 << 20, "received \(changed.bytesReceived)")
        #expect(try await day.restoredMatches())
    }

    @Test func sftpReplicateAndRestore() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let sshd = try SSHServer.start(in: fixture.lab)
        defer { sshd.stop() }
        let source = fixture.lab.file("remote.bak")
        try writeDatabase(source, pages: 512)
        _ = try await Publisher.publish(paths: [source], logger: testLogger)
        var transport = TransportOptions()
        transport.ssh = SSHOptions(
            privateKeyFile: sshd.userPrivateKeyPath, publicKeyFile: sshd.userPublicKeyPath,
            knownHostsFile: sshd.knownHostsPath)
        let url = try #require(sshd.sftpURL(source))
        let spec = SetSpec(name: "sql", sources: [url])
        let first = try await fixture.store.replicate(set: spec, options: ReplicateOptions(transport: transport))
        #expect(first.version.size == 512 * 8192)
        try rewritePages(source, count: 5, seed: 8, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [source], logger: testLogger)
        let second = try await fixture.store.replicate(set: spec, options: ReplicateOptions(transport: transport))
        #expect(second.filesByIndex == 1)
        #expect(second.bytesReceived < 512 * 8192 / 5)
        let out = fixture.lab.file("out")
        _ = try await fixture.store.restore(set: "sql", to: out)
        #expect(try contents(out + "/remote.bak") == contents(source))
    }

    @Test func sftpRefusedLoginNamesSetAndHost() async throws {
        let fixture = try StoreFixture()
        defer { fixture.remove() }
        let sshd = try SSHServer.start(in: fixture.lab)
        defer { sshd.stop() }
        let source = fixture.lab.file("remote.bak")
        try writeDatabase(source, pages: 4)
        var transport = TransportOptions()
        transport.ssh = SSHOptions(
            privateKeyFile: sshd.strangerPrivateKeyPath, publicKeyFile: sshd.strangerPublicKeyPath,
            knownHostsFile: sshd.knownHostsPath)
        let url = try #require(sshd.sftpURL(source))
        let error = await #expect(throws: ReplicationError.self) {
            try await fixture.store.replicate(
                set: SetSpec(name: "sql", sources: [url]), options: ReplicateOptions(transport: transport))
        }
        #expect(error?.code == .loginDenied)
        #expect(error?.set == "sql")
        #expect(error?.host == "127.0.0.1")
    }

    @Test func rateLimitCapsTheTransfer() async throws {
        let day = try Day(pages: 768)  // 6 MiB
        defer { day.stop() }
        let started = ContinuousClock.now
        _ = try await day.fixture.store.replicate(set: day.spec, options: ReplicateOptions(rateLimit: 3 << 20))
        #expect(ContinuousClock.now - started >= .seconds(1))
    }
}
