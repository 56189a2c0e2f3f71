import ArgumentParser
import Foundation
import Logging
import StandbyDNS
import StandbyLab

/// The DNS cutover of the two SIP SRV records with GSS-TSIG on a Samba AD domain controller, side
/// by side with what an operator would script against Active Directory DNS: `kinit -k -t` with
/// the service account's keytab, then `nsupdate -g` with the same prerequisites, then `dig` until
/// the server serves the new values. Each round counts the whole negotiation (the Kerberos
/// tickets and the TKEY exchange) for both: Standby starts a new session every round. A third row
/// is Standby with its session kept, as within one failover (preflight, then the cutover).
struct GSSTSIGBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns-gss",
        abstract: "Cutover of two SRV records with GSS-TSIG on a Samba AD DC: DNSCutover vs kinit + nsupdate -g + dig.")

    @Option(help: "Measured switches per tool (each tool switches this many times, back and forth).")
    var rounds: Int = 20

    @Option(help: "Unmeasured switches per tool first.")
    var warmup: Int = 2

    static let zone = SambaDomainController.zone
    static let names = ["_sipinternaltls._tcp", "_sip._tcp"]
    static let sides: [[String]] = [
        ["0 0 5061 pool01.ad.lab.test.", "0 0 5060 sip.ad.lab.test."],
        ["0 0 5061 pool02-dr.ad.lab.test.", "0 0 5060 sip-dr.ad.lab.test."],
    ]

    func run() async throws {
        let lab = try LabDirectory(prefix: "standby-bench-gss")
        defer { lab.remove() }
        let dc = try SambaDomainController.start(in: lab)
        defer { dc.stop() }
        try dc.addRecord(Self.names[0], type: "SRV", "pool01.ad.lab.test 5061 0 0")
        try dc.addRecord(Self.names[1], type: "SRV", "sip.ad.lab.test 5060 0 0")
        let logger = Logger(label: "standby.bench.gss") { _ in SwiftLogNoOpLogHandler() }
        let server = try DNSServer(parsing: dc.dnsAddress)
        let source = GSSCredentialSource(
            principal: dc.principal, secret: .keytab(dc.keytabPath), krb5Conf: dc.krb5ConfPath)
        let nsupdate = try Programs.locate("nsupdate", package: "bind9-dnsutils")
        let dig = try Programs.locate("dig", package: "bind9-dnsutils")
        let kinit = try Programs.locate("kinit", package: "krb5-user")
        let env = try Programs.locate("env", package: "coreutils")

        print("Samba \(dc.dnsAddress) (AD DC, zone \(Self.zone)), account \(dc.principal) from its keytab")
        print("each switch: one GSS-TSIG-signed update of 2 SRV records with prerequisites, then the server verified")
        print("\(rounds) measured switches per tool, alternating direction")

        var side = 0
        var fresh: [Duration] = []
        var kept: [Duration] = []
        var scripted: [Duration] = []
        let keptSession = GSSTSIGSession(source)
        func cutover(_ session: GSSTSIGSession) throws -> DNSCutover {
            try DNSCutover(
                zone: Self.zone, servers: [server], auth: .gss(session),
                changes: (0..<2).map {
                    RecordChange(
                        name: Self.names[$0], type: "SRV", ttl: 900, from: [Self.sides[side][$0]],
                        to: [Self.sides[1 - side][$0]])
                }, verifyTimeout: .seconds(30), logger: logger)
        }
        for round in 0..<(warmup + rounds) {
            // A new session: credential from the keytab, TKEY negotiation, the update, verification.
            var started = ContinuousClock.now
            guard try await cutover(GSSTSIGSession(source)).run().outcome == .applied else {
                throw ValidationError("DNSCutover did not apply")
            }
            let newSession = ContinuousClock.now - started
            side = 1 - side

            started = ContinuousClock.now
            guard try await cutover(keptSession).run().outcome == .applied else {
                throw ValidationError("DNSCutover (kept session) did not apply")
            }
            let keptContext = ContinuousClock.now - started
            side = 1 - side

            let script = try Self.kinitNsupdateDig(
                env: env, kinit: kinit, nsupdate: nsupdate, dig: dig, dc: dc, from: Self.sides[side],
                to: Self.sides[1 - side], scratch: lab.file("nsupdate-\(round)"))
            side = 1 - side
            // Three switches a round: end where the next round's first one starts.
            if side == 1 {
                _ = try await cutover(keptSession).run()
                side = 0
            }
            if round >= warmup {
                fresh.append(newSession)
                kept.append(keptContext)
                scripted.append(script)
            }
        }
        print("")
        print(DNSBench.row("tool", "switches", "total", "mean", "median", "p90", "min", "max"))
        print(DNSBench.summary("DNSCutover, new session", fresh))
        print(DNSBench.summary("DNSCutover, kept context", kept))
        print(DNSBench.summary("kinit + nsupdate -g + dig", scripted))
        let ratio = seconds(DNSBench.mean(scripted)) / max(1e-9, seconds(DNSBench.mean(fresh)))
        print(String(format: "ratio (kinit+nsupdate+dig mean / DNSCutover new-session mean): %.2fx", ratio))
        print("negotiations by the kept session: \(keptSession.negotiations)")
    }

    /// One switch as a script against AD DNS would do it: a ticket from the keytab into a fresh
    /// cache, nsupdate -g with the same prerequisites, then dig until the server serves the values.
    static func kinitNsupdateDig(
        env: String, kinit: String, nsupdate: String, dig: String, dc: SambaDomainController, from: [String],
        to: [String], scratch: String
    ) throws -> Duration {
        var commands = ["server 127.0.0.1 \(dc.dnsPort)", "zone \(zone)."]
        for (index, name) in names.enumerated() {
            commands.append("prereq yxrrset \(name).\(zone). IN SRV \(from[index])")
        }
        for (index, name) in names.enumerated() {
            commands.append("update delete \(name).\(zone). IN SRV")
            commands.append("update add \(name).\(zone). 900 IN SRV \(to[index])")
        }
        commands.append("send")
        try Data((commands.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: scratch + ".txt"))
        let variables = ["KRB5_CONFIG=\(dc.krb5ConfPath)", "KRB5CCNAME=FILE:\(scratch).cc"]

        let started = ContinuousClock.now
        let ticket = try LabTool.run(env, variables + [kinit, "-k", "-t", dc.keytabPath, dc.principal])
        guard ticket.status == 0 else { throw ValidationError("kinit failed: \(ticket.output)") }
        // nsupdate -g reports "tsig verify failure" on Samba's reply and exits non-zero though the
        // update is applied (a fact of Samba 4.17); dig below is the proof, as it is for Standby.
        let update = try LabTool.run(env, variables + [nsupdate, "-g", scratch + ".txt"])
        try DNSBench.waitUntilServed(
            dig: dig, servers: [("127.0.0.1", dc.dnsPort)], from: from, to: to, zone: zone,
            what: "nsupdate -g (exit \(update.status)): \(update.output)")
        return ContinuousClock.now - started
    }
}
