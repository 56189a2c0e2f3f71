import ArgumentParser
import Foundation
import Logging
import StandbyLab
import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `standby-bench smb --size 1GiB`: a database-like backup on a Samba share on loopback that
/// speaks SMB3 only and requires encryption (so both contenders encrypt), replicated by
/// Standby through libsmbclient, whole (day 1) and through a published index after 1% of its
/// pages were rewritten (day 2), against `smbclient -m SMB3 -c 'get ...'` of the same file in
/// the same run (to a file, then sync; and to /dev/null, the transfer alone). Bytes: the
/// payload smbd read for each contender (its own log of every SMB2 READ), and Standby's count
/// of what it received.
struct SMBBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smb", abstract: "Full and day-2 replication from an SMB3 share against smbclient get.")

    @Option(help: "Size of the generated backup (e.g. 1GiB, 256MiB).")
    var size: String = "1GiB"

    @Option(help: "Share of 8 KiB pages rewritten for each day 2, in percent.")
    var changedPercent: Double = 1

    @Option(help: "Rounds; each runs every contender once, a new store each round.")
    var rounds: Int = 3

    @Option(help: "Directory for the generated data (default: a new directory under /tmp).")
    var workDirectory: String?

    @Flag(help: "Keep the generated data.")
    var keep = false

    func run() async throws {
        guard let bytes = parseSize(size), bytes >= 8192 else {
            throw ValidationError("cannot read the size \(size) (try 1GiB, 512MiB)")
        }
        let pages = Int(bytes / 8192)
        if let workDirectory { setenv("TMPDIR", workDirectory, 1) }
        let lab = try LabDirectory(prefix: "standby-bench-smb")
        defer { if !keep { lab.remove() } }
        let smbd = try SambaServer.start(in: lab, dialects: .smb3Encrypted)
        defer { smbd.stop() }
        let replication = ReplicationBench()
        let source = smbd.root + "/db.bak"
        print("Generating \(pages) pages of 8 KiB (\(formatBytes(Int64(pages) * 8192))) on the share in \(lab.path)")
        try replication.generateDatabase(source, pages: pages)
        replication.setTime(source, 1_700_000_000)
        let fileSize = Int64(pages) * 8192
        let url = smbd.url("db.bak")
        // The worker reads the credentials as `standby replicate` does; smbclient from a 0600
        // file (-A), so no password is on a command line.
        setenv("STANDBY_SOURCE_USER", smbd.user, 1)
        setenv("STANDBY_SOURCE_PASSWORD", smbd.password, 1)
        let authFile = lab.file("smbclient.auth")
        try Data("username = \(smbd.user)\npassword = \(smbd.password)\ndomain = WORKGROUP\n".utf8).write(
            to: URL(fileURLWithPath: authFile))
        chmod(authFile, 0o600)
        let smbclient = try Programs.locate("smbclient", package: "smbclient")
        let served = { smbd.reads(of: "db.bak").reduce(Int64(0)) { $0 + $1.length } }

        func row(_ name: String, _ m: ReplicationBench.Measurement, read: Int64) {
            print(
                "  " + name.padding(toLength: 42, withPad: " ", startingAt: 0) + String(format: "%8.2f s", m.seconds)
                    + "   server read " + formatBytes(read).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + String(format: " (%5.1f%%)", Double(read) * 100 / Double(fileSize))
                    + (m.wireBytes.map { "   standby received " + formatBytes($0) } ?? "")
                    + (m.peakRSS > 0 ? "   peak memory " + formatBytes(m.peakRSS) : ""))
        }

        var fulls: [(standby: Double, smbclient: Double, floor: Double)] = []
        var deltas: [(seconds: Double, read: Int64)] = []
        for round in 1...rounds {
            print("Round \(round)")
            let getTarget = lab.file("smbclient-\(round).bak")
            var before = served()
            let get = try replication.measure([
                "/bin/sh", "-c", "\"$0\" -p \"$1\" //127.0.0.1/backups -A \"$2\" -m SMB3 -c \"get db.bak $3\" && sync",
                smbclient, "\(smbd.port)", authFile, getTarget,
            ])
            row("smbclient -m SMB3 get + sync", get, read: served() - before)
            try? FileManager.default.removeItem(atPath: getTarget)
            before = served()
            let floor = try replication.measure([
                smbclient, "-p", "\(smbd.port)", "//127.0.0.1/backups", "-A", authFile, "-m", "SMB3", "-c",
                "get db.bak /dev/null",
            ])
            row("smbclient -m SMB3 get to /dev/null", floor, read: served() - before)

            let store = lab.file("store-\(round)")
            before = served()
            let full = try replication.measureStandby(
                store: store, url: url, useIndex: false, result: lab.file("full-\(round).json"),
                extra: ["--smb-encrypt", "required"])
            row("standby replicate (day 1, whole)", full, read: served() - before)
            fulls.append((full.seconds, get.seconds, floor.seconds))

            let changed = try rewrite(source, percent: changedPercent, seed: UInt64(round), replication: replication)
            replication.setTime(source, 1_700_000_000 + 86_400 * round)
            _ = try Publisher.publishFile(source, logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
            try replication.evictTree(store)
            before = served()
            let delta = try replication.measureStandby(
                store: store, url: url, useIndex: true, result: lab.file("delta-\(round).json"),
                extra: ["--smb-encrypt", "required"])
            let deltaRead = served() - before
            row("standby replicate (day 2, index, \(changed) pages)", delta, read: deltaRead)
            deltas.append((delta.seconds, deltaRead))
            try? FileManager.default.removeItem(atPath: store)
        }

        print("")
        print(
            "Summary (\(formatBytes(fileSize)), SMB3 with encryption required, \(changedPercent)% of pages rewritten):")
        for (i, f) in fulls.enumerated() {
            print(
                String(
                    format:
                        "  round %d: full standby %.2f s vs smbclient get + sync %.2f s (%.2fx), to /dev/null %.2f s",
                    i + 1, f.standby, f.smbclient, f.standby / f.smbclient, f.floor))
        }
        for (i, d) in deltas.enumerated() {
            print(
                String(
                    format: "  round %d: day 2 standby %.2f s, the server read %@ (%.2f%% of the file)", i + 1,
                    d.seconds,
                    formatBytes(d.read) as NSString, Double(d.read) * 100 / Double(fileSize)))
        }
    }

    /// Rewrites `percent` of the pages at places chosen by `seed`.
    func rewrite(_ path: String, percent: Double, seed: UInt64, replication: ReplicationBench) throws -> Int {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        let pages = Int(lseek(fd, 0, SEEK_END)) / 8192
        let count = max(1, Int(Double(pages) * percent / 100))
        var random = BenchRandom(state: 0xDA42 &+ seed)
        var chosen = Set<Int>()
        while chosen.count < count { chosen.insert(Int(random.next() % UInt64(pages))) }
        var page = [UInt8](repeating: 0, count: 8192)
        for number in chosen.sorted() {
            replication.fillPage(&page, at: 0, number: number, lsn: 1 + seed, random: &random)
            let n = page.withUnsafeBytes { pwrite(fd, $0.baseAddress, 8192, off_t(number * 8192)) }
            guard n == 8192 else { throw ValidationError("cannot write \(path)") }
        }
        fsync(fd)
        return count
    }
}
