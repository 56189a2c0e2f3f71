import ArgumentParser
import Foundation
import Logging
import StandbyLab
import StandbyReplication
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#endif

/// `standby-bench replication --size 1GiB`: a database-like backup of 8 KiB pages served by
/// nginx on loopback, replicated by Standby, copied by `cp` + `sync` and by rsync (daemon on
/// loopback); then the next day's backup with 1% of its pages rewritten at scattered places,
/// replicated with a published chunk index against `rsync --no-whole-file` (its day-1 copy in
/// the page cache, and evicted; Standby's store evicted). Each contender runs as a child
/// process, so its peak memory is its own (getrusage of the child).
///
/// `--link 40ms,100Mbit` puts a `LinkShaper` (RTT, rate per direction) in front of nginx and of
/// the rsync daemon, so every contender that crosses the network crosses the same link; bytes on
/// the wire are then the shaper's count of both directions. `cp` and the SHA-256 floor are local.
struct ReplicationBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication",
        abstract: "Full and day-2 replication against cp + sync and rsync over loopback.")

    @Option(help: "Size of the generated backup (e.g. 1GiB, 256MiB).")
    var size: String = "1GiB"

    @Option(help: "Share of 8 KiB pages rewritten for day 2, in percent.")
    var changedPercent: Double = 1

    @Option(help: "Directory for the generated data (default: a new directory under /tmp).")
    var workDirectory: String?

    @Flag(help: "Keep the generated data.")
    var keep = false

    @Option(
        help: """
            A shaped link between the secondary and the primary's servers: RTT[,RATE], e.g. 40ms,100Mbit \
            or 80ms,1Gbit (0ms: through the shaper with no delay and no cap, to count its bytes).
            """)
    var link: String?

    @Option(help: "Run Standby's day 2 this many more times, each from the store as day 1 left it.")
    var dayTwoRepeats = 0

    func run() async throws {
        guard let bytes = parseSize(size), bytes >= 8192 else {
            throw ValidationError("cannot read the size \(size) (try 1GiB, 512MiB)")
        }
        let shaping = try link.map { text in
            guard let parsed = LinkShaper.Link(parsing: text) else {
                throw ValidationError("cannot read the link \(text) (try 40ms,100Mbit or 80ms,1Gbit)")
            }
            return parsed
        }
        let pages = Int(bytes / 8192)
        let lab: LabDirectory
        if let workDirectory {
            setenv("TMPDIR", workDirectory, 1)
        }
        lab = try LabDirectory(prefix: "standby-bench-replication")
        defer { if !keep { lab.remove() } }
        let www = try lab.directory("www")
        let source = www + "/db.bak"
        print("Generating \(pages) pages of 8 KiB (\(formatBytes(Int64(pages) * 8192))) in \(lab.path)")
        try generateDatabase(source, pages: pages)
        setTime(source, 1_700_000_000)

        let nginx = try NginxServer.start(in: lab, serving: www)
        defer { nginx.stop() }
        let rsyncd = try RsyncDaemon.start(in: lab, serving: www)
        defer { rsyncd.stop() }
        let httpLink = try shaping.map { try LinkShaper.start(link: $0, port: nginx.port) }
        defer { httpLink?.stop() }
        let rsyncLink = try shaping.map { try LinkShaper.start(link: $0, port: rsyncd.port) }
        defer { rsyncLink?.stop() }
        let url = httpLink.flatMap { URL(string: "http://127.0.0.1:\($0.port)/db.bak") } ?? nginx.url("db.bak")
        let rsyncURL = "rsync://127.0.0.1:\(rsyncLink?.port ?? rsyncd.port)/backups/db.bak"
        if let shaping, let httpLink, let rsyncLink {
            print("Link: \(shaping), nginx and rsyncd each behind a shaper (ports \(httpLink.port), \(rsyncLink.port))")
        } else {
            print("Link: none (loopback, straight to the servers)")
        }

        /// Runs a contender; on a shaped link its wire bytes are the shaper's (both directions),
        /// and an HTTP contender's requests are the lines it added to nginx's access log.
        func networked(http: Bool, _ body: () throws -> Measurement) throws -> Measurement {
            let shaper = http ? httpLink : rsyncLink
            let before = shaper?.counters
            let linesBefore = accessLogLines(nginx)
            var m = try body()
            if let shaper, let before {
                let used = shaper.counters - before
                m.wireBytes = used.total
                m.wireUp = used.bytesUp
                m.connections = used.connections
            }
            if http {
                // nginx logs a request once its response has gone out: give the last one time.
                usleep(100_000)
                m.requests = accessLogLines(nginx) - linesBefore
            }
            return m
        }

        var rows: [(String, Measurement)] = []
        func record(_ name: String, _ m: Measurement) {
            rows.append((name, m))
            let wire = m.wireBytes.map(formatBytes) ?? "-"
            var extra = ""
            if let up = m.wireUp { extra += "   of it up " + formatBytes(up) }
            if let requests = m.requests { extra += "   requests \(requests)" }
            if let connections = m.connections { extra += "   connections \(connections)" }
            print(
                "  " + name.padding(toLength: 40, withPad: " ", startingAt: 0)
                    + String(format: "%8.2f s", m.seconds) + "   wire "
                    + wire.padding(toLength: 12, withPad: " ", startingAt: 0)
                    + "   peak memory "
                    + (m.peakRSS > 0 ? formatBytes(m.peakRSS) : "-").padding(
                        toLength: 9, withPad: " ", startingAt: 0) + extra)
        }

        print("Day 1: full copy")
        let cpTarget = try lab.directory("cp")
        record(
            "cp + sync", try measure(["/bin/sh", "-c", "cp \"$0\" \"$1\" && sync", source, cpTarget + "/db.bak"]))
        let rsyncTarget = try lab.directory("rsync")
        let rsyncFull = try networked(http: false) {
            try measure(
                [try Programs.locate("rsync", package: "rsync"), "--stats", rsyncURL, rsyncTarget + "/db.bak"],
                statsOut: lab.file("rsync-full.txt"))
        }
        record("rsync (daemon, loopback)", rsyncFull)
        // rsync leaves its copy in the page cache; with a sync after it, it is as durable as
        // Standby's fsynced packs and cp + sync.
        let rsyncSyncTarget = try lab.directory("rsync-sync")
        let rsyncDurable = try networked(http: false) {
            try measure(
                [
                    "/bin/sh", "-c", "\"$0\" --stats \"$1\" \"$2\" && sync",
                    try Programs.locate("rsync", package: "rsync"), rsyncURL, rsyncSyncTarget + "/db.bak",
                ], statsOut: lab.file("rsync-full-sync.txt"))
        }
        record("rsync + sync", rsyncDurable)
        // The extra copies are not needed again: give their disk space back (a 10 GiB run).
        try? FileManager.default.removeItem(atPath: cpTarget)
        try? FileManager.default.removeItem(atPath: rsyncSyncTarget)
        let store = lab.file("store")
        let full = try networked(http: true) {
            try measureStandby(store: store, url: url, useIndex: false, result: lab.file("full.json"))
        }
        record("standby replicate (no index)", full)
        // Not contenders: what any replication over HTTP that names its chunks by SHA-256 pays
        // at least, on this machine. The transfer alone, and one SHA-256 pass with Standby's own
        // kernel on one thread, the file read from the page cache.
        print("Floors of a full replication (not contenders)")
        let curlAlone = try networked(http: true) {
            try measure([
                try Programs.locate("curl", package: "curl"), "--silent", "--fail", "--output", "/dev/null",
                url.absoluteString,
            ])
        }
        record("curl to /dev/null (the transfer alone)", curlAlone)
        let sha = try measureSHA256(source)
        record("one SHA-256 pass, one thread", sha)

        print("Day 2: \(changedPercent)% of pages rewritten at scattered places")
        let changed = try rewritePages(source, percent: changedPercent)
        setTime(source, 1_700_086_400)
        print("  rewrote \(changed) pages")
        let publishStart = ContinuousClock.now
        let published = try Publisher.publishFile(
            source, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        let publishTime = ContinuousClock.now - publishStart
        print(
            "  standby publish at the primary: \(formatDuration(publishTime)), index \(formatBytes(published.indexBytes)) for \(published.chunkCount) chunks"
        )
        // rsync twice, on two copies of its day-1 file: once with the copy in the page cache
        // (as right after day 1), once with it evicted, as a day later may find it. Standby's
        // store is evicted too (its packs were written past the page cache anyway, and its
        // catalog); the source stays as the backup job left it, in the primary's cache.
        let rsyncWarmTarget = try lab.directory("rsync-warm")
        try FileManager.default.copyItem(atPath: rsyncTarget + "/db.bak", toPath: rsyncWarmTarget + "/db.bak")
        let rsync = try Programs.locate("rsync", package: "rsync")
        let rsyncWarm = try networked(http: false) {
            try measure(
                [rsync, "--no-whole-file", "--stats", rsyncURL, rsyncWarmTarget + "/db.bak"],
                statsOut: lab.file("rsync-delta-warm.txt"))
        }
        record("rsync --no-whole-file (basis cached)", rsyncWarm)
        try? FileManager.default.removeItem(atPath: rsyncWarmTarget)
        try evict(rsyncTarget + "/db.bak")
        let rsyncDelta = try networked(http: false) {
            try measure(
                [rsync, "--no-whole-file", "--stats", rsyncURL, rsyncTarget + "/db.bak"],
                statsOut: lab.file("rsync-delta.txt"))
        }
        record("rsync --no-whole-file (basis evicted)", rsyncDelta)
        let dayOne = lab.file("store-day1")
        if dayTwoRepeats > 0 { try copyTree(store, to: dayOne) }
        try evictTree(store)
        let delta = try networked(http: true) {
            try measureStandby(store: store, url: url, useIndex: true, result: lab.file("delta.json"))
        }
        record("standby replicate (published index)", delta)
        for round in 0..<dayTwoRepeats {
            try FileManager.default.removeItem(atPath: store)
            try copyTree(dayOne, to: store)
            try evictTree(store)
            let again = try networked(http: true) {
                try measureStandby(store: store, url: url, useIndex: true, result: lab.file("delta-\(round).json"))
            }
            record("standby replicate (published index), again", again)
        }

        print("")
        print(
            "Summary (\(formatBytes(Int64(pages) * 8192)), \(changedPercent)% of pages rewritten, link: "
                + "\(shaping?.description ?? "none")):")
        let cp = rows[0].1
        print(
            String(
                format:
                    "  full:  standby %.2f s vs cp+sync %.2f s (%.2fx), rsync %.2f s (%.2fx), rsync+sync %.2f s (%.2fx)",
                full.seconds, cp.seconds, full.seconds / cp.seconds, rsyncFull.seconds,
                full.seconds / rsyncFull.seconds, rsyncDurable.seconds, full.seconds / rsyncDurable.seconds))
        print(
            String(
                format:
                    "  day 2: standby %.2f s, %@ vs rsync %.2f s (basis cached; %.2fx) / %.2f s (basis evicted; %.2fx), %@ (bytes %.2fx)",
                delta.seconds, formatBytes(delta.wireBytes ?? 0) as NSString, rsyncWarm.seconds,
                delta.seconds / rsyncWarm.seconds, rsyncDelta.seconds, delta.seconds / rsyncDelta.seconds,
                formatBytes(rsyncDelta.wireBytes ?? 0) as NSString,
                Double(delta.wireBytes ?? 0) / Double(max(1, rsyncDelta.wireBytes ?? 1))))
        print("  peak memory: standby full \(formatBytes(full.peakRSS)), day 2 \(formatBytes(delta.peakRSS))")
        print(
            String(
                format:
                    "  floors: transfer alone %.2f s (%.2fx rsync), one SHA-256 pass %.2f s (%.2fx rsync, %.2fx cp+sync)",
                curlAlone.seconds, curlAlone.seconds / rsyncFull.seconds, sha.seconds, sha.seconds / rsyncFull.seconds,
                sha.seconds / cp.seconds))
    }

    // MARK: - Data

    /// Pages that look like a database's: a header with page number and LSN, rows of mixed
    /// random and repetitive fields, and free space (zeros) at the end of some pages.
    func generateDatabase(_ path: String, pages: Int) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot create \(path)") }
        defer { close(fd) }
        var random = BenchRandom(state: 0x5EED)
        var block = [UInt8](repeating: 0, count: 128 * 8192)
        var page = 0
        while page < pages {
            let count = min(128, pages - page)
            for p in 0..<count {
                fillPage(&block, at: p * 8192, number: page + p, lsn: 1, random: &random)
            }
            let n = block.withUnsafeBytes { write(fd, $0.baseAddress, count * 8192) }
            guard n == count * 8192 else { throw ValidationError("cannot write \(path)") }
            page += count
        }
    }

    func fillPage(_ block: inout [UInt8], at base: Int, number: Int, lsn: UInt64, random: inout BenchRandom) {
        block.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(number).littleEndian, toByteOffset: base, as: UInt32.self)
            raw.storeBytes(of: lsn.littleEndian, toByteOffset: base + 4, as: UInt64.self)
            raw.storeBytes(of: random.next(), toByteOffset: base + 12, as: UInt64.self)
            // Pages are 70-100% full (fill factor), the rest is free space (zeros).
            let used = 8192 - Int(random.next() % 2458)
            var offset = base + 96
            let end = base + used
            while offset + 8 <= end {
                let word = random.next()
                // One word in four is a small integer or a repeated code, as rows hold.
                let value = (word & 3) == 0 ? (word >> 56) : word
                raw.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
            while offset < base + 8192 {
                raw[offset] = 0
                offset += 1
            }
        }
    }

    /// Rewrites `percent` of the pages, chosen at scattered places, in place.
    func rewritePages(_ path: String, percent: Double) throws -> Int {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        let pages = Int(lseek(fd, 0, SEEK_END)) / 8192
        let count = max(1, Int(Double(pages) * percent / 100))
        var random = BenchRandom(state: 0xDA42)
        var chosen = Set<Int>()
        while chosen.count < count { chosen.insert(Int(random.next() % UInt64(pages))) }
        var page = [UInt8](repeating: 0, count: 8192)
        for number in chosen.sorted() {
            fillPage(&page, at: 0, number: number, lsn: 2, random: &random)
            let n = page.withUnsafeBytes { pwrite(fd, $0.baseAddress, 8192, off_t(number * 8192)) }
            guard n == 8192 else { throw ValidationError("cannot write \(path)") }
        }
        fsync(fd)
        return count
    }

    /// Drops a file's pages from the page cache (written back first, so all of them go).
    func evict(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path) to evict it from the page cache") }
        defer { close(fd) }
        fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    /// A copy of a store (`cp -a`), for a contender to start again from the same state.
    func copyTree(_ from: String, to: String) throws {
        let copy = Process()
        copy.executableURL = URL(fileURLWithPath: "/bin/cp")
        copy.arguments = ["-a", from, to]
        try copy.run()
        copy.waitUntilExit()
        guard copy.terminationStatus == 0 else { throw ValidationError("cp -a \(from) \(to) failed") }
    }

    func evictTree(_ directory: String) throws {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return }
        while let relative = walker.nextObject() as? String {
            let path = directory + "/" + relative
            var info = stat()
            if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { try evict(path) }
        }
    }

    func setTime(_ path: String, _ seconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, path, &times, 0)
    }

    // MARK: - Measuring children

    /// One SHA-256 of the file with `StreamHasher` on this thread, after a read that brings the
    /// file into the page cache (so the disk is not what is measured).
    func measureSHA256(_ path: String) throws -> Measurement {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        func pass(_ body: (UnsafeRawBufferPointer) -> Void) throws {
            var offset: off_t = 0
            while true {
                let n = pread(fd, buffer.baseAddress, buffer.count, offset)
                guard n >= 0 else { throw ValidationError("cannot read \(path)") }
                if n == 0 { return }
                body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                offset += off_t(n)
            }
        }
        try pass { _ in }
        settle()
        let started = ContinuousClock.now
        var hasher = StreamHasher()
        try pass { hasher.update($0) }
        _ = hasher.finalize()
        return Measurement(seconds: seconds(ContinuousClock.now - started), wireBytes: nil, peakRSS: 0)
    }

    struct Measurement {
        var seconds: Double
        var wireBytes: Int64?
        /// 0 where not measured (a pass in this process).
        var peakRSS: Int64
        /// Of `wireBytes`, what went from the secondary to the primary (on a shaped link).
        var wireUp: Int64? = nil
        /// HTTP requests nginx logged during the run.
        var requests: Int? = nil
        /// Connections through the link shaper.
        var connections: Int? = nil
    }

    /// Lines in nginx's access log: one per request served.
    func accessLogLines(_ nginx: NginxServer) -> Int {
        guard let data = FileManager.default.contents(atPath: nginx.accessLogPath) else { return 0 }
        return data.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
    }

    /// Runs a command as a child; wall time, its peak RSS, and rsync's "Total bytes received".
    func measure(_ argv: [String], statsOut: String? = nil) throws -> Measurement {
        let log = statsOut ?? "/dev/null"
        settle()
        let started = ContinuousClock.now
        let (status, peak) = try spawnAndWait(argv, output: log)
        let elapsed = ContinuousClock.now - started
        guard status == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ValidationError("\(argv.joined(separator: " ")) failed (status \(status)): \(text)")
        }
        var wire: Int64?
        if let statsOut, let text = try? String(contentsOfFile: statsOut, encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("Total bytes received:") {
                wire = Int64(line.dropFirst("Total bytes received:".count).filter(\.isNumber))
            }
        }
        return Measurement(seconds: seconds(elapsed), wireBytes: wire, peakRSS: peak)
    }

    func measureStandby(
        store: String, url: URL, useIndex: Bool, result: String, extra: [String] = []
    ) throws -> Measurement {
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var argv = [
            executable, "replication-worker", "--store", store, "--url", url.absoluteString, "--result", result,
        ]
        if !useIndex { argv.append("--no-index") }
        argv += extra
        // For profiling a replicate: STANDBY_BENCH_WRAP="strace -f -tt -o /tmp/trace" runs the
        // worker under that command.
        if let wrap = ProcessInfo.processInfo.environment["STANDBY_BENCH_WRAP"], !wrap.isEmpty {
            argv = wrap.split(separator: " ").map(String.init) + argv
        }
        settle()
        let started = ContinuousClock.now
        let (status, _) = try spawnAndWait(argv, output: result + ".log")
        let elapsed = ContinuousClock.now - started
        guard status == 0 else {
            let text = (try? String(contentsOfFile: result + ".log", encoding: .utf8)) ?? ""
            throw ValidationError("standby replicate failed: \(text)")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: result))
        let outcome = try JSONDecoder().decode(WorkerResult.self, from: data)
        return Measurement(seconds: seconds(elapsed), wireBytes: outcome.bytesReceived, peakRSS: outcome.peakRSS)
    }

    /// Before each contender, untimed: write out what the previous one left dirty, so that no
    /// contender's fsync or sync waits for another's data.
    func settle() {
        sync()
        usleep(200_000)
    }
}

/// What the worker child reports back.
struct WorkerResult: Codable {
    var bytesReceived: Int64
    var newBytes: Int64
    var filesByIndex: Int
    var seconds: Double
    /// VmHWM of the worker: its own peak resident memory.
    var peakRSS: Int64
}

/// The replicate run of the benchmark, in a child process of its own so that its peak memory
/// is measured alone.
struct ReplicationWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication-worker", abstract: "One replicate for the replication benchmark.",
        shouldDisplay: false)

    @Option var store: String
    @Option var url: String
    @Option var result: String
    @Flag var noIndex = false
    @Option(help: "smb.encrypt for an smb:// URL: required, desired or off.")
    var smbEncrypt: String = "desired"

    func run() async throws {
        guard let source = URL(string: url) else { throw ValidationError("bad URL \(url)") }
        guard let encryption = SMBOptions.Encryption(rawValue: smbEncrypt) else {
            throw ValidationError("--smb-encrypt is required, desired or off, not \(smbEncrypt)")
        }
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let repository = try ReplicationStore.open(directory: store, logger: logger)
        // The source credentials as `standby replicate` takes them: STANDBY_SOURCE_USER/PASSWORD.
        let transport = TransportOptions(
            credentials: Credentials.fromEnvironment(prefix: "STANDBY_SOURCE"), smb: SMBOptions(encryption: encryption))
        let started = ContinuousClock.now
        let report = try await repository.replicate(
            set: SetSpec(name: "db", sources: [source]),
            options: ReplicateOptions(transport: transport, useIndex: !noIndex))
        let elapsed = ContinuousClock.now - started
        let outcome = WorkerResult(
            bytesReceived: report.bytesReceived, newBytes: report.version.newBytes, filesByIndex: report.filesByIndex,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            peakRSS: peakResidentMemory(pid: getpid()) ?? 0)
        try JSONEncoder().encode(outcome).write(to: URL(fileURLWithPath: result))
    }
}

/// rsync in daemon mode on a free loopback port, serving one read-only module `backups`.
struct RsyncDaemon {
    let port: UInt16
    let process: ServerProcess

    static func start(in lab: LabDirectory, serving path: String) throws -> RsyncDaemon {
        let rsync = try Programs.locate("rsync", package: "rsync")
        let dir = try lab.directory("rsyncd")
        let port = try Ports.free()
        let identity = geteuid() == 0 ? "uid = root\ngid = root\n" : ""
        let config = """
            pid file = \(dir)/rsyncd.pid
            use chroot = no
            log file = \(dir)/rsyncd.log
            \(identity)
            [backups]
            path = \(path)
            read only = yes
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/rsyncd.conf"))
        let process = try ServerProcess.spawn(
            name: "rsync", executable: rsync,
            arguments: [
                "--daemon", "--no-detach", "--config=\(dir)/rsyncd.conf", "--port=\(port)", "--address=127.0.0.1",
            ], logPath: dir + "/stderr.log")
        try Ports.waitForTCP("127.0.0.1", port, server: "rsync --daemon")
        return RsyncDaemon(port: port, process: process)
    }

    func stop() { process.stop() }
}

struct BenchRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// VmHWM (peak resident set) of a process, from /proc. getrusage's ru_maxrss is no use for a
/// child started with posix_spawn: Linux counts the parent's memory in it (vfork shares the mm).
func peakResidentMemory(pid: pid_t) -> Int64? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Int64(line.filter(\.isNumber)).map { $0 * 1024 }
    }
    return nil
}

/// Runs `argv` with stdout and stderr to `output`; returns its exit status and its peak
/// resident memory (polled from /proc while it runs).
func spawnAndWait(_ argv: [String], output: String) throws -> (Int32, Int64) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
    guard spawned == 0 else {
        throw ValidationError("cannot run \(argv[0]): \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    var peak: Int64 = 0
    while true {
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { break }
        if result < 0 && errno != EINTR { break }
        if let now = peakResidentMemory(pid: pid) { peak = max(peak, now) }
        usleep(5_000)
    }
    let exited = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exited, peak)
}

func parseSize(_ text: String) -> Int64? {
    let units: [(String, Int64)] = [
        ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20),
    ]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        return Double(text.dropLast(suffix.count)).map { Int64($0 * Double(factor)) }
    }
    return Int64(text)
}

func formatBytes(_ bytes: Int64) -> String {
    let value = Double(bytes)
    if bytes >= 1 << 30 { return String(format: "%.2f GiB", value / 1_073_741_824) }
    if bytes >= 1 << 20 { return String(format: "%.1f MB", value / 1e6) }
    if bytes >= 1 << 10 { return String(format: "%.1f KB", value / 1e3) }
    return "\(bytes) B"
}

func formatDuration(_ d: Duration) -> String {
    String(format: "%.2f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
}
