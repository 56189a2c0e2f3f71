import Foundation
import StandbyLab
import Testing

/// The lab story on the users' DNS: sites/lab-ad keeps the SIP records in ad.lab.test on a Samba
/// AD domain controller that takes GSS-TSIG updates only, as Windows DNS does in an
/// AD-integrated zone. The real `standby` drills, fails over through all three stages and fails
/// back, signing as the service account.
@Suite("the lab on Active Directory DNS (GSS-TSIG)", .tags(.server), .serialized)
struct ActiveDirectoryLabTests {
    @Test("drill, failover through all three stages and failback on the AD zone; the password never shows")
    func drillFailoverFailback() async throws {
        try await LabRun.with(prefix: "ad-lab", activeDirectory: true) { lab in
            // The same deployment signing with the account's password rather than its keytab, so
            // a test can look for the secret everywhere.
            let password = try String(contentsOfFile: lab.lab.file("ad/svc-standby.pass"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let site = try String(contentsOfFile: lab.site + "/site.yaml", encoding: .utf8).replacingOccurrences(
                of: "keytab: ${STANDBY_LAB_DIR:-/tmp/standby-lab}/ad/svc-standby.keytab",
                with: "password_file: ${STANDBY_LAB_DIR:-/tmp/standby-lab}/ad/svc-standby.pass")
            #expect(site.contains("password_file:"))
            _ = try lab.lab.directory("site")
            try lab.lab.write("site/site.yaml", site)
            try FileManager.default.createSymbolicLink(
                atPath: lab.lab.file("site/scripts"), withDestinationPath: lab.site + "/scripts")
            let passwordSite = LabRun(
                lab: lab.lab, standby: lab.standby, site: lab.lab.file("site"), state: lab.state,
                environment: lab.environment, labBinary: lab.labBinary, httpPort: lab.httpPort,
                dnsPorts: lab.dnsPorts, zone: lab.zone)
            var outputs: [StandbyRunner.Result] = []

            let check = try await passwordSite.standby("check")
            #expect(check.status == 0, "\(check)")
            let replicated = try await passwordSite.standby("replicate")
            #expect(replicated.status == 0, "\(replicated)")
            let before = try lab.dig()
            #expect(before.filter { $0.contains("pool01.ad.lab.test.") }.count == 2, "both servers: \(before)")

            let drill = try await passwordSite.standby("drill", ["--lead", "bob"])
            #expect(drill.status == 0, "\(drill)")
            #expect(drill.stdout.contains("DNS is ready to cut over"), "\(drill)")
            #expect(try lab.dig() == before, "a drill changes nothing")

            _ = try await lab.labCommand(["lose-primary"])
            let failover = try await passwordSite.standby(
                "failover", ["--declare", "lab-east flooded", "--lead", "alice", "--yes", "--now", bothOffPeak])
            #expect(failover.status == 0, "\(failover)")
            #expect(failover.stdout.contains("DNS (stage 2), checked before stage 1"), "\(failover)")
            #expect(failover.stdout.contains("dns/cutover: succeeded"), "\(failover)")
            #expect(failover.stdout.contains("conferencing/publish-content: succeeded"), "stage 3 ran: \(failover)")
            let moved = try await lab.waitForDNS(containing: "pool02-dr.ad.lab.test.", count: 2)
            #expect(moved.contains { $0.contains("pool02-dr.ad.lab.test.") }, "\(moved)")
            #expect(moved.contains { $0.contains("sip-dr.ad.lab.test.") }, "\(moved)")

            _ = try await lab.labCommand(["recover-primary"])
            let failback = try await passwordSite.standby(
                "failback", ["--lead", "bob", "--yes", "--reason", "lab-east rebuilt", "--now", bothOffPeak])
            #expect(failback.status == 0, "\(failback)")
            let back = try await lab.waitForDNS(containing: "pool01.ad.lab.test.", count: 2)
            #expect(back == before, "DNS as it started")

            let report = try await passwordSite.standby("report", ["--json"])
            let shown = try await lab.standby.run(
                ["dns", "show", passwordSite.site, "--state", lab.state, "--json"], environment: lab.environment,
                in: lab.lab)
            #expect(shown.status == 0, "\(shown)")
            outputs += [check, replicated, drill, failover, failback, report, shown]
            for output in outputs {
                #expect(!output.stdout.contains(password) && !output.stderr.contains(password), "\(output)")
            }
            // Nor in the journal, the catalog or any log of the state directory.
            let files = FileManager.default.enumerator(atPath: lab.state)?.compactMap { $0 as? String } ?? []
            #expect(!files.isEmpty)
            for file in files {
                let data = FileManager.default.contents(atPath: lab.state + "/" + file) ?? Data()
                #expect(data.range(of: Data(password.utf8)) == nil, "the password is in \(file)")
            }
        }
    }
}
