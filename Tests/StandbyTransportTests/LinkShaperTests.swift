import Foundation
import StandbyLab
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The lab's shaped link (a loopback TCP proxy with a one-way delay and a rate cap per
/// direction) in front of nginx: a request and its response take at least the round-trip time, a
/// large response at least its size over the rate, and the shaper counts what it forwarded.
@Suite(.tags(.server)) struct LinkShaperTests {
    @Test func linksAreReadAsRoundTripAndRate() throws {
        let wan = try #require(LinkShaper.Link(parsing: "40ms,100Mbit"))
        #expect(wan.roundTrip == .milliseconds(40))
        #expect(wan.bitsPerSecond == 100e6)
        let fast = try #require(LinkShaper.Link(parsing: "80ms,1Gbit/s"))
        #expect(fast.roundTrip == .milliseconds(80))
        #expect(fast.bitsPerSecond == 1e9)
        let plain = try #require(LinkShaper.Link(parsing: "0ms"))
        #expect(plain.bitsPerSecond == nil)
        #expect(LinkShaper.Link(parsing: "40,100Mbit") == nil)
        #expect(LinkShaper.Link(parsing: "40ms,fast") == nil)
        #expect(LinkShaper.Link(parsing: "40ms,100Mbit,1") == nil)
    }

    @Test func aRoundTripTakesTheLinksRoundTripTime() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        try lab.write("www/small.txt", "hello through the link\n")
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let shaper = try LinkShaper.start(link: #require(LinkShaper.Link(parsing: "40ms,100Mbit")), port: nginx.port)
        defer { shaper.stop() }

        let fd = try connectTCP(shaper.port)
        defer { close(fd) }
        var times: [Double] = []
        for _ in 0..<3 {
            let started = ContinuousClock.now
            let body = try get(fd, "/small.txt")
            times.append(seconds(ContinuousClock.now - started))
            #expect(body == Array("hello through the link\n".utf8))
        }
        // Each request crosses once (20 ms) and its response once (20 ms).
        for time in times {
            #expect(time >= 0.039, "a round trip took \(time) s, less than the link's 40 ms")
            #expect(time < 0.5, "a round trip took \(time) s")
        }
        let counted = shaper.counters
        #expect(counted.connections == 1)
        #expect(counted.bytesUp == Int64(3 * request("/small.txt").count))
    }

    @Test func aTransferTakesItsSizeOverTheRateAndIsCounted() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let size = 32 << 20
        let data = try #require(FileHandle(forReadingAtPath: "/dev/urandom")?.readData(ofLength: size))
        try FileManager.default.createDirectory(atPath: lab.file("www"), withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: lab.file("www/big.bin")))
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let rate = 200e6
        let shaper = try LinkShaper.start(link: #require(LinkShaper.Link(parsing: "10ms,200Mbit")), port: nginx.port)
        defer { shaper.stop() }

        let fd = try connectTCP(shaper.port)
        defer { close(fd) }
        let started = ContinuousClock.now
        let body = try get(fd, "/big.bin")
        let elapsed = seconds(ContinuousClock.now - started)
        #expect(body.count == size)
        #expect(body == Array(data))
        let floor = Double(size) * 8 / rate
        // The rate is a cap: never faster (1% for the clock), and not far slower on a busy machine.
        #expect(elapsed >= floor * 0.99, "32 MiB took \(elapsed) s; at 200 Mbit/s it takes at least \(floor) s")
        #expect(elapsed < floor * 3 + 1, "32 MiB took \(elapsed) s, against \(floor) s at the link's rate")
        let counted = shaper.counters
        #expect(counted.bytesUp == Int64(request("/big.bin").count))
        #expect(counted.bytesDown >= Int64(size))
        #expect(counted.bytesDown < Int64(size) + 1024, "the response's headers are all the shaper adds")
        #expect(counted.connections == 1)
    }

    /// Connections share the link, as on a WAN: four downloads at once take as long as their
    /// sum over the rate, not as one of them alone.
    @Test func connectionsShareTheLinksRate() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let size = 8 << 20
        let data = try #require(FileHandle(forReadingAtPath: "/dev/urandom")?.readData(ofLength: size))
        try FileManager.default.createDirectory(atPath: lab.file("www"), withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: lab.file("www/part.bin")))
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let rate = 200e6
        let shaper = try LinkShaper.start(link: #require(LinkShaper.Link(parsing: "10ms,200Mbit")), port: nginx.port)
        defer { shaper.stop() }
        let fds = try (0..<4).map { _ in try connectTCP(shaper.port) }
        defer { fds.forEach { close($0) } }
        let started = ContinuousClock.now
        let sizes = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: fds.count) { k in
            let count = (try? get(fds[k], "/part.bin").count) ?? -1
            sizes.withLock { $0.append(count) }
        }
        let elapsed = seconds(ContinuousClock.now - started)
        #expect(sizes.withLock { $0 } == [size, size, size, size])
        let floor = Double(4 * size) * 8 / rate
        #expect(elapsed >= floor * 0.99, "4 × 8 MiB took \(elapsed) s; the link needs at least \(floor) s")
        #expect(shaper.counters.connections == 4)
    }

    // MARK: - A minimal HTTP/1.1 client on a plain socket

    func request(_ path: String) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: lab\r\n\r\n".utf8)
    }

    func connectTCP(_ port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(result == 0, "cannot connect to the shaper on port \(port)")
        return fd
    }

    /// Sends a GET on the kept-alive connection and reads the whole response; its body.
    func get(_ fd: Int32, _ path: String) throws -> [UInt8] {
        let bytes = request(path)
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        try #require(sent == bytes.count)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var bodyStart: Int?
        var length = 0
        while true {
            if bodyStart == nil, let end = headerEnd(received) {
                bodyStart = end
                let headers = String(decoding: received[..<end], as: UTF8.self).lowercased()
                let line = try #require(headers.split(separator: "\r\n").first { $0.hasPrefix("content-length:") })
                length = try #require(Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)))
            }
            if let bodyStart, received.count >= bodyStart + length {
                return Array(received[bodyStart..<(bodyStart + length)])
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            try #require(n > 0, "the connection ended after \(received.count) bytes")
            received += buffer[0..<n]
        }
    }

    func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }

    func seconds(_ duration: Duration) -> Double {
        let (whole, fraction) = duration.components
        return Double(whole) + Double(fraction) / 1e18
    }
}
