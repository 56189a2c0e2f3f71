import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `standby plan SITE --runbook FILE` on a deployment whose zone is served by a real BIND: the
/// DNS fallback, pasted into nsupdate, makes the same cutover (and the failback's puts it back);
/// the page, in headless Chromium, holds every step and prints to PDF with nothing cut.
@Suite("runbook", .tags(.server), .serialized)
struct RunbookTests {
    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    static let primaryTLS = "0 0 5061 pool01.contoso.test."
    static let secondaryTLS = "0 0 5061 pool02-dr.contoso.test."
    static let primarySIP = "0 0 443 sip.contoso.test."
    static let secondarySIP = "0 0 443 sip-dr.contoso.test."

    static func site(lab: LabDirectory, named: NamedServer) throws -> String {
        var site = SiteYAML(deployment: "runbooktest")
        site.incidentLeads = ["alice", "bob"]
        site.backupSets = ["{ name: rtc-db, kind: database, source: \"file://\(lab.path)/rtc.bak\", rpo: 24h }"]
        site.services = SiteYAML.services(
            yaml: """
                - name: core
                  tier: core
                  priority: 1
                  roles: [front-end]
                  backup_sets: [rtc-db]
                  steps:
                    - { restore: rtc-db, to: "{{state}}/restore/rtc", drill: true }
                    - { name: start-front-end, exec: [systemctl, start, "fe@{{secondary_pool}}"], owner: ucc-admins }
                    - { name: rehome, manual: Re-home users to the secondary pool with the snap-in, owner: ucc-admins }
                    - { name: validate, probe: fe-sip-secondary, owner: noc }
                  failback_steps:
                    - { name: stop-secondary, exec: [systemctl, stop, "fe@{{secondary_pool}}"], owner: ucc-admins }
                - name: conferencing
                  tier: optional
                  priority: 4
                  depends_on: [core]
                  roles: [front-end]
                  steps:
                    - { name: notify, http: "https://runbook.contoso.test/conferencing", owner: conf-team }
                - name: group-chat
                  tier: optional
                  priority: 7
                  roles: [front-end]
                  at_secondary: false
                  reason: Rebuilt after primary recovery
                """)
        site.dns = [
            "zone: contoso.test", "servers: [\"\(named.address)\"]", "key: \(named.keyPath)", "records:",
            "  - { name: _sipinternaltls._tcp, type: SRV, ttl: 300, primary: \"\(primaryTLS)\", secondary: \"\(secondaryTLS)\" }",
            "  - { name: _sip._tcp, type: SRV, ttl: 300, primary: \"\(primarySIP)\", secondary: \"\(secondarySIP)\" }",
        ]
        site.health = [
            "probes:",
            "  - { name: fe-sip-secondary, site: secondary, sip_options: \"sip:fe.contoso.test:5061;transport=tls\" }",
        ]
        return try site.write(in: lab)
    }

    /// The text of every `<pre>` of `language` for `direction`, HTML entities decoded.
    static func blocks(_ page: String, language: String, direction: String) -> [String] {
        let pattern = "<pre class=\"\(language)\" data-direction=\"\(direction)\"[^>]*>([^<]*)</pre>"
        let regex = try? NSRegularExpression(pattern: pattern)
        let range = NSRange(page.startIndex..., in: page)
        return (regex?.matches(in: page, range: range) ?? []).compactMap { match in
            Range(match.range(at: 1), in: page).map { unescape(String(page[$0])) }
        }
    }

    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    func dig(_ named: NamedServer) throws -> [[String]] {
        try ["_sipinternaltls._tcp", "_sip._tcp"].map {
            try LabTool.dig(named.host, named.port, "\($0).contoso.test.", "SRV")
        }
    }

    @Test("the runbook's nsupdate script performs the cutover, and the failback's reverses it")
    func dnsFallbackCutsOverThroughNsupdate() async throws {
        let lab = try LabDirectory(prefix: "runbook-dns")
        defer { lab.remove() }
        let named = try NamedServer.start(
            in: lab, zone: "contoso.test",
            records: ["_sipinternaltls._tcp 300 IN SRV \(Self.primaryTLS)", "_sip._tcp 300 IN SRV \(Self.primarySIP)"])
        defer { named.stop() }
        try lab.write("rtc.bak", String(repeating: "database page\n", count: 5000))
        let site = try Self.site(lab: lab, named: named)
        let state = ["--state", lab.file("state")]
        let replicated = try await standby.run(["replicate", site] + state, in: lab)
        #expect(replicated.status == 0, "\(replicated)")

        let file = lab.file("out/runbook.html")
        let written = try await standby.run(["plan", site, "--runbook", file] + state, in: lab)
        #expect(written.status == 0, "\(written)")
        #expect(written.stdout.contains("Runbook of runbooktest: \(file)"), "\(written)")
        let page = try String(contentsOfFile: file, encoding: .utf8)

        // The key is named by its path; its secret is never in the page.
        let keyText = try String(contentsOfFile: named.keyPath, encoding: .utf8)
        let secret = try #require(keyText.firstMatch(of: /secret\s+"([^"]+)"/)?.1)
        #expect(!page.contains(String(secret)), "the TSIG secret is not in the runbook")
        #expect(page.contains("nsupdate -k \(named.keyPath)"), "names the key file")

        // The data-loss window of the set replicated, and the people.
        #expect(page.contains("<td>rtc-db</td><td>database</td><td>1</td>"), "the set's newest verified version")
        #expect(page.contains("alice, bob"))
        #expect(page.contains("Owner: <span class=\"owner\">ucc-admins</span>"))
        #expect(page.contains("systemctl start fe@pool02-dr.contoso.test"), "the exec step's command line")
        #expect(page.contains("standby restore \(site) rtc-db --to \(lab.file("state"))/restore/rtc"))

        let failover = try #require(Self.blocks(page, language: "nsupdate", direction: "failover").first)
        let failback = try #require(Self.blocks(page, language: "nsupdate", direction: "failback").first)
        #expect(failover.contains("prereq yxrrset _sipinternaltls._tcp.contoso.test. IN SRV \(Self.primaryTLS)"))
        let nsupdate = try Programs.locate("nsupdate", package: "bind9-dnsutils")
        #expect(try dig(named) == [[Self.primaryTLS], [Self.primarySIP]])

        let cut = try LabTool.run(nsupdate, ["-k", named.keyPath], input: failover + "\n")
        #expect(cut.status == 0, "\(cut.output)")
        #expect(try dig(named) == [[Self.secondaryTLS], [Self.secondarySIP]], "the same cutover as stage 2")

        // A compare-and-swap: pasted again, the prerequisite fails and nothing changes.
        let again = try LabTool.run(nsupdate, ["-k", named.keyPath], input: failover + "\n")
        #expect(again.status != 0 && again.output.contains("NXRRSET"), "\(again.output)")
        #expect(try dig(named) == [[Self.secondaryTLS], [Self.secondarySIP]])

        let back = try LabTool.run(nsupdate, ["-k", named.keyPath], input: failback + "\n")
        #expect(back.status == 0, "\(back.output)")
        #expect(try dig(named) == [[Self.primaryTLS], [Self.primarySIP]], "the failback's script moves them back")

        // `dns switch`, Standby's own cutover, agrees: from the primary values to the secondary.
        let switched = try await standby.run(["dns", "switch", site, "--to", "secondary"] + state, in: lab)
        #expect(switched.status == 0, "\(switched)")
        #expect(try dig(named) == [[Self.secondaryTLS], [Self.secondarySIP]])
    }

    @Test("in headless Chromium the page holds every step, and its PDF holds every step and every command whole")
    func printsWithEveryStep() async throws {
        let lab = try LabDirectory(prefix: "runbook-print")
        defer { lab.remove() }
        let named = try NamedServer.start(
            in: lab, zone: "contoso.test",
            records: ["_sipinternaltls._tcp 300 IN SRV \(Self.primaryTLS)", "_sip._tcp 300 IN SRV \(Self.primarySIP)"])
        defer { named.stop() }
        try lab.write("rtc.bak", String(repeating: "database page\n", count: 5000))
        let site = try Self.site(lab: lab, named: named)
        let state = ["--state", lab.file("state")]
        let file = lab.file("runbook.html")
        let written = try await standby.run(["plan", site, "--runbook", file, "--json"] + state, in: lab)
        #expect(written.status == 0, "\(written)")

        // Every step of both procedures, from the runbook's own JSON, against the plan's.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(written.stdout.utf8)) as? [String: Any])
        var expected: [(String, String)] = []
        for procedure in (object["procedures"] as? [[String: Any]]) ?? [] {
            let direction = procedure["direction"] as? String ?? ""
            for stage in (procedure["stages"] as? [[String: Any]]) ?? [] {
                for step in (stage["steps"] as? [[String: Any]]) ?? [] {
                    expected.append((direction, step["id"] as? String ?? ""))
                }
            }
        }
        let plan = try await standby.run(["plan", site, "--json"] + state, in: lab)
        let planned = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
        var planIds = ["dns/cutover"]
        for stage in (planned["stages"] as? [[String: Any]]) ?? [] {
            for service in (stage["services"] as? [[String: Any]]) ?? [] {
                for step in (service["steps"] as? [[String: Any]]) ?? [] { planIds.append(step["id"] as? String ?? "") }
            }
        }
        #expect(Set(expected.filter { $0.0 == "failover" }.map(\.1)) == Set(planIds), "\(expected) vs \(planIds)")
        #expect(expected.contains { $0 == ("failback", "core/stop-secondary") })
        #expect(expected.contains { $0 == ("failback", "dns/cutover") })

        let chromium = try Programs.locate("chromium", package: "chromium")
        var common = ["--headless", "--disable-gpu", "--user-data-dir=\(lab.file("chromium"))"]
        if geteuid() == 0 { common.insert("--no-sandbox", at: 0) }
        let dom = try await StandbyRunner(path: chromium).run(common + ["--dump-dom", "file://\(file)"], in: lab)
        #expect(dom.status == 0, "\(dom.stderr)")
        for (direction, id) in expected {
            let anchor = "id=\"\(direction)-\(id.replacingOccurrences(of: "/", with: "-"))\" data-step=\"\(id)\""
            #expect(dom.stdout.contains(anchor), "the rendered page has \(direction) step \(id)")
        }

        let pdf = lab.file("runbook.pdf")
        let printed = try await StandbyRunner(path: chromium).run(
            common + ["--no-pdf-header-footer", "--print-to-pdf=\(pdf)", "file://\(file)"], in: lab)
        #expect(printed.status == 0, "\(printed.stderr)")
        let pdftotext = try Programs.locate("pdftotext", package: "poppler-utils")
        let text = try LabTool.run(pdftotext, [pdf, "-"])
        #expect(text.status == 0, "\(text.output)")
        let pages = text.output.split(separator: "\u{0C}").count
        #expect(pages >= 2, "the runbook runs over \(pages) pages")
        // Whitespace aside (a long line wraps onto the next), the printed text holds every step
        // and every line of every command: nothing runs off the paper's edge or is clipped.
        func squeezed(_ s: String) -> String {
            String(s.unicodeScalars.filter { !CharacterSet.whitespacesAndNewlines.contains($0) }.map(Character.init))
        }
        let printedText = squeezed(text.output)
        for (direction, id) in expected {
            #expect(printedText.contains(squeezed(id)), "the PDF shows \(direction) step \(id)")
        }
        let page = try String(contentsOfFile: file, encoding: .utf8)
        var commands = 0
        for language in ["nsupdate", "shell"] {
            for direction in ["failover", "failback"] {
                for block in Self.blocks(page, language: language, direction: direction) {
                    for line in block.split(separator: "\n") {
                        commands += 1
                        #expect(printedText.contains(squeezed(String(line))), "the PDF shows whole: \(line)")
                    }
                }
            }
        }
        #expect(commands > 20, "\(commands) command lines checked")
    }

    @Test("standby run rewrites STATE/runbook.html when site.yaml changes and after a drill")
    func serviceKeepsTheRunbook() async throws {
        let lab = try LabDirectory(prefix: "runbook-run")
        defer { lab.remove() }
        let named = try NamedServer.start(
            in: lab, zone: "contoso.test",
            records: ["_sipinternaltls._tcp 300 IN SRV \(Self.primaryTLS)", "_sip._tcp 300 IN SRV \(Self.primarySIP)"])
        defer { named.stop() }
        try lab.write("rtc.bak", String(repeating: "database page\n", count: 5000))
        let site = try Self.site(lab: lab, named: named)
        let state = lab.file("state")
        let replicated = try await standby.run(["replicate", site, "--state", state], in: lab)
        #expect(replicated.status == 0, "\(replicated)")
        let runbook = (state as NSString).appendingPathComponent("runbook.html")

        let running = try standby.start(
            ["run", site, "--state", state, "--listen", "127.0.0.1:0", "--tick-milliseconds", "100"], in: lab)
        func waitFor(_ text: String) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if let page = try? String(contentsOfFile: runbook, encoding: .utf8), page.contains(text) { return true }
                try await Task.sleep(for: .milliseconds(200))
            }
            return false
        }
        let first = try await waitFor("Incident leads</b> (who may declare the site lost and decide): alice, bob.")
        #expect(first, "written at start")
        #expect(try await waitFor("No drill recorded"), "no drill yet")

        // A topology change: another incident lead.
        let yaml = site + "/site.yaml"
        let text = try String(contentsOfFile: yaml, encoding: .utf8)
        try Data(
            text.replacingOccurrences(of: "incident_leads: [alice, bob]", with: "incident_leads: [alice, bob, carol]")
                .utf8
        )
        .write(to: URL(fileURLWithPath: yaml))
        #expect(try await waitFor("alice, bob, carol."), "rewritten after the topology changed")

        // A drill: its record appears.
        let drill = try await standby.run(["drill", site, "--state", state, "--lead", "carol"], in: lab)
        #expect(drill.status == 0, "\(drill)")
        #expect(try await waitFor("<td>carol</td><td>passed</td>"), "rewritten after the drill")

        kill(running.pid, SIGTERM)
        let stopped = await running.wait()
        #expect(stopped.status == 0, "\(stopped)")
        #expect(stopped.stderr.contains("Runbook written"), "\(stopped.stderr)")
    }
}
