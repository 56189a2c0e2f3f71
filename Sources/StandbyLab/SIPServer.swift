import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// kamailio answering SIP OPTIONS over UDP and TCP (one port) and TLS (another), on 127.0.0.1
/// and ::1, with a few lines of configuration in the lab directory. The peer of the
/// `sip_options` probe tests and the demo's SIP front ends.
public final class SIPServer: Sendable {
    public let process: ServerProcess
    /// UDP and TCP port.
    public let port: UInt16
    /// TLS port.
    public let tlsPort: UInt16
    /// The CA that issued the TLS certificate (for localhost, 127.0.0.1 and ::1): the file a probe trusts.
    public let caFile: String

    /// The IPv4 address it listens on (127.0.0.1 also listens on [::1]).
    public let host: String

    init(process: ServerProcess, host: String, port: UInt16, tlsPort: UInt16, caFile: String) {
        self.process = process
        self.host = host
        self.port = port
        self.tlsPort = tlsPort
        self.caFile = caFile
    }

    /// `sip:127.0.0.1:PORT` (UDP), `…;transport=tcp`, `…:TLSPORT;transport=tls`; `ipv6` uses [::1].
    public func uri(_ transport: String = "udp", ipv6: Bool = false) -> String {
        let host = ipv6 ? "[::1]" : self.host
        switch transport {
        case "tls": return "sip:\(host):\(tlsPort);transport=tls"
        case "tcp": return "sip:\(host):\(port);transport=tcp"
        default: return "sip:\(host):\(port)"
        }
    }

    /// Starts kamailio; OPTIONS get `status reason` (200 OK unless told), anything else 501.
    /// `ports` (UDP/TCP, TLS) restarts a server where a stopped one was; free ports otherwise.
    /// `serverNames`: DNS names its certificate carries besides localhost (the pool it stands for).
    public static func start(
        in lab: LabDirectory, status: Int = 200, reason: String = "OK",
        authority: LabCertificateAuthority? = nil, ports: (UInt16, UInt16)? = nil, host: String = "127.0.0.1",
        serverNames: [String] = []
    ) throws -> SIPServer {
        let kamailio = try Programs.locate("kamailio", package: "kamailio")
        guard let modules = moduleDirectory() else {
            throw LabError(.missingProgram, "kamailio modules (sl.so) not found (apt-get install kamailio)")
        }
        guard FileManager.default.fileExists(atPath: modules + "/tls.so") else {
            throw LabError(
                .missingProgram, "kamailio's tls.so not found in \(modules) (apt-get install kamailio-tls-modules)")
        }
        let authority = try authority ?? LabCertificateAuthority.create(in: lab)
        let name = "sip-\(UInt32.random(in: 0...UInt32.max))"
        let issued = try authority.issue(name, kind: .valid, serverNames: serverNames)
        let port = try ports?.0 ?? Ports.free(on: host)
        var tlsPort = try ports?.1 ?? Ports.free(on: host)
        while tlsPort == port { tlsPort = try Ports.free(on: host) }
        let directory = try lab.directory(name)
        let tlsConfig = """
            [server:default]
            method = TLSv1.2+
            verify_certificate = no
            require_certificate = no
            private_key = \(issued.keyPath)
            certificate = \(issued.certificatePath)

            """
        try lab.write("\(name)/tls.cfg", tlsConfig)
        let config = """
            #!KAMAILIO
            debug=2
            log_stderror=yes
            children=1
            tcp_children=1
            auto_aliases=no
            enable_tls=yes
            listen=udp:\(host):\(port)
            listen=tcp:\(host):\(port)
            listen=tls:\(host):\(tlsPort)
            \(host == "127.0.0.1" ? "listen=udp:[::1]:\(port)\nlisten=tcp:[::1]:\(port)\nlisten=tls:[::1]:\(tlsPort)" : "")
            mpath="\(modules)/"
            loadmodule "sl.so"
            loadmodule "tls.so"
            modparam("tls", "config", "\(directory)/tls.cfg")
            request_route {
                if (method == "OPTIONS") {
                    sl_send_reply("\(status)", "\(reason)");
                    exit;
                }
                sl_send_reply("501", "Not Implemented");
            }

            """
        try lab.write("\(name)/kamailio.cfg", config)
        // -DD -E: foreground, log to stderr (the lab log); -m/-M: small shared and private memory,
        // enough for OPTIONS and fine beside other servers on a small machine.
        let process = try ServerProcess.spawn(
            name: "kamailio", executable: kamailio,
            arguments: [
                "-DD", "-E", "-f", "\(directory)/kamailio.cfg", "-P", "\(directory)/kamailio.pid", "-Y", directory,
                "-m", "32", "-M", "8",
            ],
            logPath: lab.file("\(name).log"))
        let server = SIPServer(
            process: process, host: host, port: port, tlsPort: tlsPort, caFile: authority.certificatePath)
        do {
            // The main process binds every listener before it forks its workers, so the TLS port
            // accepting means UDP and the IPv6 sockets are bound too.
            try Ports.waitForTCP(host, port, server: "kamailio")
            try Ports.waitForTCP(host, tlsPort, server: "kamailio (TLS)")
        } catch let error as LabError {
            server.stop()
            throw LabError(error.code, "\(error.message)\n\(server.process.logTail())")
        }
        return server
    }

    /// Stops kamailio and waits until its ports refuse connections. kamailio's shutdown on
    /// SIGTERM sometimes leaves a worker spinning with the listening sockets open for seconds
    /// (seen with 5.6.3), so it gets half a second before the whole group is killed, and the
    /// ports are then polled: a test that stopped the server must find it gone.
    public func stop() {
        process.stop(grace: .milliseconds(500))
        kill(-process.pid, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if !Ports.connects(host, port) && !Ports.connects(host, tlsPort)
                && (host != "127.0.0.1" || !Self.connects6(port))
            {
                return
            }
            usleep(10_000)
        }
    }

    private static func connects6(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        inet_pton(AF_INET6, "::1", &address.sin6_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }

    private static func moduleDirectory() -> String? {
        let candidates =
            ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib")) ?? [])
            .map { "/usr/lib/\($0)/kamailio/modules" } + [
                "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules",
            ]
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/sl.so") }
    }
}
