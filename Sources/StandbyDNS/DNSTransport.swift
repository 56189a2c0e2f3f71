import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sends one DNS message to one server and returns the reply, over a socket of its own, with one
/// deadline for the whole exchange.
///
/// Why not ldns_send: an ldns resolver reports "connection refused" and "timed out" alike as
/// LDNS_STATUS_ERR, retries on its own schedule, and marks a failed server dead for the rest of its
/// life. An operator needs to know which of the two happened and on which server, so the socket
/// work is ours; ldns still builds, signs, parses and verifies every message.
enum DNSTransport {
    /// Blocking: call it from `Blocking.run`, never on the cooperative pool.
    static func exchange(
        _ message: [UInt8], with server: DNSServer, tcp: Bool, deadline: ContinuousClock.Instant
    ) throws(DNSError) -> [UInt8] {
        ignoreSIGPIPE
        let addresses = try resolve(server, tcp: tcp)
        var lastError: DNSError?
        for address in addresses {
            do {
                return try tcp
                    ? exchangeTCP(message, address: address, server: server, deadline: deadline)
                    : exchangeUDP(message, address: address, server: server, deadline: deadline)
            } catch {
                lastError = error
                if error.code == .timeout { break }
            }
        }
        throw lastError ?? DNSError(.network, server: server, "no address for \(server)")
    }

    /// A server that dies mid-write must not kill the controller.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    struct Address {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t
    }

    private static func resolve(_ server: DNSServer, tcp: Bool) throws(DNSError) -> [Address] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let result = getaddrinfo(server.host, String(server.port), &hints, &list)
        guard result == 0, let list else {
            throw DNSError(
                .network, server: server,
                "cannot resolve the address of \(server): \(String(cString: gai_strerror(result)))")
        }
        defer { freeaddrinfo(list) }
        var addresses: [Address] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let entry = cursor {
            if let addr = entry.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { target in
                    target.copyMemory(
                        from: UnsafeRawBufferPointer(start: addr, count: Int(entry.pointee.ai_addrlen)))
                }
                addresses.append(
                    Address(family: entry.pointee.ai_family, storage: storage, length: entry.pointee.ai_addrlen))
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }

    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let left = deadline - .now
        if left <= .zero { return 0 }
        let (seconds, attoseconds) = left.components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
    }

    private static func openSocket(_ address: Address, type: Int32, server: DNSServer) throws(DNSError) -> Int32 {
        let fd = socket(address.family, type, 0)
        guard fd >= 0 else {
            throw DNSError(.network, server: server, "cannot open a socket for \(server): \(errnoText())")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    /// Waits until `fd` is ready for `events` or the deadline passes.
    private static func wait(
        _ fd: Int32, for events: Int16, server: DNSServer, deadline: ContinuousClock.Instant, doing what: String
    ) throws(DNSError) {
        while true {
            let timeout = milliseconds(until: deadline)
            if timeout == 0 { throw timedOut(server, what) }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, timeout)
            if ready > 0 { return }
            if ready == 0 { throw timedOut(server, what) }
            if errno != EINTR {
                throw DNSError(.network, server: server, "waiting for \(server) failed: \(errnoText())")
            }
        }
    }

    private static func timedOut(_ server: DNSServer, _ what: String) -> DNSError {
        DNSError(.timeout, server: server, "\(server) did not answer in time (\(what))")
    }

    private static func connectError(_ code: Int32, _ server: DNSServer) -> DNSError {
        switch code {
        case ECONNREFUSED:
            DNSError(
                .connectionRefused, server: server, "\(server) refused the connection: no DNS server listens there")
        case ETIMEDOUT:
            DNSError(.timeout, server: server, "\(server) did not answer in time (connecting)")
        default:
            DNSError(.network, server: server, "cannot reach \(server): \(String(cString: strerror(code)))")
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    private static func exchangeTCP(
        _ message: [UInt8], address: Address, server: DNSServer, deadline: ContinuousClock.Instant
    ) throws(DNSError) -> [UInt8] {
        let fd = try openSocket(address, type: Int32(SOCK_STREAM.rawValue), server: server)
        defer { close(fd) }
        var storage = address.storage
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
        }
        if connected != 0 {
            guard errno == EINPROGRESS else { throw connectError(errno, server) }
            try wait(fd, for: Int16(POLLOUT), server: server, deadline: deadline, doing: "connecting")
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            if failure != 0 { throw connectError(failure, server) }
        }

        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
        var sent = 0
        while sent < framed.count {
            let written = framed.withUnsafeBytes {
                send(fd, $0.baseAddress.map { $0 + sent }, framed.count - sent, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                sent += written
            } else if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                try wait(fd, for: Int16(POLLOUT), server: server, deadline: deadline, doing: "sending")
            } else {
                throw connectError(errno, server)
            }
        }

        func read(_ count: Int, _ what: String) throws(DNSError) -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress.map { $0 + got }, count - got, 0) }
                if n > 0 {
                    got += n
                } else if n == 0 {
                    throw DNSError(.network, server: server, "\(server) closed the connection before answering")
                } else if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                    try wait(fd, for: Int16(POLLIN), server: server, deadline: deadline, doing: what)
                } else {
                    throw connectError(errno, server)
                }
            }
            return buffer
        }
        let length = try read(2, "waiting for the reply")
        return try read(Int(length[0]) << 8 | Int(length[1]), "reading the reply")
    }

    private static func exchangeUDP(
        _ message: [UInt8], address: Address, server: DNSServer, deadline: ContinuousClock.Instant
    ) throws(DNSError) -> [UInt8] {
        let fd = try openSocket(address, type: Int32(SOCK_DGRAM.rawValue), server: server)
        defer { close(fd) }
        var storage = address.storage
        // A connected UDP socket reports ICMP port-unreachable as ECONNREFUSED.
        let connected = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
        }
        guard connected == 0 else { throw connectError(errno, server) }
        let written = message.withUnsafeBytes { send(fd, $0.baseAddress, message.count, Int32(MSG_NOSIGNAL)) }
        guard written == message.count else { throw connectError(errno, server) }
        var buffer = [UInt8](repeating: 0, count: 65535)
        while true {
            try wait(fd, for: Int16(POLLIN), server: server, deadline: deadline, doing: "waiting for the reply")
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65535, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                throw connectError(errno, server)
            }
            // Ignore anything that is not the reply to this message (a late reply to an earlier one).
            if n >= 12 && buffer[0] == message[0] && buffer[1] == message[1] { return Array(buffer[0..<n]) }
        }
    }
}
