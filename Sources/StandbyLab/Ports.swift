import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Free loopback ports for lab servers.
public enum Ports {
    /// A port on `address` that is free for both TCP and UDP right now (DNS and SIP servers
    /// listen on both). The port is released before returning, so a server must bind it soon.
    ///
    /// Chosen at random below the kernel's ephemeral range: a port from that range (what a bind
    /// to port 0 gives) can be taken, between the choice and the server's bind, by the local end
    /// of any connection the tests open meanwhile, and the server then fails to start.
    public static func free(on address: String = "127.0.0.1") throws -> UInt16 {
        let low = ephemeralRangeStart()
        for _ in 0..<256 where low > 12_000 {
            let port = UInt16.random(in: 10_000..<UInt16(low))
            if canBind(address: address, port: port, type: Int32(SOCK_STREAM.rawValue)),
                canBind(address: address, port: port, type: Int32(SOCK_DGRAM.rawValue))
            {
                return port
            }
        }
        for _ in 0..<64 {
            guard let port = bindEphemeral(address: address, type: SOCK_STREAM) else { continue }
            if canBind(address: address, port: port, type: Int32(SOCK_DGRAM.rawValue)) { return port }
        }
        throw LabError(.noFreePort, "no free TCP+UDP port on \(address)")
    }

    /// The first port of the kernel's ephemeral range (32768 when it cannot be read).
    static func ephemeralRangeStart() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
            let low = Int(first), low <= Int(UInt16.max)
        else { return 32768 }
        return low
    }

    private static func bindEphemeral(address: String, type: __socket_type) -> UInt16? {
        withSocket(address, port: 0, type: Int32(type.rawValue)) { fd, addr in
            guard Self.call(bind, fd, &addr) == 0 else { return nil }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            return named == 0 ? UInt16(bigEndian: addr.sin_port) : nil
        } ?? nil
    }

    /// Whether `port` on `address` can be bound with the given socket type now.
    public static func canBind(address: String, port: UInt16, type: Int32) -> Bool {
        withSocket(address, port: port, type: type) { fd, addr in Self.call(bind, fd, &addr) == 0 } ?? false
    }

    /// A socket of `type` and the IPv4 address `address:port` for `body`; nil when no socket could be made.
    private static func withSocket<T>(
        _ address: String, port: UInt16, type: Int32, _ body: (Int32, inout sockaddr_in) -> T
    ) -> T? {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &addr.sin_addr)
        return body(fd, &addr)
    }

    /// `bind` or `connect` with a `sockaddr_in`.
    private static func call(
        _ function: (Int32, UnsafePointer<sockaddr>?, socklen_t) -> Int32, _ fd: Int32, _ addr: inout sockaddr_in
    ) -> Int32 {
        withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                function(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Waits until a TCP connection to `address:port` succeeds, or throws `notReady` after `timeout`,
    /// or at once when `process` (the server meant to listen there) has exited, e.g. because the
    /// port was taken. Servers are polled for readiness, never waited for with a fixed sleep.
    public static func waitForTCP(
        _ address: String, _ port: UInt16, timeout: Duration = .seconds(15), server: String,
        process: ServerProcess? = nil
    ) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if connects(address, port) { return }
            if let process, !process.isRunning {
                throw LabError(.notReady, "\(server) exited before it accepted connections on \(address):\(port)")
            }
            usleep(20_000)
        }
        throw LabError(.notReady, "\(server) did not accept connections on \(address):\(port) within \(timeout)")
    }

    /// Starts a server with `start` on a free port, and again on another (up to `attempts` in all)
    /// when the server found its port taken: another test's server can bind a port between
    /// `free()` picking it and this one binding it.
    public static func withFreePort<T>(attempts: Int = 5, _ start: (UInt16) throws -> T) throws -> T {
        var attempt = 1
        while true {
            let port = try free()
            do {
                return try start(port)
            } catch let error as LabError where error.message.contains("Address already in use") && attempt < attempts {
                attempt += 1
            }
        }
    }

    public static func connects(_ address: String, _ port: UInt16) -> Bool {
        withSocket(address, port: port, type: Int32(SOCK_STREAM.rawValue)) { fd, addr in
            Self.call(connect, fd, &addr) == 0
        } ?? false
    }
}

extension URL {
    /// `SCHEME://[USER@]HOST:PORT/PATH` for a lab server, with no password in it.
    static func lab(scheme: String, host: String = "127.0.0.1", port: UInt16, path: String, user: String? = nil)
        -> URL
    {
        var components = URLComponents()
        components.scheme = scheme
        components.user = user
        components.host = host
        components.port = Int(port)
        components.path = path.hasPrefix("/") ? path : "/" + path
        return components.url ?? URL(fileURLWithPath: "/nonexistent")
    }
}
