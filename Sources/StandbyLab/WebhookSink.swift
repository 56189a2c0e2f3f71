import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A webhook receiver on a loopback port: answers every request 200 and keeps the body of each
/// POST, for tests that count the alerts `standby run` posts. One thread accepts, one per
/// connection answers; `stop()` (or deinit) closes it.
public final class WebhookSink: Sendable {
    public let port: UInt16
    private let fd: Int32
    private let stopped = Mutex(false)
    private let received = Mutex<[String]>([])

    /// On `port`, or on a free one when 0.
    public init(port wanted: UInt16 = 0) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError(.noFreePort, "webhook sink: socket() failed (errno \(errno))") }
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
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw LabError(.noFreePort, "webhook sink: cannot listen on 127.0.0.1:\(wanted) (errno \(errno))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        Thread { [self] in self.acceptLoop() }.start()
    }

    deinit { stop() }

    /// `http://127.0.0.1:PORT/alerts`.
    public var url: String { "http://127.0.0.1:\(port)/alerts" }

    /// The bodies of the POSTs so far, in arrival order.
    public var posts: [String] { received.withLock { $0 } }

    public func stop() {
        let already = stopped.withLock { value in
            defer { value = true }
            return value
        }
        guard !already else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func acceptLoop() {
        while !stopped.withLock({ $0 }) {
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return }
            Thread { [self] in self.answer(connection) }.start()
        }
    }

    private func answer(_ connection: Int32) {
        defer { close(connection) }
        if let body = Self.answerRequest(connection) { received.withLock { $0.append(body) } }
    }

    /// Reads one HTTP request from `connection` (its head and a Content-Length body), answers it
    /// 200 with an empty body, and returns the body when it was a POST. Nil for anything else or
    /// a connection that ends before the request does. The caller closes the connection.
    public static func answerRequest(_ connection: Int32) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(connection, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            bytes += buffer[0..<count]
            let text = String(decoding: bytes, as: UTF8.self)
            guard let end = text.range(of: "\r\n\r\n") else { continue }
            let head = text[..<end.lowerBound]
            let length =
                head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let body = text[end.upperBound...]
            guard body.utf8.count >= length else { continue }
            let reply = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
            _ = send(connection, reply, reply.count, Int32(MSG_NOSIGNAL))
            shutdown(connection, Int32(SHUT_WR))
            return head.hasPrefix("POST") ? String(body) : nil
        }
    }
}
