import Foundation
import StandbyBase

public struct PlanError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Turns a topology and a scenario into a `FailoverPlan`.
public struct Planner: Sendable {
    public enum Direction: String, Sendable, Codable {
        /// Primary to secondary after a declared loss.
        case failover
        /// Secondary back to the rebuilt primary.
        case failback
    }

    public var topology: Topology
    public var now: Date

    public init(topology: Topology, now: Date = Date()) {
        self.topology = topology
        self.now = now
    }

    public func scenario(named name: String) throws -> Scenario {
        guard let scenario = topology.scenarios.first(where: { $0.name == name }) else {
            throw PlanError(
                message: "no scenario '\(name)'; known: \(topology.scenarios.map(\.name).joined(separator: ", "))")
        }
        return scenario
    }

    public func plan(scenario name: String = "site-loss", direction: Direction = .failover) throws -> FailoverPlan {
        let scenario = try scenario(named: name)
        let selected = topology.services.filter { service in
            guard let roles = scenario.roles else { return true }
            return !roles.isDisjoint(with: service.roles)
        }
        let restored = selected.filter(\.atSecondary)
        let notRestored = selected.filter { !$0.atSecondary }.map {
            FailoverPlan.NotRestored(service: $0.name, reason: $0.reason ?? "no reason given")
        }
        let ordered = Self.order(restored)
        let selectedNames = Set(restored.map(\.name))

        func planned(_ service: Service) -> FailoverPlan.PlannedService {
            let steps = direction == .failover ? service.steps : service.failbackSteps
            let waits = service.dependsOn.filter { selectedNames.contains($0) }
            var order = "priority \(service.priority)"
            if !waits.isEmpty { order += ", after \(waits.joined(separator: ", ")) (depends_on)" }
            return FailoverPlan.PlannedService(
                name: service.name, tier: service.tier, priority: service.priority, dependsOn: service.dependsOn,
                order: order, backupSets: service.backupSets,
                steps: steps.map { step in
                    FailoverPlan.PlannedStep(
                        id: "\(service.name)/\(step.name)", kind: step.kind, summary: step.summary,
                        idempotent: step.idempotent, timeout: step.timeout?.description, retries: step.retries)
                })
        }

        var stages: [FailoverPlan.Stage] = []
        let core = ordered.filter { $0.tier == .core }
        stages.append(
            FailoverPlan.Stage(
                number: 1, kind: .core, title: "Core services", waitsForOffPeak: false, opensAt: nil, opensAtLocal: nil,
                services: core.map(planned), dnsChanges: []))
        if scenario.movesToSecondary, let dns = topology.dns {
            // The loader refuses an empty value set; a topology built another way must not reach
            // the server with one either, since an update to nothing deletes the record set.
            for record in dns.records where record.primary.isEmpty || record.secondary.isEmpty {
                let side = record.primary.isEmpty ? "primary" : "secondary"
                throw PlanError(
                    message:
                        "dns record \(record.name) \(record.type) (line \(record.location.line)) has no \(side) values; the cutover would delete it on every server"
                )
            }
            let changes = dns.records.map { record in
                FailoverPlan.DNSChange(
                    name: record.fqdn(in: dns.zone), type: record.type, ttl: record.ttl,
                    from: direction == .failover ? record.primary : record.secondary,
                    to: direction == .failover ? record.secondary : record.primary)
            }
            // Stage 2's validation: clients reach the secondary pool through their resolver.
            var validation: [FailoverPlan.PlannedService] = []
            if direction == .failover, let step = dns.clientViewStep {
                validation.append(
                    FailoverPlan.PlannedService(
                        name: "dns", tier: .core, priority: 0, dependsOn: [],
                        order: "after the cutover: what clients see (dns.client_view)", backupSets: [],
                        steps: [
                            FailoverPlan.PlannedStep(
                                id: "dns/\(step.name)", kind: step.kind, summary: step.summary + " (clients' view)",
                                idempotent: step.idempotent, timeout: step.timeout?.description, retries: step.retries)
                        ]))
            }
            var stage = FailoverPlan.Stage(
                number: 2, kind: .dns, title: "DNS cutover of \(dns.zone)", waitsForOffPeak: false, opensAt: nil,
                opensAtLocal: nil, services: validation, dnsChanges: changes)
            if !validation.isEmpty, let name = dns.clientView, let probe = topology.probe(named: name),
                case .clientView(_, let srv, _) = probe.check
            {
                stage.clientViewSRV = srv
                let wanted = srv.lowercased().hasSuffix(".") ? srv.lowercased() : srv.lowercased() + "."
                stage.clientViewTTL = changes.first { $0.name.lowercased() == wanted }?.ttl
            }
            stages.append(stage)
        }
        let optional = ordered.filter { $0.tier == .optional }
        let site = direction == .failover ? topology.secondary : topology.primary
        let opening = site.offPeak.nextOpening(after: now, in: site.timezone)
        let closing = site.offPeak.closing(after: now, in: site.timezone)
        stages.append(
            FailoverPlan.Stage(
                number: stages.count + 1, kind: .optional, title: "Optional services (off-peak at \(site.name))",
                waitsForOffPeak: true, opensAt: opening,
                opensAtLocal: opening.map { Self.localTime($0, in: site.timezone) },
                closesAt: closing, closesAtLocal: closing.map { Self.localTime($0, in: site.timezone) },
                services: optional.map(planned), dnsChanges: []))
        return FailoverPlan(
            deployment: topology.deployment, direction: direction, scenario: scenario.name,
            scenarioSummary: scenario.summary, stages: stages,
            notRestored: notRestored)
    }

    /// Services in dependency order; among those ready at once, lower priority numbers first,
    /// then by name so the order never depends on the file's layout by accident.
    public static func order(_ services: [Service]) -> [Service] {
        let names = Set(services.map(\.name))
        var remaining = services
        var done = Set<String>()
        var out: [Service] = []
        while !remaining.isEmpty {
            let ready = remaining.filter { $0.dependsOn.allSatisfy { !names.contains($0) || done.contains($0) } }
            // A cycle is a load error, so `ready` is empty only for an invalid topology: emit the rest as is.
            guard let next = ready.min(by: { ($0.priority, $0.name) < ($1.priority, $1.name) }) else {
                return out + remaining
            }
            out.append(next)
            done.insert(next.name)
            remaining.removeAll { $0.name == next.name }
        }
        return out
    }

    public static func localTime(_ date: Date, in timeZone: TimeZone) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "EEE yyyy-MM-dd HH:mm zzz"
        return formatter.string(from: date)
    }
}

extension PlanError: StandbyFailure {
    public var outcome: FailureOutcome { .badInput }
}
