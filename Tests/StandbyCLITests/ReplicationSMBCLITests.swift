import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `standby replicate` of an SMB3 share that requires encryption, through the real binary:
/// killed with -9 in the middle of the read, then run again, it fetches only what it had not
/// stored (the published index), and the restore is the file byte for byte.
@Suite(.tags(.server)) struct ReplicationSMBCLITests {
    struct Share {
        let lab: LabDirectory
        let smbd: SambaServer
        let source: String
        let state: String
        let content: Data
        static let noon = "--now=2026-11-25T12:00:00Z"
        static let midnight = "--now=2026-11-25T00:00:30Z"

        init(megabytes: Int, dialects: SambaServer.Dialects = .smb3Encrypted, smb: String = "{ encrypt: required }")
            throws
        {
            lab = try LabDirectory(prefix: "standby-cli-smb")
            smbd = try SambaServer.start(in: lab, dialects: dialects)
            source = smbd.root + "/db.bak"
            state = lab.file("state")
            let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
            content = random.readData(ofLength: megabytes << 20)
            try random.close()
            try content.write(to: URL(fileURLWithPath: source))
            let yaml = """
                deployment: smbtest
                domain: example.test
                sites:
                  primary: { name: red, timezone: UTC, pool: pool01.example.test, off_peak: ["00:00-00:01"] }
                  secondary:
                    name: dub
                    timezone: UTC
                    pool: pool02.example.test
                    standby_servers:
                      - { host: fe.example.test, roles: [front-end] }
                replication:
                  peak_rate: 8MB/s
                smb: \(smb)
                backup_sets:
                  - name: sql
                    kind: database
                    source: \(smbd.url("db.bak").absoluteString)
                    schedule: { every: 4h }
                    rpo: 24h
                services:
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    backup_sets: [sql]
                    steps:
                      - { restore: sql, to: \(lab.file("restore")) }
                health:
                  probes: []
                policy:
                  incident_leads: [alice]
                """
            try lab.write("site/site.yaml", yaml)
        }

        var site: String { lab.file("site") }
        var environment: [String: String] {
            ["STANDBY_SOURCE_USER": "WORKGROUP\\\(smbd.user)", "STANDBY_SOURCE_PASSWORD": smbd.password]
        }

        func stop() {
            smbd.stop()
            lab.remove()
        }

        func largestPack() -> Int64 {
            let packs = state + "/store/packs"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: packs)) ?? []
            return names.compactMap {
                (try? FileManager.default.attributesOfItem(atPath: packs + "/" + $0)[.size] as? NSNumber)?.int64Value
            }.max() ?? 0
        }

        func served() -> Int64 { smbd.reads(of: "db.bak").reduce(0) { $0 + $1.length } }
    }

    @Test func killNineMidReadThenReplicateAgain() async throws {
        let share = try Share(megabytes: 48)
        defer { share.stop() }
        let standby = try StandbyRunner.locate()
        let published = try await standby.run(["publish", share.source], in: share.lab)
        #expect(published.status == 0, "\(published)")

        let running = try standby.start(
            ["replicate", share.site, "--state", share.state, Share.noon], environment: share.environment,
            in: share.lab)
        let deadline = ContinuousClock.now + .seconds(60)
        while share.largestPack() < 12 << 20 && ContinuousClock.now < deadline { usleep(20_000) }
        kill(running.pid, SIGKILL)
        let killed = await running.wait()
        #expect(killed.signal == SIGKILL, "\(killed)")

        let early = try await standby.run(
            ["restore", share.site, "sql", "--to", share.lab.file("early"), "--state", share.state], in: share.lab)
        #expect(early.status != 0, "nothing half-stored is visible")

        let before = share.served()
        let again = try await standby.run(
            ["replicate", share.site, "--state", share.state, "--json", Share.midnight],
            environment: share.environment, in: share.lab)
        #expect(again.status == 0, "\(again)")
        // Standard output is the JSON alone: nothing of libsmbclient's own messages.
        let parsed = try? JSONSerialization.jsonObject(with: Data(again.stdout.utf8))
        #expect(parsed != nil, "stdout is not JSON: \(again.stdout.prefix(300))")
        let readAgain = share.served() - before
        #expect(readAgain < Int64(48 << 20) - (10 << 20), "the second run read \(readAgain) bytes")

        let restore = try await standby.run(
            ["restore", share.site, "sql", "--to", share.lab.file("out"), "--state", share.state], in: share.lab)
        #expect(restore.status == 0, "\(restore)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: share.lab.file("out/db.bak"))) == share.content)
    }

    /// The default, encryption desired, against an SMB 2.1 server that cannot encrypt: read
    /// signed, and libsmbclient's own complaint about it goes to the log, not to standard output.
    @Test func desiredEncryptionAgainstSMB21KeepsStandardOutputJSON() async throws {
        let share = try Share(megabytes: 1, dialects: .smb2Only, smb: "{ min_protocol: SMB2_10 }")
        defer { share.stop() }
        let standby = try StandbyRunner.locate()
        let result = try await standby.run(
            ["replicate", share.site, "--state", share.state, "--json", Share.midnight],
            environment: share.environment, in: share.lab)
        #expect(result.status == 0, "\(result)")
        let parsed = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        #expect(parsed != nil, "\(result.stdout)")
        #expect(!(result.stdout + result.stderr).contains("Encryption required"), "\(result)")
        let check = try await standby.run(["check", share.site], in: share.lab)
        #expect(check.stdout.contains("smb-encryption-desired"), "\(check)")
    }

    @Test func aWrongPasswordFailsNamingSetHostAndShareAndNeverShowsIt() async throws {
        let share = try Share(megabytes: 1)
        defer { share.stop() }
        let standby = try StandbyRunner.locate()
        var environment = share.environment
        environment["STANDBY_SOURCE_PASSWORD"] = "Not-The-Pa55word"
        let result = try await standby.run(
            ["replicate", share.site, "--state", share.state, Share.midnight], environment: environment, in: share.lab)
        #expect(result.status != 0)
        #expect(result.stderr.contains("sql") && result.stderr.contains("127.0.0.1"), "\(result.stderr)")
        #expect(result.stderr.contains("share backups"), "\(result.stderr)")
        #expect(!(result.stdout + result.stderr).contains("Not-The-Pa55word"))
    }
}
