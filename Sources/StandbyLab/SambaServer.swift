import Foundation

/// Samba's `smbd` on a free loopback port for smb:// tests, sharing one directory read-only as
/// `backups`. Everything it writes (passdb, locks, state, logs) stays in the lab directory.
///
/// libcurl speaks SMB1 (NT LM 0.12) only, with NTLM authentication, so this server allows both:
/// Samba turns them off by default, as Windows Server 2019 and later do. One user, the current
/// user (root in CI), with a password set here; login is never anonymous.
public final class SambaServer: Sendable {
    public let port: UInt16
    public let process: ServerProcess
    /// The directory served as the share `backups`.
    public let root: String
    public let user: String
    public let password: String
    public static let share = "backups"

    init(port: UInt16, process: ServerProcess, root: String, user: String, password: String) {
        self.port = port
        self.process = process
        self.root = root
        self.user = user
        self.password = password
    }

    /// `smb://127.0.0.1:PORT/backups/NAME`, with no credentials in it.
    public func url(_ name: String) -> URL { .lab(scheme: "smb", port: port, path: "\(Self.share)/\(name)") }

    public func stop() { process.stop() }

    public static func start(in lab: LabDirectory) throws -> SambaServer {
        let smbd = try Programs.locate("smbd", package: "samba")
        let smbpasswd = try Programs.locate("smbpasswd", package: "samba-common-bin")
        let dir = try lab.directory("samba")
        let root = try lab.directory("samba/share")
        for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log"] {
            _ = try lab.directory("samba/\(sub)")
        }
        let user = SSHServer.currentUser()
        let password = "lab-\(UInt64.random(in: 0...UInt64.max))"
        let configPath = dir + "/smb.conf"
        return try Ports.withFreePort { port in
            let config = """
                [global]
                  server role = standalone server
                  smb ports = \(port)
                  interfaces = 127.0.0.1
                  bind interfaces only = yes
                  disable netbios = yes
                  server min protocol = NT1
                  ntlm auth = yes
                  smb1 unix extensions = no
                  passdb backend = tdbsam:\(dir)/private/passdb.tdb
                  private dir = \(dir)/private
                  lock directory = \(dir)/lock
                  state directory = \(dir)/state
                  cache directory = \(dir)/cache
                  pid directory = \(dir)/pid
                  ncalrpc dir = \(dir)/ncalrpc
                  log file = \(dir)/log/smbd.log
                  # Never the machine's winbindd (samba-ad-dc brings one, and a lab domain
                  # controller runs its own): its id mappings turn the login into a denial.
                  winbindd socket directory = \(dir)/winbindd
                  load printers = no
                  printing = bsd
                  printcap name = /dev/null
                  disable spoolss = yes
                  map to guest = never
                [\(share)]
                  path = \(root)
                  read only = yes
                  guest ok = no
                """
            try Data((config + "\n").utf8).write(to: URL(fileURLWithPath: configPath))
            // `smbpasswd -a -s` reads the new password twice from standard input.
            try LabTool.check(smbpasswd, ["-c", configPath, "-a", "-s", user], input: "\(password)\n\(password)\n")
            let process = try ServerProcess.spawnListening(
                name: "smbd", executable: smbd,
                arguments: ["--foreground", "--no-process-group", "--debug-stdout", "--configfile=\(configPath)"],
                logPath: dir + "/smbd.out", port: port)
            return SambaServer(port: port, process: process, root: root, user: user, password: password)
        }
    }
}
