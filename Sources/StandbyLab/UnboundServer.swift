import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// unbound as the clients' caching resolver, on a free loopback port, in its own directory: it
/// forwards one zone to the lab's authoritative server on its loopback port and caches what it
/// gets for exactly the TTL the server gave. Nothing may stretch or refresh a cached answer, so
/// that a test can tell when clients see a change: no minimum or maximum TTL clamps the records'
/// own (`cache-min-ttl: 0`, a `cache-max-ttl` far above any lab TTL), no prefetch before expiry,
/// no expired answers served. Stopped by process id.
public final class UnboundServer: Sendable {
    public let host: String
    public let port: UInt16
    public let zone: String
    public let directory: String
    public let process: ServerProcess

    public var pid: pid_t { process.pid }
    /// "127.0.0.1:PORT", the form a `client_view` probe's `resolver` takes.
    public var address: String { "\(host):\(port)" }

    init(host: String, port: UInt16, zone: String, directory: String, process: ServerProcess) {
        self.host = host
        self.port = port
        self.zone = zone
        self.directory = directory
        self.process = process
    }

    /// Starts unbound forwarding `zone` to `upstreamHost:upstreamPort` (the lab's BIND), and
    /// waits until it answers the zone's SOA through that server.
    public static func start(
        in lab: LabDirectory, zone: String, upstreamHost: String = "127.0.0.1", upstreamPort: UInt16,
        host: String = "127.0.0.1", port: UInt16? = nil, readyTimeout: Duration = .seconds(20)
    ) throws -> UnboundServer {
        let unbound = try Programs.locate("unbound", package: "unbound")
        let checkconf = try Programs.locate("unbound-checkconf", package: "unbound")
        let directory = try lab.directory("unbound-\(UUID().uuidString.prefix(8))")
        let zoneName = zone.hasSuffix(".") ? String(zone.dropLast()) : zone
        let port = try port ?? Ports.free(on: host)
        // The last label of the lab's zones (test, say) is one of unbound's default local zones,
        // which it would answer itself with NXDOMAIN: `nodefault` lets the forward through.
        let topLabel = zoneName.split(separator: ".").last.map(String.init) ?? zoneName
        let config = """
            server:
                interface: \(host)@\(port)
                port: \(port)
                do-ip4: yes
                do-ip6: no
                do-udp: yes
                do-tcp: yes
                username: ""
                chroot: ""
                directory: "\(directory)"
                pidfile: "\(directory)/unbound.pid"
                use-syslog: no
                logfile: ""
                verbosity: 1
                log-queries: yes
                num-threads: 1
                access-control: 127.0.0.0/8 allow
                do-not-query-localhost: no
                module-config: "iterator"
                cache-min-ttl: 0
                cache-max-ttl: 86400
                cache-max-negative-ttl: 1
                prefetch: no
                prefetch-key: no
                serve-expired: no
                qname-minimisation: no
                local-zone: "\(topLabel)." nodefault
                domain-insecure: "\(zoneName)."
            remote-control:
                control-enable: no
            forward-zone:
                name: "\(zoneName)."
                forward-addr: \(upstreamHost)@\(upstreamPort)
                forward-first: no

            """
        let configPath = directory + "/unbound.conf"
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        let check = try LabTool.run(checkconf, [configPath])
        guard check.status == 0 else {
            throw LabError(.setupFailed, "unbound-checkconf \(configPath) failed: \(check.output)")
        }
        // -d: foreground; -p: no pid file is needed, the lab stops it by process id.
        let process = try ServerProcess.spawn(
            name: "unbound", executable: unbound, arguments: ["-d", "-p", "-c", configPath],
            logPath: directory + "/unbound.log")
        let server = UnboundServer(host: host, port: port, zone: zoneName, directory: directory, process: process)
        let deadline = ContinuousClock.now + readyTimeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw LabError(.notReady, "unbound exited while starting:\n\(process.logTail())")
            }
            if LabDNS.soaIsAuthoritative(zoneName, host: host, port: port, recursive: true) { return server }
            usleep(20_000)
        }
        process.stop()
        throw LabError(
            .notReady,
            "unbound on \(host):\(port) did not resolve \(zoneName) through \(upstreamHost):\(upstreamPort) within \(readyTimeout):\n\(process.logTail())"
        )
    }

    /// Stops unbound by process id (SIGTERM to its group, then SIGKILL).
    public func stop() { process.stop() }
}
