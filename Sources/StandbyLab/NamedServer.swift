import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// BIND 9 `named` as the primary master of one zone, on a free loopback port, in its own
/// directory: a zone file with the caller's records, an `update-policy` that lets a TSIG key
/// (made by `tsig-keygen`) change any name in the zone, NOTIFY to the given secondaries and zone
/// transfers allowed from loopback. Stopped by process id.
public final class NamedServer: Sendable {
    public let host: String
    public let port: UInt16
    public let zone: String
    /// The key file `tsig-keygen` wrote (mode 0600), in BIND's key-file format.
    public let keyPath: String
    public let keyName: String
    public let directory: String
    public let process: ServerProcess

    public var pid: pid_t { process.pid }
    /// "127.0.0.1:PORT", the form the topology's `dns.servers` takes.
    public var address: String { "\(host):\(port)" }

    init(
        host: String, port: UInt16, zone: String, keyPath: String, keyName: String, directory: String,
        process: ServerProcess
    ) {
        self.host = host
        self.port = port
        self.zone = zone
        self.keyPath = keyPath
        self.keyName = keyName
        self.directory = directory
        self.process = process
    }

    /// Starts named for `zone` with an SOA (serial 1), an NS record and `records` (zone-file lines,
    /// names relative to the zone: `"_sip._tcp 300 IN SRV 0 0 443 sip.example.test."`).
    /// `grant` is the rule of the key's `update-policy` grant (default: any name in the zone).
    /// `notify` lists the ports of secondaries on `notifyHost` to NOTIFY on every change. `host` and
    /// `port` place named on a given loopback address and port (the demo's fixed addresses);
    /// by default it takes a free port on 127.0.0.1.
    public static func start(
        in lab: LabDirectory, zone: String, records: [String], keyName: String = "failover-key",
        algorithm: String = "hmac-sha256", grant: String = "zonesub ANY", notify: [UInt16] = [],
        notifyHost: String = "127.0.0.1", host: String = "127.0.0.1", port: UInt16? = nil,
        readyTimeout: Duration = .seconds(20)
    ) throws -> NamedServer {
        let named = try Programs.locate("named", package: "bind9")
        let keygen = try Programs.locate("tsig-keygen", package: "bind9")
        let directory = try lab.directory("named-\(UUID().uuidString.prefix(8))")
        let zoneName = zone.hasSuffix(".") ? String(zone.dropLast()) : zone
        let port = try port ?? Ports.free(on: host)

        let keyPath = directory + "/\(keyName).key"
        let keygenRun = try LabTool.run(keygen, ["-a", algorithm, keyName])
        guard keygenRun.status == 0, keygenRun.output.contains("secret") else {
            throw LabError(.setupFailed, "tsig-keygen -a \(algorithm) \(keyName) failed: \(keygenRun.output)")
        }
        guard
            FileManager.default.createFile(
                atPath: keyPath, contents: Data(keygenRun.output.utf8), attributes: [.posixPermissions: 0o600])
        else { throw LabError(.setupFailed, "cannot write \(keyPath)") }

        let zoneFile = directory + "/\(zoneName).db"
        let zoneText =
            """
            $ORIGIN \(zoneName).
            $TTL 300
            @ IN SOA ns1.\(zoneName). hostmaster.\(zoneName). 1 60 60 3600 60
            @ IN NS ns1.\(zoneName).
            ns1 IN A 127.0.0.1
            \(records.joined(separator: "\n"))

            """
        try Data(zoneText.utf8).write(to: URL(fileURLWithPath: zoneFile))

        let notifyList = notify.map { "\(notifyHost) port \($0);" }.joined(separator: " ")
        let config =
            """
            options {
                directory "\(directory)";
                pid-file "\(directory)/named.pid";
                session-keyfile "\(directory)/session.key";
                managed-keys-directory "\(directory)";
                listen-on port \(port) { \(host); };
                listen-on-v6 { none; };
                recursion no;
                dnssec-validation no;
                notify explicit;
                notify-delay 0;
                notify-rate 1000;
                startup-notify-rate 1000;
                \(notify.isEmpty ? "" : "also-notify { \(notifyList) };")
                allow-transfer { 127.0.0.0/8; };
            };
            controls { };
            include "\(keyPath)";
            zone "\(zoneName)" {
                type primary;
                file "\(zoneFile)";
                journal "\(zoneFile).jnl";
                update-policy { grant \(keyName) \(grant); };
            };

            """
        let configPath = directory + "/named.conf"
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))

        let process = try ServerProcess.spawn(
            name: "named", executable: named, arguments: ["-g", "-c", configPath], logPath: directory + "/named.log")
        let server = NamedServer(
            host: host, port: port, zone: zoneName, keyPath: keyPath, keyName: keyName, directory: directory,
            process: process)
        try LabDNS.waitForZone(zoneName, host: host, port: port, process: process, timeout: readyTimeout)
        return server
    }

    /// Stops named by process id (SIGTERM to its group, then SIGKILL).
    public func stop() { process.stop() }

    /// Freezes named (SIGSTOP): it keeps its port but answers nothing, as a hung server does.
    public func suspend() { process.signal(SIGSTOP) }

    /// Lets a suspended named run again.
    public func resume() { process.signal(SIGCONT) }
}

/// Readiness of lab DNS servers, without dig, knotc or rndc: a hand-built SOA query over UDP.
enum LabDNS {
    /// Polls until the server answers the zone's SOA authoritatively, or throws `notReady`
    /// (with the server's log) when the process exits or the deadline passes.
    static func waitForZone(
        _ zone: String, host: String, port: UInt16, process: ServerProcess, timeout: Duration
    ) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw LabError(.notReady, "\(process.name) exited while starting:\n\(process.logTail())")
            }
            if soaIsAuthoritative(zone, host: host, port: port) { return }
            usleep(20_000)
        }
        process.stop()
        throw LabError(
            .notReady,
            "\(process.name) did not serve \(zone) on \(host):\(port) within \(timeout):\n\(process.logTail())")
    }

    /// Whether `host:port` answers the SOA of `zone` with NOERROR, the AA bit and an answer.
    /// `recursive`: the question a client asks a caching resolver (RD set), whose answer is not
    /// authoritative.
    static func soaIsAuthoritative(_ zone: String, host: String, port: UInt16, recursive: Bool = false) -> Bool {
        let id = UInt16.random(in: 1...UInt16.max)
        var query: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), recursive ? 1 : 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in zone.split(separator: ".") {
            let bytes = Array(label.utf8)
            query.append(UInt8(bytes.count))
            query += bytes
        }
        query += [0, 0, 6, 0, 1]  // root, type SOA, class IN

        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let sent = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard sent == query.count else { return false }
        var reply = [UInt8](repeating: 0, count: 4096)
        let received = recv(fd, &reply, reply.count, 0)
        guard received >= 12, reply[0] == query[0], reply[1] == query[1] else { return false }
        let isResponse = reply[2] & 0x80 != 0
        let authoritative = reply[2] & 0x04 != 0
        let rcode = reply[3] & 0x0f
        let answers = Int(reply[6]) << 8 | Int(reply[7])
        return isResponse && (authoritative || recursive) && rcode == 0 && answers > 0
    }
}

/// Runs a short command-line tool (tsig-keygen, dig, nsupdate, smbpasswd) to completion and returns
/// its exit status and output (stdout and stderr together). The output goes through a temporary
/// file, not a pipe, so a chatty tool can never block on a full pipe; `input`, when given, is its
/// standard input, through a temporary file too (a password never goes on a command line).
public enum LabTool {
    public struct Run: Sendable {
        public var status: Int32
        public var output: String
    }

    public static func run(
        _ executable: String, _ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30)
    ) throws -> Run {
        let (fd, outputPath) = try temporaryFile(for: executable)
        defer {
            close(fd)
            unlink(outputPath)
        }
        var inputPath = "/dev/null"
        if let input {
            let (inputFD, path) = try temporaryFile(for: executable)
            close(inputFD)
            try Data(input.utf8).write(to: URL(fileURLWithPath: path))
            inputPath = path
        }
        defer { if input != nil { unlink(inputPath) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        ServerProcess.closeInheritedDescriptors(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaultSignals = sigset_t()
        sigfillset(&defaultSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, env)
        guard spawned == 0 else {
            throw LabError(.spawnFailed, "could not run \(executable): \(String(cString: strerror(spawned)))")
        }
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { throw LabError(.setupFailed, "lost track of \(executable)") }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw LabError(.setupFailed, "\(executable) did not finish within \(timeout)")
            }
            usleep(500)
        }
        let output = FileManager.default.contents(atPath: outputPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
        // WIFEXITED/WEXITSTATUS are macros Swift cannot import.
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Run(status: exitStatus, output: output)
    }

    /// `run`, for a setup step that must succeed: its output, or a `setupFailed` error with it.
    @discardableResult
    public static func check(_ executable: String, _ arguments: [String], input: String? = nil) throws -> String {
        let result = try run(executable, arguments, input: input)
        guard result.status == 0 else {
            throw LabError(
                .setupFailed,
                "\(executable) \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)")
        }
        return result.output
    }

    /// A new file under /tmp, mode 0600, open for writing.
    private static func temporaryFile(for executable: String) throws -> (Int32, String) {
        var template = Array("/tmp/standby-labtool.XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw LabError(.setupFailed, "cannot create a temporary file for \(executable)") }
        let path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (fd, path)
    }

    /// `dig +norec +short @host -p port name type`: the values a server gives, one per line.
    public static func dig(_ host: String, _ port: UInt16, _ name: String, _ type: String) throws -> [String] {
        let dig = try Programs.locate("dig", package: "bind9-dnsutils")
        let result = try run(dig, ["+norec", "+short", "+time=2", "+tries=1", "@\(host)", "-p", "\(port)", name, type])
        guard result.status == 0 else {
            throw LabError(.setupFailed, "dig @\(host) -p \(port) \(name) \(type) failed: \(result.output)")
        }
        return result.output.split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix(";") }
    }

    /// `dig +norec @host -p port name type` and the TTL of the first answer record.
    public static func digTTL(_ host: String, _ port: UInt16, _ name: String, _ type: String) throws -> UInt32? {
        let dig = try Programs.locate("dig", package: "bind9-dnsutils")
        let result = try run(
            dig, ["+norec", "+noall", "+answer", "+time=2", "+tries=1", "@\(host)", "-p", "\(port)", name, type])
        guard let line = result.output.split(separator: "\n").first(where: { !$0.hasPrefix(";") }) else { return nil }
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return fields.count > 1 ? UInt32(fields[1]) : nil
    }
}
