import Foundation

/// The failover as it would run: stages in order, services in order with the reason for their
/// place, every step, the DNS changes, and what the secondary does not restore.
public struct FailoverPlan: Sendable, Codable {
    public var deployment: String
    /// Failover (primary to secondary) or failback (back to the rebuilt primary).
    public var direction: Planner.Direction = .failover
    public var scenario: String
    public var scenarioSummary: String
    public var stages: [Stage]
    public var notRestored: [NotRestored]

    public struct Stage: Sendable, Codable {
        public enum Kind: String, Sendable, Codable { case core, dns, optional }
        public var number: Int
        public var kind: Kind
        public var title: String
        /// Optional services wait for the secondary's off-peak window.
        public var waitsForOffPeak: Bool
        /// When that window next opens (UTC), and the same moment on the secondary's clocks.
        public var opensAt: Date?
        public var opensAtLocal: String?
        /// When the window is open at planning time: when it closes (UTC and local). Nil
        /// otherwise, and in plans recorded before this field existed.
        public var closesAt: Date?
        public var closesAtLocal: String?
        public var services: [PlannedService]
        public var dnsChanges: [DNSChange]
        /// Stage 2 with `dns.client_view`: the SRV name clients look up and its TTL, which
        /// explains why clients see the cutover later than the authoritative servers.
        public var clientViewSRV: String? = nil
        public var clientViewTTL: Int? = nil
    }

    public struct PlannedService: Sendable, Codable {
        public var name: String
        public var tier: Service.Tier
        public var priority: Int
        public var dependsOn: [String]
        /// Why the service stands where it does: its priority, and what it waits for.
        public var order: String
        public var backupSets: [String]
        public var steps: [PlannedStep]
    }

    public struct PlannedStep: Sendable, Codable {
        /// `service/step`, the name `confirm`, `retry` and `skip` take.
        public var id: String
        public var kind: StepKind
        public var summary: String
        public var idempotent: Bool
        public var timeout: String?
        public var retries: Int
    }

    public struct DNSChange: Sendable, Codable {
        public var name: String
        public var type: String
        public var ttl: Int
        public var from: [String]
        public var to: [String]
    }

    public struct NotRestored: Sendable, Codable {
        public var service: String
        public var reason: String
    }

    public var allSteps: [(stage: Stage, service: PlannedService, step: PlannedStep)] {
        stages.flatMap { stage in stage.services.flatMap { service in service.steps.map { (stage, service, $0) } } }
    }
}
