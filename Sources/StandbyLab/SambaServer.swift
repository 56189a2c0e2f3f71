import Foundation

/// Samba's `smbd` on a free loopback port for smb:// tests, sharing one directory read-only as
/// `backups`. Everything it writes (passdb, locks, state, logs) stays in the lab directory.
///
/// The dialects it speaks are the test's choice (`Dialects`): SMB2.1 and later, SMB3 with
/// encryption required, or SMB1 alone (the server a Standby must refuse by default). One user,
/// the current user (root in CI), with a password set here (NTLMv2); login is never anonymous.
/// A second account, `norights`, may log in but is refused the share.
///
/// Its log (`logPath`) records each SMB2 read with its offset and length (`smb2` debug class at
/// level 3), so a test sees which ranges of a file were read.
public final class SambaServer: Sendable {
    /// What the server negotiates.
    public struct Dialects: Sendable {
        public var min: String
        public var max: String
        /// `smb encrypt`: `required`, `desired`, `off`.
        public var encrypt: String

        public init(min: String, max: String = "SMB3", encrypt: String = "desired") {
            self.min = min
            self.max = max
            self.encrypt = encrypt
        }

        /// SMB 2.1 to 3.1.1, encryption where the client asks.
        public static let smb2 = Dialects(min: "SMB2_10")
        /// SMB 2.1 only: no encryption possible.
        public static let smb2Only = Dialects(min: "SMB2_10", max: "SMB2_10", encrypt: "off")
        /// SMB3 only, encryption turned off: a server that cannot encrypt although it speaks SMB3.
        public static let smb3Unencrypted = Dialects(min: "SMB3", encrypt: "off")
        /// SMB3 only, every session encrypted.
        public static let smb3Encrypted = Dialects(min: "SMB3", encrypt: "required")
        /// SMB1 (NT LM 0.12) and nothing else, as a Windows Server 2008 R2 left alone speaks.
        public static let smb1Only = Dialects(min: "NT1", max: "NT1", encrypt: "off")
    }

    public let port: UInt16
    public let process: ServerProcess
    /// The directory served as the share `backups`.
    public let root: String
    public let user: String
    public let password: String
    /// An account that logs in but has no rights on the share.
    public let unprivilegedUser = "norights"
    public let unprivilegedPassword: String
    public let logPath: String
    let executable: String
    let configPath: String
    public static let share = "backups"

    init(
        port: UInt16, process: ServerProcess, root: String, user: String, password: String,
        unprivilegedPassword: String, logPath: String, executable: String, configPath: String
    ) {
        self.executable = executable
        self.configPath = configPath
        self.port = port
        self.process = process
        self.root = root
        self.user = user
        self.password = password
        self.unprivilegedPassword = unprivilegedPassword
        self.logPath = logPath
    }

    /// The reads the server served since it started: (offset, length) of each SMB2 READ of a file
    /// named `name`, from its log (`smbd_smb2_read: fnum N, file NAME, length=L offset=O read=R`).
    public func reads(of name: String) -> [(offset: Int64, length: Int64)] {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return [] }
        var result: [(offset: Int64, length: Int64)] = []
        for entry in text.components(separatedBy: "smbd_smb2_read: ").dropFirst() {
            guard let fileRange = entry.range(of: ", file ") else { continue }
            let rest = entry[fileRange.upperBound...]
            guard let comma = rest.firstIndex(of: ","), rest[..<comma] == name else { continue }
            func number(after key: String) -> Int64? {
                guard let range = rest.range(of: key) else { return nil }
                return Int64(rest[range.upperBound...].prefix(while: \.isNumber))
            }
            if let offset = number(after: "offset="), let read = number(after: "read=") {
                result.append((offset, read))
            }
        }
        return result
    }

    /// `smb://127.0.0.1:PORT/backups/NAME`, with no credentials in it.
    public func url(_ name: String) -> URL { .lab(scheme: "smb", port: port, path: "\(Self.share)/\(name)") }

    public func stop() { process.stop() }

    /// A new smbd on the same port, configuration, share and accounts (after a crash, say).
    public func restarted() throws -> SambaServer {
        process.stop()
        let process = try Self.spawn(executable, configPath: configPath, port: port)
        return SambaServer(
            port: port, process: process, root: root, user: user, password: password,
            unprivilegedPassword: unprivilegedPassword, logPath: logPath, executable: executable,
            configPath: configPath)
    }

    /// smbd with its log on standard output (`--debug-stdout`), appended to `smbd.out`.
    /// Never a winbindd: libwbclient asks the one at the path compiled into Samba
    /// (/run/samba/winbindd; `winbindd socket directory` moves only where winbindd listens), which
    /// is a lab domain controller's when one runs, and its id mappings turn the login into a
    /// denial. `_NO_WINBINDD=1` is Samba's own switch for a process that must not ask it.
    static func spawn(_ smbd: String, configPath: String, port: UInt16) throws -> ServerProcess {
        var environment = ProcessInfo.processInfo.environment
        environment["_NO_WINBINDD"] = "1"
        return try ServerProcess.spawnListening(
            name: "smbd", executable: smbd,
            arguments: ["--foreground", "--no-process-group", "--debug-stdout", "--configfile=\(configPath)"],
            environment: environment, logPath: Self.outputPath(configPath), port: port)
    }

    static func outputPath(_ configPath: String) -> String {
        (configPath as NSString).deletingLastPathComponent + "/smbd.out"
    }

    public static func start(in lab: LabDirectory, dialects: Dialects = .smb2) throws -> SambaServer {
        let smbd = try Programs.locate("smbd", package: "samba")
        let smbpasswd = try Programs.locate("smbpasswd", package: "samba-common-bin")
        let dir = try lab.directory("samba")
        let root = try lab.directory("samba/share")
        for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc", "log"] {
            _ = try lab.directory("samba/\(sub)")
        }
        let user = SSHServer.currentUser()
        let password = "lab-\(UInt64.random(in: 0...UInt64.max))"
        let unprivilegedPassword = "nr-\(UInt64.random(in: 0...UInt64.max))"
        let configPath = dir + "/smb.conf"
        return try Ports.withFreePort { port in
            let config = """
                [global]
                  server role = standalone server
                  smb ports = \(port)
                  interfaces = 127.0.0.1
                  bind interfaces only = yes
                  disable netbios = yes
                  server min protocol = \(dialects.min)
                  server max protocol = \(dialects.max)
                  server smb encrypt = \(dialects.encrypt)
                  server signing = \(dialects.min == "NT1" ? "auto" : "mandatory")
                  ntlm auth = \(dialects.min == "NT1" ? "yes" : "ntlmv2-only")
                  smb1 unix extensions = no
                  # Each SMB2 read with its offset and length, for the tests of ranges.
                  log level = 1 smb2:3
                  passdb backend = tdbsam:\(dir)/private/passdb.tdb
                  private dir = \(dir)/private
                  lock directory = \(dir)/lock
                  state directory = \(dir)/state
                  cache directory = \(dir)/cache
                  pid directory = \(dir)/pid
                  ncalrpc dir = \(dir)/ncalrpc
                  log file = \(dir)/log/smbd.log
                  load printers = no
                  printing = bsd
                  printcap name = /dev/null
                  disable spoolss = yes
                  map to guest = never
                [\(share)]
                  path = \(root)
                  read only = yes
                  guest ok = no
                  invalid users = \(SambaServer.unprivilegedAccount)
                """
            try Data((config + "\n").utf8).write(to: URL(fileURLWithPath: configPath))
            // `smbpasswd -a -s` reads the new password twice from standard input.
            try LabTool.check(smbpasswd, ["-c", configPath, "-a", "-s", user], input: "\(password)\n\(password)\n")
            try ensureUnixAccount(unprivilegedAccount)
            try LabTool.check(
                smbpasswd, ["-c", configPath, "-a", "-s", unprivilegedAccount],
                input: "\(unprivilegedPassword)\n\(unprivilegedPassword)\n")
            let process = try spawn(smbd, configPath: configPath, port: port)
            return SambaServer(
                port: port, process: process, root: root, user: user, password: password,
                unprivilegedPassword: unprivilegedPassword, logPath: outputPath(configPath), executable: smbd,
                configPath: configPath)
        }
    }

    static let unprivilegedAccount = "norights"

    /// smbpasswd adds only users the system knows: `norights` is made once (useradd, no home, no
    /// login shell) when missing.
    static func ensureUnixAccount(_ name: String) throws {
        if getpwnam(name) != nil { return }
        let useradd = try Programs.locate("useradd", package: "passwd")
        let result = try LabTool.run(useradd, ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        guard result.status == 0 || getpwnam(name) != nil else {
            throw LabError(.setupFailed, "useradd \(name) failed: \(result.output)")
        }
    }
}
