import Foundation
import StandbyLab
import StandbyReplication
import StandbyTransport
import Testing

/// Replication from a real FTP server: Pure-FTPd on loopback, with a password login.
@Suite(.tags(.server)) struct ReplicateFTPTests {
    struct Server {
        let fixture: StoreFixture
        let ftp: FTPServer
        let path: String
        var url: URL { ftp.url("db.bak") }
        var spec: SetSpec { SetSpec(name: "sql", sources: [url]) }
        func options(password: String? = nil) -> ReplicateOptions {
            ReplicateOptions(
                transport: TransportOptions(
                    credentials: Credentials(user: ftp.user, password: password ?? ftp.password)))
        }

        init(pages: Int) throws {
            fixture = try StoreFixture()
            ftp = try FTPServer.start(in: fixture.lab)
            path = ftp.root + "/db.bak"
            try writeDatabase(path, pages: pages)
        }

        func stop() {
            ftp.stop()
            fixture.remove()
        }
    }

    @Test func aDeltaOverFTPFetchesOnlyTheChangedRanges() async throws {
        let server = try Server(pages: 1024)  // 8 MiB
        defer { server.stop() }
        _ = try await Publisher.publish(paths: [server.path], logger: testLogger)
        let first = try await server.fixture.store.replicate(set: server.spec, options: server.options())
        #expect(first.version.size == 1024 * 8192)
        // SIZE and MDTM: the capture time is the file's modification time on the server.
        #expect(first.version.captured == Date(timeIntervalSince1970: 1_700_000_000))

        try rewritePages(server.path, count: 10, seed: 5, mtime: 1_700_086_400)
        _ = try await Publisher.publish(paths: [server.path], logger: testLogger)
        let second = try await server.fixture.store.replicate(set: server.spec, options: server.options())
        #expect(second.filesByIndex == 1 && second.filesRead == 0)
        #expect(second.bytesReceived >= 10 * 8192)
        #expect(second.bytesReceived < 1024 * 8192 / 10, "received \(second.bytesReceived)")
        #expect(second.version.captured == Date(timeIntervalSince1970: 1_700_086_400))
        let out = server.fixture.lab.file("out")
        _ = try await server.fixture.store.restore(set: "sql", to: out)
        #expect(try contents(out + "/db.bak") == contents(server.path))
    }

    @Test func aWrongPasswordIsLoginDeniedNamingSetAndHost() async throws {
        let server = try Server(pages: 4)
        defer { server.stop() }
        let error = await #expect(throws: ReplicationError.self) {
            try await server.fixture.store.replicate(set: server.spec, options: server.options(password: "wrong"))
        }
        #expect(error?.code == .loginDenied, "\(String(describing: error))")
        #expect(error?.set == "sql")
        #expect(error?.host == "127.0.0.1")
        #expect(error?.description.contains("wrong") == false, "the password is never shown")
        #expect(try await server.fixture.store.versions(set: "sql").isEmpty)
    }

    @Test func aMissingFileIsNotFound() async throws {
        let server = try Server(pages: 4)
        defer { server.stop() }
        let error = await #expect(throws: ReplicationError.self) {
            try await server.fixture.store.replicate(
                set: SetSpec(name: "sql", sources: [server.ftp.url("gone.bak")]), options: server.options())
        }
        #expect(error?.code == .notFound, "\(String(describing: error))")
        #expect(error?.description.contains("gone.bak") == true, "\(String(describing: error))")
    }
}
