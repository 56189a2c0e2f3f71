import Foundation
import Logging
import StandbyCore
import StandbyReplication

/// What replicate, publish, verify and restore share: the store's logger and opening, and
/// durations as seconds. (Source credentials: `ReplicationJob`; the progress line: `ProgressLine`.)
enum ReplicationCLI {
    static var logger: Logger {
        Logger(label: "standby.replication")
    }

    static func openStore(_ topology: Topology, state: StateDirectory) throws -> ReplicationStore {
        try state.create()
        return try ReplicationStore.open(directory: state.store(for: topology), logger: logger)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
