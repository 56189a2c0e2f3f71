import Foundation

/// The failover and the failback as a person follows them without Standby: for each stage and
/// step, who owns it, what it does, and how to do it by hand (the `nsupdate` script of the DNS
/// change, the `standby restore` command and where the store's copy is, the exec step's command
/// line, the probe to check by hand); the data-loss window of every set as of the runbook's time,
/// the incident leads, and the drill record. Plain values: `html()` renders it for print.
public struct Runbook: Sendable, Codable {
    public var deployment: String
    public var generatedAt: Date
    public var topologyFile: String
    public var stateDirectory: String
    public var store: String
    public var primary: SiteLine
    public var secondary: SiteLine
    public var incidentLeads: [String]
    public var sets: [SetWindow]
    public var drills: [DrillLine]
    public var drillEvery: String
    public var procedures: [Procedure]

    public struct SiteLine: Sendable, Codable {
        public var name: String
        public var pool: String
        public var timezone: String
        public var offPeak: [String]
    }

    /// A set's data-loss window when the runbook was written.
    public struct SetWindow: Sendable, Codable {
        public var name: String
        public var kind: String
        public var rpoSeconds: Double
        public var version: Int64?
        public var capturedAt: Date?
        public var lossWindowSeconds: Double?
        public var breached: Bool

        public init(
            name: String, kind: String, rpoSeconds: Double, version: Int64?, capturedAt: Date?,
            lossWindowSeconds: Double?, breached: Bool
        ) {
            self.name = name
            self.kind = kind
            self.rpoSeconds = rpoSeconds
            self.version = version
            self.capturedAt = capturedAt
            self.lossWindowSeconds = lossWindowSeconds
            self.breached = breached
        }
    }

    public struct DrillLine: Sendable, Codable {
        public var id: Int64
        public var startedAt: Date
        public var lead: String
        /// passed, failed, or unfinished.
        public var result: String
        public var detail: String

        public init(id: Int64, startedAt: Date, lead: String, result: String, detail: String) {
            self.id = id
            self.startedAt = startedAt
            self.lead = lead
            self.result = result
            self.detail = detail
        }
    }

    /// The failover, or the failback.
    public struct Procedure: Sendable, Codable {
        public var direction: Planner.Direction
        public var title: String
        public var stages: [Stage]
        public var notRestored: [FailoverPlan.NotRestored]
    }

    public struct Stage: Sendable, Codable {
        public var number: Int
        public var title: String
        /// When the stage runs (at once, in the off-peak window).
        public var when: String
        public var steps: [StepSheet]
    }

    /// One step as a person reads it.
    public struct StepSheet: Sendable, Codable {
        /// `service/step`, as `standby confirm`, `retry` and `skip` take it.
        public var id: String
        public var kind: StepKind
        public var owner: String
        public var what: String
        public var byHand: [Instruction]
    }

    /// A line of the manual fallback, with the text to type or paste when there is one.
    public struct Instruction: Sendable, Codable {
        public var text: String
        public var code: String?
        /// What the code is (`nsupdate`, `shell`), for the page's classes and the tests.
        public var language: String?

        public init(_ text: String, code: String? = nil, language: String? = nil) {
            self.text = text
            self.code = code
            self.language = language
        }
    }
}

extension Runbook {
    /// The runbook of `topology` at `now`, with the sets' windows and the drills the caller read
    /// from the state directory. `site` is the deployment directory as the commands take it.
    public static func build(
        topology: Topology, site: String, stateDirectory: StateDirectory, sets: [SetWindow], drills: [DrillLine],
        now: Date
    ) throws -> Runbook {
        let planner = Planner(topology: topology, now: now)
        let builder = RunbookSteps(topology: topology, site: site, stateDirectory: stateDirectory)
        var procedures: [Procedure] = []
        for direction in [Planner.Direction.failover, .failback] {
            let plan = try planner.plan(direction: direction)
            procedures.append(builder.procedure(plan))
        }
        func line(_ site: Site) -> SiteLine {
            SiteLine(
                name: site.name, pool: site.pool, timezone: site.timezone.identifier,
                offPeak: site.offPeak.map(\.description))
        }
        return Runbook(
            deployment: topology.deployment, generatedAt: now, topologyFile: topology.file,
            stateDirectory: stateDirectory.path, store: stateDirectory.store(for: topology),
            primary: line(topology.primary), secondary: line(topology.secondary),
            incidentLeads: topology.policy.incidentLeads, sets: sets, drills: drills,
            drillEvery: topology.policy.drillEvery.description, procedures: procedures)
    }
}

/// Turns a plan's steps into step sheets: the manual fallback of each kind.
struct RunbookSteps {
    var topology: Topology
    var site: String
    var stateDirectory: StateDirectory

    var leads: String {
        let names = topology.policy.incidentLeads
        return names.isEmpty ? "the incident lead" : "the incident lead (\(names.joined(separator: ", ")))"
    }

    func procedure(_ plan: FailoverPlan) -> Runbook.Procedure {
        let failback = plan.direction == .failback
        var stages: [Runbook.Stage] = []
        for stage in plan.stages {
            var sheets: [Runbook.StepSheet] = []
            if failback && stage.kind == .core {
                sheets += replication(prefix: "reverse", note: "before the core services move back")
            }
            if stage.kind == .dns { sheets.append(dnsCutover(stage, failback: failback)) }
            for service in stage.services {
                for planned in service.steps {
                    sheets.append(sheet(planned, service: service.name, failback: failback))
                }
            }
            if failback && stage.kind == .core {
                sheets += replication(
                    prefix: "final", note: "after the secondary is quiesced: nothing written there is lost")
            }
            let when: String
            if stage.waitsForOffPeak {
                let site = failback ? topology.primary : topology.secondary
                let windows = site.offPeak.map(\.description).joined(separator: ", ")
                when =
                    windows.isEmpty
                    ? "when the lead decides (no off-peak window is configured)"
                    : "in the off-peak window of \(site.name) (\(windows), \(site.timezone.identifier))"
            } else {
                when = "at once, after the stage before it"
            }
            stages.append(Runbook.Stage(number: stage.number, title: stage.title, when: when, steps: sheets))
        }
        return Runbook.Procedure(
            direction: plan.direction,
            title: failback
                ? "Failback: back to the rebuilt primary \(topology.primary.name)"
                : "Failover: \(topology.primary.name) lost, to \(topology.secondary.name)",
            stages: stages, notRestored: plan.notRestored)
    }

    /// The definition of a planned step: a service's step, or stage 2's client view.
    func definition(_ id: String, service: String, failback: Bool) -> Step? {
        let name = id.split(separator: "/", maxSplits: 1).last.map(String.init) ?? id
        if service == "dns" { return topology.dns?.clientViewStep }
        let steps = topology.service(named: service).map { failback ? $0.failbackSteps : $0.steps } ?? []
        return steps.first { $0.name == name }
    }

    func sheet(_ planned: FailoverPlan.PlannedStep, service: String, failback: Bool) -> Runbook.StepSheet {
        let step = definition(planned.id, service: service, failback: failback)
        var owner = step?.owner
        var byHand: [Runbook.Instruction] = []
        switch step?.action {
        case .restore(let set, let to)?:
            let target = substitute(to)
            byHand.append(
                Runbook.Instruction(
                    "Restore the newest verified copy of \(set) from the store at the secondary (\(stateDirectory.store(for: topology))), every chunk's hash checked:",
                    code:
                        "standby restore \(Self.quote(site)) \(set) --to \(Self.quote(target)) --state \(Self.quote(stateDirectory.path))",
                    language: "shell"))
            byHand.append(
                Runbook.Instruction(
                    "`standby status` lists the versions; `--version ID` restores an older one. The store keeps deduplicated chunks: it is read through `standby restore`, so keep the binary installed at the secondary."
                ))
        case .exec(let arguments, let shell, let environment, let workingDirectory)?:
            let line = arguments.map { substitute($0) }
            var command =
                shell ? "sh -c \(Self.quote(line.joined(separator: " ")))" : line.map(Self.quote).joined(separator: " ")
            if let workingDirectory {
                command = "cd \(Self.quote(topology.resolve(path: substitute(workingDirectory)))) && " + command
            }
            byHand.append(Runbook.Instruction("Run on the controller's host:", code: command, language: "shell"))
            if !environment.isEmpty {
                byHand.append(
                    Runbook.Instruction(
                        "With these environment variables set as \(topology.file) line \(step?.location.line ?? 0) gives them (values not shown here): \(environment.keys.sorted().joined(separator: ", "))."
                    ))
            }
            if let timeout = step?.timeout { byHand.append(Runbook.Instruction("Give up after \(timeout).")) }
        case .http(let url, let method, _, let headers, let expect)?:
            var command = "curl -sS -X \(method) \(Self.quote(substitute(url)))"
            for name in headers.keys.sorted() { command += " -H \(Self.quote("\(name): …"))" }
            byHand.append(
                Runbook.Instruction(
                    "Call the endpoint; it must answer \(expect.map(String.init).joined(separator: " or ")). Header values and the body are in \(topology.file) line \(step?.location.line ?? 0):",
                    code: command, language: "shell"))
        case .probe(let name)?:
            byHand += probeByHand(name)
        case .manual(let instruction, let manualOwner)?:
            owner = owner ?? manualOwner
            byHand.append(Runbook.Instruction(instruction))
            byHand.append(
                Runbook.Instruction(
                    "While Standby runs, record it done:",
                    code: "standby confirm \(Self.quote(site)) \(planned.id) --lead NAME", language: "shell"))
        case nil:
            byHand.append(Runbook.Instruction(planned.summary))
        }
        return Runbook.StepSheet(
            id: planned.id, kind: planned.kind, owner: owner ?? leads, what: planned.summary, byHand: byHand)
    }

    /// The probe's check, done by hand with the usual tools.
    func probeByHand(_ name: String) -> [Runbook.Instruction] {
        guard let probe = topology.probe(named: name) else {
            return [Runbook.Instruction("Probe \(name) is not declared in health.probes.")]
        }
        var out = [Runbook.Instruction("Check \(probe.site.rawValue) probe \(name) (\(probe.kind) \(probe.target)):")]
        switch probe.check {
        case .tcp(let target):
            let (host, port) = Self.split(target, defaultPort: "")
            out.append(
                Runbook.Instruction(
                    "It passes when the port accepts a connection:", code: "nc -vz -w 5 \(host) \(port)",
                    language: "shell"))
        case .tls(let target, let serverName):
            let name = serverName.map { " -servername \($0)" } ?? ""
            out.append(
                Runbook.Instruction(
                    "It passes when the handshake verifies:",
                    code: "openssl s_client -connect \(target)\(name) -verify_return_error </dev/null",
                    language: "shell"))
        case .http(let url, let expect, _):
            out.append(
                Runbook.Instruction(
                    "It passes on HTTP \(expect.map(String.init).joined(separator: "/")):",
                    code: "curl -sS -o /dev/null -w '%{http_code}\\n' \(Self.quote(url))", language: "shell"))
        case .sipOptions(let uri, let accept):
            out.append(
                Runbook.Instruction(
                    "It passes when SIP OPTIONS to \(uri) gets \(accept.map(String.init).joined(separator: "/")) (any SIP client that sends OPTIONS, e.g. sipsak):",
                    code: "sipsak -vv -s \(Self.quote(uri))", language: "shell"))
        case .dns(let server, let name, let type):
            let (host, port) = Self.split(server, defaultPort: "53")
            out.append(
                Runbook.Instruction(
                    "It passes on an authoritative answer (flag aa) with a record:",
                    code: "dig +norec @\(host) -p \(port) \(name) \(type)", language: "shell"))
        case .clientView(let resolver, let srv, let sites):
            let (host, port) = Self.split(resolver, defaultPort: "53")
            let targets = sites.filter { $0.value == probe.site }.keys.sorted().joined(separator: ", ")
            out.append(
                Runbook.Instruction(
                    "Ask the clients' resolver as a client does; it passes when the SRV target is \(targets.isEmpty ? "the \(probe.site.rawValue) pool" : targets) and SIP OPTIONS there answer (until the TTL shown runs out, the resolver may still give the old target):",
                    code: "dig @\(host) -p \(port) \(srv) SRV\ndig @\(host) -p \(port) TARGET A", language: "shell"))
        }
        out.append(
            Runbook.Instruction(
                "While Standby runs, the same check:", code: "standby health \(Self.quote(site))", language: "shell"))
        return out
    }

    /// Stage 2: the update as nsupdate takes it, with the same prerequisites the controller sends.
    func dnsCutover(_ stage: FailoverPlan.Stage, failback: Bool) -> Runbook.StepSheet {
        guard let dns = topology.dns, let first = dns.servers.first else {
            return Runbook.StepSheet(
                id: FailoverEngine.dnsStepId, kind: .dns, owner: leads, what: "no dns section", byHand: [])
        }
        let (host, port) = Self.split(first, defaultPort: "53")
        var script = ["server \(host) \(port)", "zone \(dns.zone)"]
        for change in stage.dnsChanges {
            for value in change.from { script.append("prereq yxrrset \(change.name) IN \(change.type) \(value)") }
        }
        for change in stage.dnsChanges {
            script.append("update delete \(change.name) IN \(change.type)")
            for value in change.to {
                script.append("update add \(change.name) \(change.ttl) IN \(change.type) \(value)")
            }
        }
        script.append("send")
        var byHand: [Runbook.Instruction] = []
        if let key = dns.key {
            let path = topology.resolve(path: key)
            byHand.append(
                Runbook.Instruction(
                    "Send the update to \(first), the server that takes updates, signed with the TSIG key in \(path) (mode 0600; the secret stays in that file). The prerequisites make it a compare-and-swap: if a record no longer holds the value expected, the server answers NXRRSET and changes nothing. Paste this into `nsupdate -k \(path)`:",
                    code: script.joined(separator: "\n"), language: "nsupdate"))
            byHand.append(
                Runbook.Instruction(
                    "The command:", code: "nsupdate -k \(Self.quote(path))", language: "shell"))
        } else if let gss = dns.gssTSIG {
            let credential =
                gss.keytab.map { "kinit -k -t \(Self.quote(topology.resolve(path: $0))) \(gss.principal)" }
                ?? "kinit \(gss.principal)"
            byHand.append(
                Runbook.Instruction(
                    "Active Directory DNS takes GSS-TSIG only: get the service account's ticket, then paste the update into `nsupdate -g`:",
                    code: credential + "\nnsupdate -g", language: "shell"))
            byHand.append(
                Runbook.Instruction("The update:", code: script.joined(separator: "\n"), language: "nsupdate"))
        }
        let checks = dns.servers.map { server -> String in
            let (h, p) = Self.split(server, defaultPort: "53")
            return stage.dnsChanges.map { "dig +norec +short @\(h) -p \(p) \($0.name) \($0.type)" }.joined(
                separator: "\n")
        }
        byHand.append(
            Runbook.Instruction(
                "Then ask every authoritative server until each serves the new values (\(stage.dnsChanges.flatMap(\.to).joined(separator: "; "))):",
                code: checks.joined(separator: "\n"), language: "shell"))
        let ttl = stage.dnsChanges.map(\.ttl).max() ?? 0
        byHand.append(
            Runbook.Instruction(
                "Clients' resolvers keep the old answer for up to \(ttl) s after that (the TTL); `standby dns prepare --ttl` lowers it ahead of a planned switch."
            ))
        let summary = stage.dnsChanges.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
        return Runbook.StepSheet(
            id: FailoverEngine.dnsStepId, kind: .dns, owner: leads,
            what:
                "compare-and-swap \(summary) to the \(failback ? "primary" : "secondary")'s values, verified on \(dns.servers.joined(separator: ", "))",
            byHand: byHand)
    }

    /// Failback's replication of each set with a `failback_source`, back into the store.
    func replication(prefix: String, note: String) -> [Runbook.StepSheet] {
        topology.backupSets.filter { !$0.failbackSource.isEmpty }.map { set in
            let sources = set.failbackSource.map { substitute($0) }
            return Runbook.StepSheet(
                id: "\(prefix)/\(set.name)", kind: .replicate, owner: leads,
                what: "replicate \(set.name) from \(sources.joined(separator: ", ")) into the store, \(note)",
                byHand: [
                    Runbook.Instruction(
                        "Copy the set's newest backup from where the secondary wrote it back to the primary (\(sources.joined(separator: ", "))), and check its size and hash on both sides; with Standby, the failback run does it."
                    )
                ])
        }
    }

    /// Step variables known before a run: the rest (`{{run}}`, `{{restored.SET}}`) stay as written.
    func substitute(_ text: String) -> String {
        text.replacingOccurrences(of: "{{deployment}}", with: topology.deployment)
            .replacingOccurrences(of: "{{primary_pool}}", with: topology.primary.pool)
            .replacingOccurrences(of: "{{secondary_pool}}", with: topology.secondary.pool)
            .replacingOccurrences(of: "{{state}}", with: stateDirectory.path)
    }

    static func split(_ address: String, defaultPort: String) -> (String, String) {
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            let host = String(address[address.index(after: address.startIndex)..<close])
            let rest = address[address.index(after: close)...]
            return (host, rest.hasPrefix(":") ? String(rest.dropFirst()) : defaultPort)
        }
        let parts = address.split(separator: ":")
        if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
        return (address, defaultPort)
    }

    /// A word for a POSIX shell: as it is when it is safe, else in single quotes.
    static func quote(_ word: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%{}")
        if !word.isEmpty && word.allSatisfy({ safe.contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
