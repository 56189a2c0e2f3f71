import Foundation
import StandbyTransport

/// A backup set as the replicator sees it: a name and its source files (URLs; a file://
/// directory stands for every file under it). All sources together make one version.
public struct SetSpec: Sendable, Hashable {
    public var name: String
    public var sources: [URL]
    /// Keep this many newest versions after a replicate; nil keeps all.
    public var keepLast: Int?

    public init(name: String, sources: [URL], keepLast: Int? = nil) {
        self.name = name
        self.sources = sources
        self.keepLast = keepLast
    }
}

/// How a replicate runs. The caller knows the source site's off-peak window: outside it, it
/// passes a `rateLimit`.
public struct ReplicateOptions: Sendable {
    /// Bytes per second the source may be read at; nil for no cap.
    public var rateLimit: Int64?
    public var transport: TransportOptions
    /// Use a published chunk index when one matches the source (delta transfer).
    public var useIndex: Bool
    /// Called from the transfer thread as bytes arrive (throttled to a few times a second).
    public var progress: (@Sendable (ReplicationProgress) -> Void)?

    public init(
        rateLimit: Int64? = nil, transport: TransportOptions = TransportOptions(), useIndex: Bool = true,
        progress: (@Sendable (ReplicationProgress) -> Void)? = nil
    ) {
        self.rateLimit = rateLimit
        self.transport = transport
        self.useIndex = useIndex
        self.progress = progress
    }
}

/// Progress of a replicate, for a terminal's progress line (bytes, rate, ETA).
public struct ReplicationProgress: Sendable {
    public enum Phase: String, Sendable {
        case checking, readingIndex, fetching, committing
    }

    public var set: String
    public var file: String
    public var phase: Phase
    /// Bytes of the set's files processed so far (read, or known from the store).
    public var processedBytes: Int64
    public var totalBytes: Int64
    /// Bytes received from the source so far (what crossed the network).
    public var receivedBytes: Int64
    public var elapsed: Duration

    /// Source bytes per second so far.
    public var rate: Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds > 0 ? Double(processedBytes) / seconds : 0
    }

    /// Estimated time left at the current rate.
    public var remaining: Duration? {
        guard rate > 0, totalBytes >= processedBytes else { return nil }
        return .milliseconds(Int64(Double(totalBytes - processedBytes) / rate * 1000))
    }
}

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

public struct VersionRef: Sendable, Hashable, CustomStringConvertible {
    public var set: String
    public var version: Int64

    public init(set: String, version: Int64) {
        self.set = set
        self.version = version
    }

    public var description: String { "\(set)@\(version)" }
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

/// What retention and garbage collection did.
public struct RetentionReport: Sendable {
    public var droppedVersions: [Int64]
    public var chunksRemoved: Int
    public var packsDeleted: Int
    public var packsRewritten: Int
    /// Bytes of pack files removed or shrunk on disk.
    public var reclaimedBytes: Int64
}
