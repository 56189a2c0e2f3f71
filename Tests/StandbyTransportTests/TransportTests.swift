import Foundation
import Logging
import StandbyLab
import StandbyTransport
import Testing

extension Tag {
    @Tag static var server: Self
}

/// Deterministic, incompressible-enough test bytes.
func testBytes(_ count: Int, seed: UInt64 = 42) -> Data {
    var state = seed
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return Data(bytes)
}

let logger = Logger(label: "test.transport", factory: { _ in SwiftLogNoOpLogHandler() })

func collect(_ session: TransferSession, _ url: URL, range: ByteRange? = nil) throws -> Data {
    var data = Data()
    try session.get(url, range: range) { data.append(contentsOf: $0) }
    return data
}

@Suite struct FileTransportTests {
    @Test func statAndReadsWholeFileAndRanges() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let content = testBytes(300_000)
        let path = lab.file("backup.bak")
        try content.write(to: URL(fileURLWithPath: path))
        let url = URL(fileURLWithPath: path)
        let session = try TransferSession(logger: logger)

        let info = try session.stat(url)
        #expect(info.size == 300_000)
        let mtime = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        #expect(info.modificationTime == mtime.map { Int64($0.timeIntervalSince1970) })

        #expect(try collect(session, url) == content)
        #expect(try collect(session, url, range: ByteRange(offset: 1000, length: 5000)) == content[1000..<6000])
        #expect(session.stats.requests == 3)
    }

    @Test func missingFileIsNotFound() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let session = try TransferSession(logger: logger)
        let error = #expect(throws: TransportError.self) {
            try collect(session, URL(fileURLWithPath: lab.file("absent.bak")))
        }
        #expect(error?.code == .notFound)
        #expect(error?.description.contains("absent.bak") == true)
    }

    @Test func rangePastTheEndIsTruncated() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let path = lab.file("short.bak")
        try testBytes(1000).write(to: URL(fileURLWithPath: path))
        let session = try TransferSession(logger: logger)
        let error = #expect(throws: TransportError.self) {
            try collect(session, URL(fileURLWithPath: path), range: ByteRange(offset: 500, length: 1000))
        }
        #expect(error?.code == .truncated || error?.code == .rangeNotSatisfiable)
    }

    @Test func sinkErrorStopsTheTransferAndIsRethrown() throws {
        struct Full: Error {}
        let lab = try LabDirectory()
        defer { lab.remove() }
        let path = lab.file("big.bak")
        try testBytes(1 << 20).write(to: URL(fileURLWithPath: path))
        let session = try TransferSession(logger: logger)
        #expect(throws: Full.self) {
            try session.get(URL(fileURLWithPath: path)) { _ in throw Full() }
        }
    }

    @Test func asyncGetStreamsAndCancellationStops() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let path = lab.file("big.bak")
        try testBytes(2 << 20).write(to: URL(fileURLWithPath: path))
        let transport = Transport(logger: logger)
        let received = try await transport.get(URL(fileURLWithPath: path)) { _ in }
        #expect(received == 2 << 20)
        let small = try await transport.fetch(URL(fileURLWithPath: path), range: ByteRange(offset: 10, length: 10))
        #expect(small.count == 10)
    }
}

@Suite struct RedactionTests {
    @Test func passwordsNeverShow() {
        #expect(
            Redaction.redacted("sftp://backup:s3cret@host.example:22/x/y.bak")
                == "sftp://backup:***@host.example:22/x/y.bak")
        #expect(Redaction.redacted("https://host/a@b") == "https://host/a@b")
        #expect(Redaction.redacted("https://user@host/x") == "https://user@host/x")
    }

    @Test func errorOfAURLWithAPasswordDoesNotShowIt() throws {
        let port = try Ports.free()
        let session = try TransferSession(logger: logger)
        let url = try #require(URL(string: "http://backup:s3cret@127.0.0.1:\(port)/x.bak"))
        let error = #expect(throws: TransportError.self) { try session.stat(url) }
        #expect(error?.code == .connectionRefused)
        #expect(error?.description.contains("s3cret") == false)
        #expect(error?.description.contains("127.0.0.1") == true)
    }

    @Test func retryPolicyBacksOff() {
        let policy = RetryPolicy(attempts: 4, initialDelay: .milliseconds(100), maxDelay: .milliseconds(250))
        #expect(policy.delay(beforeAttempt: 1) == .zero)
        #expect(policy.delay(beforeAttempt: 2) == .milliseconds(100))
        #expect(policy.delay(beforeAttempt: 3) == .milliseconds(200))
        #expect(policy.delay(beforeAttempt: 4) == .milliseconds(250))
    }
}

@Suite(.tags(.server)) struct HTTPTransportTests {
    @Test func statGetAndRangeAgainstNginx() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let content = testBytes(500_000)
        try content.write(to: URL(fileURLWithPath: nginx.root + "/db.bak"))
        let session = try TransferSession(logger: logger)
        let url = nginx.url("db.bak")

        let info = try session.stat(url)
        #expect(info.size == 500_000)
        let mtime = try FileManager.default.attributesOfItem(atPath: nginx.root + "/db.bak")[.modificationDate] as? Date
        #expect(info.modificationTime == mtime.map { Int64($0.timeIntervalSince1970) })

        #expect(try collect(session, url) == content)
        let before = session.stats.bodyBytes
        #expect(
            try collect(session, url, range: ByteRange(offset: 123_456, length: 10_000)) == content[123_456..<133_456])
        // Range was honoured: only the range crossed the wire.
        #expect(session.stats.bodyBytes - before == 10_000)
        let log = nginx.accessLog { $0.contains("\" 206 ") }
        #expect(log.contains("\" 206 "), "\(log)")
    }

    @Test func missingFileIs404NotFound() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let session = try TransferSession(logger: logger)
        let error = #expect(throws: TransportError.self) { try collect(session, nginx.url("nope.bak")) }
        #expect(error?.code == .notFound)
        #expect(error?.httpStatus == 404)
        #expect(error?.host == "127.0.0.1")
    }

    @Test func requestReturnsStatusHeadersAndBody() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        try Data("hello".utf8).write(to: URL(fileURLWithPath: nginx.root + "/hook"))
        let transport = Transport(logger: logger)
        let ok = try await transport.request(HTTPRequest(url: nginx.url("hook")))
        #expect(ok.status == 200)
        #expect(ok.bodyText == "hello")
        #expect(ok.header("content-length") == "5")
        let post = try await transport.request(
            HTTPRequest(
                method: "POST", url: nginx.url("hook"), headers: [("Content-Type", "application/json")],
                body: Data("{}".utf8)))
        #expect(post.status == 405)  // nginx serves static files only: an answer, not an error
        let missing = try await transport.request(HTTPRequest(url: nginx.url("absent")))
        #expect(missing.status == 404)
    }

    @Test func retriesGiveUpOnARefusedConnection() async throws {
        let port = try Ports.free()
        let transport = Transport(logger: logger)
        let url = try #require(URL(string: "http://127.0.0.1:\(port)/hook"))
        let started = ContinuousClock.now
        let error = await #expect(throws: TransportError.self) {
            try await transport.request(
                HTTPRequest(method: "POST", url: url, body: Data("{}".utf8)),
                retry: RetryPolicy(attempts: 3, initialDelay: .milliseconds(50)))
        }
        #expect(error?.code == .connectionRefused)
        #expect(ContinuousClock.now - started >= .milliseconds(150))
    }

    @Test func rateCapSlowsTheTransfer() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        try testBytes(6 << 20).write(to: URL(fileURLWithPath: nginx.root + "/big.bak"))
        var options = TransportOptions()
        options.maxReceiveRate = 3 << 20
        let session = try TransferSession(options: options, logger: logger)
        var reports = 0
        session.progress = { _ in reports += 1 }
        let started = ContinuousClock.now
        #expect(try collect(session, nginx.url("big.bak")).count == 6 << 20)
        // 6 MiB at 3 MiB/s: about 2 s (libcurl averages, so the first burst may run ahead).
        #expect(ContinuousClock.now - started >= .seconds(1))
        #expect(reports > 0)
    }
}

@Suite(.tags(.server)) struct SFTPTransportTests {
    @Test func statGetAndRangeOverSFTP() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let sshd = try SSHServer.start(in: lab)
        defer { sshd.stop() }
        let content = testBytes(400_000)
        let path = lab.file("remote.bak")
        try content.write(to: URL(fileURLWithPath: path))
        var options = TransportOptions()
        options.ssh = SSHOptions(
            privateKeyFile: sshd.userPrivateKeyPath, publicKeyFile: sshd.userPublicKeyPath,
            knownHostsFile: sshd.knownHostsPath)
        let session = try TransferSession(options: options, logger: logger)
        let url = try #require(sshd.sftpURL(path))

        let info = try session.stat(url)
        #expect(info.size == 400_000)
        #expect(try collect(session, url) == content)
        #expect(
            try collect(session, url, range: ByteRange(offset: 77_777, length: 33_333)) == content[77_777..<111_110])

        // The fingerprint pins the host as well as known_hosts does.
        options.ssh.knownHostsFile = nil
        options.ssh.hostKeySHA256 = sshd.hostKeySHA256
        let pinned = try TransferSession(options: options, logger: logger)
        #expect(try pinned.stat(url).size == 400_000)
    }

    @Test func unauthorisedKeyIsLoginDenied() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let sshd = try SSHServer.start(in: lab)
        defer { sshd.stop() }
        try testBytes(10).write(to: URL(fileURLWithPath: lab.file("remote.bak")))
        var options = TransportOptions()
        options.ssh = SSHOptions(
            privateKeyFile: sshd.strangerPrivateKeyPath, publicKeyFile: sshd.strangerPublicKeyPath,
            knownHostsFile: sshd.knownHostsPath)
        let session = try TransferSession(options: options, logger: logger)
        let url = try #require(sshd.sftpURL(lab.file("remote.bak")))
        let error = #expect(throws: TransportError.self) { try session.stat(url) }
        #expect(error?.code == .loginDenied)
        #expect(error?.host == "127.0.0.1")
    }

    @Test func missingRemoteFileIsNotFound() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let sshd = try SSHServer.start(in: lab)
        defer { sshd.stop() }
        var options = TransportOptions()
        options.ssh = SSHOptions(
            privateKeyFile: sshd.userPrivateKeyPath, publicKeyFile: sshd.userPublicKeyPath,
            hostKeySHA256: sshd.hostKeySHA256)
        let session = try TransferSession(options: options, logger: logger)
        let url = try #require(sshd.sftpURL(lab.file("absent.bak")))
        let error = #expect(throws: TransportError.self) { try collect(session, url) }
        #expect(error?.code == .notFound)
    }
}
