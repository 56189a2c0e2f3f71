import Foundation
import Logging
import StandbyReplication

/// The replication store at the secondary as the engine's catalog and restorer. Versions are the
/// store's version ids, as text.
public struct ReplicationAdapter: BackupCatalog, Restorer {
    public var topology: Topology
    public var storeDirectory: String
    public var logger: Logger

    public init(topology: Topology, storeDirectory: String, logger: Logger) {
        self.topology = topology
        self.storeDirectory = storeDirectory
        self.logger = logger
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

    public func finalPass(sets: [String]) async throws {
        let store = try store(create: true)
        for name in sets {
            guard let set = topology.backupSet(named: name) else { continue }
            let urls = set.sources.compactMap { URL(string: $0) }
            _ = try await store.replicate(set: SetSpec(name: name, sources: urls, keepLast: set.keepLast))
        }
    }

    /// Reverse replication on failback: `sources` (where the set is produced now) into the store.
    public func replicate(set name: String, sources: [String]) async throws -> SetVersionInfo? {
        var urls: [URL] = []
        for source in sources {
            guard let url = URL(string: source) else {
                throw FailoverError(.badInput, "backup set \(name): failback_source '\(source)' is not a URL")
            }
            urls.append(url)
        }
        _ = try await store(create: true).replicate(
            set: SetSpec(name: name, sources: urls, keepLast: topology.backupSet(named: name)?.keepLast))
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
