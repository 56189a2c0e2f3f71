import ArgumentParser
import Foundation
import Logging
import StandbyCore
import StandbyDNS

/// `standby dns show|switch|prepare SITE`: the DNS cutover on its own, for use by hand and for
/// rehearsals. The failover engine runs the same compare-and-swap as its stage 2.
struct DNSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns",
        abstract: "Show, switch or prepare the SIP SRV records on every authoritative server.",
        subcommands: [Show.self, Switch.self, Prepare.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Each record on each server, marked primary, secondary or other.")

        @OptionGroup var site: SiteOptions
        @OptionGroup var output: OutputOptions

        struct Row: Encodable {
            var server: String
            var name: String
            var type: String
            /// primary, secondary, other, absent, or unknown (not authoritative, no answer).
            var points: String
            var values: [String]
            var ttl: UInt32?
            var authoritative: Bool
            var rcode: String
            var soaSerial: UInt32?
        }

        struct Report: Encodable {
            var deployment: String
            var zone: String
            var records: [Row]
            var problems: [String: String]
        }

        func run() async throws {
            let topology = try site.loadTopology()
            let setup = try DNSSetup(topology: topology)
            let states = await DNSCutover.survey(
                zone: setup.zone, servers: setup.servers,
                records: setup.records.map { RecordSetName(name: $0.name, type: $0.type) }, logger: setup.logger)
            var rows: [Row] = []
            var problems: [String: String] = [:]
            for state in states {
                if let problem = state.problem { problems[state.server.description] = problem }
                for (answer, record) in zip(state.records, setup.records) {
                    rows.append(
                        Row(
                            server: state.server.description, name: answer.name, type: answer.type,
                            points: DNSSetup.points(answer, record), values: answer.rdata, ttl: answer.ttl,
                            authoritative: answer.authoritative, rcode: answer.rcode.description,
                            soaSerial: state.soaSerial))
                }
            }
            if output.json {
                try JSON.print(
                    Report(deployment: topology.deployment, zone: setup.zone, records: rows, problems: problems))
            } else {
                print("DNS of \(topology.deployment), zone \(setup.zone):")
                let width = rows.map(\.name.count).max() ?? 0
                for state in states {
                    print("  \(state.server) (serial \(state.soaSerial.map(String.init) ?? "?"))")
                    for row in rows where row.server == state.server.description {
                        var line =
                            "    \(row.name.padded(to: width)) \(row.type.padded(to: 5)) \(row.points.padded(to: 9)) "
                            + (row.values.isEmpty ? "(none)" : row.values.joined(separator: ", "))
                        if let ttl = row.ttl { line += "  ttl \(ttl)" }
                        if !row.authoritative { line += "  (not authoritative)" }
                        if row.rcode != "NOERROR" { line += "  \(row.rcode)" }
                        print(line)
                    }
                    if let problem = state.problem { print("    \(problem)") }
                }
            }
            if !problems.isEmpty { throw CommandExit(.failed) }
        }
    }

    struct Switch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the records to one site's values (compare-and-swap), then verify every server.",
            discussion: """
                One TSIG-signed update to the first server, with prerequisites that every record still \
                holds the other site's values; then every server is queried until it serves the new \
                values authoritatively. Records already at the target: nothing is sent, the servers are \
                verified. Exit 0 when done, 3 when a record no longer holds the expected value (someone \
                else changed it; nothing was changed), 1 for other failures.
                """)

        @OptionGroup var site: SiteOptions
        @OptionGroup var output: OutputOptions

        enum Side: String, ExpressibleByArgument, CaseIterable {
            case primary, secondary
        }

        @Option(help: "The site the records should point to: secondary or primary.")
        var to: Side

        @Flag(
            help: "A no-op update: proves the key, the expected values and the right to change them; changes nothing.")
        var dryRun = false

        func run() async throws {
            let topology = try site.loadTopology()
            let setup = try DNSSetup(topology: topology)
            let changes = setup.records.map { record in
                RecordChange(
                    name: record.name, type: record.type, ttl: UInt32(clamping: record.ttl),
                    from: to == .secondary ? record.primary : record.secondary,
                    to: to == .secondary ? record.secondary : record.primary)
            }
            try await DNSSetup.reporting(json: output.json) { () async throws(DNSError) -> CutoverResult in
                let cutover = try DNSCutover(
                    zone: setup.zone, servers: setup.servers, auth: try setup.authentication(),
                    changes: changes, verifyTimeout: setup.verifyTimeout, logger: setup.logger)
                return try await cutover.run(dryRun: dryRun)
            }
        }
    }

    struct Prepare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Lower the records' TTLs ahead of a planned switch (--ttl), or put the topology's back (--restore).",
            discussion: "The values stay as they are; the TTL change is itself a compare-and-swap on them.")

        @OptionGroup var site: SiteOptions
        @OptionGroup var output: OutputOptions

        @Option(help: "The TTL in seconds to set on every record, keeping its values.")
        var ttl: UInt32?

        @Flag(help: "Put back the TTLs of the topology.")
        var restore = false

        func validate() throws {
            if (ttl == nil) == !restore { throw ValidationError("give either --ttl SECONDS or --restore") }
        }

        func run() async throws {
            let topology = try site.loadTopology()
            let setup = try DNSSetup(topology: topology)
            let records = setup.records.map {
                RecordTTL(name: $0.name, type: $0.type, ttl: ttl ?? UInt32(clamping: $0.ttl))
            }
            // What clients gain: a resolver keeps an answer up to its TTL, so after a switch
            // clients may reach the old pool that long; the TTLs served now are what they hold.
            let served = await DNSCutover.survey(
                zone: setup.zone, servers: Array(setup.servers.prefix(1)),
                records: setup.records.map { RecordSetName(name: $0.name, type: $0.type) }, logger: setup.logger)
            let savings = zip(setup.records, records).map { record, target in
                let now = served.first?.records.first { $0.name == record.fqdn(in: setup.zone) }?.ttl
                return TTLSaving(
                    name: record.fqdn(in: setup.zone), type: record.type,
                    servedTTL: now.map(Int.init) ?? record.ttl, newTTL: Int(target.ttl))
            }
            if !output.json {
                for saving in savings { print(saving.description) }
            }
            try await DNSSetup.reporting(json: output.json) { () async throws(DNSError) -> CutoverResult in
                let cutover = try await DNSCutover.retime(
                    zone: setup.zone, servers: setup.servers, auth: try setup.authentication(),
                    records: records, verifyTimeout: setup.verifyTimeout, logger: setup.logger)
                return try await cutover.run()
            }
        }
    }

    /// How much sooner clients would see a switch once resolvers hold the new TTL.
    struct TTLSaving: CustomStringConvertible {
        var name: String
        var type: String
        var servedTTL: Int
        var newTTL: Int

        var description: String {
            let saved = servedTTL - newTTL
            if saved <= 0 {
                return
                    "\(name) \(type): TTL \(servedTTL) s → \(newTTL) s: clients would see a switch no sooner (up to \(newTTL) s on the old pool)"
            }
            return
                "\(name) \(type): TTL \(servedTTL) s → \(newTTL) s: clients see a switch up to \(saved) s sooner (at most \(newTTL) s on the old pool instead of \(servedTTL) s), once \(servedTTL) s have passed, as resolvers may hold the old TTL that long"
        }
    }
}

/// The topology's `dns` section as StandbyDNS's plain values.
struct DNSSetup {
    var zone: String
    var servers: [DNSServer]
    var settings: DNSSettings
    var directory: String
    var records: [DNSRecord]
    var verifyTimeout: Duration
    var logger: Logger

    init(topology: Topology) throws {
        guard let dns = topology.dns else {
            throw CommandExit(.badInput, "standby: \(topology.file) has no dns section")
        }
        zone = dns.zone
        var servers: [DNSServer] = []
        for text in dns.servers {
            do {
                servers.append(try DNSServer(parsing: text))
            } catch {
                throw CommandExit(.badInput, "standby: \(topology.file): dns.servers: \(error.message)")
            }
        }
        self.servers = servers
        settings = dns
        directory = topology.directory
        records = dns.records
        verifyTimeout = dns.verifyTimeout.duration
        // Warnings go to stderr; stdout keeps the result (and --json) clean.
        let logger = Logger(label: "standby.dns")
        self.logger = logger
    }

    /// The TSIG key of `dns.key`, or the GSS-TSIG session of `dns.gss_tsig`.
    func authentication() throws(DNSError) -> DNSAuthentication {
        try settings.authentication(baseDirectory: directory)
    }

    /// Which site's values an answer holds.
    static func points(_ answer: RecordSetAnswer, _ record: DNSRecord) -> String {
        guard answer.authoritative else { return "unknown" }
        if answer.holds(record.primary) { return "primary" }
        if answer.holds(record.secondary) { return "secondary" }
        if answer.rdata.isEmpty { return "absent" }
        return "other"
    }

    /// Runs a cutover and prints its result; a StandbyDNS error goes to the root, which maps it
    /// (a failed prerequisite is refused, 3). With --json the error's details (what each server
    /// serves) are printed as JSON too.
    static func reporting(json: Bool, _ body: () async throws(DNSError) -> CutoverResult) async throws {
        let result: CutoverResult
        do {
            result = try await body()
        } catch {
            // With --json the details go to stdout as well; the root prints and maps the error.
            if json { try JSON.print(ErrorReport(error)) }
            throw error
        }
        if json {
            try JSON.print(result)
        } else {
            print(result.description)
        }
    }

    struct ErrorReport: Encodable {
        var error: String
        var code: String
        var server: String?
        var servedNow: [ServerState]
        var servers: [ServerState]
        var clockSkewSeconds: Int64?

        init(_ error: DNSError) {
            self.error = error.message
            code = error.code.rawValue
            server = error.server?.description
            servedNow = error.servedNow
            servers = error.reports
            clockSkewSeconds = error.clockSkew
        }
    }
}
