import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The loopback lab of sites/lab (BIND + Knot for lab.test, nginx with the primary's backups,
/// kamailio front ends), started by the real `standby-lab`, driven by the real `standby`.
struct LabRun {
    let lab: LabDirectory
    let standby: StandbyRunner
    let site: String
    let state: String
    let environment: [String: String]
    let labBinary: String
    let httpPort: UInt16
    let dnsPorts: [UInt16]
    /// lab.test on BIND and Knot, or ad.lab.test on the Samba AD domain controller and BIND (DLZ)
    /// serving the same zone (sites/lab-ad).
    var zone = "lab.test"

    /// Two ports in a row (`port`, `port + 1`) free for TCP and UDP: BIND and Knot, SIP over
    /// UDP/TCP and TLS take pairs.
    static func freePair(on address: String) throws -> UInt16 {
        for _ in 0..<50 {
            let port = try Ports.free(on: address)
            guard port < UInt16.max else { continue }
            let both = [port, port + 1].allSatisfy { candidate in
                [Int32(SOCK_STREAM.rawValue), Int32(SOCK_DGRAM.rawValue)].allSatisfy {
                    Ports.canBind(address: address, port: candidate, type: $0)
                }
            }
            if both { return port }
        }
        throw LabError(.setupFailed, "no two free ports in a row on \(address)")
    }

    /// Starts the lab on fresh ports; another test grabbing a port in between is retried.
    static func start(prefix: String, activeDirectory: Bool = false) async throws -> LabRun {
        var failure: (any Error)?
        for _ in 0..<3 {
            do {
                return try await startOnce(prefix: prefix, activeDirectory: activeDirectory)
            } catch {
                failure = error
            }
        }
        throw failure ?? LabError(.setupFailed, "the lab did not start")
    }

    static func startOnce(prefix: String, activeDirectory: Bool = false) async throws -> LabRun {
        let lab = try LabDirectory(prefix: prefix)
        let standby = try StandbyRunner.locate()
        let labBinary = ((standby.path as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("standby-lab")
        guard FileManager.default.isExecutableFile(atPath: labBinary) else {
            throw LabError(.missingProgram, "standby-lab is not built beside \(standby.path)")
        }
        let dns = try freePair(on: "127.0.0.1")
        let http = try Ports.free(on: "127.0.1.20")
        let sip = try freePair(on: "127.0.1.10")
        let environment = [
            "STANDBY_LAB_DIR": lab.path, "STANDBY_LAB_DNS_PORT": "\(dns)", "STANDBY_LAB_DNS2_PORT": "\(dns + 1)",
            "STANDBY_LAB_HTTP_PORT": "\(http)", "STANDBY_LAB_SIP_PORT": "\(sip)", "STANDBY_LAB_BIN": labBinary,
        ]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var run = LabRun(
            lab: lab, standby: standby,
            site: root.appendingPathComponent(activeDirectory ? "sites/lab-ad" : "sites/lab").path,
            state: lab.file("state"), environment: environment, labBinary: labBinary, httpPort: http,
            dnsPorts: [dns, dns + 1])
        if activeDirectory { run.zone = "ad.lab.test" }
        let up = try await run.labCommand(activeDirectory ? ["up", "--ad"] : ["up"])
        guard up.status == 0 else {
            await run.down()
            throw LabError(.setupFailed, "standby-lab up failed: \(up)")
        }
        return run
    }

    /// Starts the lab, runs `body`, and stops every lab server whatever happened.
    static func with(prefix: String, activeDirectory: Bool = false, _ body: (LabRun) async throws -> Void)
        async throws
    {
        let lab = try await start(prefix: prefix, activeDirectory: activeDirectory)
        do {
            try await body(lab)
        } catch {
            await lab.down()
            throw error
        }
        await lab.down()
    }

    func labCommand(_ arguments: [String]) async throws -> StandbyRunner.Result {
        let args = [arguments[0]] + Array(arguments.dropFirst()) + ["--dir", lab.path]
        return try await StandbyRunner(path: labBinary).run(args, environment: environment, in: lab)
    }

    func standby(_ verb: String, _ arguments: [String] = [], environment extra: [String: String] = [:])
        async throws -> StandbyRunner.Result
    {
        try await standby.run(
            [verb, site, "--state", state] + arguments, environment: environment.merging(extra) { _, new in new },
            in: lab)
    }

    func down() async {
        _ = try? await labCommand(["down"])
        lab.remove()
    }

    /// What each authoritative server answers for both SRV names, with `dig`.
    func dig() throws -> [String] {
        var answers: [String] = []
        for port in dnsPorts {
            for name in ["_sipinternaltls._tcp.\(zone)", "_sip._tcp.\(zone)"] {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: try Programs.locate("dig", package: "bind9-dnsutils"))
                process.arguments = ["+short", "+norec", "@127.0.0.1", "-p", "\(port)", name, "SRV"]
                let pipe = Pipe()
                process.standardOutput = pipe
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                answers.append(
                    "\(port) \(name) \(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))"
                )
            }
        }
        return answers
    }

    /// Every probe's result (up, unreachable, ...) from `standby health --json`.
    func probes() async throws -> [String: String] {
        let health = try await standby("health", ["--json"])
        let object = try JSONSerialization.jsonObject(with: Data(health.stdout.utf8)) as? [String: Any]
        var out: [String: String] = [:]
        for line in object?["results"] as? [[String: Any]] ?? [] {
            if let probe = line["probe"] as? String, let result = line["result"] as? String { out[probe] = result }
        }
        return out
    }

    /// Polls until every authoritative server answers `values` for _sipinternaltls (Knot gets
    /// the zone by transfer after NOTIFY).
    func waitForDNS(containing text: String, count: Int) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let answers = try dig()
            if answers.filter({ $0.contains(text) }).count == count || ContinuousClock.now > deadline {
                return answers
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// Inside both off-peak windows (lab-east 20:00-06:00 New York, lab-west 22:00-05:00 Dublin),
/// so optional services run at once on failover and on failback.
let bothOffPeak = "2026-11-26T03:00:00Z"

@Suite("standby drill and failback on the lab", .tags(.server), .serialized)
struct DrillFailbackLabTests {
    @Test("a drill restores and verifies every set and leaves production DNS and services untouched")
    func drillTouchesNothing() async throws {
        try await LabRun.with(prefix: "drill-lab") { lab in
            let replicated = try await lab.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")
            let dnsBefore = try lab.dig()
            let probesBefore = try await lab.probes()
            #expect(probesBefore["fe-sip"] == "up", "\(probesBefore)")
            #expect(probesBefore["fe-sip-secondary"] != "up", "\(probesBefore)")

            let drill = try await lab.standby("drill", ["--lead", "alice"])
            #expect(drill.status == 0, "\(drill)")
            #expect(drill.stdout.contains("passed"), "\(drill)")
            #expect(drill.stdout.contains("rtc-db: version"), "\(drill)")
            #expect(drill.stdout.contains("core/check-database: succeeded"), "\(drill)")
            #expect(drill.stdout.contains("hold the primary values; nothing changed"), "\(drill)")
            // That check is a real one: the lab's stand-in for RESTORE VERIFYONLY refuses a cut
            // or a foreign file, naming it.
            let verifier = StandbyRunner(path: lab.labBinary)
            let backup = lab.lab.file("www/backups/rtc.bak")
            let sound = try await verifier.run(["verify-backup", backup], in: lab.lab)
            #expect(sound.status == 0 && sound.stdout.contains("pages of 8 KiB, 0 rewritten"), "\(sound)")
            let cut = lab.lab.file("cut.bak")
            try Data(try Data(contentsOf: URL(fileURLWithPath: backup)).prefix(100_000))
                .write(to: URL(fileURLWithPath: cut))
            let refused = try await verifier.run(["verify-backup", cut], in: lab.lab)
            #expect(
                refused.status == 1 && refused.stderr.contains("\(cut): 100000 bytes is not a whole number of 8 KiB"),
                "\(refused)")
            let foreign = lab.lab.file("foreign.bak")
            try Data((0..<(16 * 8192)).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(
                to: URL(fileURLWithPath: foreign))
            let notOurs = try await verifier.run(["verify-backup", foreign], in: lab.lab)
            #expect(notOurs.status == 1 && notOurs.stderr.contains("16 of 16 pages are not this lab's"), "\(notOurs)")

            #expect(try lab.dig() == dnsBefore)
            #expect(try await lab.probes() == probesBefore)
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: lab.state + "/drills")) ?? []
            #expect(leftovers.isEmpty, "the drill directory is removed: \(leftovers)")
            #expect(!FileManager.default.fileExists(atPath: lab.lab.file("secondary/rtc.bak")))

            let report = try await lab.standby("report", ["--drill", "last", "--json"])
            #expect(report.status == 0, "\(report)")
            let object = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
            let record = object?["drill"] as? [String: Any]
            #expect(record?["succeeded"] as? Bool == true, "\(report)")
            #expect(record?["lead"] as? String == "alice")
            #expect((object?["stages"] as? [Any])?.count == 4, "restore, steps, dns-check, cleanup: \(report)")
        }
    }

    @Test("a drill killed half-way is cleaned up and recorded as abandoned by the next")
    func killedDrillCleanedUp() async throws {
        try await LabRun.with(prefix: "drill-kill") { lab in
            let replicated = try await lab.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")

            let killed = try await lab.standby(
                "drill", ["--lead", "bob"], environment: ["STANDBY_KILL_AT": "core/check-database:before"])
            #expect(killed.signal == SIGKILL, "\(killed)")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: lab.state + "/drills")
            #expect(leftovers.count == 1, "the killed drill left its directory: \(leftovers)")

            let next = try await lab.standby("drill", ["--lead", "alice"])
            #expect(next.status == 0, "\(next)")
            #expect(next.stdout.contains("marked abandoned, directory removed"), "\(next)")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: lab.state + "/drills")) ?? []).isEmpty)

            let first = try await lab.standby("report", ["--drill", "1"])
            #expect(first.stdout.contains("FAILED") && first.stdout.contains("abandoned"), "\(first)")
            let second = try await lab.standby("report", ["--drill", "last"])
            #expect(second.stdout.contains("passed"), "\(second)")
        }
    }

    @Test("failover then failback ends with DNS and services as they started; refused while the primary is down")
    func failoverThenFailback() async throws {
        try await LabRun.with(prefix: "failback-lab") { lab in
            let replicated = try await lab.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")
            let dnsBefore = try lab.dig()
            #expect(
                dnsBefore.allSatisfy { $0.contains("pool01.lab.test.") || $0.contains("sip.lab.test.") }, "\(dnsBefore)"
            )
            let probesBefore = try await lab.probes()

            let nothing = try await lab.standby("failback", ["--lead", "alice", "--yes"])
            #expect(nothing.status == 3, "no failover to return from: \(nothing)")
            #expect(nothing.stderr.contains("no completed failover"), "\(nothing)")

            _ = try await lab.labCommand(["lose-primary"])
            let failover = try await lab.standby(
                "failover", ["--declare", "lab-east flooded", "--lead", "alice", "--yes", "--now", bothOffPeak])
            #expect(failover.status == 0, "\(failover)")
            let moved = try await lab.waitForDNS(containing: "pool02-dr.lab.test.", count: 2)
            #expect(moved.filter { $0.contains("pool02-dr.lab.test.") }.count == 2, "\(moved)")

            let refused = try await lab.standby("failback", ["--lead", "alice", "--yes", "--now", bothOffPeak])
            #expect(refused.status == 3, "\(refused)")
            #expect(refused.stderr.contains("fe-sip") && refused.stderr.contains("backups-http"), "\(refused)")
            #expect(try lab.dig() == moved, "a refused failback changes nothing")

            // The primary is rebuilt: its backup source and front end are back.
            let nginx = try NginxServer.start(
                in: lab.lab, serving: lab.lab.directory("www"), host: "127.0.1.20", port: lab.httpPort)
            defer { nginx.stop() }
            let frontEnd = try await lab.labCommand(["frontend", "start", "--site", "primary"])
            #expect(frontEnd.status == 0, "\(frontEnd)")

            let failback = try await lab.standby(
                "failback", ["--lead", "bob", "--yes", "--reason", "lab-east rebuilt", "--now", bothOffPeak])
            #expect(failback.status == 0, "\(failback)")
            #expect(failback.stdout.contains("Reverse replication: rtc-db"), "\(failback)")
            // Conferencing has no failback_steps: the plan says so rather than a bare header.
            #expect(
                failback.stdout.contains("Optional services (off-peak at lab-east) — nothing to run"), "\(failback)")
            #expect(failback.stdout.contains("(no failback_steps: nothing to move back)"), "\(failback)")
            #expect(failback.stdout.contains("No reverse replication: lcscmd-settings"), "\(failback)")
            #expect(failback.stdout.contains("reverse/rtc-db: succeeded"), "\(failback)")
            #expect(failback.stdout.contains("final/rtc-db: succeeded"), "\(failback)")

            let back = try await lab.waitForDNS(containing: "pool01.lab.test.", count: 2)
            #expect(back == dnsBefore, "DNS as it started")
            let probesAfter = try await lab.probes()
            #expect(probesAfter["fe-sip"] == "up", "\(probesAfter)")
            #expect(probesAfter["fe-sip-secondary"] == probesBefore["fe-sip-secondary"], "\(probesAfter)")
            #expect(probesAfter == probesBefore, "services as they started")

            let report = try await lab.standby("report", ["--json"])
            let object = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
            let run = object?["run"] as? [String: Any]
            #expect(run?["direction"] as? String == "failback", "\(report)")
            #expect(run?["state"] as? String == "done", "\(report)")
            #expect(run?["returnsFrom"] is String, "\(report)")
            // What came back and what did not: rtc-db by its final pass, the others stay behind.
            let sets = (object?["sets"] as? [[String: Any]]) ?? []
            let rtc = sets.first { $0["name"] as? String == "rtc-db" }
            #expect(rtc?["version"] is String && rtc?["capturedAt"] != nil && rtc?["problem"] == nil, "\(sets)")
            let settings = sets.first { $0["name"] as? String == "lcscmd-settings" }
            #expect((settings?["problem"] as? String)?.contains("no failback_source") == true, "\(sets)")
            let text = try await lab.standby("report")
            #expect(text.stdout.contains("Backup sets moved back"), "\(text)")
            #expect(
                text.stdout.contains("lcscmd-settings          not moved back (no failback_source"), "\(text)")
            let html = lab.lab.file("failback.html")
            let page = try await lab.standby("report", ["--html", html])
            #expect(page.status == 0, "\(page)")
            let markup = try String(contentsOfFile: html, encoding: .utf8)
            #expect(markup.contains("<h2>Backup sets moved back</h2>"))
            #expect(markup.contains("no failback_source: what the secondary changed"))
            let finalVersion = try #require(rtc?["version"] as? String)
            #expect(markup.contains("<td>rtc-db</td><td>yes</td><td>\(finalVersion)</td>"), "\(markup)")
            #expect(text.stdout.contains("rtc-db                   version \(finalVersion) captured"), "\(text)")

            let again = try await lab.standby("failback", ["--lead", "bob", "--yes", "--now", bothOffPeak])
            #expect(again.status == 3, "already returned from that failover: \(again)")
        }
    }
}
