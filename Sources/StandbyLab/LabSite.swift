import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The servers of `sites/lab`: the primary on 127.0.1.x (a SIP front end, an HTTP server with the
/// backup files), the secondary on 127.0.2.x (its SIP front end, started by the failover), and the
/// zone lab.test on BIND and Knot on two loopback ports of 127.0.0.1 (named listens only on
/// addresses an interface carries, and lo carries 127.0.0.1 alone). Servers are left running and their
/// process ids recorded in `DIR/pids`, so separate commands can start, lose and stop them.
public struct LabSite: Sendable {
    public struct Ports: Sendable {
        public var dns: UInt16
        public var http: UInt16
        public var sip: UInt16

        /// From STANDBY_LAB_*_PORT, else the defaults sites/lab/site.yaml uses.
        public static func fromEnvironment() -> Ports {
            let env = ProcessInfo.processInfo.environment
            return Ports(
                dns: env["STANDBY_LAB_DNS_PORT"].flatMap(UInt16.init) ?? 8453,
                http: env["STANDBY_LAB_HTTP_PORT"].flatMap(UInt16.init) ?? 8480,
                sip: env["STANDBY_LAB_SIP_PORT"].flatMap(UInt16.init) ?? 8460)
        }
    }

    public static let primaryFrontEnd = "127.0.1.10"
    public static let primaryBackups = "127.0.1.20"
    public static let secondaryFrontEnd = "127.0.2.10"
    public static let dnsHost = "127.0.0.1"
    public static let zone = "lab.test"

    public let directory: LabDirectory
    public let ports: Ports

    public init(directory: String, ports: Ports = .fromEnvironment()) throws {
        self.directory = try LabDirectory(existing: directory)
        self.ports = ports
    }

    /// Starts DNS, the backup source and the primary front end; writes `lab.env` and `pids`.
    /// With `activeDirectory`, the zone is `ad.lab.test` on a Samba AD domain controller that takes
    /// GSS-TSIG updates only, as Windows DNS does (`sites/lab-ad`), instead of lab.test on BIND
    /// and Knot.
    public func up(backupMiB: Int = 32, activeDirectory: Bool = false) throws {
        if activeDirectory { return try upWithDomainController(backupMiB: backupMiB) }
        let records = [
            "_sipinternaltls._tcp 60 IN SRV 0 0 5061 pool01.lab.test.",
            "_sip._tcp 60 IN SRV 0 0 5060 sip.lab.test.",
            "pool01 IN A \(Self.primaryFrontEnd)", "sip IN A \(Self.primaryFrontEnd)",
            "pool02-dr IN A \(Self.secondaryFrontEnd)", "sip-dr IN A \(Self.secondaryFrontEnd)",
        ]
        let named = try NamedServer.start(
            in: directory, zone: Self.zone, records: records, notify: [ports.dns + 1], host: Self.dnsHost,
            port: ports.dns)
        try record("dns-primary", named.process)
        let knot = try KnotServer.start(
            in: directory, zone: Self.zone, primaryHost: Self.dnsHost, primaryPort: ports.dns, port: ports.dns + 1,
            host: Self.dnsHost)
        try record("dns-secondary", knot.process)

        // The TSIG key where the lab topology looks for it, readable by its owner only.
        let keys = try directory.directory("keys")
        try? FileManager.default.removeItem(atPath: keys + "/failover.key")
        try FileManager.default.copyItem(atPath: named.keyPath, toPath: keys + "/failover.key")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keys + "/failover.key")

        try writeBackups(day: 1, databaseMiB: backupMiB)
        try startPrimary()
        try writeEnvironment()
    }

    /// The AD lab: the domain controller holds ad.lab.test with the SIP records and the pools'
    /// addresses, and BIND with Samba's DLZ module serves the same zone on the next port; the
    /// service account's keytab and krb5.conf are in `DIR/ad`.
    func upWithDomainController(backupMiB: Int) throws {
        let dc = try SambaDomainController.start(in: directory, dnsPort: ports.dns, secondDNSPort: ports.dns + 1)
        do {
            try dc.addRecord("_sipinternaltls._tcp", type: "SRV", "pool01.\(SambaDomainController.zone) 5061 0 0")
            try dc.addRecord("_sip._tcp", type: "SRV", "sip.\(SambaDomainController.zone) 5060 0 0")
            for (name, address) in [
                ("pool01", Self.primaryFrontEnd), ("sip", Self.primaryFrontEnd), ("pool02-dr", Self.secondaryFrontEnd),
                ("sip-dr", Self.secondaryFrontEnd),
            ] {
                try dc.addRecord(name, type: "A", address)
            }
            try record("dns-primary", dc.process)
            try record("dns-secondary", dc.secondDNS)
        } catch {
            dc.stop()
            throw error
        }
        dc.releaseMachineLock()
        try writeBackups(day: 1, databaseMiB: backupMiB)
        try startPrimary()
        try writeEnvironment()
    }

    func writeEnvironment() throws {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let bin = (exe as NSString).deletingLastPathComponent
        let env = """
            export STANDBY_LAB_DIR=\(directory.path)
            export STANDBY_LAB_DNS_PORT=\(ports.dns)
            export STANDBY_LAB_DNS2_PORT=\(ports.dns + 1)
            export STANDBY_LAB_HTTP_PORT=\(ports.http)
            export STANDBY_LAB_SIP_PORT=\(ports.sip)
            export STANDBY_LAB_BIN=\(bin.isEmpty ? "standby-lab" : (bin as NSString).appendingPathComponent("standby-lab"))

            """
        try directory.write("lab.env", env)
    }

    /// Starts the SIP front-end stand-in of `site` (primary or secondary) unless it already runs.
    public func startFrontEnd(site: String) throws {
        let name = "frontend-\(site)"
        if let pid = pids()[name], kill(pid, 0) == 0 { return }
        let host = site == "primary" ? Self.primaryFrontEnd : Self.secondaryFrontEnd
        let server = try SIPServer.start(in: directory, ports: (ports.sip, ports.sip + 1), host: host)
        try record(name, server.process)
    }

    /// The primary site is lost: its front end and its backup source stop.
    public func losePrimary() {
        stop(["frontend-primary", "backups"])
    }

    /// The primary site is back (rebuilt): its backup source and front end run again.
    public func startPrimary() throws {
        if pids()["backups"].map({ kill($0, 0) != 0 }) ?? true {
            let nginx = try NginxServer.start(
                in: directory, serving: try directory.directory("www"), host: Self.primaryBackups, port: ports.http)
            try record("backups", nginx.process)
        }
        try startFrontEnd(site: "primary")
    }

    /// Stops every lab server recorded in `pids`.
    public func down() {
        stop(Array(pids().keys))
    }

    /// The database backup of `day`: 8 KiB pages; each later day rewrites 1% of the pages at
    /// scattered places, as a day of use would. Settings and meeting files change a little too.
    public func writeBackups(day: Int, databaseMiB: Int = 32) throws {
        let www = try directory.directory("www")
        for sub in ["backups", "exports", "meetings"] { _ = try directory.directory("www/\(sub)") }
        let pages = databaseMiB * 128
        let path = www + "/backups/rtc.bak"
        var data = Self.firstDayDatabase(pages: pages)
        if day > 1 {
            var changes = SplitMix(seed: UInt64(day) * 7919)
            for _ in 0..<(pages / 100 * (day - 1)) {
                let page = Int(changes.next() % UInt64(pages))
                data.withUnsafeMutableBytes { raw in
                    let words = raw.bindMemory(to: UInt64.self)
                    for w in 0..<1024 { words[page * 1024 + w] = changes.next() }
                }
            }
        }
        try data.write(to: URL(fileURLWithPath: path + ".tmp"))
        try FileManager.default.moveItem(atPath: path + ".tmp", toPath: path, replacing: true)
        try directory.write(
            "www/exports/lcscmd-settings.xml",
            "<settings pool=\"pool01.lab.test\" day=\"\(day)\"><global/><pool/><computer/></settings>\n")
        try directory.write(
            "www/meetings/content.tar", String(repeating: "meeting content of day \(day)\n", count: 2000))
        try directory.write("www/meetings/compliance.log", "compliance log, day \(day)\n")
    }

    /// The database of day 1: `pages` pages of 8 KiB from a fixed seed.
    static func firstDayDatabase(pages: Int) -> Data {
        var generator = SplitMix(seed: 1)
        var data = Data(count: pages * 8192)
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = generator.next() }
        }
        return data
    }

    /// The lab's stand-in for SQL Server's `RESTORE VERIFYONLY`: a database backup of this lab is
    /// a whole, non-empty number of 8 KiB pages, and each day rewrites at most 1% of them, so at
    /// least half the pages must still be day 1's. Answers the summary, or throws naming the file.
    public static func verifyDatabaseBackup(at path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LabError(.setupFailed, "\(path): cannot read the database backup")
        }
        guard !data.isEmpty, data.count % 8192 == 0 else {
            throw LabError(.setupFailed, "\(path): \(data.count) bytes is not a whole number of 8 KiB pages")
        }
        let pages = data.count / 8192
        let original = firstDayDatabase(pages: pages)
        var changed = 0
        for page in 0..<pages where data[page * 8192..<(page + 1) * 8192] != original[page * 8192..<(page + 1) * 8192] {
            changed += 1
        }
        guard changed * 2 <= pages else {
            throw LabError(
                .setupFailed, "\(path): \(changed) of \(pages) pages are not this lab's database: not a backup of it")
        }
        return "\(path): a database backup of \(pages) pages of 8 KiB, \(changed) rewritten since day 1"
    }

    // MARK: The pid file

    func pids() -> [String: pid_t] {
        guard let text = try? String(contentsOfFile: directory.file("pids"), encoding: .utf8) else { return [:] }
        var out: [String: pid_t] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let pid = pid_t(parts[1]) { out[String(parts[0])] = pid }
        }
        return out
    }

    func record(_ name: String, _ process: ServerProcess) throws {
        process.detach()
        var all = pids()
        all[name] = process.pid
        try directory.write("pids", all.map { "\($0.key) \($0.value)" }.sorted().joined(separator: "\n") + "\n")
    }

    func stop(_ names: [String]) {
        var all = pids()
        for name in names {
            guard let pid = all[name] else { continue }
            kill(-pid, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline && kill(pid, 0) == 0 { usleep(20_000) }
            kill(-pid, SIGKILL)
            all[name] = nil
        }
        try? directory.write("pids", all.map { "\($0.key) \($0.value)" }.sorted().joined(separator: "\n") + "\n")
    }
}

/// A small, fast, reproducible generator for lab data (not for anything secret).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension FileManager {
    func moveItem(atPath source: String, toPath destination: String, replacing: Bool) throws {
        if rename(source, destination) != 0 {
            throw LabError(
                .setupFailed, "cannot rename \(source) to \(destination): \(String(cString: strerror(errno)))")
        }
    }
}
