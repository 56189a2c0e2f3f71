import Foundation
import Logging

extension FailoverModules {
    /// The real modules: the replication store (catalog and restores), StandbyDNS (stage 2),
    /// StandbyProbes (probe steps, the primary's evidence), StandbyTransport (http steps).
    public static func wired(topology: Topology, stateDirectory: StateDirectory, logger: Logger) -> FailoverModules {
        let replication = ReplicationAdapter(
            topology: topology, storeDirectory: stateDirectory.store(for: topology), logger: logger)
        let probes = ProbeAdapter(stateDirectory: stateDirectory, logger: logger)
        return FailoverModules(
            catalog: replication, restorer: replication, http: HTTPAdapter(logger: logger), probes: probes,
            dns: DNSAdapter(logger: logger), health: probes)
    }
}
