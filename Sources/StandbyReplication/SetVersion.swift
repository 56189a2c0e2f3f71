import Foundation

/// One stored version of a set.
public struct SetVersion: Sendable, Hashable {
    public var id: Int64
    public var set: String
    /// When the copy was made.
    public var created: Date
    /// The capture time: the newest modification time of the set's source files, i.e. when the
    /// backup was taken at the primary, not when it was copied. RPO is measured from it.
    public var captured: Date?
    /// Bytes of all files of the version.
    public var size: Int64
    public var fileCount: Int
    /// Bytes of chunks this version added to the store (the rest were there already).
    public var newBytes: Int64
    /// A verify found a missing or corrupt chunk in this version: it is not restorable.
    public var broken: Bool
    /// When its data was last checked (at replication: every chunk and the whole-file hash).
    public var verified: Date?
}

/// One file of a version.
public struct VersionFile: Sendable, Hashable {
    public var name: String
    /// The source URL, password redacted.
    public var source: String
    public var size: Int64
    public var modificationTime: Date?
    public var sha256: String
}

public struct VersionRef: Sendable, Hashable, CustomStringConvertible {
    public var set: String
    public var version: Int64

    public init(set: String, version: Int64) {
        self.set = set
        self.version = version
    }

    public var description: String { "\(set)@\(version)" }
}

/// Per set, what `standby status` shows.
public struct SetStatus: Sendable {
    public var name: String
    /// The newest version that is not broken.
    public var newestVerified: SetVersion?
    public var versionCount: Int
    /// Bytes of the newest verified version.
    public var size: Int64
    /// Bytes of chunks the set's versions added to the store.
    public var storedBytes: Int64
    /// Bytes of all the set's versions.
    public var logicalBytes: Int64

    /// Logical bytes per stored byte (7 daily versions of a file that changes 1% a day: ~6.5).
    public var dedupRatio: Double { storedBytes > 0 ? Double(logicalBytes) / Double(storedBytes) : 0 }

    public var captureTime: Date? { newestVerified?.captured }

    /// Age of the newest verified capture at `now`: the RPO actually achieved.
    public func rpoAge(now: Date = Date()) -> Duration? {
        captureTime.map { .milliseconds(Int64(now.timeIntervalSince($0) * 1000)) }
    }

    /// Whether the set breaches `rpo` (no verified version at all breaches it).
    public func breaches(rpo: Duration, now: Date = Date()) -> Bool {
        guard let age = rpoAge(now: now) else { return true }
        return age > rpo
    }
}
