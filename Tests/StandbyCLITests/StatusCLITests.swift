import Foundation
import StandbyLab
import Testing

/// `standby status`: each set's data-loss window against its RPO, and `--check` for schedulers.
@Suite("status through the binary")
struct StatusCLITests {
    func site(in lab: LabDirectory) throws -> String {
        try lab.write("source/rtc.bak", String(repeating: "page of the RTC database\n", count: 4000))
        try lab.write("source/settings.xml", "<settings/>\n")
        let text = try String(
            contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("StandbyCoreTests/Fixtures/minimal/site.yaml").path, encoding: .utf8
        )
        .replacingOccurrences(
            of: "https://par-sql01.fabrikam.com/backups/rtc.bak", with: "file://\(lab.path)/source/rtc.bak"
        )
        .replacingOccurrences(
            of: "sftp://par-adm01.fabrikam.com/exports/lcscmd.xml", with: "file://\(lab.path)/source/settings.xml")
        try lab.write("site/site.yaml", text)
        return lab.file("site")
    }

    @Test func rpoOfEverySetAndCheck() throws {
        let lab = try LabDirectory(prefix: "standby-status")
        defer { lab.remove() }
        let site = try site(in: lab)
        let binary = try StandbyLab.StandbyBinary()
        let state = ["--state", lab.file("state")]

        // Nothing replicated yet: every set breaches its RPO.
        let empty = try binary.run(["status", site, "--check"] + state)
        #expect(empty.status == 1, "\(empty)")
        #expect(empty.stderr.contains("RPO breached: rtc-db, settings"))

        let replicated = try binary.run(["replicate", site] + state)
        #expect(replicated.status == 0, "\(replicated)")
        let fresh = try binary.run(["status", site, "--check"] + state)
        #expect(fresh.status == 0, "\(fresh)")
        #expect(fresh.stdout.contains("rtc-db"))
        #expect(!fresh.stdout.contains("BREACH"))

        // A day and a half later the 24h RPO is breached.
        let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(36 * 3600))
        let stale = try binary.run(["status", site, "--check", "--json", "--now", later] + state)
        #expect(stale.status == 1, "\(stale)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stale.stdout.utf8)) as? [String: Any])
        let sets = try #require(object["sets"] as? [[String: Any]])
        #expect(sets.count == 2)
        #expect(sets.allSatisfy { $0["breached"] as? Bool == true && ($0["ageSeconds"] as? Double ?? 0) > 86400 })
        #expect(sets.first { $0["name"] as? String == "rtc-db" }?["sizeBytes"] as? Int == 100_000)
    }
}
