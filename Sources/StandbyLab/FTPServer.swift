import Foundation

/// Pure-FTPd on a free loopback port for ftp:// tests: one virtual user with a password (its own
/// user database in the lab directory, never the system's), chrooted to `root`, no anonymous
/// login. FTP serves byte ranges with REST, so a delta transfer over ftp:// fetches only ranges.
public final class FTPServer: Sendable {
    public let port: UInt16
    public let process: ServerProcess
    /// The directory the user sees as `/`.
    public let root: String
    public let user = "backup"
    public let password: String

    init(port: UInt16, process: ServerProcess, root: String, password: String) {
        self.port = port
        self.process = process
        self.root = root
        self.password = password
    }

    /// `ftp://127.0.0.1:PORT/NAME`, with no credentials in it.
    public func url(_ name: String) -> URL { .lab(scheme: "ftp", port: port, path: name) }

    public func stop() { process.stop() }

    public static func start(in lab: LabDirectory) throws -> FTPServer {
        let server = try Programs.locate("pure-ftpd", package: "pure-ftpd")
        let pw = try Programs.locate("pure-pw", package: "pure-ftpd")
        let dir = try lab.directory("ftp")
        let root = try lab.directory("ftp/share")
        let password = "lab-\(UInt64.random(in: 0...UInt64.max))"
        // The user database: one line hashed with SHA-512 crypt (pure-pw's own argon2id hash
        // costs seconds per login), then `pure-pw mkdb`. Virtual users may not be root: nobody
        // reads the files, which the chroot (made as root) reaches whatever the lab's modes.
        let openssl = try Programs.locate("openssl", package: "openssl")
        let hash = try LabTool.check(openssl, ["passwd", "-6", "-stdin"], input: password + "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try Data("backup:\(hash):65534:65534::\(root)/./::::::::::::\n".utf8)
            .write(to: URL(fileURLWithPath: dir + "/pureftpd.passwd"))
        try LabTool.check(pw, ["mkdb", dir + "/pureftpd.pdb", "-f", dir + "/pureftpd.passwd"])
        // Passive data ports are the kernel's ephemeral ones, above the range `Ports.free` picks from.
        return try Ports.withFreePort { port in
            // -E: no anonymous login; -A: chroot everyone; -j: no home creation; -H: no DNS look-ups.
            let process = try ServerProcess.spawnListening(
                name: "pure-ftpd", executable: server,
                arguments: ["-S", "127.0.0.1,\(port)", "-l", "puredb:\(dir)/pureftpd.pdb", "-E", "-A", "-j", "-H"],
                logPath: dir + "/pure-ftpd.log", port: port)
            return FTPServer(port: port, process: process, root: root, password: password)
        }
    }
}
