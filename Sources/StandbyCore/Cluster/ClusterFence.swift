import Foundation
import Synchronization

/// The comparisons every journal write of this process carries: the leader key's and the lock
/// key's create revisions as they were when this process took them. A controller that lost its
/// lease (killed, stopped, cut off) has lost those keys with it; a key taken again by another has
/// another create revision. Either way the write fails, and the writer is deposed: it stops
/// before any further side effect, because the engine commits a step `running` before its effect.
///
/// One fence per term: once deposed it stays deposed, so work begun in a lost term can never write
/// with the revisions of a later one, even when the same node leads again.
public final class ClusterFence: Sendable {
    public struct Holding: Sendable, Equatable {
        public var key: String
        public var createRevision: Int64
        public var what: String
    }

    public let node: String
    private let held = Mutex<[Holding]>([])
    private let deposedReason = Mutex<String?>(nil)

    public init(node: String) { self.node = node }

    /// Adds a key this process holds (the leader key, the lock).
    public func hold(_ key: String, createRevision: Int64, what: String) {
        held.withLock { list in
            list.removeAll { $0.key == key }
            list.append(Holding(key: key, createRevision: createRevision, what: what))
        }
    }

    public func release(_ key: String) {
        held.withLock { list in list.removeAll { $0.key == key } }
    }

    public var holdings: [Holding] { held.withLock { $0 } }

    /// The comparisons for a write, or `deposed` once this process knows it lost what it held.
    public func compares() throws -> [EtcdCompare] {
        if let reason = deposedReason.withLock({ $0 }) {
            throw FailoverError(.deposed, "deposed: node \(node) \(reason); it does nothing more")
        }
        return holdings.map { EtcdCompare.createRevision($0.key, $0.createRevision) }
    }

    /// Marks this process deposed: every write from now on is refused before it is sent.
    public func depose(_ reason: String) {
        deposedReason.withLock { current in
            if current == nil { current = reason }
        }
    }

    public var deposed: String? { deposedReason.withLock { $0 } }
}
