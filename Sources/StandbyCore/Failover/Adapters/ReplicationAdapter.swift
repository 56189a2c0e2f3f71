import Foundation
import Logging
import StandbyReplication

/// The replication store at the secondary as the engine's catalog and restorer. Versions are the
/// store's version ids, as text.
public struct ReplicationAdapter: BackupCatalog, Restorer {
    public var topology: Topology
    public var storeDirectory: String
    public var logger: Logger
    /// Where source credentials come from (see `ReplicationJob.transportOptions`).
    public var environment: [String: String]

    public init(
        topology: Topology, storeDirectory: String, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.topology = topology
        self.storeDirectory = storeDirectory
        self.logger = logger
        self.environment = environment
    }

    func store(create: Bool = false) throws -> ReplicationStore {
        guard create || FileManager.default.fileExists(atPath: storeDirectory) else {
            throw FailoverError(
                .refused, "the replication store \(storeDirectory) does not exist; nothing was replicated yet")
        }
        return try ReplicationStore.open(directory: storeDirectory, logger: logger)
    }

    public func newestVerified(set: String) async throws -> SetVersionInfo? {
        let versions: [SetVersion]
        do {
            versions = try await store().versions(set: set)
        } catch let error as ReplicationError where error.code == .noSuchSet {
            return nil
        }
        guard let newest = versions.first(where: { !$0.broken && $0.verified != nil }) else { return nil }
        return SetVersionInfo(
            set: set, version: String(newest.id), capturedAt: newest.captured ?? newest.created,
            verifiedAt: newest.verified)
    }

    /// The planned failover's last pass: each set from its own sources at the primary, as
    /// `standby replicate` would read it (credentials, the primary's peak-hour cap, the index).
    public func finalPass(sets: [String]) async throws {
        let store = try store(create: true)
        for name in sets {
            guard let set = topology.backupSet(named: name) else { continue }
            let job = try ReplicationJob(set: set, in: topology, at: Date(), environment: environment)
            _ = try await store.replicate(set: job.spec, options: job.options)
        }
    }

    /// Reverse replication on failback: `sources` (where the set is produced now, at the
    /// secondary) into the store, with the secondary's peak-hour cap.
    public func replicate(set name: String, sources: [String]) async throws -> SetVersionInfo? {
        guard let set = topology.backupSet(named: name) else {
            throw FailoverError(.badInput, "backup set \(name) is no longer in \(topology.file)")
        }
        let job = try ReplicationJob(
            set: set, in: topology, sources: sources, sourceSite: topology.secondary, at: Date(),
            environment: environment)
        _ = try await store(create: true).replicate(set: job.spec, options: job.options)
        return try await newestVerified(set: name)
    }

    /// The restored file when the version holds one file (a database backup), else the directory.
    public func restore(set: String, version: String, to directory: String) async throws -> String {
        guard let id = Int64(version) else {
            throw FailoverError(.badInput, "backup set \(set): '\(version)' is not a version id of the store")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let report = try await store().restore(set: set, version: id, to: directory)
        if report.files.count == 1, let file = report.files.first { return file.path }
        return directory
    }
}
