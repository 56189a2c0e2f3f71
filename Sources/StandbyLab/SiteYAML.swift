import Foundation

/// A deployment's site.yaml for a test, built from the parts the test is about; the rest is what
/// every small deployment of the tests has. It reads like the README's topology section:
///
/// ```swift
/// var site = SiteYAML(deployment: "dnstest")
/// site.dns = ["zone: contoso.test", "servers: [\"\(named.address)\"]", "key: \(keyPath)"]
/// let path = try site.write(in: lab)      // lab/site/site.yaml
/// ```
///
/// By default: primary `red` (pool01.DOMAIN), secondary `dub` (pool02-dr.DOMAIN, off-peak
/// 22:00-05:00, a front end `fe.DOMAIN`), both in UTC; one core service `core` with one step
/// that does nothing; no backup sets, no DNS, no probes; `alice` the incident lead.
public struct SiteYAML: Sendable {
    public struct Site: Sendable {
        public var name: String
        public var timezone: String
        public var pool: String
        public var offPeak: [String]
        /// `store:` of the secondary (the replication store), nil for the state directory's.
        public var store: String?
        /// Flow mappings: `{ host: fe.contoso.test, roles: [front-end] }`.
        public var standbyServers: [String]

        public init(
            name: String, timezone: String = "UTC", pool: String, offPeak: [String] = [], store: String? = nil,
            standbyServers: [String] = []
        ) {
            self.name = name
            self.timezone = timezone
            self.pool = pool
            self.offPeak = offPeak
            self.store = store
            self.standbyServers = standbyServers
        }
    }

    public var deployment: String
    public var domain: String
    public var primary: Site
    public var secondary: Site
    /// One flow mapping per set: `{ name: rtc-db, kind: database, source: "...", rpo: 24h }`.
    public var backupSets: [String] = []
    /// Each service as its lines (`name: core`, `tier: core`, `steps:`, `  - { ... }`).
    public var services: [[String]]
    /// The lines under `dns:`; nil for a deployment without a DNS cutover.
    public var dns: [String]?
    /// The lines under `replication:`; nil for the defaults.
    public var replication: [String]?
    /// The lines under `health:`.
    public var health: [String] = ["probes: []"]
    public var incidentLeads: [String] = ["alice"]
    /// More lines under `policy:` (`last_drill: 2026-10-01`).
    public var policy: [String] = []
    /// More top-level YAML, as it is.
    public var extra: String = ""

    public init(deployment: String, domain: String = "contoso.test") {
        self.deployment = deployment
        self.domain = domain
        primary = Site(name: "red", pool: "pool01.\(domain)")
        secondary = Site(
            name: "dub", pool: "pool02-dr.\(domain)", offPeak: ["22:00-05:00"],
            standbyServers: ["{ host: fe.\(domain), roles: [front-end] }"])
        services = [Self.service("core", steps: [#"{ name: a, exec: [sh, -c, "true"] }"#])]
    }

    /// A service's lines: by default tier core, priority 1 and the front-end role (none when
    /// `roles` is empty), then `extra` lines (`backup_sets: [rtc-db]`, `depends_on: [core]`) and
    /// `steps`.
    public static func service(
        _ name: String, tier: String = "core", priority: Int = 1, roles: [String] = ["front-end"],
        steps: [String], extra: [String] = []
    ) -> [String] {
        ["name: \(name)", "tier: \(tier)", "priority: \(priority)"]
            + (roles.isEmpty ? [] : ["roles: [\(roles.joined(separator: ", "))]"]) + extra + ["steps:"]
            + steps.map { "  - \($0)" }
    }

    /// Services written as the YAML list a test reads best (`- name: core` and its lines below),
    /// as `services` takes them: one array of lines per item, relative to the item.
    public static func services(yaml: String) -> [[String]] {
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard
            let indent = lines.compactMap({ line -> Int? in
                let trimmed = line.drop { $0 == " " }
                return trimmed.hasPrefix("- ") ? line.count - trimmed.count : nil
            }).min()
        else { return [] }
        var items: [[String]] = []
        for line in lines where line.count > indent {
            let body = String(line.dropFirst(indent))
            if body.hasPrefix("- ") {
                items.append([String(body.dropFirst(2))])
            } else if !items.isEmpty {
                items[items.count - 1].append(String(body.dropFirst(2)))
            }
        }
        return items
    }

    /// The file's text.
    public var text: String {
        func site(_ key: String, _ site: Site) -> [String] {
            var lines = [
                "  \(key):", "    name: \(site.name)", "    timezone: \(site.timezone)", "    pool: \(site.pool)",
            ]
            if !site.offPeak.isEmpty {
                lines.append("    off_peak: [\(site.offPeak.map { "\"\($0)\"" }.joined(separator: ", "))]")
            }
            if let store = site.store { lines.append("    store: \(store)") }
            if !site.standbyServers.isEmpty {
                lines.append("    standby_servers:")
                lines += site.standbyServers.map { "      - \($0)" }
            }
            return lines
        }
        var lines = ["deployment: \(deployment)", "domain: \(domain)", "sites:"]
        lines += site("primary", primary) + site("secondary", secondary)
        if let replication {
            lines.append("replication:")
            lines += replication.map { "  " + $0 }
        }
        lines.append(backupSets.isEmpty ? "backup_sets: []" : "backup_sets:")
        lines += backupSets.map { "  - \($0)" }
        lines.append(services.isEmpty ? "services: []" : "services:")
        for service in services {
            lines += service.enumerated().map { index, line in (index == 0 ? "  - " : "    ") + line }
        }
        if let dns {
            lines.append("dns:")
            lines += dns.map { "  " + $0 }
        }
        lines.append("health:")
        lines += health.map { "  " + $0 }
        lines += ["policy:", "  incident_leads: [\(incidentLeads.joined(separator: ", "))]"] + policy.map { "  " + $0 }
        return lines.joined(separator: "\n") + "\n" + extra + (extra.hasSuffix("\n") || extra.isEmpty ? "" : "\n")
    }

    /// Writes the file to `lab/path` and returns its directory (what `standby` takes as SITE).
    @discardableResult
    public func write(in lab: LabDirectory, to path: String = "site/site.yaml") throws -> String {
        try lab.write(path, text)
        return (lab.file(path) as NSString).deletingLastPathComponent
    }
}
