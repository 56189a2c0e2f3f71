import Foundation
import StandbyReplication
import StandbyTransport

/// A backup set made into one transfer into the store: its sources, the credentials to read
/// them, the peak-hour rate cap, whether a published index is used, and the retention.
///
/// It is built here and only here. `standby replicate`, `standby run`'s replicate job, the
/// failover's `--planned` final pass and failback's reverse and final passes all call it: when
/// each built its own, only the command applied the credentials and the cap, and the scheduled
/// job and failback failed on every source that needs a password or a key.
public struct ReplicationJob: Sendable {
    public var spec: SetSpec
    public var options: ReplicateOptions

    /// The cap the job runs under: the topology's `replication.peak_rate` while the site the
    /// sources are read from is outside its off-peak window, nil otherwise.
    public var rateLimit: Int64? { options.rateLimit }

    /// - Parameters:
    ///   - sources: the URLs to read, when not the set's own `source` (failback reads its
    ///     `failback_source`, with variables already substituted).
    ///   - sourceSite: the site whose servers the sources are on, whose off-peak window decides
    ///     the cap (the primary, except for failback's reverse passes).
    ///   - useIndex: use a published chunk index when one matches (`--no-index` turns it off).
    ///   - environment: where the credentials come from (see `transportOptions`).
    public init(
        set: BackupSet, in topology: Topology, sources: [String]? = nil, sourceSite: Site? = nil, at now: Date,
        useIndex: Bool = true, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ReplicationError) {
        var urls: [URL] = []
        for text in sources ?? set.sources {
            guard let url = URL(string: text), url.scheme != nil else {
                throw ReplicationError(
                    .invalidInput, "\(topology.file): backup set \(set.name): source '\(text)' is not a URL",
                    set: set.name)
            }
            urls.append(url)
        }
        let site = sourceSite ?? topology.primary
        let rateLimit = site.isAtPeak(now) ? topology.replication.peakRate : nil
        var transport = Self.transportOptions(environment: environment)
        transport.allowInsecureAuth = set.allowInsecureAuth
        transport.smb = topology.smbOptions(for: set)
        spec = SetSpec(name: set.name, sources: urls, keepLast: set.keepLast)
        options = ReplicateOptions(rateLimit: rateLimit, transport: transport, useIndex: useIndex)
    }

    /// Source credentials, never on the command line: `STANDBY_SOURCE_USER` and
    /// `STANDBY_SOURCE_PASSWORD`, else ~/.netrc, else the URL. For sftp, `STANDBY_SSH_KEY`
    /// (private key; `.pub` beside it), `STANDBY_SSH_KNOWN_HOSTS` or `STANDBY_SSH_HOST_SHA256`.
    public static func transportOptions(environment: [String: String]) -> TransportOptions {
        var options = TransportOptions()
        options.credentials = Credentials.fromEnvironment(prefix: "STANDBY_SOURCE", environment: environment)
        if let key = environment["STANDBY_SSH_KEY"], !key.isEmpty {
            options.ssh.privateKeyFile = key
            if FileManager.default.fileExists(atPath: key + ".pub") { options.ssh.publicKeyFile = key + ".pub" }
        }
        options.ssh.knownHostsFile = environment["STANDBY_SSH_KNOWN_HOSTS"].flatMap { $0.isEmpty ? nil : $0 }
        options.ssh.hostKeySHA256 = environment["STANDBY_SSH_HOST_SHA256"].flatMap { $0.isEmpty ? nil : $0 }
        return options
    }
}

extension Site {
    /// Whether `date` falls outside this site's off-peak windows: its servers are busy, and
    /// reading from them is capped. A site without windows is never at peak.
    public func isAtPeak(_ date: Date) -> Bool {
        !offPeak.isEmpty && !offPeak.contains(date, in: timezone)
    }
}
