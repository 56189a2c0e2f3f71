import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Stage 2 is proven before stage 1 starts: on the lab (BIND takes the update, Knot serves it
/// by transfer), a failover whose DNS cannot run stops before its first step, with nothing
/// changed, unless the lead goes on deliberately with `--dns-later`.
@Suite("DNS proven before stage 1", .tags(.server), .serialized)
struct DNSPreflightLabTests {
    var keyPath: (LabRun) -> String { { $0.lab.file("keys/failover.key") } }

    /// The secondary's front end is started by stage 1: down means no core step ran.
    func nothingRan(_ lab: LabRun, dnsBefore: [String]) async throws {
        #expect(try await lab.probes()["fe-sip-secondary"] != "up", "the secondary front end was not started")
        #expect(try lab.dig() == dnsBefore, "DNS unchanged")
        let status = try await lab.standby("status", ["--json"])
        #expect(!status.stdout.contains("\"direction\" : \"failover\""), "no run was declared: \(status)")
    }

    func switchToPrimary(_ lab: LabRun) async throws -> StandbyRunner.Result {
        try await lab.standby.run(
            ["dns", "switch", lab.site, "--state", lab.state, "--to", "primary"], environment: lab.environment,
            in: lab.lab)
    }

    @Test(
        "a missing or open key file is bad input before the first step; --dns-later goes on and the cutover waits for retry"
    )
    func missingKey() async throws {
        try await LabRun.with(prefix: "dns-preflight-key") { lab in
            let replicated = try await lab.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")
            _ = try await lab.labCommand(["lose-primary"])
            let dnsBefore = try lab.dig()
            let key = keyPath(lab)
            let declare = ["--declare", "lab-east flooded", "--lead", "alice", "--yes", "--now", bothOffPeak]

            try FileManager.default.moveItem(atPath: key, toPath: key + ".away")
            let missing = try await lab.standby("failover", declare)
            #expect(missing.status == 2, "\(missing)")
            #expect(missing.stderr.contains("sites/lab/site.yaml:"), "names the topology line: \(missing)")
            #expect(missing.stderr.contains("dns.key") && missing.stderr.contains(key), "\(missing)")
            try await nothingRan(lab, dnsBefore: dnsBefore)

            try FileManager.default.moveItem(atPath: key + ".away", toPath: key)
            chmod(key, 0o644)
            let open = try await lab.standby("failover", declare)
            #expect(open.status == 2, "\(open)")
            #expect(open.stderr.contains("readable by group or others") && open.stderr.contains("chmod 600"), "\(open)")
            try await nothingRan(lab, dnsBefore: dnsBefore)

            // The lead goes on without DNS: stage 1 runs, the cutover halts the run, named.
            try FileManager.default.moveItem(atPath: key, toPath: key + ".away")
            let later = try await lab.standby("failover", declare + ["--dns-later", "DC01 unreachable; DNS by hand"])
            #expect(later.status == 1, "\(later)")
            #expect(later.stdout.contains("DNS (stage 2) cannot run now; going on with --dns-later"), "\(later)")
            #expect(later.stdout.contains("halted at dns/cutover"), "\(later)")
            #expect(later.stdout.contains("deferred by alice with --dns-later: DC01 unreachable"), "\(later)")
            #expect(try await lab.probes()["fe-sip-secondary"] == "up", "stage 1 ran")
            #expect(try lab.dig() == dnsBefore, "stage 2 did not")

            // The key is back: retry runs the cutover, and the run goes on to the end.
            try FileManager.default.moveItem(atPath: key + ".away", toPath: key)
            chmod(key, 0o600)
            let retried = try await lab.standby(
                "retry", ["dns/cutover", "--lead", "bob", "--reason", "key restored", "--at", bothOffPeak])
            #expect(retried.status == 0, "\(retried)")
            let moved = try await lab.waitForDNS(containing: "pool02-dr.lab.test.", count: 2)
            #expect(moved.filter { $0.contains("pool02-dr.lab.test.") }.count == 2, "\(moved)")

            let report = try await lab.standby("report", ["--json"])
            let object = try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]
            let decisions = (object?["decisions"] as? [[String: Any]]) ?? []
            let deferred = decisions.first { $0["kind"] as? String == "dns-later" }
            #expect(deferred?["lead"] as? String == "alice", "\(decisions)")
            #expect((deferred?["reason"] as? String)?.contains("DC01 unreachable") == true, "\(decisions)")
        }
    }

    @Test(
        "a wrong secret refuses the failover (exit 3) with nothing changed; dns switch never calls it 'nothing to do'")
    func wrongSecret() async throws {
        try await LabRun.with(prefix: "dns-preflight-secret") { lab in
            let replicated = try await lab.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")
            _ = try await lab.labCommand(["lose-primary"])
            let dnsBefore = try lab.dig()
            let key = keyPath(lab)
            let good = try String(contentsOfFile: key, encoding: .utf8)
            let secret = try #require(good.firstMatch(of: /secret\s+"([^"]+)"/)?.1)
            let other = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            try lab.lab.write("keys/failover.key", good.replacingOccurrences(of: secret, with: other), mode: 0o600)

            let refused = try await lab.standby(
                "failover", ["--declare", "lab-east flooded", "--lead", "alice", "--yes", "--now", bothOffPeak])
            #expect(refused.status == 3, "\(refused)")
            #expect(refused.stderr.contains("stage 2 (DNS) cannot run"), "\(refused)")
            #expect(refused.stderr.contains("--dns-later"), "says how to go on anyway: \(refused)")
            #expect(!refused.stderr.contains(other) && !refused.stdout.contains(other), "the secret is never shown")
            try await nothingRan(lab, dnsBefore: dnsBefore)

            // The records already point at the primary: a switch there has nothing to change, and
            // still proves the key before it says so.
            let wrong = try await switchToPrimary(lab)
            #expect(wrong.status == 1, "\(wrong)")
            #expect(!wrong.stdout.contains("nothing to do"), "\(wrong)")
            try lab.lab.write("keys/failover.key", good, mode: 0o600)
            let right = try await switchToPrimary(lab)
            #expect(right.status == 0, "\(right)")
            #expect(right.stdout.contains("nothing to do") && right.stdout.contains("accepts the key"), "\(right)")
        }
    }
}
