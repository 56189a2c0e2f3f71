import Foundation
import StandbyDNS

/// The checks of `standby check` beyond the file's validity: the secondary-site rules and best
/// practices of the backup and restoration strategy, applied to one topology.
public struct ReadinessCheck: Sendable {
    public var topology: Topology
    public var now: Date
    /// The last successful drill recorded in the state directory, if any; it counts like
    /// `policy.last_drill`, whichever is newer.
    public var lastDrill: Date?

    public init(topology: Topology, now: Date = Date(), lastDrill: Date? = nil) {
        self.topology = topology
        self.now = now
        self.lastDrill = lastDrill
    }

    /// Every finding, errors first, then by line.
    public func run() -> [Finding] {
        var findings: [Finding] = []
        findings += pools()
        findings += dnsRecords()
        findings += keyFile()
        findings += services()
        findings += backupSets()
        findings += offPeak()
        findings += volumes()
        findings += policy()
        findings += probes()
        return findings.sorted { ($0.severity, $0.line ?? 0, $0.id) < ($1.severity, $1.line ?? 0, $1.id) }
    }

    func pools() -> [Finding] {
        var out: [Finding] = []
        if topology.primary.pool.lowercased() == topology.secondary.pool.lowercased() {
            out.append(
                Finding(
                    id: "pool-name-reused", severity: .error,
                    message: "the secondary site's pool \(topology.secondary.pool) has the primary's pool name",
                    fix: "give sites.secondary.pool a name of its own, like pool02-dr.\(topology.domain)",
                    line: topology.secondary.location.line))
        }
        if topology.primary.timezone.identifier == topology.secondary.timezone.identifier {
            out.append(
                Finding(
                    id: "secondary-same-region", severity: .info,
                    message:
                        "both sites are in the time zone \(topology.primary.timezone.identifier); a regional disaster may take both",
                    fix: "place the standby servers in a different geographical area from the primary site",
                    line: topology.secondary.location.line))
        }
        return out
    }

    func dnsRecords() -> [Finding] {
        guard let dns = topology.dns else {
            return [
                Finding(
                    id: "dns-missing", severity: .error,
                    message: "no dns section: clients would keep looking for the lost pool",
                    fix:
                        "add dns with the zone, its servers, a TSIG key and the _sipinternaltls._tcp and _sip._tcp SRV records"
                )
            ]
        }
        var out: [Finding] = []
        for required in ["_sipinternaltls._tcp", "_sip._tcp"] {
            let present = dns.records.contains {
                $0.type == "SRV" && ($0.name == required || $0.name.hasPrefix(required + "."))
            }
            if !present {
                out.append(
                    Finding(
                        id: "srv-record-missing", severity: .error,
                        message: "no SRV record for \(required): clients would not find the secondary pool",
                        fix: "add a dns.records entry for \(required) with the primary's and the secondary's target",
                        line: dns.location.line))
            }
        }
        if dns.servers.count == 1 {
            out.append(
                Finding(
                    id: "single-dns-server", severity: .info,
                    message: "dns.servers names one server; every authoritative server must be listed to be verified",
                    fix: "list every authoritative server of \(dns.zone) in dns.servers", line: dns.location.line))
        }
        for record in dns.records where record.ttl > 3600 {
            out.append(
                Finding(
                    id: "dns-ttl-long", severity: .warning,
                    message: "\(record.name) has a TTL of \(record.ttl)s: clients may keep the dead pool that long",
                    fix: "lower the TTL to 300 or less (or run `standby dns prepare` before a planned switch)",
                    line: record.location.line))
        }
        return out
    }

    func keyFile() -> [Finding] {
        guard let dns = topology.dns else { return [] }
        if let gss = dns.gssTSIG { return serviceAccount(gss, dns: dns) }
        guard let key = dns.key else { return [] }
        let path = topology.resolve(path: key)
        guard let mode = Self.mode(of: path) else {
            return [
                Finding(
                    id: "dns-key-absent", severity: .info,
                    message: "the TSIG key file \(path) is not on this machine; the DNS cutover will fail here",
                    fix: "install the key on the controller (mode 0600), or run check on the controller itself",
                    line: dns.location.line)
            ]
        }
        var out: [Finding] = []
        if mode & 0o077 != 0 {
            out.append(
                Finding(
                    id: "dns-key-readable", severity: .error,
                    message:
                        "the TSIG key file \(path) is readable by group or others (mode \(String(mode & 0o777, radix: 8)))",
                    fix: "chmod 600 \(path)", line: dns.location.line))
        }
        if let algorithm = Self.keyAlgorithm(path: path),
            ["hmac-md5", "hmac-sha1", "hmac-md5.sig-alg.reg.int"].contains(algorithm)
        {
            out.append(
                Finding(
                    id: "dns-key-weak", severity: .warning,
                    message: "the TSIG key in \(path) uses \(algorithm)",
                    fix: "generate a new key with `tsig-keygen -a hmac-sha256` and update the servers' policy",
                    line: dns.location.line))
        }
        if let repository = repository(holding: path) {
            out.append(
                Finding(
                    id: "dns-key-in-repository", severity: .warning,
                    message: "the TSIG key file \(path) lies inside the repository \(repository)",
                    fix: "move the key out of the repository (for example to /etc/standby/) and point dns.key there",
                    line: dns.location.line))
        }
        return out
    }

    /// `dns.gss_tsig`: the keytab or password file present, readable by its owner only, outside
    /// the repository, and the keytab holding the principal's keys; the krb5.conf readable.
    func serviceAccount(_ gss: GSSTSIGSettings, dns: DNSSettings) -> [Finding] {
        var out: [Finding] = []
        let line = gss.location.line
        let secret =
            gss.keytab.map { ("keytab", topology.resolve(path: $0)) }
            ?? gss.passwordFile.map { ("password file", topology.resolve(path: $0)) }
        if let (what, path) = secret {
            if let mode = Self.mode(of: path) {
                if mode & 0o077 != 0 {
                    out.append(
                        Finding(
                            id: "gss-secret-readable", severity: .error,
                            message:
                                "the \(what) \(path) of \(gss.principal) is readable by group or others (mode \(String(mode & 0o777, radix: 8)))",
                            fix: "chmod 600 \(path)", line: line))
                }
                if let repository = repository(holding: path) {
                    out.append(
                        Finding(
                            id: "gss-secret-in-repository", severity: .warning,
                            message: "the \(what) \(path) lies inside the repository \(repository)",
                            fix:
                                "move it out of the repository (for example to /etc/standby/) and point dns.gss_tsig there",
                            line: line))
                }
                if what == "keytab", mode & 0o077 == 0,
                    let problem = GSSCredentialSource.keytabProblem(
                        path, principal: gss.principal, krb5Conf: gss.krb5Conf.map { topology.resolve(path: $0) })
                {
                    out.append(
                        Finding(
                            id: "gss-keytab-principal", severity: .error,
                            message: "the keytab \(path) cannot sign in as \(gss.principal): \(problem)",
                            fix:
                                "export it again on a domain controller (samba-tool domain exportkeytab FILE --principal=\(gss.principal), or ktpass on Windows)",
                            line: line))
                }
            } else {
                out.append(
                    Finding(
                        id: "gss-secret-absent", severity: .info,
                        message:
                            "the \(what) \(path) of \(gss.principal) is not on this machine; the DNS cutover will fail here",
                        fix: "install it on the controller (mode 0600), or run check on the controller itself",
                        line: line))
            }
        }
        if let conf = gss.krb5Conf.map({ topology.resolve(path: $0) }),
            !FileManager.default.isReadableFile(atPath: conf)
        {
            out.append(
                Finding(
                    id: "gss-krb5-conf-absent", severity: .warning,
                    message: "dns.gss_tsig.krb5_conf \(conf) cannot be read on this machine",
                    fix: "install the krb5.conf naming the realm's KDCs, or leave krb5_conf out for the system's",
                    line: line))
        }
        return out
    }

    /// A file's permission bits, nil when it is not on this machine.
    static func mode(of path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))
            .flatMap { ($0[.posixPermissions] as? NSNumber)?.intValue }
    }

    /// The git repository of the topology, when `path` lies inside it (a secret that should not).
    func repository(holding path: String) -> String? {
        Self.gitRoot(of: topology.directory).flatMap { path.hasPrefix($0 + "/") ? $0 : nil }
    }

    /// The algorithm line of a BIND key file; the secret is never read into memory here.
    static func keyAlgorithm(path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("algorithm") {
                return trimmed.dropFirst("algorithm".count).trimmingCharacters(in: CharacterSet(charactersIn: " ;\t"))
                    .lowercased()
            }
        }
        return nil
    }

    static func gitRoot(of directory: String) -> String? {
        var url = URL(fileURLWithPath: directory).standardizedFileURL
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent(".git").path) { return url.path }
            url.deleteLastPathComponent()
        }
        return nil
    }

    func services() -> [Finding] {
        var out: [Finding] = []
        let serversByRole = Dictionary(
            grouping: topology.secondary.standbyServers.flatMap { server in server.roles.map { ($0, server) } },
            by: \.0)
        let optional = Set(topology.services.filter { $0.tier == .optional }.map(\.name))
        for service in topology.services {
            let line = service.location.line
            if !service.atSecondary {
                if (service.reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
                    out.append(
                        Finding(
                            id: "not-at-secondary-without-reason", severity: .error,
                            message: "service \(service.name) is not restored at the secondary and no reason says why",
                            fix: "add `reason:` to service \(service.name), for the next review of the secondary site",
                            line: line))
                }
                continue
            }
            guard service.tier == .core else { continue }
            if service.backupSets.isEmpty {
                out.append(
                    Finding(
                        id: "core-without-backup", severity: .error,
                        message:
                            "core service \(service.name) names no backup set: the secondary has nothing to restore it from",
                        fix: "list the databases and settings exports of \(service.name) in its backup_sets", line: line
                    ))
            }
            for role in service.roles where serversByRole[role] == nil {
                out.append(
                    Finding(
                        id: "core-role-without-standby", severity: .error,
                        message:
                            "core service \(service.name) needs a \(role) server, and the secondary has no standby server with that role",
                        fix: "add a standby server with role \(role) to sites.secondary.standby_servers", line: line))
            }
            let probes = service.steps.contains { if case .probe = $0.action { true } else { false } }
            if !probes {
                out.append(
                    Finding(
                        id: "core-without-probe", severity: .warning,
                        message:
                            "core service \(service.name) has no probe step: nothing validates it after the restore",
                        fix: "add a `probe:` step naming a secondary-site probe at the end of \(service.name)'s steps",
                        line: line))
            }
            for dependency in service.dependsOn where optional.contains(dependency) {
                out.append(
                    Finding(
                        id: "core-depends-on-optional", severity: .error,
                        message:
                            "core service \(service.name) depends on optional service \(dependency), which waits for the off-peak window",
                        fix: "make \(dependency) core, or drop the dependency", line: line))
            }
        }
        return out
    }

    func backupSets() -> [Finding] {
        var out: [Finding] = []
        let used = Set(topology.services.flatMap(\.backupSets))
        for set in topology.backupSets {
            let line = set.location.line
            if set.rpo > .hours(24) {
                out.append(
                    Finding(
                        id: "rpo-over-24h", severity: .warning,
                        message:
                            "backup set \(set.name) allows \(set.rpo) of data loss; more than a day's data may be lost",
                        fix: "take a full backup of \(set.name) at least every 24 hours and set rpo to 24h or less",
                        line: line))
            }
            if set.schedule.fullDailyAt == nil {
                out.append(
                    Finding(
                        id: "no-daily-full", severity: .warning,
                        message: "backup set \(set.name) has no daily full backup",
                        fix: "set schedule.full_daily_at to a time in the primary's off-peak window", line: line))
            } else if let at = set.schedule.fullDailyAt, !topology.primary.offPeak.isEmpty,
                !topology.primary.offPeak.contains(where: { $0.contains(minuteOfDay: at) })
            {
                out.append(
                    Finding(
                        id: "full-backup-at-peak", severity: .warning,
                        message:
                            "backup set \(set.name) takes its full backup at \(TimeWindow.clock(at)), outside the primary's off-peak window",
                        fix:
                            "move schedule.full_daily_at into \(topology.primary.offPeak.map(\.description).joined(separator: ", "))",
                        line: line))
            }
            if let rpo = set.schedule.every, rpo > set.rpo {
                out.append(
                    Finding(
                        id: "schedule-exceeds-rpo", severity: .warning,
                        message: "backup set \(set.name) is copied every \(rpo), longer than its RPO of \(set.rpo)",
                        fix: "copy \(set.name) at least every \(set.rpo)", line: line))
            }
            if !used.contains(set.name) {
                out.append(
                    Finding(
                        id: "backup-set-unused", severity: .info,
                        message: "backup set \(set.name) is replicated but no service restores it",
                        fix: "name it in a service's backup_sets, or stop replicating it", line: line))
            }
        }
        // smb:// sources cross from the primary site to the secondary: SMB1 and unencrypted
        // sessions expose the backups (and SMB1 the login) on the way.
        var desired: [(set: String, line: Int)] = []
        for set in topology.backupSets {
            let smb = (set.sources + set.failbackSource).filter { URL(string: $0)?.scheme?.lowercased() == "smb" }
            guard !smb.isEmpty else { continue }
            let settings = topology.smbSettings(for: set)
            let line = (set.smb ?? topology.smb)?.location.line ?? set.location.line
            if settings.minProtocol == .nt1 {
                out.append(
                    Finding(
                        id: "smb-smb1-allowed", severity: .warning,
                        message:
                            "backup set \(set.name) allows SMB1 (smb.min_protocol: NT1) for \(smb.joined(separator: ", ")): no encryption, weak signing, and a login an attacker between the sites can downgrade",
                        fix: "enable SMB2/3 on the server and drop min_protocol (SMB 2.0.2 and later is the default)",
                        line: line))
            }
            switch settings.encrypt ?? .desired {
            case .off:
                out.append(
                    Finding(
                        id: "smb-unencrypted", severity: .warning,
                        message:
                            "backup set \(set.name) reads \(smb.joined(separator: ", ")) across sites with smb.encrypt: off: the backups cross the network in clear (signed, not sealed)",
                        fix:
                            "set smb.encrypt: required (SMB3 servers: Windows Server 2012 and later, Samba 4.1 and later)",
                        line: line))
            case .desired where settings.minProtocol != .nt1:
                desired.append((set.name, line))
            default:
                break
            }
        }
        if let first = desired.first {
            let names = desired.map(\.set).joined(separator: ", ")
            out.append(
                Finding(
                    id: "smb-encryption-desired", severity: .info,
                    message:
                        "\(desired.count == 1 ? "backup set" : "backup sets") \(names) \(desired.count == 1 ? "reads" : "read") smb:// encrypted only where the server offers SMB3 encryption (smb.encrypt: desired, the default); an SMB 2.x server is read signed but in clear",
                    fix: "set smb.encrypt: required once every server speaks SMB3", line: first.line))
        }
        for set in topology.backupSets where set.allowInsecureAuth {
            let plain = (set.sources + set.failbackSource).filter { URL(string: $0)?.scheme?.lowercased() == "http" }
            out.append(
                Finding(
                    id: "insecure-auth", severity: .warning,
                    message: plain.isEmpty
                        ? "backup set \(set.name) says allow_insecure_auth: true, but reads no http:// source"
                        : "backup set \(set.name) sends its source credentials in clear over plain http (\(plain.joined(separator: ", "))): allow_insecure_auth is true",
                    fix: "serve the backups over https (or sftp) and drop allow_insecure_auth",
                    line: set.location.line))
        }
        return out
    }

    func offPeak() -> [Finding] {
        var out: [Finding] = []
        let hasOptional = topology.services.contains { $0.tier == .optional && $0.atSecondary }
        if topology.secondary.offPeak.isEmpty {
            out.append(
                Finding(
                    id: "no-off-peak", severity: .warning,
                    message:
                        "the secondary site has no off-peak window\(hasOptional ? ": optional services would never be restored by the schedule" : "")",
                    fix: "set sites.secondary.off_peak, like [\"22:00-05:00\"] in the site's local time",
                    line: topology.secondary.location.line))
        }
        if topology.primary.offPeak.isEmpty {
            out.append(
                Finding(
                    id: "no-primary-off-peak", severity: .info,
                    message: "the primary site has no off-peak window: replication runs at the peak rate cap all day",
                    fix: "set sites.primary.off_peak to the primary's hours of low use",
                    line: topology.primary.location.line))
        }
        return out
    }

    func volumes() -> [Finding] {
        topology.secondary.standbyServers.compactMap { server in
            guard let volumes = server.volumes,
                volumes.data.lowercased() == volumes.log.lowercased()
            else { return nil }
            return Finding(
                id: "data-log-same-volume", severity: .warning,
                message:
                    "standby server \(server.host) keeps database files and transaction logs on the same volume \(volumes.data)",
                fix: "put the .ldf log files on a different volume from the .mdf data files", line: server.location.line
            )
        }
    }

    func policy() -> [Finding] {
        var out: [Finding] = []
        let policy = topology.policy
        if policy.incidentLeads.isEmpty {
            out.append(
                Finding(
                    id: "no-incident-leads", severity: .error,
                    message: "policy.incident_leads is empty: nobody may declare a site loss",
                    fix: "list the people who may declare a site loss in policy.incident_leads"))
        }
        let lastDrill = [policy.lastDrill, lastDrill].compactMap { $0 }.max()
        if let lastDrill {
            let age = now.timeIntervalSince(lastDrill)
            if age > policy.drillEvery.seconds {
                out.append(
                    Finding(
                        id: "drill-overdue", severity: .warning,
                        message:
                            "the last drill was \(TimeSpan(seconds: Int64(age)).roughDescription) ago, over the policy's \(policy.drillEvery)",
                        fix: "run `standby drill` to rehearse the failover"))
            }
        } else {
            out.append(
                Finding(
                    id: "drill-overdue", severity: .warning, message: "no drill has been recorded",
                    fix: "run `standby drill` to rehearse the failover"))
        }
        if let lastReview = policy.lastReview {
            let age = now.timeIntervalSince(lastReview)
            if age > policy.reviewEvery.seconds {
                out.append(
                    Finding(
                        id: "review-overdue", severity: .warning,
                        message:
                            "the secondary site's capabilities were last reviewed \(TimeSpan(seconds: Int64(age)).roughDescription) ago, over the policy's \(policy.reviewEvery)",
                        fix:
                            "review what the secondary supports against current business needs and update policy.last_review"
                    ))
            }
        } else {
            out.append(
                Finding(
                    id: "review-overdue", severity: .warning,
                    message: "no review of the secondary site's capabilities is recorded",
                    fix: "review the secondary site against current business needs and set policy.last_review"))
        }
        return out
    }

    func probes() -> [Finding] {
        var out: [Finding] = []
        if !topology.health.probes.contains(where: { $0.site == .primary }) {
            out.append(
                Finding(
                    id: "no-primary-probe", severity: .warning,
                    message: "no probe watches the primary site: the incident lead has no evidence to decide on",
                    fix: "add health.probes with site: primary (sip_options on the pool, tcp on the SQL server)"))
        }
        return out
    }
}
