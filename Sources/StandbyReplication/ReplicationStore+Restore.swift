import Foundation
import GRDB
import StandbyBase
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension ReplicationStore {
    /// Materialises a version of `set` in `directory` (the newest one not broken, unless
    /// `version` is given). Every chunk is checked against its hash and every file against its
    /// whole-file SHA-256; each file is written to a temporary name, fsynced and renamed, and
    /// gets its source's modification time. A failure leaves no partial file under its name.
    public func restore(set: String, version: Int64? = nil, to directory: String) async throws -> RestoreReport {
        let store = self
        return try await Blocking.run { flag in
            let lock = try store.lockReaders(exclusive: false, "restore of set \(set)")
            defer { withExtendedLifetime(lock) {} }
            return try store.catalog {
                try store.pool.read { db in
                    try store.restoreLocked(db, set: set, version: version, to: directory, cancellation: flag)
                }
            }
        }
    }

    func restoreLocked(
        _ db: Database, set: String, version: Int64?, to directory: String, cancellation: CancellationFlag
    )
        throws -> RestoreReport
    {
        // Every chunk of the version is looked up: the chunk table's pages stay in memory.
        try widenPageCache(db)
        let versions = try versions(db, set: set)
        guard !versions.isEmpty else {
            throw ReplicationError(.noSuchSet, "the store has no version of this set", set: set)
        }
        let chosen: SetVersion
        if let version {
            guard let found = versions.first(where: { $0.id == version }) else {
                throw ReplicationError(.noSuchVersion, "no version \(version) of this set in the store", set: set)
            }
            chosen = found
        } else {
            guard let newest = versions.first(where: { !$0.broken }) else {
                throw ReplicationError(
                    .corruptPack, "every version of this set is broken (see verify); none can be restored", set: set)
            }
            chosen = newest
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ReplicationError(.storeIO, "cannot create \(directory): \(error)", set: set)
        }
        var restored: [(name: String, path: String, size: Int64)] = []
        var bytes: Int64 = 0
        let files = try Row.fetchAll(
            db, sql: "SELECT id, name, size, mtime, sha256 FROM files WHERE version_id = ? ORDER BY name",
            arguments: [chosen.id])
        for row in files {
            let (fileID, name, size): (Int64, String, Int64) = (row[0], row[1], row[2])
            let mtime: Int64? = row[3]
            let expected: Data? = row[4]
            let components = name.split(separator: "/").map(String.init)
            guard !components.isEmpty, !components.contains(".."), !components.contains(".") else {
                throw ReplicationError(.invalidInput, "refusing to restore a file named \(name)", set: set)
            }
            let target = directory + "/" + components.joined(separator: "/")
            let parent = (target as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            let temp = parent + "/." + (components.last ?? "file") + ".standby-tmp"
            let fd = try FileIO.open(temp, O_WRONLY | O_CREAT | O_TRUNC)
            var written: Int64 = 0
            do {
                let describe = "version \(chosen.id), file \(name)"
                let actual: [UInt8]
                do {
                    let result = try RestorePipeline.write(
                        packDirectory: packDirectory, to: fd, path: temp, cancellation: cancellation
                    ) { emit in
                        try planRuns(db, file: fileID, describe: describe, emit)
                    }
                    actual = result.sha256
                    written = result.bytes
                } catch var error as ReplicationError where error.code == .corruptPack || error.code == .cancelled {
                    if error.code == .corruptPack, !error.message.hasPrefix(describe) {
                        error.message = "\(describe): \(error.message)"
                    }
                    error.set = set
                    throw error
                }
                guard written == size, expected.map({ Array($0) == actual }) ?? true else {
                    throw ReplicationError(
                        .hashMismatch,
                        "version \(chosen.id), file \(name): the restored bytes do not match the SHA-256 recorded at replication",
                        set: set)
                }
                try FileIO.fsync(fd, path: temp)
                close(fd)
            } catch {
                close(fd)
                unlink(temp)
                throw error
            }
            if let mtime {
                var times = [
                    timespec(tv_sec: Int(mtime), tv_nsec: 0), timespec(tv_sec: Int(mtime), tv_nsec: 0),
                ]
                _ = utimensat(AT_FDCWD, temp, &times, 0)
            }
            try FileIO.rename(temp, target)
            try FileIO.syncDirectory(parent)
            restored.append((name, target, written))
            bytes += written
        }
        logger.info(
            "Set restored",
            metadata: ["set": "\(set)", "version": "\(chosen.id)", "to": "\(directory)", "bytes": "\(bytes)"])
        return RestoreReport(version: chosen, files: restored, bytes: bytes)
    }

    /// Hands the runs of a file's recipe to `emit` in file order, one recipe segment's chunks
    /// looked up at a time, so the first runs are read while the rest are looked up.
    private func planRuns(
        _ db: Database, file: Int64, describe: String, _ emit: (RestoreRun) throws -> Void
    ) throws {
        var planner = RestoreRun.Planner(describe: describe)
        var packNames: [Int64: String] = [:]
        try forEachRecipeSegment(db, file: file) { entries in
            let locations = try chunkLocations(db, entries.lazy.map(\.id), packNames: &packNames)
            for entry in entries {
                if let run = try planner.add(entry, at: locations[entry.id]) { try emit(run) }
            }
        }
        if let run = planner.finish() { try emit(run) }
    }
}
