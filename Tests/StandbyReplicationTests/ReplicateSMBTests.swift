import Foundation
import StandbyLab
import StandbyReplication
import StandbyTransport
import Testing

/// Replication from a real SMB file share: Samba's smbd on loopback, with a password login.
/// The backup jobs of a Windows primary write to shares, so this is the source most sites have.
@Suite(.tags(.server)) struct ReplicateSMBTests {
    struct Share {
        let fixture: StoreFixture
        let smbd: SambaServer
        let path: String
        var url: URL { smbd.url("db.bak") }
        var spec: SetSpec { SetSpec(name: "sql", sources: [url]) }
        var options: ReplicateOptions {
            ReplicateOptions(
                transport: TransportOptions(credentials: Credentials(user: smbd.user, password: smbd.password)))
        }

        init(pages: Int) throws {
            fixture = try StoreFixture()
            smbd = try SambaServer.start(in: fixture.lab)
            path = smbd.root + "/db.bak"
            try writeDatabase(path, pages: pages)
        }

        func stop() {
            smbd.stop()
            fixture.remove()
        }

        func restoredMatches() async throws -> Bool {
            let out = fixture.lab.file("out-\(UInt32.random(in: 0...UInt32.max))")
            _ = try await fixture.store.restore(set: "sql", to: out)
            return try contents(out + "/db.bak") == contents(path)
        }
    }

    @Test func aShareIsReplicatedVerifiedAndRestored() async throws {
        let share = try Share(pages: 1024)  // 8 MiB
        defer { share.stop() }
        let first = try await share.fixture.store.replicate(set: share.spec, options: share.options)
        #expect(first.version.size == 1024 * 8192)
        #expect(first.filesRead == 1)
        // The capture time is the file's modification time on the share, so RPO is honest.
        #expect(first.version.captured == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(try await share.restoredMatches())

        // Day 2: SMB reads have no byte ranges in libcurl, so even with a published index the
        // whole file travels; only the changed chunks are stored.
        try rewritePages(share.path, count: 10, seed: 5, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [share.path], logger: testLogger)
        let second = try await share.fixture.store.replicate(set: share.spec, options: share.options)
        #expect(second.filesRead == 1 && second.filesByIndex == 0)
        // The file crosses the wire once a day: the stats before and after the read cost no body
        // (libcurl's SMB would read the whole file for a "no body" request).
        for report in [first, second] {
            #expect(
                report.bytesReceived >= 1024 * 8192 && report.bytesReceived < 1024 * 8192 * 21 / 20,
                "received \(report.bytesReceived) for a file of \(1024 * 8192)")
        }
        #expect(second.version.captured == Date(timeIntervalSince1970: 1_700_086_400))
        #expect(second.version.newBytes < 10 * 8192 * 6, "stored \(second.version.newBytes)")
        #expect(try await share.restoredMatches())
    }

    @Test func aByteRangeOverSMBIsTheRightBytes() async throws {
        let share = try Share(pages: 64)
        defer { share.stop() }
        // A Windows account is named with its domain: DOMAIN\user.
        let session = try TransferSession(
            options: TransportOptions(
                credentials: Credentials(user: "WORKGROUP\\\(share.smbd.user)", password: share.smbd.password)),
            logger: testLogger)
        let whole = try contents(share.path)
        let part = try session.fetch(share.url, range: ByteRange(offset: 100_000, length: 5000), maxBytes: 1 << 20)
        #expect(part == whole[100_000..<105_000])
        let info = try session.stat(share.url)
        #expect(info.size == Int64(whole.count))
        #expect(info.modificationTime == 1_700_000_000)
        // An empty file has no first bytes to stop at: its stat ends on its own.
        try Data().write(to: URL(fileURLWithPath: share.smbd.root + "/empty.log"))
        #expect(try session.stat(share.smbd.url("empty.log")).size == 0)
    }

    @Test func aWrongPasswordIsLoginDeniedNamingSetAndHost() async throws {
        let share = try Share(pages: 4)
        defer { share.stop() }
        let options = ReplicateOptions(
            transport: TransportOptions(credentials: Credentials(user: share.smbd.user, password: "wrong")))
        let error = await #expect(throws: ReplicationError.self) {
            try await share.fixture.store.replicate(set: share.spec, options: options)
        }
        #expect(error?.code == .loginDenied, "\(String(describing: error))")
        #expect(error?.set == "sql")
        #expect(error?.host == "127.0.0.1")
        #expect(error?.description.contains("wrong") == false, "the password is never shown")
        #expect(try await share.fixture.store.versions(set: "sql").isEmpty)
    }

    @Test func aMissingFileOnTheShareIsNotFound() async throws {
        let share = try Share(pages: 4)
        defer { share.stop() }
        let error = await #expect(throws: ReplicationError.self) {
            try await share.fixture.store.replicate(
                set: SetSpec(name: "sql", sources: [share.smbd.url("gone.bak")]), options: share.options)
        }
        #expect(error?.code == .notFound, "\(String(describing: error))")
        #expect(error?.description.contains("gone.bak") == true, "\(String(describing: error))")
    }
}
