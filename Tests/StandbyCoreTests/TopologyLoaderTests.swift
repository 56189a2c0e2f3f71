import Foundation
import StandbyTransport
import Testing

@testable import StandbyCore

@Suite("Topology loading and validation")
struct TopologyLoaderTests {
    @Test func minimalFixtureLoads() throws {
        let t = try topology(try Fixture.minimal())
        #expect(t.deployment == "fabrikam")
        #expect(t.secondary.offPeak == [TimeWindow(start: 22 * 60, end: 5 * 60)])
        #expect(t.backupSets.map(\.name) == ["rtc-db", "settings"])
        #expect(t.services.first?.steps.map(\.name) == ["restore-rtc-db", "start", "probe-fe-secondary"])
        #expect(t.dns?.records.first?.fqdn(in: "fabrikam.com") == "_sipinternaltls._tcp.fabrikam.com.")
        #expect(t.health.fall == 3 && t.health.rise == 2)
    }

    @Test("restore and probe steps are idempotent unless the file says not; exec steps are not")
    func idempotentByKind() throws {
        let t = try topology(try Fixture.minimal())
        let steps = try #require(t.services.first?.steps)
        #expect(steps.map(\.idempotent) == [true, false, true], "restore, exec, probe")
        let explicit = try topology(
            try Fixture.minimal().replacingOccurrences(
                of: "{ restore: rtc-db, to: /srv/restore/rtc }",
                with: "{ restore: rtc-db, to: /srv/restore/rtc, idempotent: false }"))
        #expect(explicit.services.first?.steps.first?.idempotent == false, "an explicit false is honoured")
    }

    /// Each rule: a change to the valid fixture that trips it, the line it must point at, and
    /// words the message must contain.
    static let rules: [(name: String, replace: (String, String), line: Int, words: String)] = [
        ("broken YAML", ("deployment: fabrikam", "deployment: [fabrikam"), 3, "broken YAML"),
        (
            "unknown key", ("    pool: pool01.fabrikam.com", "    pool: pool01.fabrikam.com\n    pools: x"), 9,
            "unknown key 'pools' in sites.primary (did you mean 'pool'?)"
        ),
        ("wrong type", ("    priority: 4", "    priority: high"), 41, "must be a whole number, not 'high'"),
        (
            "bad duration", ("    rpo: 24h\n  - name: settings", "    rpo: 24 hours\n  - name: settings"), 23,
            "'24 hours' is not a duration"
        ),
        ("bad window", ("[\"22:00-05:00\"]", "[\"22:00-29:00\"]"), 14, "is not a window; expected HH:MM-HH:MM"),
        ("bad time zone", ("America/Montreal", "America/Atlantis"), 12, "'America/Atlantis' is not a known time zone"),
        ("bad clock", ("full_daily_at: \"01:30\"", "full_daily_at: \"1:30pm\""), 27, "is not a time of day"),
        (
            "dangling depends_on", ("depends_on: [core]", "depends_on: [cores]"), 42,
            "depends on 'cores', which is not a service"
        ),
        (
            "dangling backup set", ("backup_sets: [rtc-db, settings]", "backup_sets: [rtc-db, settingz]"), 34,
            "names backup set 'settingz', which is not declared"
        ),
        (
            "dangling restore", ("{ restore: rtc-db, to:", "{ restore: rtc, to:"), 36,
            "restores 'rtc', which is not declared"
        ),
        (
            "dangling probe", ("{ probe: fe-secondary, timeout: 10m }", "{ probe: fe-second, timeout: 10m }"), 38,
            "waits for probe 'fe-second'"
        ),
        (
            "duplicate set", ("  - name: settings\n", "  - name: rtc-db\n"), 24,
            "duplicate backup set 'rtc-db' (first declared at line 19)"
        ),
        ("missing key", ("    kind: settings\n", ""), 24, "is missing 'kind'"),
        ("bad kind", ("kind: settings", "kind: config"), 25, "'config' is not one of database, settings, files"),
        (
            "bad URL", ("sftp://par-adm01.fabrikam.com/exports/lcscmd.xml", "par-adm01:/exports/lcscmd.xml"), 26,
            "is not a URL with a scheme"
        ),
        ("password in URL", ("https://par-sql01", "https://admin:secret@par-sql01"), 21, "carries a password"),
        ("bad SRV data", ("0 0 5061 pool02-dr.fabrikam.com.", "pool02-dr.fabrikam.com"), 50, "is not SRV data"),
        ("bad server address", ("\"127.0.0.2:5353\"", "\"127.0.0.2:99999\""), 47, "is not an address"),
        (
            "two step kinds",
            ("{ name: start, exec: [/bin/true], timeout: 5m }", "{ name: start, exec: [/bin/true], manual: x }"),
            37, "exactly one of restore, exec, http, probe, manual, found exec, manual"
        ),
        (
            "probe without kind",
            (
                "{ name: fe, sip_options: \"sip:pool01.fabrikam.com:5061;transport=tls\", site: primary }",
                "{ name: fe, site: primary }"
            ), 54, "must have exactly one of tcp, tls, http, sip_options, dns"
        ),
        ("bad date", ("last_review: 2026-10-01", "last_review: 01/10/2026"), 60, "is not a date; expected YYYY-MM-DD"),
        (
            "bad SMB dialect",
            ("    rpo: 24h\n  - name: settings", "    rpo: 24h\n    smb: { min_protocol: SMB4 }\n  - name: settings"),
            24, "backup set rtc-db.smb.min_protocol: 'SMB4' is not an SMB dialect"
        ),
        (
            "bad SMB encryption",
            ("    rpo: 24h\n  - name: settings", "    rpo: 24h\n    smb: { encrypt: maybe }\n  - name: settings"),
            24, "'maybe' is not one of required, desired, off"
        ),
        (
            "SMB Kerberos without an account",
            ("    rpo: 24h\n  - name: settings", "    rpo: 24h\n    smb: { auth: kerberos }\n  - name: settings"), 24,
            "smb.auth is kerberos but no account is given"
        ),
    ]

    @Test(arguments: 0..<rules.count)
    func eachRuleTrips(index: Int) throws {
        let rule = Self.rules[index]
        let found = diagnostics(try Fixture.minimal([rule.replace]))
        let match = found.first { $0.message.contains(rule.words) }
        #expect(match != nil, "\(rule.name): expected '\(rule.words)' in \(found)")
        #expect(match?.line == rule.line, "\(rule.name): expected line \(rule.line), got \(String(describing: match))")
        #expect(match?.description.hasPrefix("site.yaml:\(rule.line):") == true)
    }

    /// A set's smb keys override the deployment's, key by key; `auth: kerberos` takes
    /// dns.gss_tsig's account when the smb section names none.
    @Test func smbSettingsOfTheDeploymentAndTheSet() throws {
        let yaml = try Fixture.minimal([
            ("backup_sets:\n", "smb: { min_protocol: SMB3, encrypt: required }\nbackup_sets:\n"),
            ("    rpo: 24h\n  - name: settings", "    rpo: 24h\n    smb: { encrypt: desired }\n  - name: settings"),
        ])
        let t = try topology(yaml)
        let rtc = try #require(t.backupSet(named: "rtc-db"))
        let settings = try #require(t.backupSet(named: "settings"))
        #expect(t.smbOptions(for: rtc) == SMBOptions(minProtocol: .smb3_00, encryption: .desired))
        #expect(t.smbOptions(for: settings) == SMBOptions(minProtocol: .smb3_00, encryption: .required))
        #expect(SMBOptions() == SMBOptions(minProtocol: .smb2_02, encryption: .desired), "the defaults")
    }

    @Test func dependencyCycleIsNamedInOrder() throws {
        let text = try Fixture.minimal([
            ("    priority: 1\n", "    priority: 1\n    depends_on: [conferencing]\n")
        ])
        let found = diagnostics(text)
        #expect(
            found.contains {
                $0.message == "dependency cycle: core → conferencing → core"
                    || $0.message == "dependency cycle: conferencing → core → conferencing"
            }, "\(found)")
    }

    @Test func everyErrorOfTheFileAtOnce() throws {
        let text = try Fixture.minimal([
            ("America/Montreal", "Mars/Olympus"), ("    priority: 4", "    priority: high"),
            ("rpo: 24h\n  - name: settings", "rpo: soon\n  - name: settings"),
        ])
        let found = diagnostics(text)
        #expect(found.count == 3, "\(found)")
        #expect(found.map(\.line) == found.map(\.line).sorted())
    }

    @Test func environmentIsExpandedAndMissingVariablesReported() throws {
        let text = try Fixture.minimal([
            ("key: /nonexistent/fabrikam.key", "key: ${KEYS}/fabrikam.key"),
            ("\"127.0.0.1:5353\"", "\"127.0.0.1:${PORT:-5353}\""),
        ])
        let t = try TopologyLoader.parse(text, file: "site.yaml", environment: ["KEYS": "/etc/keys"])
        #expect(t.dns?.key == "/etc/keys/fabrikam.key")
        #expect(t.dns?.servers.first == "127.0.0.1:5353")
        let found = diagnostics(text)
        #expect(
            found.contains { $0.message.contains("environment variable KEYS is not set") && $0.line == 48 }, "\(found)")
    }

    @Test func missingFileNamesThePath() {
        #expect(throws: TopologyError.self) { try TopologyLoader.load("/nonexistent/site") }
        do {
            _ = try TopologyLoader.load("/nonexistent/site")
        } catch let error as TopologyError {
            #expect(error.description.hasPrefix("/nonexistent/site:1:1: no such file"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func timeSpans() {
        #expect(TimeSpan.parse("90d") == .days(90))
        #expect(TimeSpan.parse("1h30m") == .minutes(90))
        #expect(TimeSpan.parse("500ms") == TimeSpan(milliseconds: 500))
        #expect(TimeSpan.parse("2w")?.description == "14d")
        #expect(TimeSpan.parse("4 h") == nil)
        #expect(TimeSpan.parse("h") == nil)
        #expect(TimeSpan.parse("") == nil)
        #expect(TimeSpan.parse("10x") == nil)
    }

    @Test func windowsThatCrossMidnight() throws {
        let window = try #require(TimeWindow.parse("22:00-05:00"))
        #expect(window.crossesMidnight)
        #expect(window.contains(minuteOfDay: 23 * 60))
        #expect(window.contains(minuteOfDay: 4 * 60 + 59))
        #expect(!window.contains(minuteOfDay: 5 * 60))
        #expect(!window.contains(minuteOfDay: 12 * 60))
        #expect(TimeWindow.parse("05:00-05:00") == nil)
        #expect(TimeWindow.parse("24:00-05:00") == nil)
        #expect(TimeWindow.parse("9:00-17:00") == nil)
    }

    @Test func nextOpeningIsInTheSitesTimeZoneAcrossDaylightSaving() throws {
        let dublin = try #require(TimeZone(identifier: "Europe/Dublin"))
        let window = try #require(TimeWindow.parse("22:00-05:00"))
        let iso = ISO8601DateFormatter()
        // Noon UTC in November is noon in Dublin: the window opens at 22:00 the same day.
        #expect(
            window.nextOpening(after: try #require(iso.date(from: "2026-11-25T12:00:00Z")), in: dublin)
                == iso.date(from: "2026-11-25T22:00:00Z"))
        // In July Dublin is UTC+1: 22:00 local is 21:00 UTC.
        #expect(
            window.nextOpening(after: try #require(iso.date(from: "2026-07-01T12:00:00Z")), in: dublin)
                == iso.date(from: "2026-07-01T21:00:00Z"))
        // Inside the window it is open now.
        let late = try #require(iso.date(from: "2026-11-25T23:30:00Z"))
        #expect(window.nextOpening(after: late, in: dublin) == late)
        // The day clocks go forward (29 March 2026), 22:00 local is 21:00 UTC.
        #expect(
            window.nextOpening(after: try #require(iso.date(from: "2026-03-29T12:00:00Z")), in: dublin)
                == iso.date(from: "2026-03-29T21:00:00Z"))
    }

    @Test func anOpenWindowClosesAtItsEndInTheSitesTimeZone() throws {
        let dublin = try #require(TimeZone(identifier: "Europe/Dublin"))
        let window = try #require(TimeWindow.parse("22:00-05:00"))
        let iso = ISO8601DateFormatter()
        // Before midnight it closes the next morning; after midnight, the same morning.
        #expect(
            window.closing(after: try #require(iso.date(from: "2026-11-25T23:30:00Z")), in: dublin)
                == iso.date(from: "2026-11-26T05:00:00Z"))
        #expect(
            window.closing(after: try #require(iso.date(from: "2026-11-26T01:00:00Z")), in: dublin)
                == iso.date(from: "2026-11-26T05:00:00Z"))
        // In July 05:00 in Dublin is 04:00 UTC.
        #expect(
            window.closing(after: try #require(iso.date(from: "2026-07-01T23:00:00Z")), in: dublin)
                == iso.date(from: "2026-07-02T04:00:00Z"))
        // Closed: no closing time.
        #expect(window.closing(after: try #require(iso.date(from: "2026-11-25T12:00:00Z")), in: dublin) == nil)
        // An end of 24:00 is midnight.
        let evening = try #require(TimeWindow.parse("18:00-24:00"))
        #expect(
            evening.closing(after: try #require(iso.date(from: "2026-11-25T19:00:00Z")), in: dublin)
                == iso.date(from: "2026-11-26T00:00:00Z"))
    }

    @Test func bothExamplesLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let contoso = try TopologyLoader.load(root.appendingPathComponent("sites/contoso").path)
        #expect(contoso.backupSets.count == 15)
        #expect(
            Set(contoso.secondary.standbyServers.flatMap(\.roles)).isSuperset(of: [
                "front-end", "back-end-sql", "archiving", "monitoring", "mediation", "edge", "forward-proxy",
            ]))
        let lab = try TopologyLoader.load(root.appendingPathComponent("sites/lab").path, environment: [:])
        #expect(lab.primary.pool != lab.secondary.pool)
    }
}
