import Foundation

/// Where a deployment's journal, catalog and default store live: `--state DIR`, else
/// `$STANDBY_STATE`, else `$XDG_STATE_HOME/standby/<deployment>` (XDG's default is ~/.local/state).
public struct StateDirectory: Sendable {
    public var path: String

    public init(
        explicit: String?, deployment: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        if let explicit, !explicit.isEmpty {
            path = explicit
        } else if let fromEnvironment = environment["STANDBY_STATE"], !fromEnvironment.isEmpty {
            path = fromEnvironment
        } else {
            let base =
                environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
                ?? ((environment["HOME"] ?? NSHomeDirectory()) as NSString).appendingPathComponent(".local/state")
            path = ((base as NSString).appendingPathComponent("standby") as NSString).appendingPathComponent(deployment)
        }
    }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Creates the directory (mode 0700: it holds the journal of who decided what) if needed.
    public func create() throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// The default replication store, unless the topology names one.
    public func store(for topology: Topology) -> String {
        topology.secondary.store.map(topology.resolve(path:)) ?? file("store")
    }
}
