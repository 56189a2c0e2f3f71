import ArgumentParser
import Foundation
import Logging
import StandbyDNS
import StandbyLab

/// The DNS cutover of the two SIP SRV records (update + verification on both authoritative
/// servers) by `DNSCutover`, side by side with what an operator would script: `nsupdate -k` with
/// the same prerequisites, then a `dig` loop on every server until each serves the new values
/// with the AA bit. Both run against the same named (primary) + knotd (secondary) on loopback,
/// alternating, so each round moves the records the other way.
struct DNSBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns",
        abstract: "Cutover of two SRV records on named + knotd: DNSCutover vs nsupdate + dig polling.")

    @Option(help: "Measured switches per tool (each tool switches this many times, back and forth).")
    var rounds: Int = 20

    @Option(help: "Unmeasured switches per tool first.")
    var warmup: Int = 2

    // knotd defers a refresh that a NOTIFY asks for within about a second of its previous one, so
    // back-to-back switches would measure knotd's timer, not the tools. Each switch starts quiet.
    @Option(help: "Seconds to let the servers settle before each switch (not measured).")
    var settle: Double = 1.1

    static let zone = "contoso.test"
    static let names = ["_sipinternaltls._tcp", "_sip._tcp"]
    static let sides: [[String]] = [
        ["0 0 5061 pool01.contoso.test.", "0 0 443 sip.contoso.test."],
        ["0 0 5061 pool02-dr.contoso.test.", "0 0 443 sip-dr.contoso.test."],
    ]

    func run() async throws {
        let lab = try LabDirectory(prefix: "standby-bench-dns")
        defer { lab.remove() }
        let knotPort = try KnotServer.reservePort()
        let named = try NamedServer.start(
            in: lab, zone: Self.zone,
            records: zip(Self.names, Self.sides[0]).map { "\($0) 300 IN SRV \($1)" }, notify: [knotPort])
        defer { named.stop() }
        let knot = try KnotServer.start(in: lab, zone: Self.zone, primaryPort: named.port, port: knotPort)
        defer { knot.stop() }

        let key = try TSIGKey.load(path: named.keyPath)
        let servers = try [DNSServer(parsing: named.address), DNSServer(parsing: knot.address)]
        // BENCH_DEBUG=1 shows the cutover's own log (with timestamps) on stderr.
        var logger = Logger(label: "standby.bench.dns") { label -> any LogHandler in
            ProcessInfo.processInfo.environment["BENCH_DEBUG"] == nil
                ? SwiftLogNoOpLogHandler() : StreamLogHandler.standardError(label: label)
        }
        logger.logLevel = .debug
        let nsupdate = try Programs.locate("nsupdate", package: "bind9-dnsutils")
        let dig = try Programs.locate("dig", package: "bind9-dnsutils")
        let endpoints = [(named.host, named.port), (knot.host, knot.port)]

        print("named \(named.address) (primary) + knotd \(knot.address) (secondary, NOTIFY + IXFR), zone \(Self.zone)")
        print("each switch: one signed update of 2 SRV records with prerequisites, then both servers verified")
        print("\(rounds) measured switches per tool, alternating direction, \(settle) s settle before each")

        var side = 0
        var standbyTimes: [Duration] = []
        var scriptTimes: [Duration] = []
        for round in 0..<(warmup + rounds) {
            // DNSCutover moves side -> other side.
            let cutover = try DNSCutover(
                zone: Self.zone, servers: servers, key: key,
                changes: (0..<2).map {
                    RecordChange(
                        name: Self.names[$0], type: "SRV", ttl: 300, from: [Self.sides[side][$0]],
                        to: [Self.sides[1 - side][$0]])
                }, verifyTimeout: .seconds(30), logger: logger)
            try await Task.sleep(for: .seconds(settle))
            let started = ContinuousClock.now
            let result = try await cutover.run()
            let standby = ContinuousClock.now - started
            guard result.outcome == .applied else { throw ValidationError("DNSCutover did not apply: \(result)") }
            side = 1 - side

            // nsupdate + dig moves it back.
            try await Task.sleep(for: .seconds(settle))
            let scripted = try Self.nsupdateAndDig(
                nsupdate: nsupdate, dig: dig, keyPath: named.keyPath, primary: endpoints[0], servers: endpoints,
                from: Self.sides[side], to: Self.sides[1 - side], scratch: lab.file("nsupdate-\(round).txt"))
            side = 1 - side

            if round >= warmup {
                standbyTimes.append(standby)
                scriptTimes.append(scripted)
            }
        }

        print("")
        print(Self.row("tool", "switches", "total", "mean", "median", "p90", "min", "max"))
        print(Self.summary("DNSCutover (libldns)", standbyTimes))
        print(Self.summary("nsupdate -k + dig loop", scriptTimes))
        let ratio = seconds(Self.mean(scriptTimes)) / max(1e-9, seconds(Self.mean(standbyTimes)))
        print(String(format: "ratio (nsupdate+dig mean / DNSCutover mean): %.1fx", ratio))
    }

    /// One switch the way a shell script would do it: nsupdate with the same prerequisites, then
    /// dig each server (both names in one dig) until it serves the new values authoritatively.
    static func nsupdateAndDig(
        nsupdate: String, dig: String, keyPath: String, primary: (String, UInt16), servers: [(String, UInt16)],
        from: [String], to: [String], scratch: String
    ) throws -> Duration {
        var commands = ["server \(primary.0) \(primary.1)", "zone \(zone)."]
        for (index, name) in names.enumerated() {
            commands.append("prereq yxrrset \(name).\(zone). IN SRV \(from[index])")
        }
        for (index, name) in names.enumerated() {
            commands.append("update delete \(name).\(zone). IN SRV")
            commands.append("update add \(name).\(zone). 300 IN SRV \(to[index])")
        }
        commands.append("send")
        try Data((commands.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: scratch))

        let started = ContinuousClock.now
        let update = try LabTool.run(nsupdate, ["-k", keyPath, "-v", scratch])
        guard update.status == 0 else { throw ValidationError("nsupdate failed: \(update.output)") }
        try waitUntilServed(dig: dig, servers: servers, from: from, to: to)
        return ContinuousClock.now - started
    }

    /// Polls each server with `dig` (both names in one query) until it serves `to`, and none of
    /// `from`, authoritatively: what an operator's script waits for after its update.
    static func waitUntilServed(
        dig: String, servers: [(String, UInt16)], from: [String], to: [String], zone: String = zone,
        what: @autoclosure () -> String = "the update"
    ) throws {
        for (host, port) in servers {
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                let answer = try LabTool.run(
                    dig,
                    ["+norec", "+time=1", "+tries=1", "@\(host)", "-p", "\(port)"]
                        + names.flatMap { ["\($0).\(zone).", "SRV"] })
                let authoritative = answer.output.components(separatedBy: "flags: qr aa").count - 1 == names.count
                if answer.status == 0 && authoritative && to.allSatisfy(answer.output.contains)
                    && !from.contains(where: answer.output.contains)
                {
                    break
                }
                guard ContinuousClock.now < deadline else {
                    throw ValidationError("\(host):\(port) never served \(to) after \(what())")
                }
                usleep(10_000)
            }
        }
    }

    static func mean(_ times: [Duration]) -> Duration {
        times.isEmpty ? .zero : times.reduce(.zero, +) / times.count
    }

    static func row(_ columns: String...) -> String {
        columns.enumerated().map { index, text in
            index == 0
                ? text.padding(toLength: 26, withPad: " ", startingAt: 0)
                : String(repeating: " ", count: max(0, 10 - text.count)) + text
        }.joined()
    }

    static func summary(_ name: String, _ times: [Duration]) -> String {
        let sorted = times.sorted()
        func ms(_ duration: Duration) -> String { String(format: "%.1f ms", seconds(duration) * 1000) }
        guard let first = sorted.first, let last = sorted.last else { return name }
        return row(
            name, "\(times.count)", String(format: "%.2f s", seconds(times.reduce(.zero, +))), ms(mean(times)),
            ms(sorted[sorted.count / 2]), ms(sorted[min(sorted.count - 1, sorted.count * 9 / 10)]), ms(first), ms(last))
    }
}
