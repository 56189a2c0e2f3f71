import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A shaped link between the lab's secondary and a primary's server, with no kernel module
/// (sch_netem is absent on the project's machines): a TCP proxy on a free loopback port that
/// forwards each connection to `target`, delaying every byte by half the round-trip time in each
/// direction and capping each direction at `rate` bits per second, shared by all its connections.
///
/// Each accepted connection gets one thread pair per direction: a reader stamps every chunk it
/// reads with the time its last byte leaves a link of that rate (one chunk after another, as a
/// serialising link does) plus the one-way delay, and a writer sends it on at that time. Up to a
/// bandwidth-delay product (rate × RTT, plus 1 MiB) waits per direction; past that the reader stops
/// reading, and TCP's own flow control holds the sender back. The shaper counts the bytes it
/// forwards each way and the connections it accepts. Call `stop()` when done: its accepting
/// thread holds it.
///
/// Round trips it adds are the application's: a request and its response each wait RTT / 2. It
/// does not model loss or the window limits of a real TCP connection across that RTT (each of its
/// two loopback legs has its own).
public final class LinkShaper: Sendable {
    /// A link: its round-trip time and its rate per direction (nil: unlimited).
    public struct Link: Sendable, Equatable, CustomStringConvertible {
        public var roundTrip: Duration
        /// Bits per second in each direction; nil for no cap.
        public var bitsPerSecond: Double?

        public init(roundTrip: Duration, bitsPerSecond: Double?) {
            self.roundTrip = roundTrip
            self.bitsPerSecond = bitsPerSecond
        }

        /// `RTT[,RATE]`: `40ms,100Mbit`, `80ms,1Gbit`, `0ms` (no delay, no cap), `250us,10Gbit`.
        /// RTT takes `us`, `ms` or `s`; RATE takes `bit`, `Kbit`, `Mbit` or `Gbit` (also with `/s`).
        public init?(parsing text: String) {
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard parts.count == 1 || parts.count == 2, let rtt = Self.duration(parts[0]) else { return nil }
            roundTrip = rtt
            if parts.count == 2 {
                guard let rate = Self.rate(parts[1]), rate > 0 else { return nil }
                bitsPerSecond = rate
            } else {
                bitsPerSecond = nil
            }
        }

        static func duration(_ text: String) -> Duration? {
            for (suffix, scale) in [("us", 1e-6), ("ms", 1e-3), ("s", 1.0)] where text.hasSuffix(suffix) {
                guard let value = Double(text.dropLast(suffix.count)), value >= 0 else { return nil }
                return .nanoseconds(Int64((value * scale * 1e9).rounded()))
            }
            return nil
        }

        static func rate(_ text: String) -> Double? {
            var text = text
            if text.hasSuffix("/s") { text.removeLast(2) }
            if text.hasSuffix("ps") { text.removeLast(2) }
            if text.hasSuffix("bit") { text.removeLast(3) } else { return nil }
            let scales: [(String, Double)] = [("K", 1e3), ("k", 1e3), ("M", 1e6), ("G", 1e9)]
            for (prefix, scale) in scales where text.hasSuffix(prefix) {
                return Double(text.dropLast()).map { $0 * scale }
            }
            return Double(text)
        }

        /// One-way delay in nanoseconds.
        var oneWayNanoseconds: UInt64 {
            let (seconds, attoseconds) = roundTrip.components
            return UInt64(max(0, seconds)) * 500_000_000 + UInt64(max(0, attoseconds)) / 2_000_000_000
        }

        /// What waits in one direction at most: rate × RTT (a bandwidth-delay product) plus 1 MiB.
        var queueLimit: Int {
            guard let bitsPerSecond else { return 64 << 20 }
            let (seconds, attoseconds) = roundTrip.components
            let rtt = Double(seconds) + Double(attoseconds) / 1e18
            return Int(bitsPerSecond / 8 * rtt) + (1 << 20)
        }

        public var description: String {
            let (seconds, attoseconds) = roundTrip.components
            let ms = (Double(seconds) + Double(attoseconds) / 1e18) * 1000
            let rtt = String(format: ms == ms.rounded() ? "%.0fms" : "%.3fms", ms)
            guard let bitsPerSecond else { return rtt + ", no rate cap" }
            if bitsPerSecond >= 1e9 { return rtt + String(format: ", %gGbit/s", bitsPerSecond / 1e9) }
            if bitsPerSecond >= 1e6 { return rtt + String(format: ", %gMbit/s", bitsPerSecond / 1e6) }
            return rtt + String(format: ", %gKbit/s", bitsPerSecond / 1e3)
        }
    }

    /// Bytes forwarded and connections accepted so far.
    public struct Counters: Sendable, Equatable {
        /// Client to target (requests).
        public var bytesUp: Int64
        /// Target to client (responses).
        public var bytesDown: Int64
        public var connections: Int
        public var total: Int64 { bytesUp + bytesDown }

        public static func - (a: Counters, b: Counters) -> Counters {
            Counters(
                bytesUp: a.bytesUp - b.bytesUp, bytesDown: a.bytesDown - b.bytesDown,
                connections: a.connections - b.connections)
        }
    }

    /// The shaper listens on `host:port` (127.0.0.1); connect there instead of to the target.
    public let host: String
    public let port: UInt16
    public let targetHost: String
    public let targetPort: UInt16
    public let link: Link

    private let listener: Int32
    private let state = Mutex(State())
    private let counts = LinkCounters()
    private let acceptorDone = Atomic<Bool>(false)

    private struct State {
        var stopped = false
        var open: [ObjectIdentifier: ShapedConnection] = [:]
    }

    private init(host: String, port: UInt16, targetHost: String, targetPort: UInt16, link: Link, listener: Int32) {
        self.host = host
        self.port = port
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.link = link
        self.listener = listener
    }

    public var counters: Counters {
        Counters(
            bytesUp: counts.up.load(ordering: .relaxed), bytesDown: counts.down.load(ordering: .relaxed),
            connections: counts.connections.load(ordering: .relaxed))
    }

    /// Starts a shaper on a free port of `host`, forwarding to `targetHost:targetPort`.
    public static func start(
        link: Link, to targetHost: String = "127.0.0.1", port targetPort: UInt16, host: String = "127.0.0.1"
    ) throws -> LinkShaper {
        try Ports.withFreePort { port in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else {
                throw LabError(.setupFailed, "link shaper: socket: \(String(cString: strerror(errno)))")
            }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = try socketAddress(host, port)
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0, listen(fd, 128) == 0 else {
                let message = String(cString: strerror(errno))
                close(fd)
                throw LabError(.setupFailed, "link shaper on \(host):\(port): \(message)")
            }
            let shaper = LinkShaper(
                host: host, port: port, targetHost: targetHost, targetPort: targetPort, link: link, listener: fd)
            let thread = Thread { [shaper] in shaper.acceptLoop() }
            thread.name = "link-shaper-accept"
            thread.start()
            return shaper
        }
    }

    /// Stops accepting, cuts every open connection, and waits (up to 5 s) for their threads.
    public func stop() {
        let connections: [ShapedConnection]? = state.withLock { state in
            if state.stopped { return nil }
            state.stopped = true
            return Array(state.open.values)
        }
        guard let connections else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        connections.forEach { $0.cut() }
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let idle = acceptorDone.load(ordering: .acquiring) && state.withLock { $0.open.isEmpty }
            if idle { break }
            usleep(2_000)
        }
        close(listener)
    }

    private func acceptLoop() {
        defer { acceptorDone.store(true, ordering: .releasing) }
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            if state.withLock({ $0.stopped }) {
                close(client)
                return
            }
            counts.connections.add(1, ordering: .relaxed)
            guard let server = try? Self.connectTo(targetHost, targetPort) else {
                close(client)
                continue
            }
            for fd in [client, server] {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            let connection = ShapedConnection(client: client, server: server, link: link, counters: counts) {
                [weak self] connection in
                _ = self?.state.withLock { $0.open.removeValue(forKey: ObjectIdentifier(connection)) }
            }
            let registered = state.withLock { state -> Bool in
                if state.stopped { return false }
                state.open[ObjectIdentifier(connection)] = connection
                return true
            }
            guard registered else {
                close(client)
                close(server)
                return
            }
            connection.start()
        }
    }

    static func socketAddress(_ host: String, _ port: UInt16) throws -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            throw LabError(.setupFailed, "link shaper: \(host) is not an IPv4 address")
        }
        return addr
    }

    static func connectTo(_ host: String, _ port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError(.setupFailed, "link shaper: socket failed") }
        var addr = try socketAddress(host, port)
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw LabError(.setupFailed, "link shaper: cannot connect to \(host):\(port)")
        }
        return fd
    }
}

/// Monotonic nanoseconds.
private func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

private func sleepUntil(_ nanoseconds: UInt64) {
    var ts = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
}

/// The shaper's counters, shared with its connections, and the link itself: when each
/// direction finishes sending what it was given (monotonic nanoseconds). All connections share
/// it, as they share a real WAN link: several connections get no more than the rate together.
private final class LinkCounters: Sendable {
    let up = Atomic<Int64>(0)
    let down = Atomic<Int64>(0)
    let connections = Atomic<Int>(0)
    let upFree = Mutex<UInt64>(0)
    let downFree = Mutex<UInt64>(0)
}

/// One proxied connection: two directions, four threads. The last thread to finish closes both
/// descriptors and tells the shaper.
private final class ShapedConnection: Sendable {
    let client: Int32
    let server: Int32
    let up: Direction
    let down: Direction
    private let running = Atomic<Int>(4)
    private let finished: @Sendable (ShapedConnection) -> Void

    init(
        client: Int32, server: Int32, link: LinkShaper.Link, counters: LinkCounters,
        finished: @escaping @Sendable (ShapedConnection) -> Void
    ) {
        self.client = client
        self.server = server
        self.finished = finished
        up = Direction(from: client, to: server, link: link, counters: counters, upward: true)
        down = Direction(from: server, to: client, link: link, counters: counters, upward: false)
    }

    func start() {
        for (direction, name) in [(up, "up"), (down, "down")] {
            let reader = Thread { [self] in
                direction.readLoop()
                threadDone()
            }
            reader.name = "link-shaper-\(name)-read"
            let writer = Thread { [self] in
                direction.writeLoop()
                threadDone()
            }
            writer.name = "link-shaper-\(name)-write"
            reader.start()
            writer.start()
        }
    }

    /// Cuts the connection at once (the shaper stops).
    func cut() {
        shutdown(client, Int32(SHUT_RDWR))
        shutdown(server, Int32(SHUT_RDWR))
        up.abandon()
        down.abandon()
    }

    private func threadDone() {
        if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            close(client)
            close(server)
            finished(self)
        }
    }
}

/// One direction of a connection: what the reader has read and the writer has yet to send, each
/// chunk with the time it is due at the far end.
private final class Direction: @unchecked Sendable {
    struct Chunk {
        var bytes: [UInt8]
        /// Monotonic nanoseconds.
        var due: UInt64
    }

    let source: Int32
    let destination: Int32
    let counters: LinkCounters
    let upward: Bool
    let delay: UInt64
    /// Nanoseconds per byte at the link's rate; 0 for no cap.
    let nanosecondsPerByte: Double
    let limit: Int

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [Chunk] = []
    private var head = 0
    private var queued = 0
    private var ended = false
    private var abandoned = false

    init(from source: Int32, to destination: Int32, link: LinkShaper.Link, counters: LinkCounters, upward: Bool) {
        self.source = source
        self.destination = destination
        self.counters = counters
        self.upward = upward
        delay = link.oneWayNanoseconds
        nanosecondsPerByte = link.bitsPerSecond.map { 8e9 / $0 } ?? 0
        limit = link.queueLimit
    }

    func abandon() {
        condition.lock()
        abandoned = true
        condition.broadcast()
        condition.unlock()
    }

    func readLoop() {
        let size = 256 << 10
        while true {
            condition.lock()
            while queued >= limit && !abandoned { condition.wait() }
            let stop = abandoned
            condition.unlock()
            if stop { break }
            let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                var n: Int
                repeat { n = read(source, buffer.baseAddress, size) } while n < 0 && errno == EINTR
                count = max(0, n)
            }
            if bytes.isEmpty { break }
            let now = monotonicNow()
            condition.lock()
            let cost = UInt64((Double(bytes.count) * nanosecondsPerByte).rounded())
            let sent: UInt64
            if upward {
                sent = counters.upFree.withLock { free in
                    free = max(now, free) + cost
                    return free
                }
            } else {
                sent = counters.downFree.withLock { free in
                    free = max(now, free) + cost
                    return free
                }
            }
            queue.append(Chunk(bytes: bytes, due: sent + delay))
            queued += bytes.count
            condition.broadcast()
            condition.unlock()
        }
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }

    func writeLoop() {
        var failed = false
        while true {
            condition.lock()
            while head == queue.count && !ended && !abandoned { condition.wait() }
            if abandoned || head == queue.count {
                condition.unlock()
                break
            }
            // Everything that is due by the time the first chunk is, in one go.
            let due = queue[head].due
            condition.unlock()
            sleepUntil(due)
            condition.lock()
            let now = monotonicNow()
            var batch: [[UInt8]] = []
            var index = head
            while index < queue.count && queue[index].due <= now {
                batch.append(queue[index].bytes)
                index += 1
            }
            condition.unlock()
            for bytes in batch where !failed {
                failed = !sendAll(bytes)
            }
            condition.lock()
            for _ in batch {
                queued -= queue[head].bytes.count
                queue[head].bytes = []
                head += 1
            }
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.broadcast()
            condition.unlock()
            if failed { break }
        }
        if failed {
            // The far end is gone: stop reading this direction.
            shutdown(source, Int32(SHUT_RD))
            abandon()
        } else {
            shutdown(destination, Int32(SHUT_WR))
        }
    }

    /// Writes all of `bytes`; false when the destination is gone.
    private func sendAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(destination, $0.baseAddress.map { $0 + offset }, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
            if upward {
                counters.up.add(Int64(n), ordering: .relaxed)
            } else {
                counters.down.add(Int64(n), ordering: .relaxed)
            }
        }
        return true
    }
}
