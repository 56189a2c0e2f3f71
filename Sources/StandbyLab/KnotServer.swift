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
    /// The BIND-format key file of a primary started by `startPrimary`; nil for a secondary.
    public let keyPath: String?

    public var pid: pid_t { process.pid }
    /// "127.0.0.1:PORT", the form the topology's `dns.servers` takes.
    public var address: String { "\(host):\(port)" }

    init(host: String, port: UInt16, zone: String, directory: String, process: ServerProcess, keyPath: String? = nil) {
        self.host = host
        self.port = port
        self.zone = zone
        self.directory = directory
        self.process = process
        self.keyPath = keyPath
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

    /// Starts knotd as the primary of `zone` (SOA, NS and `records`, as `NamedServer` writes them)
    /// that accepts updates signed with a key made by `tsig-keygen` (written, mode 0600, to
    /// `keyPath`). With `clockOffset`, knotd runs that many seconds off the real clock (through
    /// libfaketime), so a test sees what a server with a wrong clock answers (BADTIME).
    public static func startPrimary(
        in lab: LabDirectory, zone: String, records: [String], keyName: String = "failover-key",
        algorithm: String = "hmac-sha256", clockOffset: Int? = nil, readyTimeout: Duration = .seconds(20)
    ) throws -> KnotServer {
        let knotd = try Programs.locate("knotd", package: "knot")
        let keygen = try Programs.locate("tsig-keygen", package: "bind9")
        let directory = try lab.directory("knot-primary-\(UUID().uuidString.prefix(8))")
        let zoneName = zone.hasSuffix(".") ? String(zone.dropLast()) : zone
        let host = "127.0.0.1"
        let port = try Ports.free(on: host)

        let keygenRun = try LabTool.run(keygen, ["-a", algorithm, keyName])
        guard keygenRun.status == 0,
            let secret = keygenRun.output.split(separator: "\"").dropFirst(3).first.map(String.init)
        else { throw LabError(.setupFailed, "tsig-keygen -a \(algorithm) \(keyName) failed: \(keygenRun.output)") }
        let keyPath = directory + "/\(keyName).key"
        guard
            FileManager.default.createFile(
                atPath: keyPath, contents: Data(keygenRun.output.utf8), attributes: [.posixPermissions: 0o600])
        else { throw LabError(.setupFailed, "cannot write \(keyPath)") }

        try FileManager.default.createDirectory(atPath: directory + "/zones", withIntermediateDirectories: true)
        let zoneText =
            """
            $ORIGIN \(zoneName).
            $TTL 300
            @ IN SOA ns1.\(zoneName). hostmaster.\(zoneName). 1 60 60 3600 60
            @ IN NS ns1.\(zoneName).
            ns1 IN A 127.0.0.1
            \(records.joined(separator: "\n"))

            """
        try Data(zoneText.utf8).write(to: URL(fileURLWithPath: directory + "/zones/\(zoneName).zone"))
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
            key:
              - id: \(keyName)
                algorithm: \(algorithm)
                secret: \(secret)
            acl:
              - id: update
                key: \(keyName)
                action: update
            template:
              - id: default
                storage: "\(directory)/zones"
                zonefile-sync: -1
                journal-content: changes
            zone:
              - domain: \(zoneName)
                file: \(zoneName).zone
                acl: update

            """
        let configPath = directory + "/knot.conf"
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        var environment = ProcessInfo.processInfo.environment
        if let clockOffset {
            // libfaketime works with knotd (named 9.18 aborts under it).
            let library = try Programs.locateLibrary(
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", package: "libfaketime")
            environment["LD_PRELOAD"] = library
            environment["FAKETIME"] = clockOffset >= 0 ? "+\(clockOffset)" : "\(clockOffset)"
        }
        let process = try ServerProcess.spawn(
            name: "knotd", executable: knotd, arguments: ["-c", configPath], environment: environment,
            logPath: directory + "/knotd.log")
        let server = KnotServer(
            host: host, port: port, zone: zoneName, directory: directory, process: process, keyPath: keyPath)
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

extension Programs {
    /// The first of `candidates` that exists, or a `missingProgram` error naming the package.
    static func locateLibrary(_ candidates: String..., package: String) throws -> String {
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate) { return candidate }
        throw LabError(
            .missingProgram, "\(candidates.first ?? "a library") is not installed (apt-get install \(package))")
    }
}
