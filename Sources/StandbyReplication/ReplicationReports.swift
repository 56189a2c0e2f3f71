import Foundation

/// What a replicate did.
public struct ReplicationReport: Sendable {
    public var version: SetVersion
    /// Body plus protocol header bytes received from the source (the bytes on the wire).
    public var bytesReceived: Int64
    public var requests: Int
    /// Files transferred with a published index (only missing ranges fetched).
    public var filesByIndex: Int
    /// Files read whole (no index, a stale or corrupt one, or the first version).
    public var filesRead: Int
    public var elapsed: Duration
    /// Versions retention dropped after this one, and bytes garbage collection reclaimed.
    public var droppedVersions: [Int64]
    public var reclaimedBytes: Int64
}

/// A chunk a verify found missing or corrupt, with the versions it breaks.
public struct VerifyProblem: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// The chunk's bytes do not hash to its id.
        case corrupt
        /// The catalog has no chunk for a recipe entry, or its pack is missing or too short.
        case missing
    }

    public var kind: Kind
    public var chunk: String
    public var pack: String?
    public var detail: String
    /// (set, version id) of every version that references the chunk.
    public var versions: [VersionRef]
}

public struct VerifyReport: Sendable {
    public var versionsChecked: Int
    public var chunksChecked: Int
    /// Chunks whose bytes were read back and re-hashed.
    public var chunksRead: Int
    public var bytesRead: Int64
    public var problems: [VerifyProblem]

    public var isClean: Bool { problems.isEmpty }
    /// Every version a problem breaks, sorted.
    public var brokenVersions: [VersionRef] {
        Array(Set(problems.flatMap(\.versions))).sorted { ($0.set, $0.version) < ($1.set, $1.version) }
    }
}

public struct RestoreReport: Sendable {
    public var version: SetVersion
    public var files: [(name: String, path: String, size: Int64)]
    public var bytes: Int64
}

/// What retention and garbage collection did.
public struct RetentionReport: Sendable {
    public var droppedVersions: [Int64]
    public var chunksRemoved: Int
    public var packsDeleted: Int
    public var packsRewritten: Int
    /// Bytes of pack files removed or shrunk on disk.
    public var reclaimedBytes: Int64
}
