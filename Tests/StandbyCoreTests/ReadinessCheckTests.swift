import Foundation
import Testing

@testable import StandbyCore

@Suite("Readiness findings of standby check")
struct ReadinessCheckTests {
    func findings(_ replacements: [(String, String)] = [], lastDrill: Date? = nil) throws -> [Finding] {
        let t = try topology(try Fixture.minimal(replacements))
        return ReadinessCheck(topology: t, now: Fixture.now, lastDrill: lastDrill).run()
    }

    @Test func minimalFixtureIsClean() throws {
        // The key file is not on this machine: a note, not a warning.
        let found = try findings()
        #expect(found.map(\.id) == ["dns-key-absent"], "\(found)")
        #expect(found.allSatisfy { $0.severity == .info })
    }

    /// Each finding: a change to the clean fixture that trips it, its severity, and its line when it has one.
    static let cases: [(id: String, replace: [(String, String)], severity: Finding.Severity, line: Int?)] = [
        ("pool-name-reused", [("pool: pool02-dr.fabrikam.com", "pool: POOL01.fabrikam.com")], .error, 11),
        ("srv-record-missing", [("name: _sip._tcp,", "name: _sipfederationtls._tcp,")], .error, 46),
        ("core-without-backup", [("    backup_sets: [rtc-db, settings]\n", "")], .error, 30),
        (
            "core-role-without-standby",
            [("roles: [front-end, back-end-sql]", "roles: [front-end, back-end-sql, mediation]")], .error, 30
        ),
        ("core-without-probe", [("      - { probe: fe-secondary, timeout: 10m }\n", "")], .warning, 30),
        (
            "core-depends-on-optional",
            [
                ("    priority: 1\n", "    priority: 1\n    depends_on: [voice]\n"),
                (
                    "  - name: conferencing",
                    "  - name: voice\n    tier: optional\n    steps: []\n  - name: conferencing"
                ),
            ], .error, 30
        ),
        (
            "not-at-secondary-without-reason",
            [("    depends_on: [core]\n", "    depends_on: [core]\n    at_secondary: false\n")], .error, 39
        ),
        ("rpo-over-24h", [("    rpo: 24h\n  - name: settings", "    rpo: 36h\n  - name: settings")], .warning, 19),
        (
            "smb-encryption-desired",
            [("https://par-sql01.fabrikam.com/backups/rtc.bak", "smb://par-sql01.fabrikam.com/backups/rtc.bak")], .info,
            19
        ),
        (
            "smb-smb1-allowed",
            [
                (
                    "https://par-sql01.fabrikam.com/backups/rtc.bak",
                    "smb://par-sql01.fabrikam.com/backups/rtc.bak\n    smb: { min_protocol: NT1, encrypt: off }"
                )
            ], .warning, 22
        ),
        (
            "smb-unencrypted",
            [
                (
                    "https://par-sql01.fabrikam.com/backups/rtc.bak",
                    "smb://par-sql01.fabrikam.com/backups/rtc.bak\n    smb: { encrypt: off }"
                )
            ], .warning, 22
        ),
        ("no-daily-full", [("schedule: { full_daily_at: \"01:30\" }", "schedule: { every: 12h }")], .warning, 24),
        ("full-backup-at-peak", [("full_daily_at: \"01:30\"", "full_daily_at: \"13:30\"")], .warning, 24),
        (
            "schedule-exceeds-rpo", [("every: 4h, full_daily_at: \"01:00\"", "every: 36h, full_daily_at: \"01:00\"")],
            .warning, 19
        ),
        ("no-off-peak", [("    off_peak: [\"22:00-05:00\"]\n", "")], .warning, 11),
        ("data-log-same-volume", [("volumes: { data: E, log: F }", "volumes: { data: E, log: e }")], .warning, 17),
        ("drill-overdue", [("  last_drill: 2026-10-20\n", "  last_drill: 2026-06-01\n")], .warning, nil),
        ("review-overdue", [("last_review: 2026-10-01", "last_review: 2025-01-01")], .warning, nil),
        ("no-incident-leads", [("incident_leads: [alice]", "incident_leads: []")], .error, nil),
        (
            "dns-ttl-long", [("name: _sip._tcp, type: SRV, ttl: 300", "name: _sip._tcp, type: SRV, ttl: 86400")],
            .warning, 51
        ),
        (
            "single-dns-server",
            [("servers: [\"127.0.0.1:5353\", \"127.0.0.2:5353\"]", "servers: [\"127.0.0.1:5353\"]")], .info, 46
        ),
        ("no-primary-probe", [("site: primary }", "site: secondary }")], .warning, nil),
        ("secondary-same-region", [("America/Montreal", "Europe/Paris")], .info, 11),
        ("backup-set-unused", [("backup_sets: [rtc-db, settings]", "backup_sets: [rtc-db]")], .info, 24),
    ]

    @Test(arguments: 0..<cases.count)
    func eachFindingTrips(index: Int) throws {
        let c = Self.cases[index]
        let found = try findings(c.replace)
        let finding = found.first { $0.id == c.id }
        #expect(finding != nil, "\(c.id) not found in \(found.map(\.id))")
        #expect(finding?.severity == c.severity)
        #expect(finding?.line == c.line, "\(c.id): line \(String(describing: finding?.line))")
        #expect(finding?.fix.isEmpty == false)
        // The clean fixture does not trip it.
        #expect(try !findings().contains { $0.id == c.id })
    }

    @Test func noDNSSectionIsAnError() throws {
        var t = try topology(try Fixture.minimal())
        t.dns = nil
        let found = ReadinessCheck(topology: t, now: Fixture.now).run()
        #expect(found.contains { $0.id == "dns-missing" && $0.severity == .error })
    }

    @Test func recordedDrillCountsLikeThePolicyDate() throws {
        let stale = [("  last_drill: 2026-10-20\n", "")]
        #expect(try findings(stale).contains { $0.id == "drill-overdue" && $0.message == "no drill has been recorded" })
        let recent = Fixture.now.addingTimeInterval(-10 * 86400)
        #expect(try !findings(stale, lastDrill: recent).contains { $0.id == "drill-overdue" })
    }

    @Test func keyFilePermissionsAndAlgorithm() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "standby-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("failover.key").path
        try "key \"failover\" {\n\talgorithm hmac-sha1;\n\tsecret \"c2VjcmV0c2VjcmV0\";\n};\n".write(
            toFile: key, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: key)
        let open = try findings([("key: /nonexistent/fabrikam.key", "key: \(key)")])
        #expect(open.contains { $0.id == "dns-key-readable" && $0.severity == .error && $0.fix == "chmod 600 \(key)" })
        #expect(open.contains { $0.id == "dns-key-weak" && $0.message.contains("hmac-sha1") })
        #expect(!open.contains { $0.message.contains("c2VjcmV0c2VjcmV0") }, "the secret must never be shown")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        let closed = try findings([("key: /nonexistent/fabrikam.key", "key: \(key)")])
        #expect(!closed.contains { $0.id == "dns-key-readable" || $0.id == "dns-key-absent" })
    }

    @Test func contosoChecksClean() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let contoso = try TopologyLoader.load(root.appendingPathComponent("sites/contoso").path)
        let found = ReadinessCheck(topology: contoso, now: Fixture.now).run()
        #expect(found.filter { $0.severity != .info }.isEmpty, "\(found)")
    }
}
