import Foundation
import StandbyDNS
import Testing

@testable import StandbyCore

/// Values that would make the controller act on nothing, or on something else than it says:
/// each fixture under `Fixtures/refused` is the minimal topology with one such value, and its
/// first line says where the loader must point and what it must say.
@Suite("Topologies refused for a value that acts on nothing")
struct RefusedTopologyTests {
    struct Expectation {
        var line: Int
        var column: Int
        var words: String
    }

    /// `# refused at LINE:COL: WORDS`, the fixture's first line.
    static func expectation(of text: String) -> Expectation? {
        let prefix = "# refused at "
        guard let first = text.split(separator: "\n").first, first.hasPrefix(prefix) else { return nil }
        let rest = first.dropFirst(prefix.count)
        let parts = rest.split(separator: ":", maxSplits: 2)
        guard parts.count == 3, let line = Int(parts[0]), let column = Int(parts[1]) else { return nil }
        return Expectation(line: line, column: column, words: parts[2].trimmingCharacters(in: .whitespaces))
    }

    static let fixtures: [String] = {
        let directory = Fixture.path("refused")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.sorted()
    }()

    @Test func everyCaseOfTheIssueHasAFixture() {
        #expect(
            Set(Self.fixtures).isSuperset(of: [
                "record-values-empty", "record-value-not-rdata", "dns-servers-null", "dns-server-twice", "exec-empty",
                "exec-number", "exec-null-argument", "probe-dns-type", "probe-sip-transport", "pool-number",
                "name-control-character", "name-bidi-override", "role-unknown", "service-named-dns",
                "service-named-reverse", "service-named-final",
            ]), "\(Self.fixtures)")
    }

    @Test(arguments: fixtures)
    func refusedAtItsLineAndColumn(name: String) throws {
        let text = Fixture.text("refused/\(name)/site.yaml")
        let expected = try #require(
            Self.expectation(of: text), "\(name): the first line must be '# refused at L:C: words'")
        let found = diagnostics(text)
        #expect(found.count == 1, "\(name): one problem, one message: \(found)")
        let match = try #require(found.first { $0.message.contains(expected.words) }, "\(name): \(found)")
        #expect(match.line == expected.line && match.column == expected.column, "\(name): \(match)")
        #expect(match.description.hasPrefix("site.yaml:\(expected.line):\(expected.column): "))
        // The message itself shows no hidden character, whatever the file held.
        #expect(YAMLReader.hiddenCharacter(in: match.description.replacingOccurrences(of: "\n", with: " ")) == nil)
    }

    @Test func aQuotedNullIsTheWordAndAnEmptyLaterArgumentStays() throws {
        let t = try topology(
            try Fixture.minimal([
                ("{ name: start, exec: [/bin/true] }", "{ name: start, exec: [/bin/echo, \"null\", \"\"] }")
            ]))
        let step = try #require(t.service(named: "conferencing")?.steps.first)
        guard case .exec(let arguments, _, _, _) = step.action else {
            Issue.record("not an exec step: \(step)")
            return
        }
        #expect(arguments == ["/bin/echo", "null", ""])
    }

    @Test func aCNAMESetHoldsOneNameAndAValueIsGivenOnce() throws {
        let record =
            "{ name: _sip._tcp, type: SRV, ttl: 300, primary: \"0 0 443 sip.fabrikam.com.\", secondary: \"0 0 443 sip-dr.fabrikam.com.\" }"
        let twoNames = try Fixture.minimal([
            (
                record,
                "{ name: sip, type: CNAME, primary: [a.fabrikam.com., b.fabrikam.com.], secondary: c.fabrikam.com. }"
            )
        ])
        #expect(
            diagnostics(twoNames).map(\.message) == [
                "dns.records[1].primary: a CNAME record set holds exactly one name, not 2"
            ])
        let twice = try Fixture.minimal([
            (
                "primary: \"0 0 443 sip.fabrikam.com.\"",
                "primary: [\"0 0 443 sip.fabrikam.com.\", \"0  0 443 sip.fabrikam.com.\"]"
            )
        ])
        #expect(
            diagnostics(twice).contains { $0.message.contains("is the same value as item 0") }, "\(diagnostics(twice))")
    }

    // MARK: The property

    /// A small deterministic generator, so that a failure names a seed that reproduces it.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let types = ["SRV", "A", "AAAA", "CNAME", "TXT"]

    /// A value for `type`, valid or not, sometimes empty or blank.
    static func value(_ type: String, valid: Bool, using g: inout SplitMix64) -> String {
        let n = Int.random(in: 1...250, using: &g)
        if valid {
            switch type {
            case "SRV": return "\(Int.random(in: 0...20, using: &g)) 0 \(5060 + n) pool\(n).fabrikam.com."
            case "A": return "192.0.2.\(n)"
            case "AAAA": return "2001:db8::\(String(n, radix: 16))"
            case "CNAME": return "pool\(n).fabrikam.com."
            default: return "\"v=\(n)\""
            }
        }
        let bad: [String] =
            switch type {
            case "SRV": ["0 0 5061", "0 0 70000 pool.fabrikam.com.", "pool\(n).fabrikam.com", "0 0 x pool."]
            case "A": ["192.0.2.\(n + 256)", "2001:db8::1", "pool\(n)", "1.2.3"]
            case "AAAA": ["192.0.2.\(n)", "2001:db8:::\(n)::1", "zz::1"]
            case "CNAME": ["a..b.", String(repeating: "x", count: 64) + ".fabrikam.com."]
            default: []
            }
        return (bad + ["", " ", "null", "~"]).randomElement(using: &g) ?? ""
    }

    /// One side of a record: a list of 0...3 values, a single value, null, or nothing at all.
    static func side(_ type: String, using g: inout SplitMix64) -> String {
        func quoted(_ v: String) -> String {
            v == "null" || v == "~" ? v : "\"" + v.replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        switch Int.random(in: 0..<12, using: &g) {
        case 0: return "[]"
        case 1: return "null"
        case 2, 3: return quoted(value(type, valid: Int.random(in: 0..<10, using: &g) > 0, using: &g))
        default:
            let count = Int.random(in: 1...3, using: &g)
            let values = (0..<count).map { _ in
                quoted(value(type, valid: Int.random(in: 0..<10, using: &g) > 0, using: &g))
            }
            return "[" + values.joined(separator: ", ") + "]"
        }
    }

    static func records(using g: inout SplitMix64) -> String {
        let count = Int.random(in: 0...4, using: &g)
        return (0..<count).map { i in
            let type = types.randomElement(using: &g) ?? "SRV"
            let name = Int.random(in: 0..<8, using: &g) == 0 ? "_sip._tcp" : "r\(i)._tcp"
            return
                "    - { name: \(name), type: \(type), ttl: 60, primary: \(side(type, using: &g)), secondary: \(side(type, using: &g)) }"
        }.joined(separator: "\n")
    }

    @Test func noTopologyThatLoadsMakesThePlanSendAnEmptyValueSet() throws {
        let fixture = try Fixture.minimal()
        let start = try #require(fixture.range(of: "  records:\n"))
        let end = try #require(fixture.range(of: "health:\n"))
        var loaded = 0
        var refused = 0
        var changes = 0
        for seed in UInt64(1)...1000 {
            var g = SplitMix64(state: seed)
            let body = Self.records(using: &g)
            let text =
                fixture[..<start.upperBound] + (body.isEmpty ? "    []\n" : body + "\n") + fixture[end.lowerBound...]
            guard case .success(let t) = load(String(text)) else {
                refused += 1
                continue
            }
            loaded += 1
            for direction in [Planner.Direction.failover, .failback] {
                let plan = try Planner(topology: t, now: Fixture.now).plan(scenario: "site-loss", direction: direction)
                for change in plan.stages.flatMap(\.dnsChanges) {
                    changes += 1
                    #expect(!change.from.isEmpty && !change.to.isEmpty, "seed \(seed) \(direction): \(change)\n\(body)")
                    for value in change.from + change.to {
                        #expect(
                            (try? RecordData.canonical(value, type: change.type, owner: change.name)) != nil,
                            "seed \(seed): '\(value)' is not \(change.type) data\n\(body)")
                    }
                }
            }
        }
        // The generator must exercise both sides of the rule.
        #expect(
            loaded > 100 && refused > 100 && changes > 200, "loaded \(loaded), refused \(refused), changes \(changes)")
    }
}
