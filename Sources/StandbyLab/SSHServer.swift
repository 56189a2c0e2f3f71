import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// OpenSSH `sshd` on a free loopback port for sftp:// tests: a host key and a user key made with
/// ssh-keygen in the lab directory, public-key login only, for the current user (root in CI,
/// hence `PermitRootLogin prohibit-password`). Clients pin the host with `knownHostsPath` or
/// `hostKeySHA256`, never by turning host checking off.
public final class SSHServer: Sendable {
    public let port: UInt16
    public let process: ServerProcess
    /// The user sshd lets in (the user running the lab).
    public let user: String
    public let userPrivateKeyPath: String
    public let userPublicKeyPath: String
    /// A key that is not authorised (to test a refused login).
    public let strangerPrivateKeyPath: String
    public let strangerPublicKeyPath: String
    /// known_hosts with the host key under `[127.0.0.1]:PORT`.
    public let knownHostsPath: String
    /// The host key's SHA-256 fingerprint, base64 without the `SHA256:` prefix.
    public let hostKeySHA256: String

    init(
        port: UInt16, process: ServerProcess, user: String, keys: (String, String, String, String),
        knownHostsPath: String, hostKeySHA256: String
    ) {
        self.port = port
        self.process = process
        self.user = user
        (userPrivateKeyPath, userPublicKeyPath, strangerPrivateKeyPath, strangerPublicKeyPath) = keys
        self.knownHostsPath = knownHostsPath
        self.hostKeySHA256 = hostKeySHA256
    }

    /// `sftp://USER@127.0.0.1:PORT/ABSOLUTE/PATH`
    public func sftpURL(_ absolutePath: String) -> URL? {
        .lab(scheme: "sftp", port: port, path: absolutePath, user: user)
    }

    public func stop() { process.stop() }

    public static func start(in lab: LabDirectory) throws -> SSHServer {
        let sshd = try Programs.locate("sshd", package: "openssh-server")
        let keygen = try Programs.locate("ssh-keygen", package: "openssh-client")
        let dir = try lab.directory("sshd")
        let hostKey = dir + "/host_ed25519"
        let userKey = dir + "/user_ed25519"
        let strangerKey = dir + "/stranger_ed25519"
        for key in [hostKey, userKey, strangerKey] {
            try run(
                keygen, ["-q", "-t", "ed25519", "-N", "", "-C", "standby-lab", "-f", key], log: dir + "/keygen.log")
        }
        try FileManager.default.copyItem(atPath: userKey + ".pub", toPath: dir + "/authorized_keys")
        try run(keygen, ["-l", "-E", "sha256", "-f", hostKey + ".pub"], log: dir + "/fingerprint.txt")
        let fingerprintLine = (try? String(contentsOfFile: dir + "/fingerprint.txt", encoding: .utf8)) ?? ""
        guard
            let field = fingerprintLine.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") })
        else {
            throw LabError(.setupFailed, "ssh-keygen printed no SHA256 fingerprint: \(fingerprintLine)")
        }
        let fingerprint = String(field.dropFirst("SHA256:".count))

        // sshd refuses to start without its privilege separation directory.
        if !FileManager.default.fileExists(atPath: "/run/sshd") {
            try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        }
        let port = try Ports.free()
        let user = currentUser()
        let config = """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(hostKey)
            PidFile \(dir)/sshd.pid
            AuthorizedKeysFile \(dir)/authorized_keys
            StrictModes no
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            UsePAM no
            AllowUsers \(user)
            Subsystem sftp internal-sftp
            LogLevel VERBOSE
            """
        let configPath = dir + "/sshd_config"
        try Data((config + "\n").utf8).write(to: URL(fileURLWithPath: configPath))
        let hostPublic = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8)
        let knownHosts = dir + "/known_hosts"
        try Data("[127.0.0.1]:\(port) \(hostPublic)".utf8).write(to: URL(fileURLWithPath: knownHosts))

        let process = try ServerProcess.spawnListening(
            name: "sshd", executable: sshd, arguments: ["-D", "-e", "-f", configPath], logPath: dir + "/sshd.log",
            port: port)
        return SSHServer(
            port: port, process: process, user: user,
            keys: (userKey, userKey + ".pub", strangerKey, strangerKey + ".pub"), knownHostsPath: knownHosts,
            hostKeySHA256: fingerprint)
    }

    static func currentUser() -> String {
        if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name { return String(cString: name) }
        return ProcessInfo.processInfo.environment["USER"] ?? "root"
    }

    /// Runs a short setup program to completion, its output in `log`.
    static func run(_ executable: String, _ arguments: [String], log: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        ServerProcess.closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw LabError(.spawnFailed, "could not run \(executable): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw LabError(.setupFailed, "\(executable) \(arguments.joined(separator: " ")) failed: \(output)")
        }
    }
}
