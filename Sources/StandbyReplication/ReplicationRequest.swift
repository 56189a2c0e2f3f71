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
