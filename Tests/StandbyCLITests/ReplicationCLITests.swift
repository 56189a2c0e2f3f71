import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// replicate, publish, verify and restore through the real `standby` binary, against nginx.
@Suite(.tags(.server)) struct ReplicationCLITests {
    /// A deployment with one backup set served by nginx. The primary's off-peak window is one
    /// minute at midnight, so at noon (`--now`) the transfer is capped at `peak_rate`.
    struct ReplicationSite {
        let lab: LabDirectory
        let nginx: NginxServer
        let source: String
        let state: String
        let content: Data
        static let noon = "--now=2026-11-25T12:00:00Z"
        static let midnight = "--now=2026-11-25T00:00:30Z"

        init(megabytes: Int, peakRate: String = "8MB/s") throws {
            lab = try LabDirectory(prefix: "standby-cli-repl")
            nginx = try NginxServer.start(in: lab)
            source = nginx.root + "/db.bak"
            state = lab.file("state")
            let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
            content = random.readData(ofLength: megabytes << 20)
            try random.close()
            try content.write(to: URL(fileURLWithPath: source))
            var site = SiteYAML(deployment: "repltest", domain: "example.test")
            site.primary.offPeak = ["00:00-00:01"]
            site.secondary.pool = "pool02.example.test"
            site.secondary.offPeak = []
            site.replication = ["peak_rate: \(peakRate)"]
            site.backupSets = [
                "{ name: sql, kind: database, source: \"\(nginx.url("db.bak").absoluteString)\", schedule: { every: 4h }, rpo: 24h, keep: { last: 3 } }"
            ]
            site.services = [
                SiteYAML.service(
                    "core", steps: ["{ restore: sql, to: \(lab.file("restore")) }"], extra: ["backup_sets: [sql]"])
            ]
            site.incidentLeads = ["alice", "bob"]
            try site.write(in: lab)
        }

        var site: String { lab.file("site") }
        var packs: String { state + "/store/packs" }

        func stop() {
            nginx.stop()
            lab.remove()
        }

        /// Largest file in the store's pack directory matching `suffix`.
        func largestPack(suffix: String) -> Int64 {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: packs)) ?? []
            return names.filter { $0.hasSuffix(suffix) }.compactMap {
                (try? FileManager.default.attributesOfItem(atPath: packs + "/" + $0)[.size] as? NSNumber)?.int64Value
            }.max() ?? 0
        }

        /// Restores the set into `out` (it must be the source byte for byte) and re-reads every
        /// stored chunk (`verify --read-data`, exit 0); returns the verify's result.
        func restoreAndVerify(_ standby: StandbyRunner) async throws -> StandbyRunner.Result {
            let restore = try await standby.run(
                ["restore", site, "sql", "--to", lab.file("out"), "--state", state], in: lab)
            #expect(restore.status == 0, "\(restore)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: lab.file("out/db.bak"))) == content)
            let verify = try await standby.run(["verify", site, "--state", state, "--read-data"], in: lab)
            #expect(verify.status == 0, "\(verify)")
            return verify
        }

        /// Polls `condition` on a thread of its own (every 5 ms, never waiting for a free thread of
        /// the cooperative pool, which a loaded test run keeps busy for seconds) and sends `signal`
        /// to `pid` the moment it holds: a kill in the middle of a transfer lands in the middle.
        func kill(
            _ pid: pid_t, signal: Int32 = SIGKILL, when what: String, deadline: Duration = .seconds(60),
            _ condition: @escaping @Sendable () -> Bool
        ) async throws {
            let end = ContinuousClock.now + deadline
            let held: Bool = await withCheckedContinuation { continuation in
                Thread {
                    while !condition() {
                        guard ContinuousClock.now < end else { return continuation.resume(returning: false) }
                        Thread.sleep(forTimeInterval: 0.005)
                    }
                    Glibc.kill(pid, signal)
                    continuation.resume(returning: true)
                }.start()
            }
            guard held else { throw LabError(.notReady, "timed out waiting for \(what)") }
        }
    }

    func bytesReceived(_ json: String) -> Int64? {
        guard let data = json.data(using: .utf8),
            let array = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return nil }
        return (array.first?["bytesReceived"] as? NSNumber)?.int64Value
    }

    /// kill -9 in the middle of a transfer (before and after the first pack is sealed), then
    /// again: no version is ever listed before it is whole, what was stored is not fetched
    /// again, and catalog and store agree.
    @Test(arguments: [".pack.tmp", ".pack"])
    func killNineMidTransferThenReplicateAgain(killAfter suffix: String) async throws {
        let site = try ReplicationSite(megabytes: 48)
        defer { site.stop() }
        let standby = try StandbyRunner.locate()
        let published = try await standby.run(["publish", site.source], in: site.lab)
        #expect(published.status == 0, "\(published)")

        let running = try standby.start(
            ["replicate", site.site, "--state", site.state, ReplicationSite.noon], in: site.lab)
        // Before sealing: the open pack has 12 MiB; after: the first 32 MiB pack is sealed.
        let threshold: Int64 = suffix == ".pack.tmp" ? 12 << 20 : 1 << 20
        let packs = site
        try await site.kill(running.pid, when: "the first chunks in the store") {
            packs.largestPack(suffix: suffix) >= threshold
        }
        let killed = await running.wait()
        #expect(killed.signal == SIGKILL, "\(killed)")

        // Nothing half-stored is visible.
        let early = try await standby.run(
            ["restore", site.site, "sql", "--to", site.lab.file("early"), "--state", site.state], in: site.lab)
        #expect(early.status != 0)
        #expect(!FileManager.default.fileExists(atPath: site.lab.file("early/db.bak")))

        let again = try await standby.run(
            ["replicate", site.site, "--state", site.state, "--json", ReplicationSite.midnight], in: site.lab)
        #expect(again.status == 0, "\(again)")
        let received = try #require(bytesReceived(again.stdout), "\(again)")
        #expect(received < Int64(48 << 20) - threshold + (2 << 20), "received \(received) after the kill")

        let verify = try await site.restoreAndVerify(standby)
        #expect(verify.stdout.contains("clean"))
    }

    /// kill -9 after the first pack is sealed, with no index published: the rerun resumes the
    /// file after the stored bytes (a ranged GET from the last checkpoint) instead of reading it
    /// from byte 0, and the version is the file byte for byte.
    @Test func killNineWithoutAnIndexResumesWhereItStopped() async throws {
        let site = try ReplicationSite(megabytes: 48)
        defer { site.stop() }
        let standby = try StandbyRunner.locate()
        let running = try standby.start(
            ["replicate", site.site, "--state", site.state, ReplicationSite.noon], in: site.lab)
        // A little after the first pack is sealed, so the checkpoint that registers it (and the
        // recipe so far) is committed too.
        final class FirstSeen: @unchecked Sendable { var at: ContinuousClock.Instant? }
        let seen = FirstSeen()
        let packs = site
        try await site.kill(running.pid, when: "the first sealed pack") {
            guard packs.largestPack(suffix: ".pack") >= 1 << 20 else { return false }
            if seen.at == nil { seen.at = .now }
            return ContinuousClock.now - (seen.at ?? .now) >= .milliseconds(300)
        }
        let killed = await running.wait()
        #expect(killed.signal == SIGKILL, "\(killed)")
        let stored = site.largestPack(suffix: ".pack")

        let again = try await standby.run(
            ["replicate", site.site, "--state", site.state, "--json", ReplicationSite.midnight], in: site.lab)
        #expect(again.status == 0, "\(again)")
        let received = try #require(bytesReceived(again.stdout), "\(again)")
        #expect(received < Int64(48 << 20) - stored + (2 << 20), "received \(received) with \(stored) stored")

        _ = try await site.restoreAndVerify(standby)
    }

    @Test func verifyExitsOneAndNamesTheBrokenVersion() async throws {
        let site = try ReplicationSite(megabytes: 2)
        defer { site.stop() }
        let standby = try StandbyRunner.locate()
        let first = try await standby.run(
            ["replicate", site.site, "--state", site.state, ReplicationSite.midnight], in: site.lab)
        #expect(first.status == 0, "\(first)")
        #expect(first.stdout.contains("sql: version 1"))
        let pack = try #require(
            try FileManager.default.contentsOfDirectory(atPath: site.packs).first { $0.hasSuffix(".pack") })
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: site.packs + "/" + pack))
        try handle.seek(toOffset: 1 << 20)
        let byte = try handle.read(upToCount: 1)?.first ?? 0
        try handle.seek(toOffset: 1 << 20)
        try handle.write(contentsOf: Data([byte ^ 0x01]))
        try handle.close()

        let quick = try await standby.run(["verify", site.site, "--state", site.state], in: site.lab)
        #expect(quick.status == 0, "\(quick)")
        let full = try await standby.run(
            ["verify", site.site, "--state", site.state, "--read-data", "--json"], in: site.lab)
        #expect(full.status == 1, "\(full)")
        #expect(full.stdout.contains("\"sql@1\""))
        let restore = try await standby.run(
            ["restore", site.site, "sql", "--to", site.lab.file("out"), "--state", site.state], in: site.lab)
        #expect(restore.status == 1)
        #expect(restore.stderr.contains("set sql"))
    }

    @Test func missingSourceExitsOneNamingSetAndHost() async throws {
        let site = try ReplicationSite(megabytes: 1)
        defer { site.stop() }
        unlink(site.source)
        let standby = try StandbyRunner.locate()
        let result = try await standby.run(["replicate", site.site, "--state", site.state], in: site.lab)
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("set sql: 127.0.0.1"))
        #expect(result.stderr.contains("404"))
        let unknown = try await standby.run(
            ["replicate", site.site, "--state", site.state, "--set", "nope"], in: site.lab)
        #expect(unknown.status == 2)
    }
}
