import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Knot DNS `knotd` as a secondary of one zone: it takes the zone from the primary by NOTIFY and
/// zone transfer (AXFR, then IXFR), so a test sees what a real second authoritative server serves.
/// Ready once it answers the zone's SOA authoritatively (polled, no knotc). Stopped by process id.
public final class KnotServer: Sendable {
    public let host: String
    public let port: UInt16
    public let zone: String
    public let directory: String
    public let process: ServerProcess

    public var pid: pid_t { process.pid }
    /// "127.0.0.1:PORT", the form the topology's `dns.servers` takes.
    public var address: String { "\(host):\(port)" }

    init(host: String, port: UInt16, zone: String, directory: String, process: ServerProcess) {
        self.host = host
        self.port = port
        self.zone = zone
        self.directory = directory
        self.process = process
    }

    /// A free loopback port for a secondary, to give `NamedServer.start(notify:)` before the
    /// secondary itself starts.
    public static func reservePort(on host: String = "127.0.0.1") throws -> UInt16 { try Ports.free(on: host) }

    /// Starts knotd on `port` as a secondary of `zone`, transferring from `primaryHost:primaryPort`
    /// and accepting NOTIFY from loopback. `host` places it on another loopback address (127.0.2.54).
    public static func start(
        in lab: LabDirectory, zone: String, primaryHost: String = "127.0.0.1", primaryPort: UInt16, port: UInt16? = nil,
        host: String = "127.0.0.1", readyTimeout: Duration = .seconds(20)
    ) throws -> KnotServer {
        let knotd = try Programs.locate("knotd", package: "knot")
        let directory = try lab.directory("knot-\(UUID().uuidString.prefix(8))")
        let zoneName = zone.hasSuffix(".") ? String(zone.dropLast()) : zone
        let port = try port ?? Ports.free(on: host)
        let config =
            """
            server:
              rundir: "\(directory)"
              listen: \(host)@\(port)
            log:
              - target: stderr
                any: info
            database:
              storage: "\(directory)/db"
            remote:
              - id: primary
                address: \(primaryHost)@\(primaryPort)
            acl:
              - id: notify-from-primary
                address: 127.0.0.0/8
                action: notify
            template:
              - id: default
                storage: "\(directory)/zones"
                zonefile-sync: -1
                zonefile-load: none
                journal-content: changes
            zone:
              - domain: \(zoneName)
                master: primary
                acl: notify-from-primary

            """
        let configPath = directory + "/knot.conf"
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        let process = try ServerProcess.spawn(
            name: "knotd", executable: knotd, arguments: ["-c", configPath], logPath: directory + "/knotd.log")
        let server = KnotServer(host: host, port: port, zone: zoneName, directory: directory, process: process)
        try LabDNS.waitForZone(zoneName, host: host, port: port, process: process, timeout: readyTimeout)
        return server
    }

    /// Stops knotd by process id (SIGTERM to its group, then SIGKILL).
    public func stop() { process.stop() }

    /// Freezes knotd (SIGSTOP): it keeps its port but answers nothing, as a hung server does.
    public func suspend() { process.signal(SIGSTOP) }

    /// Lets a suspended knotd run again.
    public func resume() { process.signal(SIGCONT) }
}
