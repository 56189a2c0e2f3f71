import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A non-blocking socket whose every wait is a `poll` bounded by the probe's deadline. It is used
/// from one probe thread at a time and closed when released.
final class ProbeSocket {
    let fd: Int32
    /// The peer as connected (`127.0.0.1:5060`, `[::1]:5061`).
    let peer: String

    private init(fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    deinit { close(fd) }

    struct Address {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t
        var text: String
    }

    /// Resolves `host` (a name or an IPv4/IPv6 literal) to addresses, IPv6 and IPv4 alike, in the
    /// order getaddrinfo prefers (RFC 6724).
    static func resolve(_ address: HostPort, type: Int32) throws -> [Address] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = type
        if isNumeric(address.host) { hints.ai_flags = AI_NUMERICHOST }
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let first = list else {
            let why = status == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(status))
            throw ProbeFailure("cannot resolve \(address.host): \(why)")
        }
        defer { freeaddrinfo(first) }
        var addresses: [Address] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let socketAddress = entry.pointee.ai_addr,
                entry.pointee.ai_family == AF_INET || entry.pointee.ai_family == AF_INET6
            {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(
                        from: UnsafeRawBufferPointer(start: socketAddress, count: Int(entry.pointee.ai_addrlen)))
                }
                addresses.append(
                    Address(
                        family: entry.pointee.ai_family, storage: storage, length: entry.pointee.ai_addrlen,
                        text: describe(storage)))
            }
            cursor = entry.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw ProbeFailure("no IPv4 or IPv6 address for \(address.host)") }
        return addresses
    }

    static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Connects a TCP socket to the first address of `address` that accepts before `deadline`.
    static func connectTCP(_ address: HostPort, deadline: ContinuousClock.Instant) throws -> ProbeSocket {
        let addresses = try resolve(address, type: Int32(SOCK_STREAM.rawValue))
        var failures: [String] = []
        for candidate in addresses {
            do {
                return try connect(candidate, type: Int32(SOCK_STREAM.rawValue), deadline: deadline)
            } catch let failure as ProbeFailure {
                failures.append(failure.reason)
                if ContinuousClock.now >= deadline { break }
            }
        }
        throw ProbeFailure(failures.joined(separator: "; "))
    }

    /// A UDP socket connected to the first address of `address`, so that an ICMP port-unreachable
    /// comes back as ECONNREFUSED instead of a silent timeout.
    static func connectUDP(_ address: HostPort, deadline: ContinuousClock.Instant) throws -> ProbeSocket {
        let addresses = try resolve(address, type: Int32(SOCK_DGRAM.rawValue))
        return try connect(addresses[0], type: Int32(SOCK_DGRAM.rawValue), deadline: deadline)
    }

    private static func connect(_ address: Address, type: Int32, deadline: ContinuousClock.Instant) throws
        -> ProbeSocket
    {
        let fd = socket(address.family, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ProbeFailure("socket: \(String(cString: strerror(errno)))") }
        let socket = ProbeSocket(fd: fd, peer: address.text)
        var storage = address.storage
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if status == 0 { return socket }
        guard errno == EINPROGRESS else {
            throw ProbeFailure("connect to \(address.text): \(String(cString: strerror(errno)))")
        }
        guard try socket.wait(for: Int16(POLLOUT), deadline: deadline) else {
            throw ProbeFailure("connect to \(address.text): no answer within the timeout")
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { throw ProbeFailure("connect to \(address.text): \(String(cString: strerror(error)))") }
        return socket
    }

    /// Waits until `events` are ready; false when the deadline passed first.
    func wait(for events: Int16, deadline: ContinuousClock.Instant) throws -> Bool {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let milliseconds = Int32(clamping: max(remaining.milliseconds, 1))
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { throw ProbeFailure("poll: \(String(cString: strerror(errno)))") }
        }
    }

    /// Sends all of `bytes` before `deadline`.
    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
                throw ProbeFailure("send to \(peer): \(String(cString: strerror(errno)))")
            }
            guard try wait(for: Int16(POLLOUT), deadline: deadline) else {
                throw ProbeFailure("send to \(peer): timed out")
            }
        }
    }

    /// Receives up to `maximum` bytes; nil when the deadline passed first, an empty array when
    /// the peer closed the connection.
    func receive(maximum: Int = 65_536, deadline: ContinuousClock.Instant) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count >= 0 { return Array(buffer[0..<count]) }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
                throw ProbeFailure("receive from \(peer): \(String(cString: strerror(errno)))")
            }
            guard try wait(for: Int16(POLLIN), deadline: deadline) else { return nil }
        }
    }

    /// The local address and port, for the Via and Contact headers of a SIP request.
    func localAddress() -> HostPort? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else { return nil }
        return Self.hostPort(storage)
    }

    static func hostPort(_ storage: sockaddr_storage) -> HostPort? {
        var storage = storage
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    var address = pointer.pointee.sin_addr
                    inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
                    return HostPort(
                        host: String(nulTerminated: text), port: UInt16(bigEndian: pointer.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    var address = pointer.pointee.sin6_addr
                    inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
                    return HostPort(
                        host: String(nulTerminated: text), port: UInt16(bigEndian: pointer.pointee.sin6_port))
                }
            }
        default:
            return nil
        }
    }

    private static func describe(_ storage: sockaddr_storage) -> String {
        hostPort(storage)?.description ?? "?"
    }
}
