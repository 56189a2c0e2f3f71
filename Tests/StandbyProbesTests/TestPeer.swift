import Foundation
import StandbyLab
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Tag {
    @Tag static var server: Self
}

/// A misbehaving peer on a loopback port, for the cases no real server produces on demand: it
/// accepts and never answers, or it answers garbage. Runs on its own thread; `stop()` closes it.
final class TestPeer: Sendable {
    enum Behaviour: Sendable {
        /// Accept TCP connections (or read UDP datagrams) and never answer.
        case silent
        /// Answer each TCP connection (after its first bytes) or UDP datagram with these bytes.
        case reply([UInt8])
        /// An HTTP server that answers every request 200 and counts POSTs.
        case webhook
    }

    let port: UInt16
    let udp: Bool
    private let fd: Int32
    private let stopped = Mutex(false)
    private let connections = Mutex<[Int32]>([])
    let posts = Mutex<[String]>([])

    init(_ behaviour: Behaviour, udp: Bool = false, port wanted: UInt16 = 0) throws {
        self.udp = udp
        let fd = socket(AF_INET, udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = wanted.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        if !udp { listen(fd, 64) }
        let thread = Thread { [self] in self.serve(behaviour) }
        thread.start()
    }

    deinit { stop() }

    var address: String { "127.0.0.1:\(port)" }

    var postCount: Int { posts.withLock { $0.count } }

    func stop() {
        let already = stopped.withLock { value in
            defer { value = true }; return value
        }
        guard !already else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        for connection in connections.withLock({ $0 }) { close(connection) }
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    private func serve(_ behaviour: Behaviour) {
        if udp {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while !isStopped {
                var from = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let count = withUnsafeMutablePointer(to: &from) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, &buffer, buffer.count, 0, $0, &length)
                    }
                }
                guard count > 0 else { return }
                if case .reply(let bytes) = behaviour {
                    _ = withUnsafePointer(to: &from) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, bytes, bytes.count, 0, $0, length)
                        }
                    }
                }
            }
            return
        }
        while !isStopped {
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return }
            connections.withLock { $0.append(connection) }
            switch behaviour {
            case .silent:
                continue  // keep it open, say nothing
            case .reply(let bytes):
                Thread { [self] in
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    if recv(connection, &buffer, buffer.count, 0) > 0 {
                        _ = send(connection, bytes, bytes.count, Int32(MSG_NOSIGNAL))
                    }
                    _ = self
                }.start()
            case .webhook:
                Thread { [self] in self.answerHTTP(connection) }.start()
            }
        }
    }

    private func answerHTTP(_ connection: Int32) {
        if let body = WebhookSink.answerRequest(connection) { posts.withLock { $0.append(body) } }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
