import Foundation
import StandbyLab
import Testing

/// `standby check` and `standby plan` as a user runs them: the built binary, its exit code,
/// stdout and stderr.
@Suite("check and plan through the binary")
struct CheckAndPlanCLITests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let now = "2026-11-25T12:00:00Z"

    func site(_ name: String) -> String { "\(Self.repository)/sites/\(name)" }

    func run(_ arguments: [String]) throws -> StandbyLab.StandbyBinary.Result {
        let state = try LabDirectory(prefix: "standby-cli")
        defer { state.remove() }
        return try StandbyLab.StandbyBinary().run(arguments + ["--state", state.path])
    }

    func write(_ text: String) throws -> (LabDirectory, String) {
        let directory = try LabDirectory(prefix: "standby-site")
        try directory.write("site.yaml", text)
        return (directory, directory.path)
    }

    @Test func contosoChecksCleanWithExitZero() throws {
        let result = try run(["check", site("contoso"), "--now", Self.now])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("contoso: 0 errors, 0 warnings"))
    }

    @Test func labChecksClean() throws {
        let result = try run(["check", site("lab"), "--now", Self.now])
        #expect(result.status == 0, "\(result)")
    }

    @Test func warningsOnlyExitOne() throws {
        let text = try String(contentsOfFile: "\(site("contoso"))/site.yaml", encoding: .utf8)
            .replacingOccurrences(of: "rpo: 24h\n    keep: { last: 14 }", with: "rpo: 48h\n    keep: { last: 14 }")
        let (directory, path) = try write(text)
        defer { directory.remove() }
        let result = try run(["check", path, "--now", Self.now])
        #expect(result.status == 1, "\(result)")
        #expect(result.stdout.contains("warning: backup set rtc-db allows 2d of data loss"))
        #expect(result.stdout.contains("[rpo-over-24h]"))
        #expect(result.stdout.contains("    fix: "))
    }

    @Test func invalidFileExitsTwoWithEveryErrorPositioned() throws {
        let text = try String(contentsOfFile: "\(site("contoso"))/site.yaml", encoding: .utf8)
            .replacingOccurrences(of: "timezone: Europe/Dublin", with: "timezone: Europe/Atlantis")
            .replacingOccurrences(of: "    priority: 8\n", with: "    priority: last\n")
        let (directory, path) = try write(text)
        defer { directory.remove() }
        let result = try run(["check", path])
        #expect(result.status == 2, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 2, "\(result.stderr)")
        #expect(lines.allSatisfy { $0.hasPrefix("\(path)/site.yaml:") })
        #expect(result.stderr.contains("'Europe/Atlantis' is not a known time zone"))
        #expect(result.stderr.contains("must be a whole number, not 'last'"))
    }

    @Test func errorFindingsExitTwo() throws {
        let text = try String(contentsOfFile: "\(site("contoso"))/site.yaml", encoding: .utf8)
            .replacingOccurrences(of: "pool: pool02-dr.contoso.com ", with: "pool: pool01.contoso.com ")
        let (directory, path) = try write(text)
        defer { directory.remove() }
        let result = try run(["check", path, "--now", Self.now])
        #expect(result.status == 2, "\(result)")
        #expect(
            result.stdout.contains(
                "error: the secondary site's pool pool01.contoso.com has the primary's pool name [pool-name-reused]"))
    }

    static let refusedDirectory = "\(repository)/Tests/StandbyCoreTests/Fixtures/refused"
    static let refusedFixtures = ((try? FileManager.default.contentsOfDirectory(atPath: refusedDirectory)) ?? [])
        .sorted()

    /// Each value the loader refuses (the fixtures of StandbyCoreTests, whose first line reads
    /// `# refused at LINE:COL: WORDS`), through the binary: exit 2, one message, at its place.
    @Test(arguments: refusedFixtures)
    func refusedValueExitsTwoAtItsPlace(name: String) throws {
        let directory = "\(Self.refusedDirectory)/\(name)"
        let text = try String(contentsOfFile: "\(directory)/site.yaml", encoding: .utf8)
        let header = try #require(text.split(separator: "\n").first?.split(separator: ":", maxSplits: 2))
        try #require(header.count == 3 && header[0].hasPrefix("# refused at "), "\(name): \(header)")
        let place = "\(header[0].dropFirst("# refused at ".count)):\(header[1])"
        let words = header[2].trimmingCharacters(in: .whitespaces)
        let result = try run(["check", directory, "--now", Self.now])
        #expect(result.status == 2, "\(name): \(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(name): \(result.stderr)")
        #expect(lines.first?.hasPrefix("\(directory)/site.yaml:\(place): ") == true, "\(name): \(result.stderr)")
        #expect(result.stderr.contains(words), "\(name): \(result.stderr)")
    }

    @Test func everyRefusedFixtureIsFound() {
        #expect(Self.refusedFixtures.count >= 16, "\(Self.refusedFixtures)")
    }

    @Test func checkJSON() throws {
        let result = try run(["check", site("contoso"), "--json", "--now", Self.now])
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["deployment"] as? String == "contoso")
        #expect(object["errors"] as? Int == 0)
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.allSatisfy { $0["id"] != nil && $0["severity"] != nil && $0["fix"] != nil })

        let (directory, path) = try write("deployment: x\nsites: 3\n")
        defer { directory.remove() }
        let bad = try run(["check", path, "--json"])
        #expect(bad.status == 2)
        let badObject = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any])
        let diagnostics = try #require(badObject["diagnostics"] as? [[String: Any]])
        #expect(
            diagnostics.contains {
                ($0["message"] as? String)?.contains("sites must be a mapping") == true && $0["line"] as? Int == 2
            })
    }

    @Test func planShowsStagesWindowAndDNS() throws {
        let result = try run(["plan", site("contoso"), "--now", Self.now])
        #expect(result.status == 0, "\(result)")
        let out = result.stdout
        let stage1 = try #require(out.range(of: "Stage 1: Core services"))
        let stage2 = try #require(out.range(of: "Stage 2: DNS cutover of contoso.com"))
        let stage3 = try #require(out.range(of: "Stage 3: Optional services"))
        #expect(stage1.lowerBound < stage2.lowerBound && stage2.lowerBound < stage3.lowerBound)
        #expect(out.contains("next opens Wed 2026-11-25 22:00 GMT"))
        // Planned inside the window (23:30 in Dublin), the stage runs at once and says until when.
        let late = try run(["plan", site("contoso"), "--now", "2026-11-25T23:30:00Z"])
        #expect(
            late.stdout.contains(
                "runs at once: the off-peak window 22:00-05:00 is open now, until Thu 2026-11-26 05:00 GMT"),
            "\(late.stdout)")
        #expect(out.contains("0 0 5061 pool01.contoso.com. → 0 0 5061 pool02-dr.contoso.com."))
        #expect(out.contains("group-chat: Rebuilt at the primary after recovery"))
        #expect(out.contains("enterprise-voice [priority 2, after core (depends_on)"))
        // Every step's action starts in one column, the longest step id's included.
        let steps = out.split(separator: "\n").filter { $0.hasPrefix("       ") && $0.contains("/") }
        let columns = Set(
            steps.map { line in
                let id = line.drop { $0 == " " }.prefix { $0 != " " }
                let gap = line[id.endIndex...].prefix { $0 == " " }.count
                return line.distance(from: line.startIndex, to: id.endIndex) + gap
            })
        #expect(steps.count > 20 && columns.count == 1, "\(columns)")
    }

    @Test func planJSONAndScenarios() throws {
        let result = try run(["plan", site("contoso"), "--json", "--scenario", "monitoring-server", "--now", Self.now])
        #expect(result.status == 0, "\(result)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let stages = try #require(object["stages"] as? [[String: Any]])
        #expect(stages.compactMap { $0["kind"] as? String } == ["core", "optional"])
        let services = stages.flatMap { ($0["services"] as? [[String: Any]]) ?? [] }.compactMap {
            $0["name"] as? String
        }
        #expect(services == ["monitoring"])

        let unknown = try run(["plan", site("contoso"), "--scenario", "meteor"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("no scenario 'meteor'; known: site-loss, back-end-database"))
    }

    @Test func usageErrorsExitTwo() throws {
        let result = try run(["plan"])
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("Missing expected argument '<site>'"))
        let missing = try run(["check", "/nonexistent/deployment"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/deployment:1:1: no such file"))
    }
}
