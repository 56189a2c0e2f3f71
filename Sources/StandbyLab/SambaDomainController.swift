import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An Active Directory domain controller on loopback: Samba provisioned into the lab directory
/// (`samba-tool domain provision --server-role=dc --dns-backend=SAMBA_INTERNAL`) and run as
/// `samba -i -M single`, stopped by pid. It is what the sites Standby serves have: an
/// AD-integrated zone that takes secure (GSS-TSIG) dynamic updates only, and Kerberos.
///
/// Its DNS, Kerberos and SMB listen on free ports of 127.0.0.1; LDAP (389) and the RPC endpoint
/// mapper (135) cannot move, so one domain controller runs on a machine at a time: `start` waits
/// for a lock file that the controller holds until it stops.
///
/// A second authoritative server serves the same zone: BIND with Samba's DLZ module
/// (`dlz_bind9_18.so`), reading the zone from the controller's directory as a BIND9_DLZ site's
/// named does, and as a second DC's DNS would after replication. The update goes to the first
/// server; "verified on every server" then asks both.
///
/// Accounts: `administrator`; `svc-standby`, a member of DnsAdmins with its keys exported to a
/// 0600 keytab and its password in a 0600 file; `svc-norights`, an account with no rights on
/// the zone.
public final class SambaDomainController: @unchecked Sendable {
    public static let realm = "AD.LAB.TEST"
    public static let zone = "ad.lab.test"
    public static let hostName = "dc01"
    public static let netbiosDomain = "ADLAB"
    public static let serviceAccount = "svc-standby"
    public static let unprivilegedAccount = "svc-norights"

    public let directory: String
    /// The running `samba`; replaced by `restart`.
    public private(set) var process: ServerProcess
    /// named with the DLZ module: the zone's second authoritative server.
    public let secondDNS: ServerProcess
    public let secondDNSPort: UInt16
    private let launch: (executable: String, arguments: [String], environment: [String: String])
    public let dnsPort: UInt16
    public let kdcPort: UInt16
    public let smbPort: UInt16
    public let adminPassword: String
    /// The service account's keytab and password file (both 0600), and the krb5.conf to use.
    public let keytabPath: String
    public let passwordFilePath: String
    public let krb5ConfPath: String
    /// Keytab and password file of the account without rights.
    public let unprivilegedKeytabPath: String
    public let configPath: String
    private let lock: Mutex<Int32?>

    init(
        directory: String, process: ServerProcess,
        launch: (executable: String, arguments: [String], environment: [String: String]),
        ports: (dns: UInt16, kdc: UInt16, smb: UInt16), secondDNS: (process: ServerProcess, port: UInt16),
        adminPassword: String, lockDescriptor: Int32
    ) {
        self.directory = directory
        self.process = process
        (self.secondDNS, secondDNSPort) = secondDNS
        self.launch = launch
        (dnsPort, kdcPort, smbPort) = ports
        self.adminPassword = adminPassword
        keytabPath = directory + "/svc-standby.keytab"
        passwordFilePath = directory + "/svc-standby.pass"
        krb5ConfPath = directory + "/krb5.conf"
        unprivilegedKeytabPath = directory + "/svc-norights.keytab"
        configPath = directory + "/etc/smb.conf"
        self.lock = Mutex(lockDescriptor)
    }

    /// `127.0.0.1:PORT`: the controller's own DNS, which takes the updates.
    public var dnsAddress: String { "127.0.0.1:\(dnsPort)" }
    /// `127.0.0.1:PORT`: the zone's second authoritative server (BIND with the DLZ module).
    public var secondDNSAddress: String { "127.0.0.1:\(secondDNSPort)" }
    /// Both authoritative servers of the zone, the updates' target first.
    public var dnsAddresses: [String] { [dnsAddress, secondDNSAddress] }
    public var principal: String { "\(Self.serviceAccount)@\(Self.realm)" }
    /// The DNS service's principal: `DNS/dc01.ad.lab.test`.
    public var dnsPrincipal: String { "DNS/\(Self.hostName).\(Self.zone)" }

    public func stop() {
        secondDNS.stop()
        process.stop()
        releaseMachineLock()
    }

    /// Stops and starts `samba` on the same domain: it forgets every GSS-TSIG context, as a DC
    /// does when it restarts (the lock stays held). The second server keeps serving.
    public func restart() throws {
        process.stop()
        process = try ServerProcess.spawnListening(
            name: "samba", executable: launch.executable, arguments: launch.arguments,
            environment: launch.environment, logPath: directory + "/samba.out", port: dnsPort)
        try Ports.waitForTCP("127.0.0.1", kdcPort, server: "samba's KDC", process: process)
    }

    /// For a controller left running by a command that exits (`standby-lab up --ad`): the next
    /// one then waits for LDAP's port instead (see `start`).
    public func releaseMachineLock() {
        lock.withLock { descriptor in
            guard let fd = descriptor else { return }
            flock(fd, LOCK_UN)
            close(fd)
            descriptor = nil
        }
    }

    /// Provisions a domain in `lab/ad`, starts it, makes the accounts and the keytab. About 5 to
    /// 15 s, most of it the provisioning.
    /// `clockOffset` (seconds) runs the controller under libfaketime: a KDC and DNS server
    /// whose clock is that far from this machine's.
    /// `share`: a directory the controller serves read-only as the share `backups`, reached over
    /// SMB with Kerberos at `smbHostName` (see `addShare`).
    public static func start(
        in lab: LabDirectory, dnsPort: UInt16? = nil, secondDNSPort: UInt16? = nil, clockOffset: Int? = nil,
        lockTimeout: Duration = .seconds(600), share: String? = nil
    ) throws -> SambaDomainController {
        let samba = try Programs.locate("samba", package: "samba-ad-dc")
        let tool = try Programs.locate("samba-tool", package: "samba-ad-provision")
        let lock = try Self.takeMachineLock(timeout: lockTimeout)
        // winbindd makes its socket directory, not the directory above it.
        try? FileManager.default.createDirectory(atPath: "/run/samba", withIntermediateDirectories: true)
        do {
            let dir = try lab.directory("ad")
            let adminPassword = "Adm1n-\(UInt32.random(in: 100_000...999_999))!"
            let dns = try dnsPort ?? Ports.free()
            let kdc = try Ports.free()
            let smb = try Ports.free()
            let provision = try LabTool.run(
                tool,
                [
                    "domain", "provision", "--realm=\(realm)", "--domain=\(netbiosDomain)", "--server-role=dc",
                    "--dns-backend=SAMBA_INTERNAL", "--adminpass=\(adminPassword)", "--targetdir=\(dir)",
                    "--host-name=\(hostName)", "--option=interfaces=lo", "--option=bind interfaces only=yes",
                    "--option=dns port=\(dns)", "--option=smb ports=\(smb)", "--option=krb5 port=\(kdc)",
                    // Nothing leaves the machine: names outside the zone go to a loopback address.
                    "--option=dns forwarder=127.0.0.1", "--option=server services=-nbt -wrepl -ntp_signd",
                    "--option=log file=\(dir)/log.%m", "--option=disable netbios=yes",
                    // Its pid files and RPC pipes stay in the lab. Its winbindd listens where
                    // libwbclient looks, the path compiled into Samba (/run/samba/winbindd): the
                    // DC's own smbd maps each session's account through it, and with the socket
                    // anywhere else every login failed with NT_STATUS_INTERNAL_ERROR. One DC
                    // runs per machine; the lab's standalone smbd never asks a winbindd.
                    "--option=pid directory=\(dir)/pid",
                    "--option=ncalrpc dir=\(dir)/ncalrpc",
                ], timeout: .seconds(120))
            guard provision.status == 0 else {
                throw LabError(.setupFailed, "samba-tool domain provision failed: \(provision.output.suffix(2000))")
            }
            try Data(
                """
                [libdefaults]
                    default_realm = \(realm)
                    dns_lookup_kdc = false
                    dns_lookup_realm = false
                    rdns = false
                    dns_canonicalize_hostname = false
                [realms]
                    \(realm) = {
                        kdc = 127.0.0.1:\(kdc)
                    }
                [domain_realm]
                    .\(zone) = \(realm)

                """.utf8
            ).write(to: URL(fileURLWithPath: dir + "/krb5.conf"))
            let config = dir + "/etc/smb.conf"
            let ldb = ["-H", dir + "/private/sam.ldb", "-s", config]
            let password = "Svc-\(UInt64.random(in: 0...UInt64.max))-P"
            try LabTool.check(tool, ["user", "create", serviceAccount, password] + ldb)
            try LabTool.check(tool, ["group", "addmembers", "DnsAdmins", serviceAccount] + ldb)
            try LabTool.check(
                tool,
                [
                    "domain", "exportkeytab", dir + "/svc-standby.keytab", "--principal=\(serviceAccount)@\(realm)",
                    "-s", config,
                ])
            try LabTool.check(
                tool, ["user", "create", unprivilegedAccount, "No-\(UInt64.random(in: 0...UInt64.max))-P"] + ldb)
            try LabTool.check(
                tool,
                [
                    "domain", "exportkeytab", dir + "/svc-norights.keytab",
                    "--principal=\(unprivilegedAccount)@\(realm)",
                    "-s", config,
                ])
            try Data((password + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/svc-standby.pass"))
            for file in ["svc-standby.keytab", "svc-norights.keytab", "svc-standby.pass"] {
                chmod(dir + "/" + file, 0o600)
            }
            if let share { try addShare(share, config: config, tool: tool) }
            var environment = ProcessInfo.processInfo.environment
            environment["KRB5_CONFIG"] = dir + "/krb5.conf"
            if let clockOffset {
                environment["LD_PRELOAD"] = try Programs.locateLibrary(
                    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", package: "libfaketime")
                environment["FAKETIME"] = clockOffset >= 0 ? "+\(clockOffset)" : "\(clockOffset)"
            }
            let arguments = ["-i", "-M", "single", "-s", config, "--debug-stdout"]
            let process = try ServerProcess.spawnListening(
                name: "samba", executable: samba, arguments: arguments, environment: environment,
                logPath: dir + "/samba.out", port: dns)
            let second: ServerProcess
            let secondPort = try secondDNSPort ?? Ports.free()
            do {
                try Ports.waitForTCP("127.0.0.1", kdc, server: "samba's KDC", process: process)
                // DNS management goes through the RPC endpoint mapper, which may listen last.
                try Ports.waitForTCP("127.0.0.1", 135, server: "samba's RPC endpoint mapper", process: process)
                second = try startSecondDNS(in: dir, config: config, port: secondPort)
            } catch {
                process.stop()
                throw error
            }
            return SambaDomainController(
                directory: dir, process: process, launch: (samba, arguments, environment), ports: (dns, kdc, smb),
                secondDNS: (second, secondPort), adminPassword: adminPassword, lockDescriptor: lock)
        } catch {
            flock(lock, LOCK_UN)
            close(lock)
            throw error
        }
    }

    /// named serving the domain's zones from the controller's directory through Samba's DLZ
    /// module. The module finds the domain's smb.conf through SMB_CONF_PATH (it names the DC, the
    /// SOA's primary server) and opens sam.ldb itself (`--url`): a BIND9_DLZ provisioning would
    /// put a copy under private/dns, which a SAMBA_INTERNAL domain does not have.
    static func startSecondDNS(in dir: String, config: String, port: UInt16) throws -> ServerProcess {
        let named = try Programs.locate("named", package: "bind9")
        let module = try Programs.locateLibrary(
            "/usr/lib/x86_64-linux-gnu/samba/bind9/dlz_bind9_18.so",
            "/usr/lib/aarch64-linux-gnu/samba/bind9/dlz_bind9_18.so", package: "samba-libs")
        let namedDir = dir + "/named"
        try FileManager.default.createDirectory(atPath: namedDir, withIntermediateDirectories: true)
        try Data(
            """
            options {
                directory "\(namedDir)";
                pid-file "\(namedDir)/named.pid";
                listen-on port \(port) { 127.0.0.1; };
                listen-on-v6 { none; };
                recursion no;
                notify no;
                allow-query { any; };
            };
            dlz "AD DNS Zone" {
                database "dlopen \(module) --url=\(dir)/private/sam.ldb";
            };

            """.utf8
        ).write(to: URL(fileURLWithPath: namedDir + "/named.conf"))
        var environment = ProcessInfo.processInfo.environment
        environment["SMB_CONF_PATH"] = config
        return try ServerProcess.spawnListening(
            name: "named (Samba DLZ)", executable: named, arguments: ["-g", "-c", namedDir + "/named.conf"],
            environment: environment, logPath: namedDir + "/named.out", port: port)
    }

    /// Adds a record to the zone through Samba's DNS management RPC (as the administrator).
    /// `data` in samba-tool's form: SRV is `TARGET PORT PRIORITY WEIGHT`.
    /// The DC may answer DNS and LDAP before its RPC server listens (seen on a loaded machine's
    /// first run): a refused RPC connection is tried again for up to 30 s.
    public func addRecord(_ name: String, type: String, _ data: String) throws {
        let tool = try Programs.locate("samba-tool", package: "samba-ad-provision")
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                try LabTool.check(
                    tool,
                    [
                        "dns", "add", "127.0.0.1", Self.zone, name, type, data, "-U", "administrator",
                        "--password=\(adminPassword)", "-s", configPath,
                    ])
                return
            } catch let error as LabError
                where "\(error)".contains("connection attempt was refused") && ContinuousClock.now < deadline
            {
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
    }

    /// One domain controller per machine (LDAP and the RPC endpoint mapper have fixed ports).
    static func takeMachineLock(timeout: Duration) throws -> Int32 {
        let path = NSTemporaryDirectory() + "/standby-lab-samba-dc.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LabError(.setupFailed, "cannot open \(path): \(String(cString: strerror(errno)))") }
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw LabError(.notReady, "another lab domain controller held \(path) for \(timeout)")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        // A controller left running by `standby-lab up --ad` holds no lock, but holds LDAP's port.
        while !Ports.canBind(address: "127.0.0.1", port: 389, type: Int32(SOCK_STREAM.rawValue)) {
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw LabError(
                    .notReady, "127.0.0.1:389 stayed taken for \(timeout): another domain controller runs here")
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return fd
    }
}
