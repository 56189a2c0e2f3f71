import Foundation

// The engine reaches the other modules (replication, DNS, probes, transport) through these
// protocols, so that it is tested alone and the modules are wired in one place
// (`Failover/Adapters/`).

/// The newest verified version of a backup set in the store at the secondary.
public struct SetVersionInfo: Sendable, Codable, Hashable {
    public var set: String
    public var version: String
    /// When the primary produced the data this version holds (the data-loss window starts here).
    public var capturedAt: Date
    public var verifiedAt: Date?

    public init(set: String, version: String, capturedAt: Date, verifiedAt: Date?) {
        self.set = set
        self.version = version
        self.capturedAt = capturedAt
        self.verifiedAt = verifiedAt
    }
}

/// What the replication catalog knows about the sets.
public protocol BackupCatalog: Sendable {
    /// The newest verified version of `set`, or nil when there is none.
    func newestVerified(set: String) async throws -> SetVersionInfo?
    /// A last replication pass of `sets` before a planned switch (`failover --planned`).
    func finalPass(sets: [String]) async throws
    /// Replicates `sources` into the store as a new version of `set` (failback's reverse
    /// replication) and returns the newest verified version.
    func replicate(set: String, sources: [String]) async throws -> SetVersionInfo?
}

/// Materialises a set version from the store into a directory.
public protocol Restorer: Sendable {
    /// Restores `version` of `set` into `directory` and returns the path the data is at.
    func restore(set: String, version: String, to directory: String) async throws -> String
}

public struct HTTPReply: Sendable {
    public var status: Int
    public var body: String

    public init(status: Int, body: String) {
        self.status = status
        self.body = body
    }
}

/// A webhook or runbook call (`http` steps).
public protocol HTTPCaller: Sendable {
    func call(method: String, url: String, headers: [String: String], body: String?, timeout: Duration)
        async throws -> HTTPReply
}

/// Waits until a health probe passes (`probe` steps); returns what it saw.
public protocol ProbeWaiter: Sendable {
    func waitUntilPassing(_ probe: ProbeSpec, timeout: Duration) async throws -> String
}

/// The record set values a cutover replaced, kept in the run for failback.
public struct ReplacedRecord: Sendable, Codable, Hashable {
    public var name: String
    public var type: String
    public var ttl: Int
    public var values: [String]

    public init(name: String, type: String, ttl: Int, values: [String]) {
        self.name = name
        self.type = type
        self.ttl = ttl
        self.values = values
    }
}

public struct DNSCutoverResult: Sendable, Codable {
    public var replaced: [ReplacedRecord]
    /// The authoritative servers that were seen serving the new values.
    public var verifiedOn: [String]
    public var log: String

    public init(replaced: [ReplacedRecord], verifiedOn: [String], log: String) {
        self.replaced = replaced
        self.verifiedOn = verifiedOn
        self.log = log
    }
}

/// The DNS cutover of stage 2: compare-and-swap of every record set, then verification on every
/// authoritative server.
public protocol DNSCutting: Sendable {
    func cutover(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String) async throws
        -> DNSCutoverResult
    /// Proves the cutover can run, changing nothing (the key, the expected values, every
    /// server reachable); returns what it proved. Throws `badInput` for a key-file problem and
    /// `refused` for anything else that would stop stage 2.
    func preflight(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String) async throws
        -> String
}

/// One line of evidence about the primary's health, shown before the lead confirms.
public struct HealthLine: Sendable, Codable, Hashable {
    public var probe: String
    public var verdict: String
    public var detail: String

    public init(probe: String, verdict: String, detail: String) {
        self.probe = probe
        self.verdict = verdict
        self.detail = detail
    }
}

/// What the health module knows about the primary.
public protocol HealthEvidence: Sendable {
    func primaryEvidence(_ topology: Topology) async -> [HealthLine]
}

/// The modules the engine calls, wired once (`FailoverModules.wired`, in `Adapters/`).
public struct FailoverModules: Sendable {
    public var catalog: any BackupCatalog
    public var restorer: any Restorer
    public var http: any HTTPCaller
    public var probes: any ProbeWaiter
    public var dns: any DNSCutting
    public var health: any HealthEvidence

    public init(
        catalog: any BackupCatalog, restorer: any Restorer, http: any HTTPCaller, probes: any ProbeWaiter,
        dns: any DNSCutting, health: any HealthEvidence
    ) {
        self.catalog = catalog
        self.restorer = restorer
        self.http = http
        self.probes = probes
        self.dns = dns
        self.health = health
    }
}
