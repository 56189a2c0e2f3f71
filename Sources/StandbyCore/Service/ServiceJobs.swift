import Foundation

/// What the runner needs from the rest of Standby: the replication store, the health watcher and
/// the failover engine behind one port, so that the runner and its scheduling are tested alone and
/// the CLI wires the real parts.
public protocol ServiceJobs: Sendable {
    /// Runs one job to its end and says what it did in one line. Task cancellation is a graceful
    /// shutdown: a replication or a verification stops after the chunk it is on (what is stored
    /// stays stored) and throws `CancellationError` or its module's cancelled error.
    func run(_ job: ServiceJob, reason: String) async throws -> String

    /// Whether a failover run waits for the secondary's off-peak window.
    func failoverWaiting() async -> Bool

    /// The newest successful drill in the state store.
    func lastDrill() async -> Date?

    /// Probes on the health interval, records every result and raises alerts, until cancelled.
    /// Returns at once when there is nothing to watch.
    func watchHealth() async throws

    /// `base` with the sets, probes, sites, timeline and failover filled in.
    func status(_ base: ServiceSnapshot, now: Date) async -> ServiceSnapshot
}
