import Foundation
import StandbyTransport

/// A deployment as declared in `sites/<deployment>/site.yaml`: both sites, the backup sets, the
/// services with their restore steps, DNS, health probes and policy.
public struct Topology: Sendable {
    public var deployment: String
    public var domain: String
    public var primary: Site
    public var secondary: Site
    public var replication: ReplicationSettings
    public var backupSets: [BackupSet]
    public var services: [Service]
    public var dns: DNSSettings?
    public var health: HealthSettings
    public var policy: Policy
    public var scenarios: [Scenario]
    /// How `standby run` serves its endpoint (the `service:` section).
    public var service = ServiceSettings()
    /// How smb:// sources are read, for every set that does not say otherwise (`smb:`).
    public var smb: SMBSettings?
    /// The controllers' shared etcd (`cluster:`); nil for a single controller.
    public var cluster: ClusterSettings?
    /// The site.yaml this was read from, and its directory (relative paths in it resolve there).
    public var file: String
    public var directory: String

    public func backupSet(named name: String) -> BackupSet? { backupSets.first { $0.name == name } }
    public func service(named name: String) -> Service? { services.first { $0.name == name } }
    public func probe(named name: String) -> ProbeSpec? { health.probes.first { $0.name == name } }

    /// A path from the file, resolved against the deployment directory when relative.
    public func resolve(path: String) -> String {
        path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
    }
}

public enum SiteRole: String, Sendable, Codable, CaseIterable {
    case primary, secondary
}

public struct Site: Sendable {
    public var name: String
    public var timezone: TimeZone
    public var pool: String
    /// Daily windows of low use, in this site's local time.
    public var offPeak: [TimeWindow]
    /// Where replicated backup sets live (secondary only; nil means the state directory).
    public var store: String?
    public var standbyServers: [StandbyServer]
    /// Edition of the pool: a Standard Edition server or an Enterprise pool.
    public var edition: Edition
    public var location: SourceLocation

    public enum Edition: String, Sendable, Codable, CaseIterable { case standard, enterprise }
}

/// A spare server at the secondary site, reserved for recovery (the standby recovery server model).
public struct StandbyServer: Sendable {
    public var host: String
    public var roles: [String]
    /// For database servers: the volumes holding data (.mdf) and transaction log (.ldf) files.
    public var volumes: Volumes?
    public var location: SourceLocation

    public struct Volumes: Sendable {
        public var data: String
        public var log: String
    }
}

/// `smb:` of the deployment or of a backup set: how smb:// sources are read. Each key left out
/// falls back to the deployment's, then to the default: SMB 2.0.2 and later, encryption desired,
/// an NTLMv2 login with the source credentials. Signing is always required.
public struct SMBSettings: Sendable {
    public enum Auth: String, Sendable, Codable, CaseIterable {
        /// NTLMv2 with `STANDBY_SOURCE_USER` (`DOMAIN\user` or `user@REALM`) and its password.
        case ntlm
        /// Kerberos with the service account of `smb.kerberos`, else of `dns.gss_tsig`.
        case kerberos
    }

    public var minProtocol: SMBOptions.Dialect?
    public var encrypt: SMBOptions.Encryption?
    public var auth: Auth?
    public var kerberos: SMBKerberosSettings?
    public var location: SourceLocation

    public init(
        minProtocol: SMBOptions.Dialect? = nil, encrypt: SMBOptions.Encryption? = nil, auth: Auth? = nil,
        kerberos: SMBKerberosSettings? = nil, location: SourceLocation = .unknown
    ) {
        self.minProtocol = minProtocol
        self.encrypt = encrypt
        self.auth = auth
        self.kerberos = kerberos
        self.location = location
    }

    /// These settings with `other`'s keys over them (a set's over the deployment's).
    public func overridden(by other: SMBSettings?) -> SMBSettings {
        guard let other else { return self }
        return SMBSettings(
            minProtocol: other.minProtocol ?? minProtocol, encrypt: other.encrypt ?? encrypt,
            auth: other.auth ?? auth, kerberos: other.kerberos ?? kerberos, location: other.location)
    }
}

/// `smb.kerberos`: the account SMB's Kerberos logins use, when not `dns.gss_tsig`'s.
public struct SMBKerberosSettings: Sendable {
    public var principal: String
    /// A keytab (mode 0600); nil for the ticket cache (KRB5CCNAME).
    public var keytab: String?
    public var krb5Conf: String?
    public var location: SourceLocation

    public init(principal: String, keytab: String? = nil, krb5Conf: String? = nil, location: SourceLocation = .unknown)
    {
        self.principal = principal
        self.keytab = keytab
        self.krb5Conf = krb5Conf
        self.location = location
    }
}

extension Topology {
    /// The smb settings that hold for `set`: its own over the deployment's.
    public func smbSettings(for set: BackupSet) -> SMBSettings {
        (smb ?? SMBSettings()).overridden(by: set.smb)
    }

    /// What the transport is given for `set`'s smb:// sources. With `auth: kerberos`, the account
    /// is `smb.kerberos`, else `dns.gss_tsig`'s (its keytab, or the ticket cache); paths resolve
    /// against the deployment directory.
    public func smbOptions(for set: BackupSet) -> SMBOptions {
        let settings = smbSettings(for: set)
        var options = SMBOptions(
            minProtocol: settings.minProtocol ?? .smb2_02, encryption: settings.encrypt ?? .desired)
        if settings.auth == .kerberos {
            if let account = settings.kerberos {
                options.kerberos = KerberosAccount(
                    principal: account.principal, keytab: account.keytab.map(resolve(path:)),
                    krb5Conf: account.krb5Conf.map(resolve(path:)))
            } else if let gss = dns?.gssTSIG {
                options.kerberos = KerberosAccount(
                    principal: gss.principal, keytab: gss.keytab.map(resolve(path:)),
                    krb5Conf: gss.krb5Conf.map(resolve(path:)))
            }
        }
        return options
    }
}

public struct ReplicationSettings: Sendable {
    /// Transfer cap while the primary site is outside its off-peak window; nil means no cap.
    public var peakRate: Int64?
}

public struct BackupSet: Sendable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case database, settings, files }

    public var name: String
    public var kind: Kind
    /// One or more source URLs (file, smb, sftp, https, ftp); several URLs make one version.
    public var sources: [String]
    public var schedule: Schedule
    public var rpo: TimeSpan
    public var keepLast: Int
    /// Where this set is produced after a failover, for reverse replication on failback.
    public var failbackSource: [String]
    /// Send credentials over plain http:// (or ftp://) when the server asks for them: the
    /// password then crosses the network in clear. Off unless the set says so; `check` warns.
    public var allowInsecureAuth: Bool
    /// How this set's smb:// sources are read; its keys override the deployment's `smb:`.
    public var smb: SMBSettings?
    public var description: String?
    public var location: SourceLocation

    public struct Schedule: Sendable {
        /// Periodic snapshots through the day.
        public var every: TimeSpan?
        /// Local time (primary site) of the daily full backup, minutes after midnight.
        public var fullDailyAt: Int?
    }
}

public struct Service: Sendable {
    public enum Tier: String, Sendable, Codable, CaseIterable { case core, optional }

    public var name: String
    public var tier: Tier
    public var priority: Int
    public var dependsOn: [String]
    public var backupSets: [String]
    /// Server roles this service runs on; a core service needs a standby server for each.
    public var roles: [String]
    public var steps: [Step]
    public var drillSteps: [Step]?
    public var failbackSteps: [Step]
    /// Whether the secondary site restores this service at all, and why not.
    public var atSecondary: Bool
    public var reason: String?
    public var description: String?
    public var location: SourceLocation
    /// Where `depends_on` and `backup_sets` were written, for errors about what they name.
    public var dependsOnLocation: SourceLocation
    public var backupSetsLocation: SourceLocation
}

public struct Step: Sendable {
    public enum Action: Sendable {
        /// Materialise the newest verified version of a backup set into a directory.
        case restore(set: String, to: String)
        /// Run a program. No shell unless `shell` is set.
        case exec(arguments: [String], shell: Bool, environment: [String: String], workingDirectory: String?)
        /// Call a webhook or runbook endpoint.
        case http(url: String, method: String, body: String?, headers: [String: String], expectStatus: [Int])
        /// Wait until a health probe passes.
        case probe(name: String)
        /// A person does something; the run pauses until `standby confirm`.
        case manual(instruction: String, owner: String?)
    }

    /// Unique within the service; `1`, `2`, ... unless the file names it.
    public var name: String
    public var action: Action
    public var timeout: TimeSpan?
    public var retries: Int
    public var retryDelay: TimeSpan
    /// May run again after the controller died while it was running.
    public var idempotent: Bool
    /// Runs during a drill (against drill targets) too.
    public var drill: Bool
    public var location: SourceLocation
    /// Who does the step when it must be done by hand (`owner:`; a manual step's owner). The
    /// runbook names them; nil: the incident leads.
    public var owner: String? = nil

    public var kind: StepKind {
        switch action {
        case .restore: .restore
        case .exec: .exec
        case .http: .http
        case .probe: .probe
        case .manual: .manual
        }
    }

    /// One line saying what the step does.
    public var summary: String {
        switch action {
        case .restore(let set, let to): "restore \(set) to \(to)"
        case .exec(let arguments, let shell, _, _):
            shell ? "sh -c \(arguments.joined(separator: " "))" : "exec \(arguments.joined(separator: " "))"
        case .http(let url, let method, _, _, let expect):
            "\(method) \(url) (expect \(expect.map(String.init).joined(separator: "/")))"
        case .probe(let name): "wait for probe \(name)"
        case .manual(let instruction, let owner): "manual: \(instruction)\(owner.map { " (owner: \($0))" } ?? "")"
        }
    }
}

public struct DNSSettings: Sendable {
    public var zone: String
    /// Every authoritative server: the first takes the update, all are verified.
    public var servers: [String]
    /// BIND key file with the TSIG key; never inside the repository. Nil with `gssTSIG`.
    public var key: String?
    /// A Kerberos service account for GSS-TSIG (Active Directory DNS); nil with `key`.
    public var gssTSIG: GSSTSIGSettings?
    public var records: [DNSRecord]
    /// A zone to run the full cutover on during drills.
    public var drillZone: String?
    public var verifyTimeout: TimeSpan
    public var location: SourceLocation
    /// Where `key:` (or `gss_tsig:`) is written, for errors about the key file.
    public var keyLocation: SourceLocation
    /// A `client_view` probe that validates stage 2 as clients see it (`dns/client-view`): the
    /// run waits until it reaches the secondary pool, and the report gives the client-visible
    /// recovery time.
    public var clientView: String? = nil
    public var clientViewLocation: SourceLocation? = nil

    /// `dns.key` or `dns.gss_tsig`, as errors name it.
    public var credentialKey: String { gssTSIG == nil ? "dns.key" : "dns.gss_tsig" }

    /// Stage 2's validation, `dns/client-view`: the `dns.client_view` probe as a probe step. It
    /// may wait for every server to serve the new records and then a resolver's cache to expire.
    public var clientViewStep: Step? {
        guard let clientView else { return nil }
        let longestTTL = records.map(\.ttl).max() ?? 0
        return Step(
            name: "client-view", action: .probe(name: clientView),
            timeout: TimeSpan(milliseconds: verifyTimeout.milliseconds + Int64(longestTTL) * 1000 + 60_000), retries: 0,
            retryDelay: TimeSpan(seconds: 5), idempotent: true, drill: false,
            location: clientViewLocation ?? location)
    }
}

/// `dns.gss_tsig`: the service account whose Kerberos credential signs the updates.
public struct GSSTSIGSettings: Sendable {
    /// `svc-standby@CONTOSO.COM`
    public var principal: String
    /// A keytab (mode 0600) with the account's keys; or
    public var keytab: String?
    /// a file (mode 0600) with its password; neither: the ticket cache (KRB5CCNAME).
    public var passwordFile: String?
    /// A krb5.conf; nil for KRB5_CONFIG or the system's.
    public var krb5Conf: String?
    /// `DNS/dc01.contoso.com`; nil for DNS/<the SOA's primary server>.
    public var serverPrincipal: String?
    public var location: SourceLocation
}

public struct DNSRecord: Sendable {
    public var name: String
    public var type: String
    public var ttl: Int
    public var primary: [String]
    public var secondary: [String]
    public var location: SourceLocation

    /// The owner name made absolute in `zone`.
    public func fqdn(in zone: String) -> String {
        if name.hasSuffix(".") { return name }
        let z = zone.hasSuffix(".") ? zone : zone + "."
        return name == "@" ? z : "\(name).\(z)"
    }
}

public struct HealthSettings: Sendable {
    public var interval: TimeSpan
    public var fall: Int
    public var rise: Int
    public var timeout: TimeSpan
    public var keepHistory: TimeSpan
    public var webhooks: [String]
    public var probes: [ProbeSpec]
}

public struct ProbeSpec: Sendable {
    public enum Check: Sendable {
        case tcp(target: String)
        case tls(target: String, serverName: String?)
        case http(url: String, expectStatus: [Int], bodyMatch: String?)
        case sipOptions(uri: String, acceptStatus: [Int])
        case dns(server: String, name: String, type: String)
        /// The SRV record through a caching resolver, then its target, as a client looks for the
        /// pool. `sites` says which site each SRV target belongs to (from `dns.records`, else the
        /// sites' pools), filled in when the topology loads.
        case clientView(resolver: String, srv: String, sites: [String: SiteRole])
    }

    public var name: String
    public var site: SiteRole
    public var check: Check
    public var timeout: TimeSpan?
    /// A CA bundle to trust for tls and SIP-over-TLS probes (an internal CA); the system's otherwise.
    public var caFile: String?
    public var location: SourceLocation

    public var kind: String {
        switch check {
        case .tcp: "tcp"
        case .tls: "tls"
        case .http: "http"
        case .sipOptions: "sip_options"
        case .dns: "dns"
        case .clientView: "client_view"
        }
    }

    public var target: String {
        switch check {
        case .tcp(let t), .tls(let t, _): t
        case .http(let url, _, _): url
        case .sipOptions(let uri, _): uri
        case .dns(let server, let name, let type): "\(name) \(type) @\(server)"
        case .clientView(let resolver, let srv, _): "\(srv) SRV via \(resolver)"
        }
    }
}

public struct Policy: Sendable {
    public var incidentLeads: [String]
    public var drillEvery: TimeSpan
    public var reviewEvery: TimeSpan
    public var lastReview: Date?
    public var lastDrill: Date?
}

/// A loss the plan can restore from: which server roles it takes out, and whether clients must
/// move to the secondary pool (only for the loss of a whole site).
public struct Scenario: Sendable {
    public var name: String
    public var summary: String
    /// nil selects every service (a site loss).
    public var roles: Set<String>?
    public var movesToSecondary: Bool
}
