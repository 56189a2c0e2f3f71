import Foundation
import StandbyBase
import StandbyDNS
import StandbyProbes
import StandbyTransport
import Yams

/// Every problem of a topology file, each with its position. Loading fails with this when any
/// error was found; nothing partial is returned.
public struct TopologyError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var diagnostics: [Diagnostic]

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Reads `site.yaml` into a `Topology`, validating types, names, references and dependency
/// cycles, and reporting every error of the file at once.
public enum TopologyLoader {
    /// `path` is a deployment directory or its site.yaml.
    public static func load(
        _ path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Topology {
        var isDirectory: ObjCBool = false
        let file =
            FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? (path as NSString).appendingPathComponent("site.yaml") : path
        guard let data = FileManager.default.contents(atPath: file) else {
            let message =
                FileManager.default.fileExists(atPath: file)
                ? "cannot read the file (permissions?)"
                : "no such file (give a deployment directory holding site.yaml, or the file itself)"
            throw TopologyError(file: file, diagnostics: [Diagnostic(file: file, line: 1, column: 1, message: message)])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TopologyError(
                file: file,
                diagnostics: [Diagnostic(file: file, line: 1, column: 1, message: "the file is not UTF-8 text")])
        }
        return try parse(text, file: file, environment: environment)
    }

    public static func parse(_ text: String, file: String, environment: [String: String] = [:]) throws -> Topology {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw TopologyError(file: file, diagnostics: [yamlDiagnostic(error, file: file)])
        }
        let reader = YAMLReader(file: file, environment: environment)
        guard let node else {
            reader.error(
                nil as Node?,
                "the file is empty; expected a mapping with deployment, sites, backup_sets, services, dns, health, policy"
            )
            throw TopologyError(file: file, diagnostics: reader.diagnostics)
        }
        var builder = TopologyBuilder(reader: reader, file: file)
        let topology = builder.build(node)
        if let topology, reader.diagnostics.isEmpty { return topology }
        let sorted = reader.diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
        throw TopologyError(file: file, diagnostics: sorted)
    }

    static func yamlDiagnostic(_ error: YamlError, file: String) -> Diagnostic {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let prefix = context.map { "\($0.text) at \($0.mark.line):\($0.mark.column): " } ?? ""
            return Diagnostic(
                file: file, line: mark.line, column: mark.column, message: "broken YAML: \(prefix)\(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return Diagnostic(
                file: file, line: context.mark.line, column: context.mark.column,
                message: "duplicate key \(duplicates.joined(separator: ", ")) in a mapping")
        default:
            return Diagnostic(file: file, line: 1, column: 1, message: "broken YAML: \(error)")
        }
    }
}

/// The walk over the tree; one method per section of the file.
struct TopologyBuilder {
    let reader: YAMLReader
    let file: String

    static let topKeys = [
        "deployment", "domain", "sites", "replication", "backup_sets", "services", "dns", "health", "policy",
        "scenarios", "service", "smb", "cluster",
    ]

    mutating func build(_ root: Node) -> Topology? {
        guard let top = reader.mapping(root, "the file", allowed: Self.topKeys) else { return nil }
        let deployment = top.name("deployment", required: true, expected: "the deployment's name")
        if let deployment, !deployment.isValidName {
            reader.error(
                top.node("deployment"), "deployment '\(deployment)' may hold only letters, digits, '-', '_' and '.'")
        }
        let domain = top.domainName("domain", required: true, expected: "the SIP domain, like contoso.com")

        var primary: Site?
        var secondary: Site?
        if let sites = reader.mapping(top.node("sites"), "sites", allowed: ["primary", "secondary"]) {
            primary = site(sites.node("primary"), role: .primary)
            secondary = site(sites.node("secondary"), role: .secondary)
            if !sites.has("primary") { sites.missing("primary", "the site that is lost") }
            if !sites.has("secondary") { sites.missing("secondary", "the site that takes over") }
        } else if !top.has("sites") {
            top.missing("sites", "primary and secondary")
        }

        var replication = ReplicationSettings(peakRate: nil)
        if let fields = reader.mapping(top.node("replication"), "replication", allowed: ["peak_rate"]) {
            if let text = fields.string("peak_rate") {
                if let rate = Self.parseRate(text) {
                    replication.peakRate = rate
                } else {
                    reader.error(
                        fields.node("peak_rate"),
                        "replication.peak_rate: '\(text)' is not a rate; expected like 20MB/s, 512KiB/s or 100Mbit/s")
                }
            }
        }

        let backupSets = reader.sequence(top.node("backup_sets"), "backup_sets").enumerated().compactMap {
            backupSet($1, index: $0)
        }
        let services = reader.sequence(top.node("services"), "services").enumerated().compactMap {
            service($1, index: $0)
        }
        let dns = top.node("dns").flatMap { dnsSettings($0) }
        let health = healthSettings(top.node("health"))
        let policy = policySettings(top.node("policy"))
        let scenarios =
            Scenario.builtIn + reader.sequence(top.node("scenarios"), "scenarios").compactMap { scenario($0) }

        checkUnique(backupSets.map { ($0.name, $0.location) }, "backup set")
        checkUnique(services.map { ($0.name, $0.location) }, "service")
        checkUnique(health.probes.map { ($0.name, $0.location) }, "probe")
        checkUnique(scenarios.map { ($0.name, SourceLocation.unknown) }, "scenario")

        guard let deployment, let domain, let primary, let secondary else { return nil }
        let topology = Topology(
            deployment: deployment, domain: domain, primary: primary, secondary: secondary,
            replication: replication, backupSets: backupSets, services: services, dns: dns, health: health,
            policy: policy, scenarios: scenarios, file: file,
            directory: (file as NSString).deletingLastPathComponent.isEmpty
                ? "." : (file as NSString).deletingLastPathComponent)
        var result = topology
        result.service = serviceSettings(top.node("service"))
        result.cluster = top.node("cluster").flatMap { clusterSettings($0) }
        result.smb = top.node("smb").flatMap { smbSettings($0, what: "smb") }
        checkSMBKerberos(result)
        result.health.probes = result.health.probes.map { Self.withClientSites($0, topology: result) }
        checkClientView(result)
        checkReferences(result)
        checkCycles(services)
        return result
    }

    // MARK: Sections

    func site(_ node: Node?, role: SiteRole) -> Site? {
        let what = "sites.\(role.rawValue)"
        let keys =
            role == .primary
            ? ["name", "timezone", "pool", "off_peak", "edition"]
            : ["name", "timezone", "pool", "off_peak", "edition", "store", "standby_servers"]
        guard let fields = reader.mapping(node, what, allowed: keys) else { return nil }
        let name = fields.name("name", required: true, expected: "the site's name")
        let zoneName = fields.string("timezone", required: true, expected: "an IANA time zone like Europe/Dublin")
        var timezone: TimeZone?
        if let zoneName {
            timezone = TimeZone(identifier: zoneName)
            if timezone == nil {
                reader.error(
                    fields.node("timezone"),
                    "\(what).timezone: '\(zoneName)' is not a known time zone; expected an IANA name like Europe/Dublin or America/Los_Angeles"
                )
            }
        }
        let pool = fields.domainName("pool", required: true, expected: "the pool's FQDN, like pool01.contoso.com")
        let edition = fields.oneOf("edition", Site.Edition.self) ?? .enterprise
        let offPeak = windows(fields, "off_peak")
        let store = fields.string("store")
        let servers = reader.sequence(fields.node("standby_servers"), "\(what).standby_servers").compactMap {
            standbyServer($0)
        }
        checkUnique(servers.map { ($0.host, $0.location) }, "standby server")
        guard let name, let timezone, let pool else { return nil }
        return Site(
            name: name, timezone: timezone, pool: pool, offPeak: offPeak, store: store, standbyServers: servers,
            edition: edition, location: fields.location)
    }

    func windows(_ fields: Fields, _ key: String) -> [TimeWindow] {
        guard let texts = fields.strings(key) else { return [] }
        let nodes: [Node?] = {
            if case .sequence(let items)? = fields.node(key) { return Array(items) }
            return [fields.node(key)]
        }()
        var out: [TimeWindow] = []
        for (index, text) in texts.enumerated() {
            if let window = TimeWindow.parse(text) {
                out.append(window)
            } else {
                reader.error(
                    nodes[safe: index] ?? fields.node(key),
                    "\(fields.what).\(key): '\(text)' is not a window; expected HH:MM-HH:MM like 22:00-05:00 (a window may cross midnight)"
                )
            }
        }
        return out
    }

    func standbyServer(_ node: Node) -> StandbyServer? {
        guard let fields = reader.mapping(node, "standby server", allowed: ["host", "roles", "volumes"]) else {
            return nil
        }
        let host = fields.name("host", required: true, expected: "the server's host name")
        let roles = fields.strings("roles", required: true) ?? []
        checkRoles(roles, node: fields.node("roles"), what: "standby server \(host ?? "?")")
        var volumes: StandbyServer.Volumes?
        if let v = reader.mapping(
            fields.node("volumes"), "standby server \(host ?? "?").volumes", allowed: ["data", "log"])
        {
            if let data = v.string("data", required: true, expected: "the volume of the .mdf data files"),
                let log = v.string("log", required: true, expected: "the volume of the .ldf log files")
            {
                volumes = .init(data: data, log: log)
            }
        }
        guard let host else { return nil }
        return StandbyServer(host: host, roles: roles, volumes: volumes, location: fields.location)
    }

    func backupSet(_ node: Node, index: Int) -> BackupSet? {
        guard
            let fields = reader.mapping(
                node, "backup_sets[\(index)]",
                allowed: [
                    "name", "kind", "source", "schedule", "rpo", "keep", "failback_source", "description",
                    "allow_insecure_auth", "smb",
                ])
        else { return nil }
        let name = fields.name("name", required: true, expected: "the set's name")
        if let name, !name.isValidName {
            reader.error(
                fields.node("name"), "backup set name '\(name)' may hold only letters, digits, '-', '_' and '.'")
        }
        let kind = fields.oneOf("kind", BackupSet.Kind.self, required: true)
        let sources = fields.strings("source", required: true) ?? []
        for (i, source) in sources.enumerated() {
            checkURL(source, node: Self.item(fields.node("source"), i), what: "backup set \(name ?? "?") source")
        }
        let failback = fields.strings("failback_source") ?? []
        for (i, source) in failback.enumerated() {
            checkURL(
                source, node: Self.item(fields.node("failback_source"), i),
                what: "backup set \(name ?? "?") failback_source")
        }
        var schedule = BackupSet.Schedule(every: nil, fullDailyAt: nil)
        if let s = reader.mapping(
            fields.node("schedule"), "backup set \(name ?? "?").schedule", allowed: ["every", "full_daily_at"])
        {
            schedule.every = s.span("every")
            schedule.fullDailyAt = s.clock("full_daily_at")
        }
        let rpo = fields.span("rpo", required: true)
        var keepLast = 7
        if let k = reader.mapping(fields.node("keep"), "backup set \(name ?? "?").keep", allowed: ["last"]) {
            keepLast = k.int("last", required: true, range: 1...10_000) ?? keepLast
        }
        let smb = fields.node("smb").flatMap { smbSettings($0, what: "backup set \(name ?? "?").smb") }
        guard let name, let kind, !sources.isEmpty, let rpo else { return nil }
        return BackupSet(
            name: name, kind: kind, sources: sources, schedule: schedule, rpo: rpo, keepLast: keepLast,
            failbackSource: failback, allowInsecureAuth: fields.bool("allow_insecure_auth") ?? false, smb: smb,
            description: fields.string("description"), location: fields.location)
    }

    /// `smb:` of the deployment or a set: min_protocol, encrypt, auth, kerberos.
    func smbSettings(_ node: Node, what: String) -> SMBSettings? {
        guard let fields = reader.mapping(node, what, allowed: ["min_protocol", "encrypt", "auth", "kerberos"]) else {
            return nil
        }
        var settings = SMBSettings(location: fields.location)
        let dialects = SMBOptions.Dialect.allCases.map(\.rawValue).joined(separator: ", ")
        if let text = fields.string("min_protocol", expected: "one of \(dialects)") {
            if let dialect = SMBOptions.Dialect(parsing: text) {
                settings.minProtocol = dialect
            } else {
                reader.error(
                    fields.node("min_protocol"),
                    "\(what).min_protocol: '\(text)' is not an SMB dialect; expected one of \(dialects) (or SMB1, SMB2, SMB3)"
                )
            }
        }
        settings.encrypt = fields.oneOf("encrypt", SMBOptions.Encryption.self)
        settings.auth = fields.oneOf("auth", SMBSettings.Auth.self)
        if let k = reader.mapping(
            fields.node("kerberos"), "\(what).kerberos", allowed: ["principal", "keytab", "krb5_conf"])
        {
            let principal = k.string(
                "principal", required: true,
                expected: "the service account's Kerberos principal, like svc-standby@CONTOSO.COM")
            if let principal, !Self.isPrincipal(principal, service: false) {
                reader.error(
                    k.node("principal"),
                    "\(what).kerberos.principal: '\(principal)' is not a Kerberos principal; expected ACCOUNT@REALM, like svc-standby@CONTOSO.COM"
                )
            }
            if let principal {
                settings.kerberos = SMBKerberosSettings(
                    principal: principal, keytab: k.string("keytab", expected: "the path of the account's keytab"),
                    krb5Conf: k.string("krb5_conf", expected: "the path of a krb5.conf"), location: k.location)
            }
        }
        return settings
    }

    /// `auth: kerberos` needs an account: `smb.kerberos`, or `dns.gss_tsig` with a keytab or the
    /// ticket cache (a password file serves GSS-TSIG, not SMB).
    func checkSMBKerberos(_ topology: Topology) {
        for set in topology.backupSets {
            let settings = topology.smbSettings(for: set)
            guard settings.auth == .kerberos, settings.kerberos == nil else { continue }
            guard let gss = topology.dns?.gssTSIG else {
                reader.error(
                    at: set.smb?.location ?? topology.smb?.location ?? set.location,
                    "backup set \(set.name): smb.auth is kerberos but no account is given; add smb.kerberos (principal, keytab) or dns.gss_tsig"
                )
                continue
            }
            if gss.passwordFile != nil {
                reader.error(
                    at: set.smb?.location ?? topology.smb?.location ?? set.location,
                    "backup set \(set.name): smb.auth is kerberos with dns.gss_tsig's account, whose password_file SMB cannot use; give dns.gss_tsig a keytab, or smb.kerberos its own"
                )
            }
        }
    }

    func checkURL(_ text: String, node: Node?, what: String) {
        let schemes = ["file", "smb", "sftp", "https", "http", "ftp", "ftps"]
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), schemes.contains(scheme) else {
            reader.error(node, "\(what): '\(text)' is not a URL with a scheme of \(schemes.joined(separator: ", "))")
            return
        }
        if scheme != "file" && (url.host ?? "").isEmpty {
            reader.error(node, "\(what): '\(text)' names no host")
        }
        if url.password != nil {
            reader.error(
                node,
                "\(what): '\(text)' carries a password; credentials come from ~/.netrc or the environment, never the topology"
            )
        }
    }

    func service(_ node: Node, index: Int) -> Service? {
        guard
            let fields = reader.mapping(
                node, "services[\(index)]",
                allowed: [
                    "name", "tier", "priority", "depends_on", "backup_sets", "roles", "steps", "drill_steps",
                    "failback_steps", "at_secondary", "reason", "description",
                ])
        else { return nil }
        let name = fields.name("name", required: true, expected: "the service's name")
        if let name, !name.isValidName {
            reader.error(fields.node("name"), "service name '\(name)' may hold only letters, digits, '-', '_' and '.'")
        } else if let name, let reserved = Self.reservedServiceNames[name] {
            reader.error(
                fields.node("name"),
                "service name '\(name)' is reserved for \(reserved.builtIn): `standby skip SITE \(reserved.target)` could not tell the two apart; choose another name"
            )
        }
        let label = "service \(name ?? "services[\(index)]")"
        let roles = fields.strings("roles") ?? []
        checkRoles(roles, node: fields.node("roles"), what: label)
        let tier = fields.oneOf("tier", Service.Tier.self, required: true)
        let priority = fields.int("priority", range: 0...1000) ?? 100
        let steps = stepList(fields.node("steps"), service: label)
        let drillSteps = fields.has("drill_steps") ? stepList(fields.node("drill_steps"), service: label) : nil
        let failbackSteps = stepList(fields.node("failback_steps"), service: label)
        let atSecondary = fields.bool("at_secondary") ?? true
        guard let name, let tier else { return nil }
        return Service(
            name: name, tier: tier, priority: priority, dependsOn: fields.strings("depends_on") ?? [],
            backupSets: fields.strings("backup_sets") ?? [], roles: roles, steps: steps,
            drillSteps: drillSteps, failbackSteps: failbackSteps, atSecondary: atSecondary,
            reason: fields.string("reason"), description: fields.string("description"), location: fields.location,
            dependsOnLocation: fields.location(of: "depends_on"), backupSetsLocation: fields.location(of: "backup_sets")
        )
    }

    /// The services a run makes of its own, which a user service may not be named after.
    static let reservedServiceNames: [String: (builtIn: String, target: String)] = [
        "dns": ("the built-in DNS cutover", "dns"),
        "reverse": ("failback's reverse replication steps", "reverse/SET"),
        "final": ("failback's last replication pass", "final/SET"),
        "replication": ("failback's replication steps", "replication"),
    ]

    static let knownRoles = ServerRole.allCases.map(\.rawValue)

    func checkRoles(_ roles: [String], node: Node?, what: String) {
        for (i, role) in roles.enumerated() where !Self.knownRoles.contains(role) {
            let hint = Self.knownRoles.first { $0.levenshtein(to: role) <= 2 }.map { " (did you mean '\($0)'?)" } ?? ""
            reader.error(
                Self.item(node, i),
                "\(what): unknown role '\(role)'\(hint); expected one of: \(Self.knownRoles.joined(separator: ", "))")
        }
    }

    static let stepKinds = ["restore", "exec", "http", "probe", "manual"]
    static let stepCommon = ["name", "timeout", "retries", "retry_delay", "idempotent", "drill", "owner"]

    func stepList(_ node: Node?, service: String) -> [Step] {
        var steps: [Step] = []
        for (index, item) in reader.sequence(node, "\(service) steps").enumerated() {
            if let step = self.step(item, index: index, service: service) { steps.append(step) }
        }
        var seen: [String: SourceLocation] = [:]
        for step in steps {
            if seen[step.name] != nil {
                reader.error(at: step.location, "\(service): two steps are named '\(step.name)'")
            }
            seen[step.name] = step.location
        }
        return steps
    }

    func step(_ node: Node, index: Int, service: String) -> Step? {
        let what = "\(service) step \(index + 1)"
        guard case .mapping(let mapping) = node else {
            reader.error(node, "\(what) must be a mapping with one of \(Self.stepKinds.joined(separator: ", "))")
            return nil
        }
        let kinds = mapping.keys.compactMap(\.scalar?.string).filter { Self.stepKinds.contains($0) }
        guard kinds.count == 1, let kind = kinds.first else {
            reader.error(
                node,
                "\(what) must have exactly one of \(Self.stepKinds.joined(separator: ", ")), found \(kinds.isEmpty ? "none" : kinds.joined(separator: ", "))"
            )
            return nil
        }
        let specific: [String] =
            switch kind {
            case "restore": ["to"]
            case "exec": ["shell", "env", "cwd"]
            case "http": ["method", "body", "headers", "expect"]
            default: []
            }
        guard let fields = reader.mapping(node, what, allowed: [kind] + specific + Self.stepCommon) else { return nil }
        let action: Step.Action?
        switch kind {
        case "restore":
            let set = fields.string("restore", required: true, expected: "a backup set name")
            let to = fields.string("to", required: true, expected: "the directory to restore into")
            action = set.flatMap { s in to.map { .restore(set: s, to: $0) } }
        case "exec":
            // nil: already reported (a null or a hidden character in the list).
            let parsed = fields.strings("exec", required: true)
            var arguments = parsed ?? []
            let program = Self.item(fields.node("exec"), 0)
            if parsed?.isEmpty == true {
                reader.error(
                    fields.node("exec"),
                    "\(what): exec needs a program and its arguments, like [sqlcmd, -i, restore.sql]")
            } else if let first = arguments.first, first.trimmingCharacters(in: .whitespaces).isEmpty {
                reader.error(
                    program,
                    "\(what): exec's program is empty; expected a program and its arguments, like [sqlcmd, -i, restore.sql]"
                )
                arguments = []
            } else if let first = arguments.first, let program, let kind = YAMLReader.nonTextKind(program) {
                reader.error(
                    program,
                    "\(what): exec's program is \(kind) (\(first)), not a program; expected a program and its arguments, like [sqlcmd, -i, restore.sql] (quote a program really named \(first))"
                )
                arguments = []
            }
            action =
                arguments.isEmpty
                ? nil
                : .exec(
                    arguments: arguments, shell: fields.bool("shell") ?? false,
                    environment: fields.stringMap("env") ?? [:],
                    workingDirectory: fields.string("cwd"))
        case "http":
            let url = fields.string("http", required: true, expected: "a URL")
            if let url { checkURL(url, node: fields.node("http"), what: what) }
            var expect = [200]
            if let texts = fields.strings("expect") {
                let codes = texts.compactMap(Int.init).filter { (100...599).contains($0) }
                if codes.count != texts.count || codes.isEmpty {
                    reader.error(
                        fields.node("expect"), "\(what).expect must be HTTP status codes like 200 or [200, 204]")
                } else {
                    expect = codes
                }
            }
            action = url.map {
                .http(
                    url: $0, method: (fields.string("method") ?? "POST").uppercased(), body: fields.string("body"),
                    headers: fields.stringMap("headers") ?? [:], expectStatus: expect)
            }
        case "probe":
            action = fields.string("probe", required: true, expected: "a probe name from health.probes").map {
                .probe(name: $0)
            }
        default:
            action = fields.string("manual", required: true, expected: "what the person must do").map {
                .manual(instruction: $0, owner: fields.string("owner"))
            }
        }
        let name = fields.name("name", expected: "the step's name") ?? Self.defaultStepName(action, index: index)
        if !name.isValidName {
            reader.error(
                fields.node("name"), "\(what): step name '\(name)' may hold only letters, digits, '-', '_' and '.'")
        }
        guard let action else { return nil }
        var step = Step(
            name: name, action: action, timeout: fields.span("timeout"),
            retries: fields.int("retries", range: 0...100) ?? 0,
            retryDelay: fields.span("retry_delay") ?? TimeSpan(seconds: 5),
            // A restore materialises the same version into the same place again, and a probe only
            // looks: both are idempotent by nature, so a crash inside one does not halt the run.
            idempotent: fields.bool("idempotent") ?? (kind == "restore" || kind == "probe"),
            drill: fields.bool("drill") ?? false, location: fields.location)
        step.owner = fields.string("owner", expected: "who does the step by hand when Standby cannot (the runbook)")
        return step
    }

    /// Unnamed steps get a name that says what they do, so `standby skip core/restore-rtc-db` reads well.
    static func defaultStepName(_ action: Step.Action?, index: Int) -> String {
        switch action {
        case .restore(let set, _)?: "restore-\(set)"
        case .probe(let name)?: "probe-\(name)"
        default: "\(index + 1)"
        }
    }

    func dnsSettings(_ node: Node) -> DNSSettings? {
        guard
            let fields = reader.mapping(
                node, "dns",
                allowed: [
                    "zone", "servers", "key", "gss_tsig", "records", "drill_zone", "verify_timeout", "client_view",
                ])
        else { return nil }
        let zone = fields.domainName("zone", required: true, expected: "the zone holding the SRV records")
        let listed = fields.strings("servers", required: true)
        let servers = listed ?? []
        var seenServers: [DNSServer: SourceLocation] = [:]
        for (i, server) in servers.enumerated() {
            let node = Self.item(fields.node("servers"), i)
            guard Self.isServerAddress(server), let address = try? DNSServer(parsing: server) else {
                reader.error(
                    node, "dns.servers: '\(server)' is not an address; expected HOST, HOST:PORT or [IPv6]:PORT")
                continue
            }
            let here = YAMLReader.location(node)
            if let first = seenServers[address] {
                reader.error(
                    at: here,
                    "dns.servers: '\(server)' is listed twice (first at \(first.line):\(first.column)); an update and a verification go to each server once"
                )
            } else {
                seenServers[address] = here
            }
        }
        if listed?.isEmpty == true {
            reader.error(fields.node("servers"), "dns.servers must name every authoritative server of the zone")
        }
        let key = fields.string("key", expected: "the path of a BIND key file with the TSIG key")
        let gss = fields.node("gss_tsig").flatMap { gssTSIG($0) }
        switch (fields.has("key"), fields.has("gss_tsig")) {
        case (true, true):
            reader.error(
                fields.node("gss_tsig"),
                "dns has both key and gss_tsig; give exactly one: key for a TSIG key file (BIND, Knot), gss_tsig for a Kerberos service account (Active Directory DNS)"
            )
        case (false, false):
            reader.error(
                at: fields.location,
                "dns needs exactly one of key (the path of a BIND key file with the TSIG key) and gss_tsig (a Kerberos service account, for Active Directory DNS)"
            )
        default: break
        }
        var records: [DNSRecord] = []
        for (index, item) in reader.sequence(fields.node("records"), "dns.records").enumerated() {
            if let record = dnsRecord(item, index: index, zone: zone) { records.append(record) }
        }
        checkUnique(records.map { ("\($0.name) \($0.type)", $0.location) }, "DNS record")
        let clientView = fields.name("client_view", expected: "the name of a client_view probe")
        guard let zone, key != nil || gss != nil else { return nil }
        var settings = DNSSettings(
            zone: zone, servers: servers, key: key, gssTSIG: gss, records: records,
            drillZone: fields.domainName("drill_zone", expected: "a zone for drills, like drill.contoso.com"),
            verifyTimeout: fields.span("verify_timeout") ?? TimeSpan(seconds: 60), location: fields.location,
            keyLocation: fields.location(of: fields.has("key") ? "key" : "gss_tsig"))
        settings.clientView = clientView
        settings.clientViewLocation = clientView == nil ? nil : fields.location(of: "client_view")
        return settings
    }

    /// `dns.gss_tsig`: the principal, and at most one of keytab and password_file (neither: the
    /// ticket cache).
    func gssTSIG(_ node: Node) -> GSSTSIGSettings? {
        guard
            let fields = reader.mapping(
                node, "dns.gss_tsig",
                allowed: ["principal", "keytab", "password_file", "krb5_conf", "server_principal"])
        else { return nil }
        let principal = fields.string(
            "principal", required: true,
            expected: "the service account's Kerberos principal, like svc-standby@CONTOSO.COM")
        if let principal, !Self.isPrincipal(principal, service: false) {
            reader.error(
                fields.node("principal"),
                "dns.gss_tsig.principal: '\(principal)' is not a Kerberos principal; expected ACCOUNT@REALM, like svc-standby@CONTOSO.COM"
            )
        }
        let keytab = fields.string("keytab", expected: "the path of the service account's keytab")
        let passwordFile = fields.string("password_file", expected: "the path of a file holding the password")
        if keytab != nil && passwordFile != nil {
            reader.error(
                fields.node("password_file"),
                "dns.gss_tsig has both keytab and password_file; give one (or neither, for the ticket cache of KRB5CCNAME)"
            )
        }
        let serverPrincipal = fields.string(
            "server_principal", expected: "the DNS server's principal, like DNS/dc01.contoso.com")
        if let serverPrincipal, !Self.isPrincipal(serverPrincipal, service: true) {
            reader.error(
                fields.node("server_principal"),
                "dns.gss_tsig.server_principal: '\(serverPrincipal)' is not a service principal; expected DNS/HOST or DNS/HOST@REALM, like DNS/dc01.contoso.com"
            )
        }
        guard let principal else { return nil }
        return GSSTSIGSettings(
            principal: principal, keytab: keytab, passwordFile: passwordFile,
            krb5Conf: fields.string("krb5_conf", expected: "the path of a krb5.conf"), serverPrincipal: serverPrincipal,
            location: fields.location)
    }

    /// `account@REALM`, or `service/host[@REALM]` when `service`: no spaces or controls, one @.
    static func isPrincipal(_ text: String, service: Bool) -> Bool {
        guard !text.isEmpty, !text.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } == true })
        else { return false }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        if service {
            guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else { return false }
            let name = parts[0].split(separator: "/", omittingEmptySubsequences: false)
            return name.count == 2 && name.allSatisfy { !$0.isEmpty }
        }
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty }
    }

    static let recordTypes = ["SRV", "A", "AAAA", "CNAME", "TXT", "NAPTR"]

    static let recordExamples = [
        "SRV": "'0 0 5061 pool01.contoso.com.'", "A": "'192.0.2.10'", "AAAA": "'2001:db8::10'",
        "CNAME": "'pool01.contoso.com.'", "TXT": "'\"v=1\"'",
        "NAPTR": "'10 10 \"S\" \"SIPS+D2T\" \"\" _sips._tcp.contoso.com.'",
    ]

    /// One record set: each value is parsed as its type's RDATA by libldns, the parser the cutover
    /// sends it with, and neither side may be empty: an update to an empty set deletes the record
    /// set on every server.
    func dnsRecord(_ item: Node, index: Int, zone: String?) -> DNSRecord? {
        let what = "dns.records[\(index)]"
        guard
            let r = reader.mapping(item, what, allowed: ["name", "type", "ttl", "primary", "secondary"])
        else { return nil }
        var name = r.name("name", required: true, expected: "the owner name, like _sipinternaltls._tcp")
        if let owner = name, owner != "@", !RecordData.isDomainName(owner) || owner.contains("..") {
            reader.error(r.node("name"), "\(what).name: '\(owner)' is not a domain name; expected like _sip._tcp")
            name = nil
        }
        let type = (r.string("type") ?? "SRV").uppercased()
        let typeKnown = Self.recordTypes.contains(type)
        if !typeKnown {
            reader.error(
                r.node("type"),
                "\(what).type: '\(type)' is not supported; expected SRV, A, AAAA, CNAME, TXT or NAPTR")
        }
        let ttl = r.int("ttl", range: 0...604_800) ?? 300
        let owner = DNSRecord(name: name ?? "@", type: type, ttl: ttl, primary: [], secondary: [], location: r.location)
            .fqdn(in: zone ?? "invalid.")
        var given: [String: [String]] = [:]
        var canonical: [String: Set<String>] = [:]
        var valid = name != nil && typeKnown
        for which in ["primary", "secondary"] {
            guard let values = r.strings(which, required: true) else {
                valid = false
                continue
            }
            given[which] = values
            if values.isEmpty {
                reader.error(
                    r.node(which),
                    "\(what).\(which) is empty: the switch to \(which) would delete \(name ?? "the record set") \(type) on every server; give at least one value, like \(Self.recordExamples[type] ?? "'0 0 5061 pool01.contoso.com.'")"
                )
                valid = false
                continue
            }
            guard typeKnown else { continue }
            var seen: [String: Int] = [:]
            for (i, value) in values.enumerated() {
                let node = Self.item(r.node(which), i)
                if type == "SRV", !Self.isSRVData(value) {
                    reader.error(
                        node,
                        "\(what).\(which): '\(value)' is not SRV data; expected 'PRIORITY WEIGHT PORT TARGET.' like '0 0 5061 pool01.contoso.com.'"
                    )
                    valid = false
                    continue
                }
                do throws(DNSError) {
                    let text = try RecordData.canonical(value, type: type, owner: owner)
                    if let first = seen[text] {
                        reader.error(
                            node,
                            "\(what).\(which): '\(value)' is the same value as item \(first) of the list; give it once")
                        valid = false
                    }
                    seen[text] = seen[text] ?? i
                } catch {
                    reader.error(
                        node,
                        "\(what).\(which): '\(value)' is not \(type) data (\(Self.ldnsReason(error))); expected like \(Self.recordExamples[type] ?? "its presentation form")"
                    )
                    valid = false
                }
            }
            if type == "CNAME", values.count > 1 {
                reader.error(
                    r.node(which), "\(what).\(which): a CNAME record set holds exactly one name, not \(values.count)")
                valid = false
            }
            canonical[which] = Set(seen.keys)
        }
        if valid, let primary = canonical["primary"], primary == canonical["secondary"] {
            reader.error(
                at: r.location,
                "\(what): primary and secondary values are the same; a cutover would change nothing")
        }
        guard valid, let name, let primary = given["primary"], let secondary = given["secondary"] else { return nil }
        return DNSRecord(
            name: name, type: type, ttl: ttl, primary: primary, secondary: secondary, location: r.location)
    }

    /// ldns's own words for why a value does not parse, without the value repeated.
    static func ldnsReason(_ error: DNSError) -> String {
        guard let open = error.message.lastIndex(of: "("), error.message.hasSuffix(")") else { return error.message }
        return String(
            error.message[error.message.index(after: open)..<error.message.index(before: error.message.endIndex)])
    }

    func healthSettings(_ node: Node?) -> HealthSettings {
        var settings = HealthSettings(
            interval: TimeSpan(seconds: 10), fall: 3, rise: 2, timeout: TimeSpan(seconds: 5), keepHistory: .days(30),
            webhooks: [], probes: [])
        guard
            let fields = reader.mapping(
                node, "health", allowed: ["interval", "fall", "rise", "timeout", "keep_history", "webhooks", "probes"])
        else { return settings }
        settings.interval = fields.span("interval") ?? settings.interval
        settings.fall = fields.int("fall", range: 1...100) ?? settings.fall
        settings.rise = fields.int("rise", range: 1...100) ?? settings.rise
        settings.timeout = fields.span("timeout") ?? settings.timeout
        settings.keepHistory = fields.span("keep_history") ?? settings.keepHistory
        settings.webhooks = fields.strings("webhooks") ?? []
        for (i, hook) in settings.webhooks.enumerated() {
            checkURL(hook, node: Self.item(fields.node("webhooks"), i), what: "health.webhooks")
        }
        settings.probes = reader.sequence(fields.node("probes"), "health.probes").enumerated().compactMap {
            probe($1, index: $0)
        }
        return settings
    }

    static let probeKinds = ["tcp", "tls", "http", "sip_options", "dns", "client_view"]

    func probe(_ node: Node, index: Int) -> ProbeSpec? {
        let what = "health.probes[\(index)]"
        guard
            let fields = reader.mapping(
                node, what,
                allowed: ["name", "site", "timeout", "server_name", "expect", "body_match", "accept", "ca_file"]
                    + Self.probeKinds)
        else { return nil }
        let name = fields.name("name", required: true, expected: "the probe's name")
        if let name, !name.isValidName {
            reader.error(fields.node("name"), "probe name '\(name)' may hold only letters, digits, '-', '_' and '.'")
        }
        let site = fields.oneOf("site", SiteRole.self) ?? .primary
        let kinds = Self.probeKinds.filter { fields.has($0) }
        guard kinds.count == 1, let kind = kinds.first else {
            reader.error(
                node,
                "\(what) must have exactly one of \(Self.probeKinds.joined(separator: ", ")), found \(kinds.isEmpty ? "none" : kinds.joined(separator: ", "))"
            )
            return nil
        }
        var check: ProbeSpec.Check?
        switch kind {
        case "tcp", "tls":
            if let target = fields.string(kind, required: true) {
                if !Self.isServerAddress(target, requirePort: true) {
                    reader.error(
                        fields.node(kind), "\(what).\(kind): '\(target)' is not HOST:PORT (IPv6 as [ADDR]:PORT)")
                } else {
                    check =
                        kind == "tcp"
                        ? .tcp(target: target) : .tls(target: target, serverName: fields.string("server_name"))
                }
            }
        case "http":
            if let url = fields.string("http", required: true) {
                checkURL(url, node: fields.node("http"), what: what)
                let expect = (fields.strings("expect") ?? ["200"]).compactMap(Int.init)
                check = .http(
                    url: url, expectStatus: expect.isEmpty ? [200] : expect, bodyMatch: fields.string("body_match"))
            }
        case "sip_options":
            if let uri = fields.string("sip_options", required: true) {
                if !uri.lowercased().hasPrefix("sip:") && !uri.lowercased().hasPrefix("sips:") {
                    reader.error(
                        fields.node("sip_options"),
                        "\(what).sip_options: '\(uri)' is not a SIP URI; expected like sip:pool01.contoso.com:5061;transport=tls"
                    )
                } else {
                    do {
                        // The parser the probe runs with: a transport it cannot use is refused here.
                        _ = try SIPTarget(parsing: uri)
                        let accept = (fields.strings("accept") ?? ["200"]).compactMap(Int.init)
                        check = .sipOptions(uri: uri, acceptStatus: accept.isEmpty ? [200] : accept)
                    } catch {
                        reader.error(fields.node("sip_options"), "\(what).sip_options: \(Self.probeReason(error))")
                    }
                }
            }
        case "client_view":
            if let v = reader.mapping(fields.node("client_view"), "\(what).client_view", allowed: ["resolver", "srv"]),
                let resolver = v.string("resolver", required: true, expected: "the caching resolver, HOST:PORT"),
                let srv = v.string("srv", required: true, expected: "the SRV name, like _sipinternaltls._tcp.DOMAIN")
            {
                if !Self.isServerAddress(resolver) {
                    reader.error(
                        v.node("resolver"), "\(what).client_view.resolver: '\(resolver)' is not HOST or HOST:PORT")
                } else {
                    do {
                        _ = try ClientViewTarget(resolver: resolver, srv: srv)
                        check = .clientView(resolver: resolver, srv: srv, sites: [:])
                    } catch {
                        reader.error(v.node("srv"), "\(what).client_view: \(Self.probeReason(error))")
                    }
                }
            }
        default:
            if let d = reader.mapping(fields.node("dns"), "\(what).dns", allowed: ["server", "name", "type"]),
                let server = d.string("server", required: true, expected: "HOST or HOST:PORT"),
                let name = d.string("name", required: true, expected: "the name to ask for")
            {
                let written = d.string("type") ?? "SOA"
                let type = written.uppercased()
                if !Self.isServerAddress(server) {
                    reader.error(d.node("server"), "\(what).dns.server: '\(server)' is not HOST or HOST:PORT")
                } else if DNSRecordType(rawValue: type) == nil {
                    let known = DNSRecordType.allCases.map(\.rawValue).joined(separator: ", ")
                    reader.error(
                        d.node("type"),
                        "\(what).dns.type: '\(written)' is not a record type a dns probe asks for; expected one of \(known)"
                    )
                } else {
                    do {
                        _ = try DNSTarget(server: server, name: name, type: type)
                        check = .dns(server: server, name: name, type: type)
                    } catch {
                        reader.error(d.node("name"), "\(what).dns: \(Self.probeReason(error))")
                    }
                }
            }
        }
        guard let name, let check else { return nil }
        return ProbeSpec(
            name: name, site: site, check: check, timeout: fields.span("timeout"), caFile: fields.string("ca_file"),
            location: fields.location)
    }

    static func probeReason(_ error: any Error) -> String {
        (error as? ProbeError)?.message ?? "\(error)"
    }

    func policySettings(_ node: Node?) -> Policy {
        var policy = Policy(
            incidentLeads: [], drillEvery: .days(90), reviewEvery: .days(180), lastReview: nil, lastDrill: nil)
        guard
            let fields = reader.mapping(
                node, "policy", allowed: ["incident_leads", "drill_every", "review_every", "last_review", "last_drill"])
        else { return policy }
        policy.incidentLeads = fields.strings("incident_leads") ?? []
        for (i, lead) in policy.incidentLeads.enumerated() {
            _ = reader.checkLine(lead, Self.item(fields.node("incident_leads"), i), "policy.incident_leads[\(i)]")
        }
        policy.drillEvery = fields.span("drill_every") ?? policy.drillEvery
        policy.reviewEvery = fields.span("review_every") ?? policy.reviewEvery
        policy.lastReview = fields.date("last_review")
        policy.lastDrill = fields.date("last_drill")
        return policy
    }

    func serviceSettings(_ node: Node?) -> ServiceSettings {
        var settings = ServiceSettings()
        guard
            let fields = reader.mapping(
                node, "service", allowed: ["listen", "token_file", "verify_sample", "remind_every", "reminders"])
        else { return settings }
        settings.location = fields.location
        if let listen = fields.string("listen") {
            if Self.isServerAddress(listen, requirePort: true) {
                settings.listen = listen
            } else {
                reader.error(
                    fields.node("listen"),
                    "service.listen: '\(listen)' is not an address with a port; expected like 127.0.0.1:9470")
            }
        }
        settings.tokenFile = fields.string("token_file", expected: "the path of a file holding the bearer token")
        if let text = fields.string("verify_sample") {
            let number = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
            if let number, number > 0, number <= 1 {
                settings.verifySample = number
            } else {
                reader.error(
                    fields.node("verify_sample"),
                    "service.verify_sample: '\(text)' is not a fraction of the store; expected like 5% or 0.05 (at most 100%)"
                )
            }
        }
        settings.remindEvery = fields.span("remind_every") ?? settings.remindEvery
        settings.reminders = fields.bool("reminders") ?? settings.reminders
        return settings
    }

    func clusterSettings(_ node: Node) -> ClusterSettings? {
        guard let fields = reader.mapping(node, "cluster", allowed: ["etcd", "ttl"]) else { return nil }
        guard let urls = fields.strings("etcd", required: true) else { return nil }
        for url in urls where URL(string: url)?.scheme.map({ ["http", "https"].contains($0) }) != true {
            reader.error(
                fields.node("etcd"),
                "cluster.etcd: '\(url)' is not an etcd client URL; expected like http://10.1.0.21:2379")
        }
        if urls.isEmpty { reader.error(fields.node("etcd"), "cluster.etcd: name at least one etcd member") }
        var settings = ClusterSettings(etcd: urls)
        if let ttl = fields.span("ttl") {
            if ttl.milliseconds < 2000 {
                reader.error(fields.node("ttl"), "cluster.ttl: \(ttl) is shorter than etcd's smallest lease (2s)")
            }
            settings.ttl = ttl
        }
        settings.location = fields.location
        return settings
    }

    func scenario(_ node: Node) -> Scenario? {
        guard let fields = reader.mapping(node, "scenario", allowed: ["name", "summary", "roles"]) else { return nil }
        guard let name = fields.name("name", required: true, expected: "the scenario's name"),
            let roles = fields.strings("roles", required: true)
        else { return nil }
        if !name.isValidName {
            reader.error(fields.node("name"), "scenario name '\(name)' may hold only letters, digits, '-', '_' and '.'")
        }
        checkRoles(roles, node: fields.node("roles"), what: "scenario \(name)")
        return Scenario(
            name: name, summary: fields.string("summary") ?? name, roles: Set(roles), movesToSecondary: false)
    }

    // MARK: Cross-references

    func checkUnique(_ items: [(String, SourceLocation)], _ what: String) {
        var seen: [String: SourceLocation] = [:]
        for (name, location) in items {
            if let first = seen[name] {
                reader.error(at: location, "duplicate \(what) '\(name)' (first declared at line \(first.line))")
            } else {
                seen[name] = location
            }
        }
    }

    /// A `client_view` probe's SRV targets, each with its site: the values of the `dns.records`
    /// entry for its SRV name, else the two sites' pools.
    static func withClientSites(_ probe: ProbeSpec, topology: Topology) -> ProbeSpec {
        guard case .clientView(let resolver, let srv, _) = probe.check else { return probe }
        var sites: [String: SiteRole] = [:]
        let wanted = ClientViewTarget.key(srv)
        if let dns = topology.dns,
            let record = dns.records.first(where: { ClientViewTarget.key($0.fqdn(in: dns.zone)) == wanted })
        {
            let zone = dns.zone.hasSuffix(".") ? dns.zone : dns.zone + "."
            func target(_ value: String) -> String? {
                let fields = value.split(separator: " ")
                guard fields.count == 4 else { return nil }
                let name = String(fields[3])
                return name.hasSuffix(".") ? name : "\(name).\(zone)"
            }
            for value in record.primary { if let name = target(value) { sites[ClientViewTarget.key(name)] = .primary } }
            for value in record.secondary {
                if let name = target(value) { sites[ClientViewTarget.key(name)] = .secondary }
            }
        } else {
            sites[ClientViewTarget.key(topology.primary.pool)] = .primary
            sites[ClientViewTarget.key(topology.secondary.pool)] = .secondary
        }
        var out = probe
        out.check = .clientView(resolver: resolver, srv: srv, sites: sites)
        return out
    }

    /// `dns.client_view` names a `client_view` probe of the secondary site.
    func checkClientView(_ topology: Topology) {
        guard let dns = topology.dns, let name = dns.clientView else { return }
        let at = dns.clientViewLocation ?? dns.location
        guard let probe = topology.probe(named: name) else {
            reader.error(at: at, "dns.client_view: '\(name)' is not a probe declared in health.probes")
            return
        }
        guard case .clientView = probe.check else {
            reader.error(
                at: at, "dns.client_view: probe '\(name)' is a \(probe.kind) probe; it must be a client_view probe")
            return
        }
        if probe.site != .secondary {
            reader.error(
                at: at,
                "dns.client_view: probe '\(name)' looks at the \(probe.site.rawValue) site; stage 2 waits for clients to reach the secondary pool, so give it site: secondary"
            )
        }
    }

    func checkReferences(_ topology: Topology) {
        let sets = Set(topology.backupSets.map(\.name))
        let services = Set(topology.services.map(\.name))
        let probes = Set(topology.health.probes.map(\.name))
        for service in topology.services {
            for dependency in service.dependsOn where !services.contains(dependency) {
                reader.error(
                    at: service.dependsOnLocation,
                    "service \(service.name) depends on '\(dependency)', which is not a service; known: \(services.sorted().joined(separator: ", "))"
                )
            }
            for set in service.backupSets where !sets.contains(set) {
                reader.error(
                    at: service.backupSetsLocation,
                    "service \(service.name) names backup set '\(set)', which is not declared in backup_sets")
            }
            for step in service.steps + (service.drillSteps ?? []) + service.failbackSteps {
                switch step.action {
                case .restore(let set, _) where !sets.contains(set):
                    reader.error(
                        at: step.location,
                        "service \(service.name) step \(step.name) restores '\(set)', which is not declared in backup_sets"
                    )
                case .probe(let name) where !probes.contains(name):
                    reader.error(
                        at: step.location,
                        "service \(service.name) step \(step.name) waits for probe '\(name)', which is not declared in health.probes"
                    )
                default: break
                }
            }
        }
        if topology.primary.pool.lowercased() == topology.secondary.pool.lowercased() {
            // Reported as a readiness finding with its fix; not a load error.
        }
    }

    /// Reports each dependency cycle once, naming the services in order.
    func checkCycles(_ services: [Service]) {
        let byName = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var reported = Set<Set<String>>()
        func visit(_ name: String, path: [String]) {
            guard let service = byName[name] else { return }
            state[name] = 1
            for next in service.dependsOn where byName[next] != nil {
                if state[next] == 1 {
                    let cycle = Array(path.drop(while: { $0 != next })) + [name, next]
                    let members = Set(cycle)
                    if !reported.contains(members) {
                        reported.insert(members)
                        reader.error(
                            at: service.dependsOnLocation, "dependency cycle: \(cycle.joined(separator: " → "))")
                    }
                } else if state[next] == nil {
                    visit(next, path: path + [name])
                }
            }
            state[name] = 2
        }
        for service in services where state[service.name] == nil { visit(service.name, path: []) }
    }

    // MARK: Small parsers

    static func item(_ node: Node?, _ index: Int) -> Node? {
        if case .sequence(let items)? = node, index < items.count { return items[index] }
        return node
    }

    static func isServerAddress(_ text: String, requirePort: Bool = false) -> Bool {
        var host = text
        var port: String?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return false }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return false }
                port = String(rest.dropFirst())
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            port = String(text[text.index(after: colon)...])
            if host.contains(":") { return false }
        }
        if requirePort && port == nil { return false }
        if let port, UInt16(port) == nil || port == "0" { return false }
        return !host.isEmpty && !host.contains(" ")
    }

    static func isSRVData(_ text: String) -> Bool {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 4, UInt16(parts[0]) != nil, UInt16(parts[1]) != nil, UInt16(parts[2]) != nil else {
            return false
        }
        return parts[3].hasSuffix(".")
    }

    /// `20MB/s`, `512KiB/s`, `100Mbit/s` → bytes per second.
    static func parseRate(_ text: String) -> Int64? {
        var t = text.replacingOccurrences(of: " ", with: "")
        guard t.hasSuffix("/s") else { return nil }
        t.removeLast(2)
        let digits = t.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(digits), value > 0 else { return nil }
        let unit = t.dropFirst(digits.count)
        let factors: [String: Double] = [
            "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824,
            "kbit": 125, "Kbit": 125, "Mbit": 125_000, "Gbit": 125_000_000,
        ]
        guard let factor = factors[String(unit)] else { return nil }
        return Int64(value * factor)
    }
}

extension String {
    var isValidName: Bool {
        !isEmpty && allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

extension TopologyError: StandbyFailure {
    public var outcome: FailureOutcome { .badInput }
    /// Every error of the file, one `site.yaml:LINE:COL: message` per line.
    public var message: String { description }
    public var place: String? { file }
}
